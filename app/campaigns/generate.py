"""Answering a campaign: every (item, setup) still without an answer is encoded through the process-wide encode cache
(`models.pipeline.encode_video`, one encode per video, model and compression) and answered by the setup's model,
video by video, each answer stored the moment it is done. A killed job loses at most the answer in flight and the
next run picks up where it stopped; an item that fails keeps its error and the job goes on.

`run_campaign` does the work in the calling thread (the command line); `CampaignRunner` runs it in a daemon thread
and reports its progress for a UI.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from app.campaigns.manifest import Item, Setup
from app.campaigns.store import CampaignStore
from app.running import compression_dict
from models.base import VideoLLM, collect
from models.pipeline import encode_video
from models.registry import load_model

Progress = Callable[[int, int, float | None], None]  # (done, total, eta_s) after each answer


def answer_one(model: VideoLLM, item: Item, setup: Setup) -> dict[str, Any]:
    """One setup's answer to one item, as the fields `CampaignStore.record_answer` takes."""
    started = time.perf_counter()
    context = encode_video(model, item.video, setup.encode)
    encoded = time.perf_counter()
    answer = collect(model.stream(context, [], item.question, setup.generation, want_attention=False))
    timings = {"encode_s": encoded - started, "generate_s": time.perf_counter() - encoded, **answer.timings_s}
    return {
        "text": answer.text,
        "frame_indices": list(context.frame_indices),
        "frame_timestamps_s": list(context.timestamps_s),
        "compression": compression_dict(context.stats),
        "timings": {name: round(float(value), 4) for name, value in timings.items()},
    }


def run_campaign(
    store: CampaignStore,
    name: str,
    *,
    load: Callable[[str], VideoLLM] = load_model,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Answer every pending (item, setup) of campaign `name`; returns {done, failed, seconds} for this run.

    A model that cannot be loaded stops the job with its error (nothing is marked failed: the items wait for a
    machine that can run it); an error while answering one item is recorded for that item and the job goes on.
    `stop` is checked between answers."""
    started = time.perf_counter()
    pending = store.pending_generations(name)
    models: dict[str, VideoLLM] = {}
    done = failed = 0
    if progress is not None:
        progress(0, len(pending), None)
    for item, setup in pending:
        if stop is not None and stop.is_set():
            break
        if setup.model not in models:
            models[setup.model] = load(setup.model)
        try:
            fields = answer_one(models[setup.model], item, setup)
        except Exception as error:  # one item's failure is data about that item, not the end of the job
            store.record_failure(name, item.id, setup.name, f"{type(error).__name__}: {error}")
            failed += 1
        else:
            store.record_answer(name, item.id, setup.name, **fields)
            done += 1
        if progress is not None:
            finished = done + failed
            elapsed = time.perf_counter() - started
            progress(finished, len(pending), elapsed / finished * (len(pending) - finished))
    return {"done": done, "failed": failed, "seconds": round(time.perf_counter() - started, 3)}


class CampaignRunner:
    """`run_campaign` in a daemon thread, for a UI: `start()`, `stop()`, and `state()` to poll."""

    def __init__(self, store: CampaignStore, name: str, *, load: Callable[[str], VideoLLM] = load_model) -> None:
        self.store, self.name, self._load = store, name, load
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state: dict[str, Any] = {"running": False, "done": 0, "total": 0, "eta_s": None, "error": None}

    def start(self) -> bool:
        """Start generating (and remember it in the store until every answer is in, so a restarted app resumes);
        False when this runner is already running."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self.store.want_generation(self.name)
            self._stop.clear()
            self._state = {"running": True, "done": 0, "total": 0, "eta_s": None, "error": None}
            self._thread = threading.Thread(target=self._work, name=f"campaign-{self.name}", daemon=True)
            self._thread.start()
            return True

    def stop(self) -> None:
        """Ask the job to stop after the answer in flight."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def state(self) -> dict[str, Any]:
        """{running, done, total, eta_s, error} of the current (or last) job."""
        with self._lock:
            return dict(self._state)

    def _progress(self, done: int, total: int, eta_s: float | None) -> None:
        with self._lock:
            self._state.update(done=done, total=total, eta_s=None if eta_s is None else round(eta_s, 1))

    def _work(self) -> None:
        error = None
        try:
            run_campaign(self.store, self.name, load=self._load, progress=self._progress, stop=self._stop)
            if not self.store.pending_generations(self.name):
                self.store.want_generation(self.name, False)
        except Exception as failure:  # reported through state(); the thread must not die silently
            error = f"{type(failure).__name__}: {failure}"
        with self._lock:
            self._state.update(running=False, error=error, eta_s=None if error else 0.0)
