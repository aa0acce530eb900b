"""The campaign half of the Hub sync: `HubSync` calls these to restore campaign tables from the repo's shards and to
stage the rows and videos this boot has not pushed yet (see `app.campaigns.sync` for what goes and how it is keyed).

Campaign videos go where the records' videos go, content-addressed under `videos/<sha256><ext>`; an item restored
on a disk that lacks its file points at the copy fetched from the Hub instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from app.campaigns import sync
from app.campaigns.store import CampaignStore
from app.data.store import VIDEOS_DIRNAME

Fetch = Callable[[str], Path | None]  # a repo path like videos/<sha>.mp4 -> the local file (None: not there)


def hub_video_path(sha256: str, video_path: str) -> str:
    """Where an item's video lives in the repo."""
    return f"{VIDEOS_DIRNAME}/{sha256}{Path(video_path).suffix.lower()}"


def campaign_shards(files: list[str]) -> list[str]:
    """The campaign shard paths among a repo's (or outbox's) files, in order."""
    return sorted(path for path in files if sync.SHARD_PATH.fullmatch(path))


def read_shards(paths: list[tuple[str, Path]]) -> tuple[dict[str, list[dict]], set[tuple[str, ...]], list[str]]:
    """(rows by table, their keys, problems) from (repo path, local file) pairs; a damaged shard is reported and
    skipped, never overwritten."""
    rows: dict[str, list[dict]] = {}
    keys: set[tuple[str, ...]] = set()
    problems: list[str] = []
    for repo_path, local in paths:
        table = sync.BY_NAME.get(sync.SHARD_PATH.fullmatch(repo_path).group(1))
        if table is None:
            problems.append(f"{repo_path}: not a table this version syncs")
            continue
        try:
            shard = pq.read_table(local).to_pylist()
        except Exception as error:
            problems.append(f"{repo_path} could not be read: {type(error).__name__}: {error}")
            continue
        rows.setdefault(table.name, []).extend(shard)
        keys.update(sync.row_key(table, row) for row in shard)
    return rows, keys, problems


def restore(store: CampaignStore, rows: dict[str, list[dict]], fetch: Fetch) -> dict[str, int]:
    """Import rows read from the Hub; items whose video is not on this disk point at the copy fetched from the
    Hub (left as they are when the Hub has none either: the item then fails to play, with its path named)."""
    for row in rows.get("campaign_items", []):
        if not Path(row["video_path"]).is_file():
            fetched = fetch(hub_video_path(row["video_sha256"], row["video_path"]))
            if fetched is not None:
                row["video_path"] = str(fetched)
    return sync.import_rows(store, rows)


def stage(
    store: CampaignStore,
    outbox: Path,
    boot_id: str,
    staged: set[tuple[str, ...]],
    next_number: Callable[[], int],
    hub_files: set[str],
) -> list[str]:
    """Write one shard per table with rows not yet staged into `outbox` and link the videos of new items; updates
    `staged`. Returns the repo paths written."""
    written = []
    for table, rows in sync.rows_to_sync(store, staged).items():
        relative = sync.shard_path(table, boot_id, next_number())
        target = outbox / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(target.name + ".tmp")
        pq.write_table(sync.rows_table(store, table, rows), temp)
        os.replace(temp, target)  # complete before the scheduler lists the folder
        staged.update(sync.row_key(sync.BY_NAME[table], row) for row in rows)
        written.append(relative)
        if table == "campaign_items":
            _link_videos(rows, outbox, hub_files)
    return written


def _link_videos(items: list[dict[str, Any]], outbox: Path, hub_files: set[str]) -> None:
    for row in items:
        relative = hub_video_path(row["video_sha256"], row["video_path"])
        target, source = outbox / relative, Path(row["video_path"])
        if relative in hub_files or target.exists() or not source.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)  # no second copy on disk
        except OSError:
            target.write_bytes(source.read_bytes())
