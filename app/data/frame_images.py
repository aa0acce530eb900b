"""The sampled frames as an `images` column, so TRL's vision-language DPO / KTO trainers can train a VLM on an
export as it is (the plain files carry the video as a path, which only a video-aware pipeline can use).

For each row the frames are those the judged answer was given (DPO: the chosen side's timestamps; KTO: the
answer's), decoded again at their timestamps (`models.video.frames_at`) and evenly thinned to at most `max_frames`
(8 by default: TRL puts every image of a prompt through the VLM). They are written as JPEGs under `frames/` and
listed, relative to the export folder, in the JSONL's `images` column (with `images_frame_timestamps_s`); the same
rows, cut to the columns TRL reads plus `id`, go into a `datasets` folder with the images embedded, ready for
`datasets.load_from_disk(folder)` and `DPOTrainer(..., processing_class=processor)`. A row whose video cannot be
found keeps an empty `images` list and is counted in the returned summary.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.video import VideoError, frames_at

DEFAULT_FRAMES = 8
DEFAULT_MAX_SIDE = 448
TRL_COLUMNS = {
    "dpo": ("id", "prompt", "chosen", "rejected", "images"),
    "kto": ("id", "prompt", "completion", "label", "images"),
}
Locate = Callable[[dict[str, Any]], Path | None]  # a row -> its video file (None: not to be had)


def thin(timestamps_s: Sequence[float], max_frames: int) -> list[float]:
    """At most `max_frames` of the times, evenly spread, first and last kept."""
    times = [float(t) for t in timestamps_s]
    if len(times) <= max_frames:
        return times
    picks = np.linspace(0, len(times) - 1, max_frames).round().astype(int)
    return [times[i] for i in picks]


def add_images(
    rows: list[dict[str, Any]],
    directory: Path,
    locate: Locate,
    *,
    kind: str,
    max_frames: int = DEFAULT_FRAMES,
    max_side: int = DEFAULT_MAX_SIDE,
) -> dict[str, int]:
    """Give every row an `images` list of JPEG paths (relative to `directory`); returns {rows, with_images,
    frames, missing_video}."""
    if max_frames < 1:
        raise ValueError(f"the images column needs at least one frame per row (got {max_frames})")
    key = "chosen_frame_timestamps_s" if kind == "dpo" else "frame_timestamps_s"
    summary = {"rows": len(rows), "with_images": 0, "frames": 0, "missing_video": 0}
    for row in rows:
        row["images"], row["images_frame_timestamps_s"] = [], []
        video, times = locate(row), thin(row.get(key) or [], max_frames)
        if video is None or not video.is_file() or not times:
            summary["missing_video"] += 1
            continue
        try:
            frames = frames_at(video, times, max_side=max_side)
        except VideoError:
            summary["missing_video"] += 1
            continue
        folder = directory / "frames" / _safe(row["id"])
        folder.mkdir(parents=True, exist_ok=True)
        for n, pixels in enumerate(frames.pixels):
            path = folder / f"{n:03d}.jpg"
            Image.fromarray(pixels).save(path, quality=90)
            row["images"].append(path.relative_to(directory).as_posix())
        row["images_frame_timestamps_s"] = [round(float(t), 4) for t in frames.timestamps_s]
        summary["with_images"] += 1
        summary["frames"] += len(frames.pixels)
    return summary


def write_vision_dataset(rows: list[dict[str, Any]], directory: Path, folder: Path, kind: str) -> Path:
    """The rows with images as a `datasets` folder (images embedded as JPEG bytes) holding what TRL reads."""
    import datasets

    columns = TRL_COLUMNS[kind]
    kept = [row for row in rows if row["images"]]
    table = {column: [row[column] for row in kept] for column in columns if column != "images"}
    table["images"] = [
        [{"bytes": (directory / path).read_bytes(), "path": None} for path in row["images"]] for row in kept
    ]
    dataset = datasets.Dataset.from_dict(table).cast_column("images", datasets.List(datasets.Image()))
    dataset.save_to_disk(str(folder))
    return folder


def _safe(row_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(row_id))[:120] or "row"


def vision_card_lines(folder_name: str, summary: dict[str, int]) -> list[str]:
    """The dataset card's section on the images column and the vision dataset folder."""
    return [
        "## Frames for vision-language training",
        "",
        f"`images` lists the frames each judged answer was given (at most {DEFAULT_FRAMES} unless asked otherwise, "
        "evenly thinned), as JPEGs under `frames/`; `images_frame_timestamps_s` says where they are in the video. "
        f"`{folder_name}/` holds the {summary['with_images']} rows with frames as a `datasets` folder (images "
        f"embedded): `datasets.load_from_disk` gives TRL's vision-language trainers what they read. "
        f"{summary['frames']} frames in all; {summary['missing_video']} row(s) had no video to take frames from.",
    ]
