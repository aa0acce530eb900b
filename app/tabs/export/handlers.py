"""Handlers of the Export tab: the store's counts and preview, one export of every format with its download
buttons, and the push of the latest export to a Hub dataset repo.

`export_data` writes every format (JSONL, CSV, Parquet, a Hugging Face dataset, TRL's DPO pairs and KTO rows) from
one snapshot of the store into a fresh folder under `<data_dir>/exports/` (the formats are the gradio-free library
`app/data/exports.py`), zips the dataset with its videos, and enables one download button per file; `push_export`
uploads the latest export folder to a Hub dataset repo (`app/data/hub_sync.py`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import gradio as gr

from app.access.identity import Identity
from app.data.exports import (
    KTO_DESIRABLE_MIN_SCORE,
    KTO_UNDESIRABLE_MAX_SCORE,
    export_all,
    preview_dataframe,
    summary_counts,
)
from app.data.frame_images import DEFAULT_FRAMES
from app.data.hub_sync import push_to_hub
from app.session import Session
from app.studio import Studio
from app.text import plain


def counts_markdown(studio: Studio) -> str:
    counts = summary_counts(studio.store)
    return (
        f"**{counts['total']}** judgements from **{counts['annotators']}** annotator(s) on **{counts['videos']}** "
        f"video(s)  \n"
        f"Ratings: **{counts['ratings']}** (👍 {counts['thumbs_up']} · 👎 {counts['thumbs_down']} · "
        f"scored {counts['scored']})  \n"
        f"A/B comparisons: **{counts['comparisons']}** (A {counts['a_better']} · B {counts['b_better']} · "
        f"tie {counts['ties']} · both bad {counts['both_bad']})  \n"
        f"TRL layouts: **{counts['dpo_pairs']}** DPO pairs · **{counts['kto_rows']}** KTO rows "
        f"({counts['kto_desirable']} desirable · {counts['kto_undesirable']} undesirable · "
        f"{counts['kto_excluded']} left out)  \n"
        f"<small>DPO pairs come from A/B votes with a winner (ties and “both bad” carry no preference). KTO labels: "
        f"👍 → desirable, 👎 → undesirable; without thumbs a score ≥ {KTO_DESIRABLE_MIN_SCORE} is desirable and "
        f"≤ {KTO_UNDESIRABLE_MAX_SCORE} undesirable; a 3, or thumbs the score contradicts, is left out.</small>"
    )


def refresh_export(studio: Studio, who: Identity) -> dict[str, Any]:
    """The counts, the newest judgements and the sync status: what the store holds, so for admins only."""
    try:
        studio.admit(who, "export")
    except PermissionError as error:
        return {"export_counts": f"🔒 {plain(str(error))}.", "export_preview": None, "sync_status": ""}
    return {
        "export_counts": counts_markdown(studio),
        "export_preview": preview_dataframe(studio.store),
        "sync_status": sync_markdown(studio),
    }


def sync_markdown(studio: Studio) -> str:
    """Where the store is kept besides this disk: the Hub sync's status (a warning when pushing is paused)."""
    message, warning = studio.hub_message()
    if not message:
        return ""
    return f"**{plain(message, 400)}**" if warning else f"<small>{plain(message, 400)}</small>"


# Download buttons: output name -> (ExportResult.files key, button label).
DOWNLOADS = {
    "dl_jsonl": ("jsonl", "JSONL"),
    "dl_csv": ("csv", "CSV"),
    "dl_parquet": ("parquet", "Parquet"),
    "dl_datasets": ("datasets_zip", "HF datasets (zip)"),
    "dl_dpo": ("dpo_jsonl", "DPO pairs"),
    "dl_kto": ("kto_jsonl", "KTO rows"),
}


def export_data(studio: Studio, session: Session, who: Identity, frames: bool = False) -> dict[str, Any]:
    """Write every format from one snapshot of the store into a fresh folder under <data_dir>/exports/ (admins);
    `frames`: the DPO / KTO rows also with the judged answers' frames as an `images` column (TRL vision)."""
    try:
        studio.admit(who, "export")
    except PermissionError as error:
        return {"warning": str(error), "export_status": f"🔒 {plain(str(error))}."}
    try:
        result = export_all(studio.store, images_frames=DEFAULT_FRAMES if frames else None)
    except (ValueError, OSError) as error:
        return {"warning": f"Export failed: {error}"}
    studio.store.audit(who.key, "export", {"directory": result.directory.name, "records": result.counts["total"]})
    dataset_dir = result.files.get("datasets")
    if dataset_dir is not None:
        archive = shutil.make_archive(
            str(result.directory / "dataset"), "zip", root_dir=result.directory, base_dir=dataset_dir.name
        )
        result.files["datasets_zip"] = Path(archive)
    session.last_export_dir = str(result.directory)
    counts = result.counts
    out: dict[str, Any] = {
        "export_status": (
            f"✅ Exported {counts['total']} judgements ({counts['dpo_pairs']} DPO pairs, {counts['kto_rows']} KTO "
            f"rows) to `{result.directory.name}`. Download below; the zip holds every file and the videos."
        ),
        "export_files": result.download_paths(),
        "session": session,
        "export_dir": str(result.directory),
        **refresh_export(studio, who),
    }
    for name, (key, _label) in DOWNLOADS.items():
        path = result.files.get(key)
        out[name] = gr.update(value=str(path) if path else None, interactive=path is not None)
    return out


def push_export(studio: Studio, session: Session, who: Identity, repo_id: str) -> dict[str, Any]:
    """Upload the latest export folder to a Hub dataset repo (admins)."""
    try:
        studio.admit(who, "push")
    except PermissionError as error:
        return {"hub_status": f"🔒 {plain(str(error))}.", "warning": str(error)}
    if not session.last_export_dir:
        return {"hub_status": "Export first: the push uploads the latest export folder."}
    status = push_to_hub(session.last_export_dir, repo_id or None)
    studio.store.audit(who.key, "push", {"repo": repo_id or "", "ok": status.ok, "message": status.message[:200]})
    return {"hub_status": ("✅ " if status.ok else "⚠️ ") + plain(status.message, 400)}
