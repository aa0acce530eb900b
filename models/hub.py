"""Where the models meet the Hugging Face hub: whether it may be used, and checkpoint folders by path or hub id.

`hub_offline()` is the one reading of the offline switches for the whole studio (the models, the registry's
availability and the annotation sync): `HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE` set to anything but "", "0",
"false", "no" or "off" (any case). Otherwise `check_hub()` asks once per process (a HEAD to `HF_ENDPOINT`, at most
2 s) whether the hub answers; the studio calls it at start and logs its `line()`, and the registry reads the cached
answer. `resolve_folder` returns a local folder as is and fetches a hub id into the HF cache (reading only the cache
when offline), its byte counts logged and kept in `DOWNLOADS` for the UI's status line while it downloads.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.base import ModelUnavailableError

logger = logging.getLogger(__name__)

OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
OFF_VALUES = frozenset({"", "0", "false", "no", "off"})
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
DEFAULT_ENDPOINT = "https://huggingface.co"
HUB_PROBE_TIMEOUT_S = 2.0
DOWNLOAD_LOG_EVERY_S = 5.0  # a download's progress goes to the log at most this often (and when it ends)


def hub_offline() -> bool:
    """True when either offline switch is set to a value other than "", "0", "false", "no" or "off"."""
    return any(os.environ.get(name, "").strip().lower() not in OFF_VALUES for name in OFFLINE_SWITCHES)


@dataclass(frozen=True)
class HubCheck:
    """Whether the hub answered the start-up probe, where it was asked and how long the answer took."""

    answered: bool
    endpoint: str
    seconds: float
    reason: str  # what was seen: "offline: ...", "HTTP 200", "no answer within 2 s", the error

    def line(self) -> str:
        """One line for the start-up log."""
        if self.answered:
            return f"hub: {self.endpoint} answered in {self.seconds:.1f} s ({self.reason}); hub models are enabled"
        return f"hub: not used ({self.reason}); only the embedded model, local folders and cached checkpoints run"


HubProbe = Callable[[str, float], str]  # (endpoint, timeout_s) -> what answered; raises when nothing did
_checked: HubCheck | None = None
_check_lock = threading.Lock()


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def probe_endpoint(endpoint: str, timeout_s: float) -> str:
    """HEAD the endpoint; any HTTP answer below 500 counts (a 401 or 404 still proves the hub is there)."""
    request = urllib.request.Request(endpoint + "/", method="HEAD", headers={"User-Agent": "video-llm-studio"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        if error.code >= 500:
            raise
        return f"HTTP {error.code}"


def _probe_within(probe: HubProbe, endpoint: str, timeout_s: float) -> tuple[bool, str]:
    """Run `probe` in a thread and wait at most `timeout_s` (a hung DNS lookup ignores socket timeouts)."""
    outcome: list[tuple[bool, str]] = []

    def ask() -> None:
        try:
            outcome.append((True, probe(endpoint, timeout_s)))
        except Exception as error:  # any failure means "does not answer"
            outcome.append((False, f"{type(error).__name__}: {error}"))

    worker = threading.Thread(target=ask, name="hub-probe", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return outcome[0] if outcome else (False, f"no answer within {timeout_s:g} s")


def check_hub(
    probe: HubProbe | None = None, timeout_s: float = HUB_PROBE_TIMEOUT_S, refresh: bool = False
) -> HubCheck:
    """Whether the hub answers, asked once per process (again with `refresh`; `probe` replaces the HEAD request,
    for tests). The offline switches win without asking."""
    global _checked
    if hub_offline():
        switch = next(name for name in OFFLINE_SWITCHES if os.environ.get(name, "").strip().lower() not in OFF_VALUES)
        return HubCheck(False, hub_endpoint(), 0.0, f"offline: {switch} is set")
    with _check_lock:
        if _checked is None or refresh:
            endpoint, start = hub_endpoint(), time.perf_counter()
            answered, reason = _probe_within(probe or probe_endpoint, endpoint, timeout_s)
            _checked = HubCheck(answered, endpoint, time.perf_counter() - start, reason)
        return _checked


def hub_answers() -> bool:
    """The cached answer of `check_hub` (asking now if nobody has yet); False when offline."""
    return check_hub().answered


# ----------------------------------------------------------------------------------------------------------------
# Downloads


@dataclass
class Download:
    """One checkpoint download: bytes so far of the total announced so far (files announce theirs as they start)."""

    repo_id: str
    done_bytes: int = 0
    total_bytes: int = 0
    finished: bool = False
    logged_at: float = 0.0

    def line(self) -> str:
        """A status line: "Downloading owner/name: 120 of 512 MB (23%)"."""
        if self.finished:
            return f"Downloaded {self.repo_id} ({self.total_bytes / 1e6:,.0f} MB)"
        percent = f" ({100 * self.done_bytes / self.total_bytes:.0f}%)" if self.total_bytes else ""
        return f"Downloading {self.repo_id}: {self.done_bytes / 1e6:,.0f} of {self.total_bytes / 1e6:,.0f} MB{percent}"

    @property
    def fraction(self) -> float:
        return 1.0 if self.finished else self.done_bytes / self.total_bytes if self.total_bytes else 0.0


DOWNLOADS: dict[str, Download] = {}  # repo id -> its latest download, for status lines


def download_status(repo_id: str | None) -> Download | None:
    """The latest download of `repo_id` in this process, if any."""
    return DOWNLOADS.get(repo_id) if repo_id else None


def _progress_class(download: Download):
    """A tqdm class for `snapshot_download` that feeds `download` (and the log) instead of drawing bars."""
    import io

    from tqdm import tqdm

    class DownloadProgress(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            super().__init__(*args, **{**kwargs, "file": io.StringIO(), "disable": False})

        def display(self, msg=None, pos=None):  # tqdm calls this whenever it would redraw
            if self.unit == "B":  # the byte bars (the other counts files)
                download.done_bytes = max(download.done_bytes, int(self.n))
                download.total_bytes = max(download.total_bytes, int(self.total or 0))
                now = time.monotonic()
                if now - download.logged_at >= DOWNLOAD_LOG_EVERY_S:
                    download.logged_at = now
                    logger.info("%s", download.line())
            return True

    return DownloadProgress


def resolve_folder(path_or_repo_id: str | os.PathLike, *, allow_patterns: list[str] | None = None) -> Path:
    """A local folder as is; otherwise a hub repo id (owner/name), fetched into the HF cache (only the files
    matching `allow_patterns` when given). Raises `ModelUnavailableError` when neither works."""
    path = Path(path_or_repo_id).expanduser()
    if path.is_dir():
        return path
    if path.exists() or not HUB_ID.fullmatch(str(path_or_repo_id)):
        raise ModelUnavailableError(f"{path_or_repo_id!s} is neither a model folder nor a hub repo id (owner/name)")
    from huggingface_hub import snapshot_download  # only when a download is really needed

    download = DOWNLOADS[str(path_or_repo_id)] = Download(str(path_or_repo_id))
    try:  # read the cache location and offline switches now: huggingface_hub reads them once, at import
        folder = snapshot_download(
            str(path_or_repo_id),
            cache_dir=os.environ.get("HF_HUB_CACHE"),
            local_files_only=hub_offline(),
            allow_patterns=allow_patterns,
            tqdm_class=_progress_class(download),
            endpoint=None if hub_offline() else hub_endpoint(),
        )
        download.finished = True
        if download.total_bytes:
            logger.info("%s", download.line())
        return Path(folder)
    except Exception as error:  # offline, gated or a typo: all mean "cannot run here"
        raise ModelUnavailableError(
            f"could not fetch {path_or_repo_id} from the Hugging Face hub, and it is not a local folder "
            f"({type(error).__name__}: {error})"
        ) from error
