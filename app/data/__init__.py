"""The studio's data layer, usable without the UI (no gradio import anywhere in this package).

- `store`: `AnnotationStore`, the SQLite (WAL) store of ratings and comparisons, one self-contained record each;
- `exports`: JSONL / CSV / Parquet / `datasets` folder / TRL DPO and KTO files derived from the store;
- `hub_sync`: sync of the store to a Hugging Face dataset repo (restore on start, append-only shards).

From a notebook::

    from app.data import AnnotationStore, export_all
    store = AnnotationStore("data")
    export_all(store, "data/exports/now")
"""

from app.data.exports import export_all, summary_counts
from app.data.store import AnnotationStore, default_data_dir

__all__ = ["AnnotationStore", "default_data_dir", "export_all", "summary_counts"]
