"""Exports of the annotation store, derived from one snapshot of it: plain tables (JSONL, CSV, Parquet), a HF
`datasets` folder with a dataset card, and TRL's conversational DPO (prompt / chosen / rejected, from decided A/B
comparisons) and KTO (prompt / completion / label, from ratings) layouts, each row carrying its video reference.
Everything lands in one folder inside the data directory (`<data_dir>/exports/<stamp>/`), with the referenced videos
linked in under `videos/` so that every `video` path resolves relative to the folder, and a zip of it all for a
one-click download. Export locations that would leave the data directory are refused. Plain Python: no gradio.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from app.data.frame_images import add_images, write_vision_dataset
from app.data.store import COLUMNS, SIDE_FIELDS, AnnotationStore

EXPORTS_DIRNAME = "exports"

# KTO labels from ratings. An explicit thumbs decides; without one, a score of at least KTO_DESIRABLE_MIN_SCORE is
# desirable and at most KTO_UNDESIRABLE_MAX_SCORE undesirable; a 3 (or no thumbs and no score) says neither and is
# left out. A thumbs contradicted by the score (up with a score <= 2, down with a score >= 4) is left out too:
# training on a label the annotator also contradicted would teach noise.
KTO_DESIRABLE_MIN_SCORE = 4
KTO_UNDESIRABLE_MAX_SCORE = 2

# Which judged answer a DPO pair prefers; ties and "both bad" carry no preference and give no pair.
DPO_CHOSEN_SIDE = {"a": ("a", "b"), "b": ("b", "a")}

FORMATS = ("jsonl", "csv", "parquet", "datasets", "dpo", "kto")

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
_INDICES = pa.list_(pa.int64())
_SECONDS = pa.list_(pa.float64())
_SIDE_TYPES = {
    "model": pa.string(),
    "encode_params": pa.string(),  # JSON text: the keys differ between models
    "generation_params": pa.string(),
    "frame_indices": _INDICES,
    "frame_timestamps_s": _SECONDS,
    "answer": pa.string(),
}
# The exported table: the store's columns, with `video_path` renamed `video` (a path relative to the export folder).
RECORDS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("created_at", pa.string()),
        ("kind", pa.string()),
        ("annotator", pa.string()),
        ("identity_kind", pa.string()),
        ("identity_id", pa.string()),
        ("video", pa.string()),
        ("video_sha256", pa.string()),
        ("video_duration_s", pa.float64()),
        ("conversation", _MESSAGES),
        ("question", pa.string()),
        *((f"{name}{suffix}", _SIDE_TYPES[name]) for suffix in ("", "_a", "_b") for name in SIDE_FIELDS),
        ("thumbs", pa.int64()),
        ("score", pa.int64()),
        ("choice", pa.string()),
        ("reason", pa.string()),
        ("extra", pa.string()),  # JSON text
    ]
)
_JSON_TEXT_COLUMNS = [
    name for name in RECORDS_SCHEMA.names if name == "extra" or name.startswith(("encode_params", "generation_params"))
]
_VIDEO_FIELDS = [("video", pa.string()), ("video_sha256", pa.string()), ("video_duration_s", pa.float64())]
# The compression an answer's frames went through (see app.running.compression_dict); null for text-only turns.
_COMPRESSION = pa.struct(
    [
        ("compressor", pa.string()),
        ("budget_pct", pa.float64()),
        ("global_budget", pa.int64()),
        ("visual_tokens", pa.int64()),
        ("slow_tokens", pa.int64()),
        ("fast_tokens", pa.int64()),
        ("official_tokens", pa.int64()),
        ("native_tokens", pa.int64()),
        (
            "clips",
            pa.list_(
                pa.struct(
                    [
                        ("index", pa.int64()),
                        ("start_s", pa.float64()),
                        ("end_s", pa.float64()),
                        ("frames", pa.int64()),
                        ("budget", pa.int64()),
                        ("used_tokens", pa.int64()),
                        ("baseline_budget", pa.int64()),
                        ("density", pa.float64()),
                        ("caption", pa.string()),  # `langdc`: the language expert's description of the clip
                        ("caption_tokens", pa.int64()),  # and its length in tokens (what set the budget)
                    ]
                )
            ),
        ),
    ]
)
DPO_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("prompt", _MESSAGES),
        ("chosen", _MESSAGES),
        ("rejected", _MESSAGES),
        *_VIDEO_FIELDS,
        ("chosen_model", pa.string()),
        ("rejected_model", pa.string()),
        ("chosen_frame_timestamps_s", _SECONDS),
        ("rejected_frame_timestamps_s", _SECONDS),
        ("chosen_compression", _COMPRESSION),
        ("rejected_compression", _COMPRESSION),
        ("annotator", pa.string()),
        ("reason", pa.string()),
    ]
)
KTO_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("prompt", _MESSAGES),
        ("completion", _MESSAGES),
        ("label", pa.bool_()),
        *_VIDEO_FIELDS,
        ("model", pa.string()),
        ("frame_timestamps_s", _SECONDS),
        ("compression", _COMPRESSION),
        ("thumbs", pa.int64()),
        ("score", pa.int64()),
        ("annotator", pa.string()),
        ("reason", pa.string()),
    ]
)


@dataclass
class ExportResult:
    """Where one export went. `files` maps a format name to its path (the `datasets` entry is a folder)."""

    directory: Path
    files: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def download_paths(self) -> list[str]:
        """The files a person would download (zip first); folders are left out."""
        paths = [self.files["zip"]] if "zip" in self.files else []
        paths += [path for name, path in self.files.items() if name != "zip" and path.is_file()]
        return [str(path) for path in paths]


# ----------------------------------------------------------------------------------------------------------------
# TRL layouts


def kto_label(thumbs: int | None, score: int | None) -> bool | None:
    """The KTO label of a rating, or None when the rating says neither desirable nor undesirable (see the
    KTO_* constants for the rule)."""
    by_score = None
    if score is not None:
        if score >= KTO_DESIRABLE_MIN_SCORE:
            by_score = True
        elif score <= KTO_UNDESIRABLE_MAX_SCORE:
            by_score = False
    if thumbs is None:
        return by_score
    by_thumbs = thumbs > 0
    if by_score is not None and by_score != by_thumbs:
        return None
    return by_thumbs


def prompt_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """The prompt a judged answer was given: the conversation so far plus the judged question."""
    return [*record["conversation"], {"role": "user", "content": record["question"]}]


def dpo_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One TRL conversational preference row per decided comparison (choice "a" or "b")."""
    rows = []
    for record in records:
        if record["kind"] != "comparison" or record["choice"] not in DPO_CHOSEN_SIDE:
            continue
        chosen, rejected = DPO_CHOSEN_SIDE[record["choice"]]
        rows.append(
            {
                "id": record["id"],
                "prompt": prompt_messages(record),
                "chosen": [{"role": "assistant", "content": record[f"answer_{chosen}"]}],
                "rejected": [{"role": "assistant", "content": record[f"answer_{rejected}"]}],
                **_video_reference(record),
                "chosen_model": record[f"model_{chosen}"],
                "rejected_model": record[f"model_{rejected}"],
                "chosen_frame_timestamps_s": record[f"frame_timestamps_s_{chosen}"],
                "rejected_frame_timestamps_s": record[f"frame_timestamps_s_{rejected}"],
                "chosen_compression": _compression(record, f"compression_{chosen}"),
                "rejected_compression": _compression(record, f"compression_{rejected}"),
                "annotator": record["annotator"],
                "reason": record["reason"],
            }
        )
    return rows


def kto_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One TRL conversational unpaired-preference row per rating that has a label (see `kto_label`)."""
    rows = []
    for record in records:
        if record["kind"] != "rating":
            continue
        label = kto_label(record["thumbs"], record["score"])
        if label is None:
            continue
        rows.append(
            {
                "id": record["id"],
                "prompt": prompt_messages(record),
                "completion": [{"role": "assistant", "content": record["answer"]}],
                "label": label,
                **_video_reference(record),
                "model": record["model"],
                "frame_timestamps_s": record["frame_timestamps_s"],
                "compression": _compression(record, "compression"),
                "thumbs": record["thumbs"],
                "score": record["score"],
                "annotator": record["annotator"],
                "reason": record["reason"],
            }
        )
    return rows


def _compression(record: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The compression plan kept in a record's `extra` (None for text-only turns and older records)."""
    plan = (record.get("extra") or {}).get(key)
    if not isinstance(plan, dict):
        return None
    fields = [field.name for field in _COMPRESSION]
    clip_fields = [field.name for field in _COMPRESSION.field("clips").type.value_type]
    shaped = {name: plan.get(name) for name in fields}
    shaped["clips"] = [{name: clip.get(name) for name in clip_fields} for clip in plan.get("clips") or []]
    return shaped


def _video_reference(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "video": record["video_path"],
        "video_sha256": record["video_sha256"],
        "video_duration_s": record["video_duration_s"],
    }


# ----------------------------------------------------------------------------------------------------------------
# Where exports may go


def sanitize_name(name: str, max_chars: int = 64) -> str:
    """A user-typed name made safe as one file-name component: letters, digits, '.', '_' and '-' only, no leading
    dot, never empty."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name or "").strip("._-")[:max_chars].strip("._-")
    return cleaned or "export"


def resolve_export_dir(data_dir: str | Path, out_dir: str | Path | None = None, name: str | None = None) -> Path:
    """The folder an export will be written to, guaranteed to lie inside the data directory.

    out_dir None: `<data_dir>/exports/<name->stamp>` (name sanitized). A relative out_dir is taken relative to
    `<data_dir>/exports/`; an absolute one must already point inside the data directory. '..' components are
    refused outright, and symlinks are resolved before the check, so a link pointing outside is refused too.
    """
    root = Path(data_dir).expanduser().resolve()
    exports_root = root / EXPORTS_DIRNAME
    if out_dir is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        folder = f"{sanitize_name(name)}-{stamp}" if name else f"export-{stamp}"
        return exports_root / folder
    raw = Path(out_dir)
    if ".." in raw.parts:
        raise ValueError(f"export folder {str(out_dir)!r} may not contain '..'")
    target = (raw if raw.is_absolute() else exports_root / raw).resolve()
    if target == root or not target.is_relative_to(root):
        raise ValueError(f"export folder {str(out_dir)!r} is outside the data directory {root}")
    if target.is_relative_to(root / "videos"):
        raise ValueError("export folder may not be inside the kept videos folder")
    return target


# ----------------------------------------------------------------------------------------------------------------
# Writers


def export_all(
    store: AnnotationStore,
    out_dir: str | Path | None = None,
    *,
    name: str | None = None,
    formats: Iterable[str] = FORMATS,
    include_videos: bool = True,
    make_zip: bool = True,
    images_frames: int | None = None,
) -> ExportResult:
    """Write the chosen formats (default: all) from one snapshot of the store, plus the dataset card, the kept
    videos (hard-linked, else copied) and a zip of it all. Returns the paths and the counts that went in.

    `images_frames`: with dpo / kto, also write `trl/dpo_images.jsonl` and `trl/dpo_images/` (a `datasets` folder;
    likewise for kto) whose `images` column holds up to that many frames of the judged answer, for TRL's
    vision-language trainers (`app.data.frame_images`)."""
    wanted = list(dict.fromkeys(formats))
    unknown = [fmt for fmt in wanted if fmt not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format(s) {', '.join(map(repr, unknown))}; known: {', '.join(FORMATS)}")
    directory = resolve_export_dir(store.data_dir, out_dir, name)
    directory.mkdir(parents=True, exist_ok=True)

    records = store.records()  # one snapshot: every file of this export agrees on what is in it
    table_rows = [_table_row(record) for record in records]
    dpo = dpo_rows(records)
    kto = kto_rows(records)
    counts = _counts(records, dpo, kto)
    result = ExportResult(directory=directory, counts=counts)

    if "jsonl" in wanted:
        result.files["jsonl"] = _write_jsonl(directory / "records.jsonl", [_jsonl_row(r) for r in records])
    if "csv" in wanted:
        result.files["csv"] = _write_csv(directory / "records.csv", table_rows)
    if "parquet" in wanted:
        result.files["parquet"] = _write_parquet(directory / "records.parquet", table_rows, RECORDS_SCHEMA)
    if "dpo" in wanted:
        result.files["dpo_jsonl"] = _write_jsonl(directory / "trl" / "dpo.jsonl", dpo)
        result.files["dpo_parquet"] = _write_parquet(directory / "trl" / "dpo.parquet", dpo, DPO_SCHEMA)
    if "kto" in wanted:
        result.files["kto_jsonl"] = _write_jsonl(directory / "trl" / "kto.jsonl", kto)
        result.files["kto_parquet"] = _write_parquet(directory / "trl" / "kto.parquet", kto, KTO_SCHEMA)
    if images_frames is not None:
        _write_vision_files(store, directory / "trl", {"dpo": dpo, "kto": kto}, wanted, images_frames, result)
    card = dataset_card(counts, [path.relative_to(directory).as_posix() for path in result.files.values()])
    if "datasets" in wanted:
        result.files["datasets"] = _write_datasets_folder(directory / "dataset", table_rows, card)
    result.files["card"] = _write_text(directory / "README.md", card)
    if include_videos:
        _link_videos(store, records, directory)
    if make_zip:
        result.files["zip"] = _write_zip(directory, directory / f"{directory.name}.zip")
    return result


def _write_vision_files(
    store: AnnotationStore,
    folder: Path,
    rows: dict[str, list[dict[str, Any]]],
    wanted: list[str],
    max_frames: int,
    result: ExportResult,
) -> None:
    """The dpo / kto rows again with an `images` column, as JSONL and as a `datasets` folder."""

    def locate(row: dict[str, Any]) -> Path | None:
        return store.ensure_video(row["video"]) if row.get("video") else None

    for kind in ("dpo", "kto"):
        if kind not in wanted:
            continue
        copies = [dict(row) for row in rows[kind]]
        folder.mkdir(parents=True, exist_ok=True)
        add_images(copies, folder, locate, kind=kind, max_frames=max_frames)
        result.files[f"{kind}_images_jsonl"] = _write_jsonl(folder / f"{kind}_images.jsonl", copies)
        result.files[f"{kind}_images"] = write_vision_dataset(copies, folder, folder / f"{kind}_images", kind)


def _table_row(record: dict[str, Any]) -> dict[str, Any]:
    """A record shaped for RECORDS_SCHEMA: `video` instead of `video_path`, params and extra as JSON text."""
    row = {name: record[name] for name in COLUMNS if name != "video_path"}
    row["video"] = record["video_path"]
    for name in _JSON_TEXT_COLUMNS:
        if row[name] is not None:
            row[name] = json.dumps(row[name], ensure_ascii=False, sort_keys=True)
    return {name: row[name] for name in RECORDS_SCHEMA.names}


def records_table(records: Iterable[dict[str, Any]]) -> pa.Table:
    """Records (as `AnnotationStore.records()` returns them) as one Arrow table with RECORDS_SCHEMA: the shape of
    the Parquet export and of the shards the Hub sync writes, so every shard has the same columns and types."""
    return pa.Table.from_pylist([_table_row(record) for record in records], schema=RECORDS_SCHEMA)


def records_from_table(table: pa.Table) -> list[dict[str, Any]]:
    """The inverse of `records_table`: rows back to store records (`video` -> `video_path`, JSON text decoded),
    de-duplicated by id (the first occurrence wins). Columns missing from an older table read as null."""
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in table.to_pylist():
        record_id = row.get("id")
        if not record_id or record_id in seen:
            continue
        seen.add(record_id)
        record = {name: row.get(name) for name in COLUMNS if name != "video_path"}
        record["video_path"] = row.get("video")
        for name in _JSON_TEXT_COLUMNS:
            if isinstance(record[name], str):
                record[name] = json.loads(record[name])
        record["conversation"] = record["conversation"] or []
        records.append(record)
    return records


def _jsonl_row(record: dict[str, Any]) -> dict[str, Any]:
    """A record for JSONL: nested values stay nested; same column names as the tables."""
    row = dict(record)
    row["video"] = row.pop("video_path")
    return {name: row[name] for name in RECORDS_SCHEMA.names}


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Flat text: lists (conversation, frames) become JSON text like the params already are."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RECORDS_SCHEMA.names)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    name: json.dumps(value, ensure_ascii=False) if isinstance(value, list) else value
                    for name, value in row.items()
                }
            )
    return path


def _write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _write_datasets_folder(path: Path, rows: list[dict[str, Any]], card: str) -> Path:
    """`Dataset.save_to_disk`, reloadable with `datasets.load_from_disk`. `video` is a plain string path: the
    `datasets.Video` feature needs torchcodec to decode (not installed here), and with decode=False it embeds the
    whole file into every row on save, one copy per vote."""
    if path.exists():
        shutil.rmtree(path)
    features = datasets.Features.from_arrow_schema(RECORDS_SCHEMA)
    # from_dict by columns (not from_list) so an empty export still carries every column.
    columns = {name: [row[name] for row in rows] for name in RECORDS_SCHEMA.names}
    dataset = datasets.Dataset.from_dict(columns, features=features)
    # The progress bar is for interactive notebooks; in the app it only adds noise to the server log.
    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        # An empty dataset would be saved as zero shards, which load_from_disk (datasets 5.2) cannot read back.
        dataset.save_to_disk(str(path), num_shards=1 if not rows else None)
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    _write_text(path / "README.md", card)
    return path


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _link_videos(store: AnnotationStore, records: list[dict[str, Any]], directory: Path) -> None:
    """Put each referenced video at `<export>/videos/<sha256><ext>`, the path the `video` columns name. A hard link
    costs no space; a copy is the fallback across file systems."""
    for stored_path in sorted({r["video_path"] for r in records if r["video_path"]}):
        target = directory / stored_path
        if target.exists():
            continue
        # After a restore from the Hub a video may not be on this disk yet: ensure_video fetches it on first use.
        source = store.ensure_video(stored_path)
        if source is None:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)


def _write_zip(directory: Path, zip_path: Path) -> Path:
    temp = zip_path.with_name(zip_path.name + ".part")
    with zipfile.ZipFile(temp, "w") as archive:
        for path in sorted(directory.rglob("*")):
            if not path.is_file() or path in (zip_path, temp):
                continue
            # Videos are already compressed; deflating them only costs time.
            compression = zipfile.ZIP_STORED if path.parent.name == "videos" else zipfile.ZIP_DEFLATED
            archive.write(path, path.relative_to(directory).as_posix(), compress_type=compression)
    os.replace(temp, zip_path)
    return zip_path


# ----------------------------------------------------------------------------------------------------------------
# Counts, preview and the dataset card


def _counts(records: list[dict[str, Any]], dpo: list[dict], kto: list[dict]) -> dict[str, int]:
    ratings = [r for r in records if r["kind"] == "rating"]
    comparisons = [r for r in records if r["kind"] == "comparison"]
    return {
        "total": len(records),
        "ratings": len(ratings),
        "comparisons": len(comparisons),
        "thumbs_up": sum(r["thumbs"] == 1 for r in ratings),
        "thumbs_down": sum(r["thumbs"] == -1 for r in ratings),
        "scored": sum(r["score"] is not None for r in ratings),
        "a_better": sum(r["choice"] == "a" for r in comparisons),
        "b_better": sum(r["choice"] == "b" for r in comparisons),
        "ties": sum(r["choice"] == "tie" for r in comparisons),
        "both_bad": sum(r["choice"] == "both_bad" for r in comparisons),
        "dpo_pairs": len(dpo),
        "kto_rows": len(kto),
        "kto_desirable": sum(row["label"] for row in kto),
        "kto_undesirable": sum(not row["label"] for row in kto),
        "kto_excluded": len(ratings) - len(kto),
        "videos": len({r["video_sha256"] for r in records if r["video_sha256"]}),
        "annotators": len({r["annotator"] for r in records}),
    }


def summary_counts(store: AnnotationStore) -> dict[str, int]:
    """What the export tab shows above the table: totals per kind and judgement, and how many rows each TRL
    layout would get. Computed from grouped counts in SQL with the same rules as the exports (a test holds the two
    equal), so it stays cheap as the store grows."""
    tally = store.tally()
    counts = dict.fromkeys(_counts([], [], []), 0)
    for kind, thumbs, score, choice, number in tally["groups"]:
        counts["total"] += number
        if kind == "rating":
            counts["ratings"] += number
            counts["thumbs_up"] += number if thumbs == 1 else 0
            counts["thumbs_down"] += number if thumbs == -1 else 0
            counts["scored"] += number if score is not None else 0
            label = kto_label(thumbs, score)
            counts["kto_rows" if label is not None else "kto_excluded"] += number
            if label is not None:
                counts["kto_desirable" if label else "kto_undesirable"] += number
        else:
            counts["comparisons"] += number
            counts[{"a": "a_better", "b": "b_better", "tie": "ties", "both_bad": "both_bad"}[choice]] += number
            counts["dpo_pairs"] += number if choice in DPO_CHOSEN_SIDE else 0
    counts["videos"] = tally["videos"]
    counts["annotators"] = tally["annotators"]
    return counts


def preview_dataframe(store: AnnotationStore, limit: int = 50) -> pd.DataFrame:
    """The newest `limit` judgements with short columns for a table in the UI. Text is verbatim (only shortened):
    escaping is the UI's job."""
    rows = []
    for record in store.records(newest_first=True, limit=limit):
        if record["kind"] == "rating":
            models = record["model"]
            answers = record["answer"]
            parts = []
            if record["thumbs"] is not None:
                parts.append("👍" if record["thumbs"] > 0 else "👎")
            if record["score"] is not None:
                parts.append(f"{record['score']}/5")
            judgement = " ".join(parts) or "reason only"
        else:
            models = f"A: {record['model_a']} · B: {record['model_b']}"
            answers = f"A: {_shorten(record['answer_a'], 40)} · B: {_shorten(record['answer_b'], 40)}"
            judgement = {"a": "A better", "b": "B better", "tie": "tie", "both_bad": "both bad"}[record["choice"]]
        rows.append(
            {
                "time (UTC)": record["created_at"][:19].replace("T", " "),
                "kind": record["kind"],
                "annotator": _shorten(record["annotator"], 24),
                "model(s)": _shorten(models, 60),
                "question": _shorten(record["question"], 60),
                "answer(s)": _shorten(answers, 90),
                "judgement": judgement,
                "reason": _shorten(record["reason"], 60),
                "video": (record["video_sha256"] or "")[:12],
                "id": record["id"][:8],
            }
        )
    columns = ["time (UTC)", "kind", "annotator", "model(s)", "question", "answer(s)", "judgement", "reason"]
    return pd.DataFrame(rows, columns=[*columns, "video", "id"])


def _shorten(text: str | None, max_chars: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def _size_category(total: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if total < limit:
            return label
    return "100K<n<1M"


# The body of an export's README.md (`dataset_card`): what the files and fields are, and the TRL row rules.
CARD_BODY = """
# Video-LLM Studio preference annotations

Judgements people made in Video-LLM Studio while chatting with video LLMs: ratings of single answers (thumbs,
1–5 score, free-text reason) and blind A/B comparisons of two answers to the same question (two models or two
sampling settings; A better / B better / tie / both bad). Each judgement is one record, written once.

## Counts in this export

| what | count |
|---|---|
{count_lines}

## Files

- `records.jsonl`, `records.csv`, `records.parquet`: every judgement, one row each (CSV holds lists as JSON text).
- `dataset/`: the same rows as a `datasets` folder: `datasets.load_from_disk("dataset")`.
- `trl/dpo.jsonl`, `trl/dpo.parquet`: TRL preference rows (`prompt`, `chosen`, `rejected`), conversational format.
- `trl/kto.jsonl`, `trl/kto.parquet`: TRL unpaired preference rows (`prompt`, `completion`, `label`),
  conversational format.
- `videos/<sha256>.<ext>`: every video a record refers to, named by the SHA-256 of its bytes.

## Record fields

| field | meaning |
|---|---|
| id, created_at | unique id; UTC time of the judgement (ISO 8601) |
| kind | `rating` (one answer) or `comparison` (A/B) |
| annotator | who judged: a Hugging Face username, a studio account name, `owner` (a laptop's one person) or \
`visitor-<hash>` (a keyed hash of a visitor's browser id, never the id itself) |
| identity_kind, identity_id | `oauth`, `account`, `owner` or `visitor`, and that identity's id (hashed for visitors) |
| video, video_sha256, video_duration_s | the judged video: a path relative to this folder, its SHA-256, its length |
| conversation | the earlier turns as `{{role, content}}` messages (the judged question not included) |
| question | the judged user turn |
| model, encode_params, generation_params, frame_indices, frame_timestamps_s, answer | ratings: the model, its \
frame sampling / token budget and sampling settings (JSON text), the sampled frames (source frame numbers and \
seconds) and the answer |
| the same fields with `_a` / `_b` | comparisons: each side's model, settings, frames and answer |
| thumbs | +1 / -1 / empty (ratings) |
| score | 1–5 / empty (ratings) |
| choice | `a`, `b`, `tie` or `both_bad` (comparisons) |
| reason | free text from the annotator |
| extra | JSON text with anything else (e.g. the stream time of a live-mode remark) |

Text is stored verbatim, including any HTML a person typed: escape it before showing it in a web page.

## TRL layouts

DPO rows come only from **decided** comparisons: `choice = a` makes answer A `chosen` and B `rejected`, `choice = b`
the reverse; ties and "both bad" carry no preference and are left out.

KTO rows come from ratings. The label rule: an explicit thumbs decides (up → `True`, down → `False`); without a
thumbs, a score ≥ {high} → `True` and a score ≤ {low} → `False`; a score in between without a thumbs, or a rating
with only a reason, is left out. A thumbs contradicted by its own score (up with a score ≤ {low}, down with a
score ≥ {high}) is left out too.

`prompt` is the conversation so far plus the judged question; `chosen` / `rejected` / `completion` are one
assistant message. Every row carries `video` (+ `video_sha256`, `video_duration_s`) and the timestamps of the frames
the model saw (`chosen_frame_timestamps_s` / `rejected_frame_timestamps_s` for DPO, `frame_timestamps_s` for KTO).
Note: TRL's trainers do not read video columns yet (huggingface/trl#4002); a video-aware collator has to load the
frames from `video` at those timestamps.

`video` is a plain string path rather than a `datasets.Video` feature: decoding that feature needs `torchcodec`,
and without decoding it embeds a full copy of the file in every row.
"""


def dataset_card(counts: dict[str, int], files: Iterable[str] = ()) -> str:
    """The README.md of an export: YAML header for the Hub (configs point at the Parquet files), what each field
    means, the counts of this export and the rules that turn judgements into TRL rows."""
    files = set(files)
    configs = [
        (config, path)
        for config, path in (("records", "records.parquet"), ("dpo", "trl/dpo.parquet"), ("kto", "trl/kto.parquet"))
        if not files or path in files
    ]
    header = [
        "---",
        "pretty_name: Video-LLM Studio preference annotations",
        "task_categories:",
        "- video-text-to-text",
        "tags:",
        "- video",
        "- human-feedback",
        "- preference",
        "- dpo",
        "- kto",
        "- video-llm-studio",
        "size_categories:",
        f"- {_size_category(counts.get('total', 0))}",
    ]
    if configs:
        header.append("configs:")
    for position, (config, path) in enumerate(configs):
        header += [f"- config_name: {config}", f"  data_files: {path}"]
        if position == 0:
            header.append("  default: true")
    header.append("---")
    count_lines = "\n".join(f"| {key.replace('_', ' ')} | {value} |" for key, value in counts.items())
    body = CARD_BODY.format(count_lines=count_lines, high=KTO_DESIRABLE_MIN_SCORE, low=KTO_UNDESIRABLE_MAX_SCORE)
    return "\n".join(header) + "\n" + body
