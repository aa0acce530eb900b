"""The process-wide state every browser session shares: the data directory, the annotation store, the example
clips, the Hub sync's status and who may do what (identities, rate limits, upload owners), held by one `Studio` that
`app.py` builds at start and hands to the UI and the API.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.access.identity import AccessConfig, Identity
from app.access.limits import Limits, RateLimited
from app.access.policies import authorize
from app.access.uploads import UploadOwners
from app.campaigns.generate import CampaignRunner
from app.campaigns.store import CampaignStore
from app.data.store import AnnotationStore, default_data_dir
from models.pipeline import video_sha256

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
# Which rate-limit bucket an action draws from (the others are not limited: admins' exports, reading).
RATE_BUCKETS = {"chat": "model", "vote": "vote"}
# Why a judgement or an action was not done, in words a person can act on (AccessDenied is a PermissionError).
REFUSALS = (ValueError, OSError, RateLimited)


@dataclass(frozen=True)
class Example:
    path: str
    title: str
    questions: list[str]


def load_examples(assets_dir: Path = ASSETS_DIR) -> list[Example]:
    """The example clips listed in assets/examples.json (missing files are skipped)."""
    listing = assets_dir / "examples.json"
    if not listing.is_file():
        return []
    clips = json.loads(listing.read_text(encoding="utf-8")).get("clips", [])
    examples = []
    for clip in clips:
        path = assets_dir / clip["file"]
        if path.is_file():
            examples.append(Example(str(path), clip.get("title", clip["file"]), list(clip.get("questions", []))))
    return examples


@dataclass
class Studio:
    """What all sessions share. The store is opened on first use, so building the UI creates no files."""

    data_dir: Path = field(default_factory=default_data_dir)
    examples: list[Example] = field(default_factory=load_examples)
    hub_status: str = ""
    hub_sync: Any = None  # app.data.hub_sync.HubSync when a dataset repo is configured
    access: AccessConfig = field(default_factory=AccessConfig)  # the default: a laptop's local owner
    limits: Limits = field(default_factory=Limits)
    uploads: UploadOwners = field(default_factory=UploadOwners)
    _store: AnnotationStore | None = None
    _campaigns: CampaignStore | None = None
    runners: dict[str, CampaignRunner] = field(default_factory=dict)  # campaign name -> its generation job
    _examples_by_sha: dict[str, Example] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()

    @property
    def store(self) -> AnnotationStore:
        with self._lock:
            if self._store is None:
                self._store = AnnotationStore(self.data_dir)
            return self._store

    @property
    def campaigns(self) -> CampaignStore:
        """The campaigns, in the same SQLite file as the store (opened on first use)."""
        with self._lock:
            if self._campaigns is None:
                self._campaigns = CampaignStore(self.data_dir)
            return self._campaigns

    def runner(self, name: str) -> CampaignRunner:
        """The generation job of campaign `name` (one per campaign and process)."""
        campaigns = self.campaigns  # opened outside the lock below (the property takes it too)
        with self._lock:
            if name not in self.runners:
                self.runners[name] = CampaignRunner(campaigns, name)
            return self.runners[name]

    def resume_generations(self) -> list[str]:
        """Start the generation job of every campaign whose job was asked for and never finished (the app was
        stopped or killed half-way); returns their names."""
        resumed = [name for name in self.campaigns.wanted_generations() if self.campaigns.get(name) is not None]
        for name in resumed:
            self.runner(name).start()
        return resumed

    def admit(self, who: Identity, action: str) -> None:
        """The one check before acting: `who` may do `action` (else `AccessDenied`) and has not run out of calls
        (else `RateLimited`, saying when to try again). A visitor is limited by their browser and their address,
        so new sessions from one address do not reset it; the laptop's own owner is never limited."""
        authorize(who, action, self.access)
        bucket = RATE_BUCKETS.get(action)
        if bucket is not None and who.kind != "owner":
            keys = [f"{who.kind}:{who.id}"]
            if who.kind == "visitor" and who.address:
                keys.append(f"address:{who.address}")
            self.limits.take(bucket, *keys)

    def hub_message(self) -> tuple[str, bool]:
        """The Hub sync's current one-line status and whether it is a warning (restore failed, pushing paused)."""
        if self.hub_sync is not None:
            state = self.hub_sync.state
            return state.message, bool(state.warning)
        return self.hub_status, False

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    def example_for(self, sha256: str) -> Example | None:
        with self._lock:
            if self._examples_by_sha is None:
                self._examples_by_sha = {video_sha256(e.path): e for e in self.examples}
            return self._examples_by_sha.get(sha256)

    def close(self) -> None:
        with self._lock:
            for runner in self.runners.values():
                runner.stop()
            for opened in (self._store, self._campaigns):
                if opened is not None:
                    opened.close()
            self._store = self._campaigns = None
