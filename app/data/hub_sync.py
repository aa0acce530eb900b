"""The Hub side of the annotation store: push an export folder to a Hub dataset repo on request, and on Spaces (whose
disk is wiped at every restart) keep the store in a dataset repo without ever losing a vote.

`start_hub_sync` first restores: it reads every record shard already in the repo into the local store (idempotent
by record id; videos come down lazily, on first use, through `AnnotationStore.ensure_video`). Only once the state
of the repo is known does it start a `huggingface_hub.CommitScheduler` whose folder is an append-only outbox: each
push writes the records this boot has not yet staged into a new shard, `records/<boot-id>/shard-NNNNN.parquet`,
next to the videos they reference (content-addressed, `videos/<sha256><ext>`). Boot ids are unique, so no boot or
replica ever writes a path another one wrote, and no commit deletes anything: a restart cannot replace the
dataset with a nearly empty snapshot. The README's `configs` point `datasets.load_dataset(repo)` at every shard;
a record that reached two shards (a retried push on a shared disk) is read once by de-duplicating on `id`, which
the restore and the store's primary key both do. When the restore fails (offline, auth), the app serves anyway,
`HubSync.state` says so, and nothing is pushed until a later restore succeeds. Plain Python: no gradio.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.parquet as pq
from huggingface_hub import CommitInfo, CommitScheduler, HfApi, constants
from huggingface_hub.errors import RepositoryNotFoundError

from app.campaigns.store import CampaignStore
from app.campaigns.sync import CAMPAIGNS_DIRNAME, TABLES
from app.data import hub_campaigns
from app.data.exports import records_from_table, records_table
from app.data.store import VIDEOS_DIRNAME, AnnotationStore, register_video_source
from models.base import file_sha256
from models.hub import hub_offline

log = logging.getLogger(__name__)

HUB_REPO_ENV = "STUDIO_HUB_DATASET_REPO"
TOKEN_ENV = "HF_TOKEN"
REACHABILITY_TIMEOUT_S = 3.0
OUTBOX_DIRNAME = "hub_outbox"  # the CommitScheduler's folder: only files that may go to the Hub as they are
CACHE_DIRNAME = "hub_cache"  # what the restore downloaded (never uploaded)
RECORDS_DIRNAME = "records"
LEGACY_RECORDS_FILE = "records.jsonl"  # the single snapshot file earlier versions overwrote at every push
SHARD_PATH = re.compile(rf"{RECORDS_DIRNAME}/[A-Za-z0-9_.-]+/shard-\d+\.parquet")
HUB_VIDEO_PATH = re.compile(rf"{VIDEOS_DIRNAME}/[0-9a-f]{{64}}(\.[a-z0-9]{{1,10}})?")

_CAMPAIGN_CONFIGS = "".join(
    f"- config_name: {table.name}\n  data_files:\n  - split: train\n"
    f"    path: {CAMPAIGNS_DIRNAME}/{table.name}/*/shard-*.parquet\n"
    for table in TABLES
)

DATASET_CARD = f"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: {RECORDS_DIRNAME}/*/shard-*.parquet
{_CAMPAIGN_CONFIGS}---

# Video-LLM Studio annotations

Ratings and A/B comparisons recorded in Video-LLM Studio, one self-contained record per judgement. Each boot of
the studio appends its own shards under `{RECORDS_DIRNAME}/<boot-id>/`; nothing is ever rewritten. The `video`
column names a file under `{VIDEOS_DIRNAME}/` (by its sha256).

```python
from datasets import load_dataset
ds = load_dataset("<this repo>", split="train")
df = ds.to_pandas().drop_duplicates("id")  # a retried push may have put a record in two shards
```

Annotation campaigns (prepared items answered by several setups, judged by several people) are kept table by table
under `{CAMPAIGNS_DIRNAME}/<table>/<boot-id>/`, one config per table: `load_dataset("<this repo>",
"campaign_judgements")` gives every judgement, `"campaign_answers"` every generated answer.
"""

_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


@dataclass(frozen=True)
class HubStatus:
    """Outcome of a Hub action, with a message for the person who asked for it."""

    ok: bool
    message: str
    url: str | None = None


@dataclass(frozen=True)
class SyncState:
    """Where the Hub sync stands, for the UI and the log.

    phase: "off" (not configured), "restoring", "syncing" (restored; pushes run) or "paused" (the Hub's state is
    unknown, so nothing is pushed). `message` is one line a person can act on.
    """

    phase: str
    message: str
    repo_id: str | None = None
    boot_id: str | None = None
    restored: int = 0  # records this boot added to the local store from the Hub
    on_hub: int = 0  # distinct records known to be in the repo's shards (after the restore, plus our pushes)
    pushes: int = 0  # successful commits by this boot
    last_push_at: str | None = None  # ISO time (UTC) of the last successful commit
    last_error: str | None = None

    @property
    def pushing(self) -> bool:
        return self.phase == "syncing"

    @property
    def warning(self) -> bool:
        """True when the UI should show the message as a warning (votes are not safe on the Hub right now)."""
        return self.phase == "paused" or (self.phase == "syncing" and self.last_error is not None)


def hub_unavailable_reason(token: str | None, *, timeout_s: float = REACHABILITY_TIMEOUT_S) -> str | None:
    """Why the Hub cannot be used right now (no token, offline mode, no connection), or None when it can."""
    if not token:
        return f"no Hugging Face token: set {TOKEN_ENV} to a token with write access to push to the Hub"
    if hub_offline():
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
    """Upload an export folder (from app/data/exports.py) to the root of a Hub dataset repo, creating it if needed.

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


def new_boot_id() -> str:
    """A name no other boot or replica will use: UTC start time (sorts shards by boot) plus 8 random hex digits."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


class ShardCommitScheduler(CommitScheduler):
    """huggingface_hub's CommitScheduler, unchanged except that each scheduled push first calls `before_push` (which
    writes new shards into the folder) and reports its outcome to `after_push`. The base class uploads only files
    it has not uploaded yet, and the outbox only ever gains new files, so every commit adds and none replaces."""

    def __init__(
        self,
        *,
        before_push: Callable[[], None],
        after_push: Callable[[CommitInfo | None, BaseException | None], None],
        **kwargs: Any,
    ) -> None:
        # Set before the base constructor: it starts the thread that pushes once right away.
        self._before_push = before_push
        self._after_push = after_push
        super().__init__(**kwargs)

    def push_to_hub(self) -> CommitInfo | None:
        try:
            with self.lock:
                self._before_push()
            info = super().push_to_hub()
        except BaseException as error:
            self._after_push(None, error)
            raise
        self._after_push(info, None)
        return info


class HubSync:
    """Restore from and append to one Hub dataset repo for one data directory (see the module docstring).

    Use `start_hub_sync` rather than building one directly. `api` replaces the HfApi client (tests pass a stand-in
    that keeps the repo in a folder); with it, the reachability check is skipped.
    """

    def __init__(
        self,
        data_dir: str | Path,
        repo_id: str,
        token: str | None = None,
        *,
        api: HfApi | None = None,
        every_minutes: float = 5,
        private: bool = True,
        boot_id: str | None = None,
        retry_minutes: float | None = 2,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.repo_id = repo_id
        self.token = token
        self.api = api or HfApi(token=token)
        self.every_minutes = every_minutes
        self.private = private
        self.boot_id = boot_id or new_boot_id()
        self.retry_minutes = retry_minutes
        self.outbox = self.data_dir / OUTBOX_DIRNAME
        self.cache = self.data_dir / CACHE_DIRNAME
        self.scheduler: ShardCommitScheduler | None = None
        self._store: AnnotationStore | None = None
        self._lock = threading.RLock()  # state, the sets below and the store handle
        self._fetch_lock = threading.Lock()  # one video download at a time
        self._stopped = threading.Event()
        self._retry_thread: threading.Thread | None = None
        self._hub_files: set[str] = set()
        self._staged_ids: set[str] = set()  # on the Hub, or in a shard file of the outbox
        self._staged_campaign_rows: set[tuple[str, ...]] = set()  # the same for campaign rows (by table and key)
        self._campaigns: CampaignStore | None = None
        self._shard_number = 0
        self._state = SyncState("restoring", f"Restoring annotations from {self.url}…", repo_id, self.boot_id)

    @property
    def url(self) -> str:
        return f"{constants.ENDPOINT}/datasets/{self.repo_id}"

    @property
    def state(self) -> SyncState:
        with self._lock:
            return self._state

    # -- start, retry, stop ----------------------------------------------------------------------------------------

    def start(self, *, unavailable: str | None = None) -> SyncState:
        """Restore, then start pushing; on failure serve paused and retry the restore in the background.
        `unavailable`: a reason known up front why the Hub cannot be reached (the restore is not even tried)."""
        if unavailable is not None:
            self._pause(unavailable)
        elif self.restore():
            self._start_scheduler()
            return self.state
        if self.retry_minutes and not hub_offline():  # offline by choice: retrying cannot help
            self._retry_thread = threading.Thread(target=self._retry_loop, name="hub-restore-retry", daemon=True)
            self._retry_thread.start()
        return self.state

    def retry(self) -> SyncState:
        """Try the restore again now (e.g. from a button); starts pushing when it succeeds."""
        if self.scheduler is None and not self._stopped.is_set() and self.restore():
            self._start_scheduler()
        return self.state

    def _retry_loop(self) -> None:
        while not self._stopped.wait(self.retry_minutes * 60):
            if self.retry().pushing:
                return

    def push_now(self, timeout_s: float | None = 120) -> CommitInfo | None:
        """Push what is new right away and wait for it (the scheduler's own queue, so never two commits at once).
        Returns None when nothing was new, or when pushing is paused."""
        if self.scheduler is None:
            return None
        return self.scheduler.trigger().result(timeout=timeout_s)

    def stop(self, *, final_push: bool = True, timeout_s: float = 60) -> None:
        """Stop pushing (after one last push of what is new, unless told not to) and retrying."""
        self._stopped.set()
        if self.scheduler is not None:
            if final_push:
                try:
                    self.push_now(timeout_s)
                except Exception as error:  # already recorded in the state by after_push
                    log.warning("final push to %s failed: %s", self.repo_id, error)
            self.scheduler.stop()
        register_video_source(self.data_dir, None)
        with self._lock:
            for opened in (self._store, self._campaigns):
                if opened is not None:
                    opened.close()
            self._store = self._campaigns = None

    # -- restore ---------------------------------------------------------------------------------------------------

    def restore(self) -> bool:
        """Read every record shard of the repo into the local store; True when the repo's state is known."""
        self._set(phase="restoring", message=f"Restoring annotations from {self.url}…")
        try:
            files = self._list_repo_files()
            hub_ids, records, problems = self._read_hub_records(files)
            added, refused = self._open_store().import_records(records)
            with self._lock:
                self._hub_files = set(files)
            campaign_keys, campaign_problems, campaign_rows = self._restore_campaigns(files)
        except Exception as error:  # network, auth, quota: serve anyway, push nothing
            self._pause(f"{type(error).__name__}: {error}")
            return False
        problems += refused + campaign_problems
        with self._lock:
            self._staged_ids = hub_ids | self._outbox_ids(files)
            self._staged_campaign_rows = campaign_keys | self._outbox_campaign_rows()
        register_video_source(self.data_dir, self.fetch_video)
        skipped = f" {len(problems)} unreadable record(s) on the Hub were skipped." if problems else ""
        for problem in problems:
            log.warning("Hub restore: %s", problem)
        self._set(
            phase="syncing",
            restored=added,
            on_hub=len(hub_ids),
            last_error=None,
            message=(
                f"Hub sync on: {len(hub_ids)} record(s) in {self.repo_id}, {added} restored to this disk"
                + (f", and {campaign_rows} campaign row(s)" if campaign_rows else "")
                + f"; new votes are appended every {self.every_minutes:g} min (boot {self.boot_id}).{skipped}"
            ),
        )
        return True

    def _pause(self, reason: str) -> None:
        log.warning("Hub restore from %s failed: %s", self.repo_id, reason)
        retrying = bool(self.retry_minutes) and not hub_offline()
        self._set(
            phase="paused",
            last_error=reason,
            message=(
                f"⚠️ Hub restore failed: {_short(reason)}; pushing is paused so nothing on the Hub is overwritten. "
                "New votes are kept on this disk only"
                + (f"; retrying every {self.retry_minutes:g} min." if retrying else ".")
            ),
        )

    def _list_repo_files(self) -> list[str]:
        try:
            return self.api.list_repo_files(self.repo_id, repo_type="dataset")
        except RepositoryNotFoundError:
            # Also what the Hub answers to a bad token: only a token that works makes "no such repo" mean "empty".
            self.api.whoami()
            return []

    def _read_hub_records(self, files: list[str]) -> tuple[set[str], list[dict], list[str]]:
        """(ids in the repo's shards, records to import, problems). Shards are immutable, so one already in the
        cache is not downloaded again. The legacy snapshot file is imported but its ids do not count as sharded:
        the next push copies them into this boot's shard, so `load_dataset` sees them too."""
        shard_paths = sorted(path for path in files if SHARD_PATH.fullmatch(path))
        paths = shard_paths + ([LEGACY_RECORDS_FILE] if LEGACY_RECORDS_FILE in files else [])
        hub_ids: set[str] = set()
        records: dict[str, dict] = {}
        problems: list[str] = []
        for path in paths:
            local = self.cache / path
            if path == LEGACY_RECORDS_FILE or not local.is_file():
                local = Path(self._download(path))
            try:
                rows = _read_legacy_jsonl(local) if path == LEGACY_RECORDS_FILE else _read_shard(local)
            except Exception as error:  # a damaged file is reported and skipped; it is never overwritten
                problems.append(f"{path} could not be read: {type(error).__name__}: {error}")
                continue
            for row in rows:
                if path != LEGACY_RECORDS_FILE:
                    hub_ids.add(row["id"])
                records.setdefault(row["id"], row)
        return hub_ids, list(records.values()), problems

    def _restore_campaigns(self, files: list[str]) -> tuple[set[tuple[str, ...]], list[str], int]:
        """Read the repo's campaign shards (immutable: cached ones are not downloaded again) into the campaign
        tables; returns (the row keys on the Hub, problems, rows added)."""
        paths = []
        for path in hub_campaigns.campaign_shards(files):
            local = self.cache / path
            paths.append((path, local if local.is_file() else Path(self._download(path))))
        rows, keys, problems = hub_campaigns.read_shards(paths)
        added = hub_campaigns.restore(self._open_campaigns(), rows, self.fetch_video) if rows else {}
        return keys, problems, sum(added.values())

    def _outbox_campaign_rows(self) -> set[tuple[str, ...]]:
        """Keys of campaign rows in outbox shards not pushed yet (run after `_outbox_ids` has dropped the ones the
        Hub already has)."""
        if not self.outbox.is_dir():
            return set()
        files = [path.relative_to(self.outbox).as_posix() for path in self.outbox.rglob("*.parquet")]
        shards = hub_campaigns.campaign_shards(files)
        _, keys, problems = hub_campaigns.read_shards([(path, self.outbox / path) for path in shards])
        for problem in problems:
            log.warning("outbox: %s", problem)
        return keys

    def _outbox_ids(self, hub_files: list[str]) -> set[str]:
        """Ids in outbox shards that are not on the Hub yet (a persistent disk whose last push did not happen); the
        scheduler uploads those files. Outbox files the Hub already has are removed so they are not sent again."""
        ids: set[str] = set()
        if not self.outbox.is_dir():
            return ids
        on_hub = set(hub_files)
        for path in sorted(self.outbox.rglob("*")):
            if not path.is_file():
                continue
            relative = path.relative_to(self.outbox).as_posix()
            if relative in on_hub:
                path.unlink()
            elif SHARD_PATH.fullmatch(relative):
                try:
                    ids.update(record["id"] for record in _read_shard(path))
                except Exception:  # unreadable: it will not be uploaded as is
                    path.unlink()
        return ids

    # -- push ------------------------------------------------------------------------------------------------------

    def _start_scheduler(self) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)
        try:
            self.scheduler = ShardCommitScheduler(
                before_push=self._stage,
                after_push=self._pushed,
                repo_id=self.repo_id,
                folder_path=self.outbox,
                every=self.every_minutes,
                repo_type="dataset",
                private=self.private,
                token=self.token,
                hf_api=self.api,
                allow_patterns=[f"{RECORDS_DIRNAME}/*", f"{CAMPAIGNS_DIRNAME}/*", f"{VIDEOS_DIRNAME}/*", "README.md"],
                ignore_patterns=["*.tmp", ".*", "*/.*"],
            )
        except Exception as error:  # the repo could not be created or used (permissions)
            reason = f"{type(error).__name__}: {error}"
            self._set(
                phase="paused",
                last_error=reason,
                message=f"⚠️ Hub sync paused: could not use {self.repo_id}: {_short(reason)}. Votes stay on this disk.",
            )

    def _stage(self) -> None:
        """Write this boot's next shard (records not yet on the Hub or in the outbox), link the videos they need
        and the dataset card if the repo has none. Runs under the scheduler's lock, right before its upload."""
        store = self._open_store()
        with self._lock:
            new = [record for record in store.records() if record["id"] not in self._staged_ids]
            if new:
                self._shard_number += 1
                relative = f"{RECORDS_DIRNAME}/{self.boot_id}/shard-{self._shard_number:05d}.parquet"
                target = self.outbox / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                temp = target.with_name(target.name + ".tmp")
                pq.write_table(records_table(new), temp)
                os.replace(temp, target)  # complete before the scheduler lists the folder
                self._staged_ids.update(record["id"] for record in new)
            for stored_path in sorted({r["video_path"] for r in new if r["video_path"]}):
                target = self.outbox / stored_path
                source = store.video_file(stored_path)
                if stored_path in self._hub_files or target.exists() or not source.is_file():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(source, target)  # no second copy on disk
                except OSError:
                    shutil.copyfile(source, target)
            hub_campaigns.stage(
                self._open_campaigns(),
                self.outbox,
                self.boot_id,
                self._staged_campaign_rows,
                self._next_shard_number,
                self._hub_files,
            )
            card = self.outbox / "README.md"
            if "README.md" not in self._hub_files and not card.exists():
                card.write_text(DATASET_CARD, encoding="utf-8")

    def _pushed(self, info: CommitInfo | None, error: BaseException | None) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock:
            state = self._state
            if error is not None:
                reason = f"{type(error).__name__}: {error}"
                self._state = replace(
                    state,
                    last_error=reason,
                    message=(
                        f"⚠️ Last push to {self.repo_id} failed ({_short(reason)}); votes are safe on this disk and "
                        f"the push is retried every {self.every_minutes:g} min."
                    ),
                )
                return
            if info is None and state.last_error is None:
                return  # nothing was new
            on_hub = len(self._staged_ids)
            self._state = replace(
                state,
                pushes=state.pushes + (info is not None),
                on_hub=on_hub,
                last_push_at=now if info is not None else state.last_push_at,
                last_error=None,
                message=(
                    f"Hub sync on: {on_hub} record(s) in {self.repo_id}, last push {now[11:16]} UTC; new votes are "
                    f"appended every {self.every_minutes:g} min (boot {self.boot_id})."
                ),
            )

    # -- videos ----------------------------------------------------------------------------------------------------

    def fetch_video(self, stored_path: str) -> Path | None:
        """Bring a video the restore left on the Hub into the store's videos folder (checked against the sha256 in
        its name). Registered as the store's video source, so exports and replays call it on first use."""
        if not HUB_VIDEO_PATH.fullmatch(stored_path):
            return None
        store = self._open_store()
        final = store.video_file(stored_path)
        with self._fetch_lock:
            if final.is_file():
                return final
            try:
                downloaded = Path(self._download(stored_path))
            except Exception as error:
                log.warning("could not fetch %s from %s: %s", stored_path, self.repo_id, error)
                return None
            temp = final.with_name(f".incoming-{uuid.uuid4().hex}{final.suffix}")
            shutil.copyfile(downloaded, temp)
            if file_sha256(str(temp)) != final.name.split(".", 1)[0]:
                temp.unlink()
                log.warning("%s on %s does not match its sha256 name; not used", stored_path, self.repo_id)
                return None
            os.replace(temp, final)
            downloaded.unlink(missing_ok=True)  # the store holds it now
        return final

    # -- helpers ---------------------------------------------------------------------------------------------------

    def _download(self, path: str) -> str:
        return self.api.hf_hub_download(self.repo_id, path, repo_type="dataset", local_dir=self.cache)

    def _next_shard_number(self) -> int:
        with self._lock:
            self._shard_number += 1
            return self._shard_number

    def _open_campaigns(self) -> CampaignStore:
        with self._lock:
            if self._campaigns is None:
                self._campaigns = CampaignStore(self.data_dir)
            return self._campaigns

    def _open_store(self) -> AnnotationStore:
        with self._lock:
            if self._store is None:
                self._store = AnnotationStore(self.data_dir)
            return self._store

    def _set(self, **changes: Any) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)
        log.info("%s", changes.get("message", ""))


def start_hub_sync(
    data_dir: str | Path,
    repo_id: str | None = None,
    token: str | None = None,
    *,
    api: HfApi | None = None,
    every_minutes: float = 5,
    private: bool = True,
    retry_minutes: float | None = 2,
    boot_id: str | None = None,
) -> HubSync | None:
    """Restore the store from the Hub dataset repo, then append new votes to it every `every_minutes`.

    repo_id / token default to $STUDIO_HUB_DATASET_REPO / $HF_TOKEN. Blocks for the restore (call it before serving).
    Returns None when no repo is configured (see `sync_off_message`); otherwise the `HubSync`, whose `.state` is
    "syncing" or "paused" (the restore failed: nothing is pushed, the restore is retried every `retry_minutes`).
    Call `.stop()` on shutdown.
    """
    repo_id = (repo_id or os.environ.get(HUB_REPO_ENV) or "").strip()
    token = token or os.environ.get(TOKEN_ENV)
    if not repo_id or not _REPO_ID.fullmatch(repo_id):
        return None
    sync = HubSync(
        data_dir,
        repo_id,
        token,
        api=api,
        every_minutes=every_minutes,
        private=private,
        retry_minutes=retry_minutes if (token or api is not None) else None,  # without a token a retry cannot help
        boot_id=boot_id,
    )
    # A quick reachability check first, so an offline machine starts serving at once instead of after timeouts.
    sync.start(unavailable=None if api is not None else hub_unavailable_reason(token))
    return sync


def sync_off_message(repo_id: str | None = None) -> str:
    """What to show when `start_hub_sync` returned None."""
    repo_id = (repo_id or os.environ.get(HUB_REPO_ENV) or "").strip()
    if repo_id and not _REPO_ID.fullmatch(repo_id):
        return f"Hub sync off: {repo_id!r} is not a Hub repo id of the form user/name"
    return f"Hub sync off: set {HUB_REPO_ENV} (user/name) and {TOKEN_ENV} to keep annotations on the Hub"


def _read_shard(path: Path) -> list[dict]:
    return records_from_table(pq.read_table(path))


def _read_legacy_jsonl(path: Path) -> list[dict]:
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            if isinstance(record, dict) and record.get("id"):
                records.append(record)
    return records


def _short(text: str, max_chars: int = 200) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


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
