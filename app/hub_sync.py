"""Optional Hub side of the annotation store: push an export folder to a Hub dataset repo on request, and on Spaces
(whose disk is wiped on restart) keep a dataset repo in sync with `huggingface_hub.CommitScheduler` when
`STUDIO_HUB_DATASET_REPO` and `HF_TOKEN` are set. Nothing here is required for the studio to work: every entry point
first checks for a token and a reachable Hub (short timeout, `HF_HUB_OFFLINE` respected) and otherwise returns a
message a person can act on, instead of raising or hanging. Plain Python: no gradio.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import CommitInfo, CommitScheduler, HfApi, constants

from app.annotations import AnnotationStore

HUB_REPO_ENV = "STUDIO_HUB_DATASET_REPO"
TOKEN_ENV = "HF_TOKEN"
SYNC_DIRNAME = "hub_sync"
REACHABILITY_TIMEOUT_S = 3.0

_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


@dataclass(frozen=True)
class HubStatus:
    """Outcome of a Hub action, with a message for the person who asked for it."""

    ok: bool
    message: str
    url: str | None = None


def hub_unavailable_reason(token: str | None, *, timeout_s: float = REACHABILITY_TIMEOUT_S) -> str | None:
    """Why the Hub cannot be used right now (no token, offline mode, no connection), or None when it can."""
    if not token:
        return f"no Hugging Face token: set {TOKEN_ENV} to a token with write access to push to the Hub"
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return "offline: cannot reach the Hub (HF_HUB_OFFLINE is set)"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme != "http" else 80)
    if not _can_connect(host, port, timeout_s):
        return f"offline: cannot reach the Hub ({host}:{port} is not reachable from this machine)"
    return None


def push_to_hub(
    export_dir: str | Path, repo_id: str | None = None, token: str | None = None, *, private: bool = True
) -> HubStatus:
    """Upload an export folder (from app/exports.py) to the root of a Hub dataset repo, creating it if needed.

    repo_id / token default to $STUDIO_HUB_DATASET_REPO / $HF_TOKEN. The zip is left out (the folder holds the same
    files). Never raises for expected failures: the returned status says what went wrong.
    """
    repo_id = (repo_id or os.environ.get(HUB_REPO_ENV) or "").strip()
    token = token or os.environ.get(TOKEN_ENV)
    folder = Path(export_dir)
    if not repo_id:
        return HubStatus(False, f"no dataset repo given: type one (user/name) or set {HUB_REPO_ENV}")
    if not _REPO_ID.fullmatch(repo_id):
        return HubStatus(False, f"{repo_id!r} is not a Hub repo id of the form user/name")
    if not folder.is_dir():
        return HubStatus(False, "nothing to push: export the dataset first")
    reason = hub_unavailable_reason(token)
    if reason:
        return HubStatus(False, reason)
    try:
        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=folder,
            ignore_patterns=["*.zip", "*.part"],
            commit_message=f"Video-LLM Studio export {folder.name}",
        )
    except Exception as error:  # network, auth and quota errors all end up in front of the user as a message
        return HubStatus(False, f"push to {repo_id} failed: {type(error).__name__}: {error}")
    url = f"{constants.ENDPOINT}/datasets/{repo_id}"
    return HubStatus(True, f"pushed {folder.name} to {url}", url)


class StoreSnapshotScheduler(CommitScheduler):
    """A CommitScheduler that commits a consistent snapshot of the store rather than the live database file.

    Before each scheduled commit it writes, into its staging folder: a copy of the database made with SQLite's
    online backup (uploading the live file while votes are written could capture a torn page), all records as
    JSONL, and hard links to the kept videos. The base class then uploads only files whose mtime changed, so each
    video goes up once.
    """

    def __init__(self, *, data_dir: str | Path, **kwargs) -> None:
        self._store_data_dir = Path(data_dir)
        self._store: AnnotationStore | None = None
        self._last_total: int | None = None
        super().__init__(**kwargs)

    def push_to_hub(self) -> CommitInfo | None:
        with self.lock:
            self._refresh_snapshot()
        return super().push_to_hub()

    def _refresh_snapshot(self) -> None:
        if self._store is None:
            self._store = AnnotationStore(self._store_data_dir)
        total = self._store.counts()["total"]
        if total == self._last_total:
            return  # nothing new: leave mtimes alone so nothing is re-uploaded
        staging = Path(self.folder_path)
        self._store.backup_to(staging / "annotations.sqlite3")
        records = self._store.records()
        temp = staging / "records.jsonl.tmp"
        with open(temp, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(temp, staging / "records.jsonl")
        for stored_path in sorted({r["video_path"] for r in records if r["video_path"]}):
            target = staging / stored_path
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(self._store.video_file(stored_path), target)
                except OSError:
                    shutil.copyfile(self._store.video_file(stored_path), target)
        self._last_total = total


def start_commit_scheduler(
    data_dir: str | Path,
    repo_id: str | None = None,
    token: str | None = None,
    *,
    every_minutes: float = 5,
    private: bool = True,
) -> tuple[StoreSnapshotScheduler | None, str]:
    """Start syncing the store to a Hub dataset repo every `every_minutes`, when a repo and a token are configured
    (arguments, else $STUDIO_HUB_DATASET_REPO and $HF_TOKEN) and the Hub is reachable.

    Returns (scheduler or None, a one-line status for the UI / log). Call `scheduler.stop()` on shutdown.
    """
    repo_id = (repo_id or os.environ.get(HUB_REPO_ENV) or "").strip()
    token = token or os.environ.get(TOKEN_ENV)
    if not repo_id:
        return None, f"Hub sync off: set {HUB_REPO_ENV} (user/name) and {TOKEN_ENV} to keep annotations on the Hub"
    if not _REPO_ID.fullmatch(repo_id):
        return None, f"Hub sync off: {repo_id!r} is not a Hub repo id of the form user/name"
    reason = hub_unavailable_reason(token)
    if reason:
        return None, f"Hub sync off: {reason}"
    staging = Path(data_dir) / SYNC_DIRNAME
    staging.mkdir(parents=True, exist_ok=True)
    try:
        scheduler = StoreSnapshotScheduler(
            data_dir=data_dir,
            repo_id=repo_id,
            folder_path=staging,
            every=every_minutes,
            repo_type="dataset",
            private=private,
            token=token,
            ignore_patterns=["*.tmp"],
        )
    except Exception as error:  # auth / permission errors surface when the repo is created
        return None, f"Hub sync off: could not use {repo_id}: {type(error).__name__}: {error}"
    return scheduler, f"syncing annotations to {constants.ENDPOINT}/datasets/{repo_id} every {every_minutes:g} min"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _can_connect(host: str, port: int, timeout_s: float) -> bool:
    """A TCP connection attempt bounded in time. DNS lookups ignore socket timeouts, so the attempt runs in a
    daemon thread and we stop waiting after `timeout_s`."""
    outcome: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    worker = threading.Thread(target=attempt, name="hub-reachability", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return bool(outcome and outcome[0])
