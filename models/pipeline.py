"""From a video file to a cached `VisualContext`: hash, sample frames, encode — once per (video, model, params).

The app calls `encode_video` on every turn; only the first turn on a video pays for decoding and the visual
expert. `ENCODE_CACHE.hits/misses` let tests and the UI's timings tell the two apart.
"""

from __future__ import annotations

import os
import threading
import time

from models.base import EncodeCache, EncodeParams, VideoLLM, VisualContext, file_sha256
from models.video import sample_frames

ENCODE_CACHE = EncodeCache(max_entries=int(os.environ.get("STUDIO_ENCODE_CACHE_ENTRIES", "16")))
MAX_FRAMES = 256  # no model here uses more; a guard against absurd requests from the API
_hashes: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def video_sha256(path: str) -> str:
    """sha256 of a file, memoised by (path, size, mtime) so a follow-up turn does not re-read a large upload."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, int(stat.st_mtime_ns))
    with _hash_lock:
        if key in _hashes:
            return _hashes[key]
    digest = file_sha256(path)
    with _hash_lock:
        _hashes[key] = digest
    return digest


def encode_video(model: VideoLLM, path: str, params: EncodeParams, max_side: int | None = None) -> VisualContext:
    """Sample frames as `params` asks (decoded at `max_side`, by default the model's `decode_max_side`) and encode
    them, or return the cached context for the same request."""
    if not 1 <= params.num_frames <= MAX_FRAMES:
        raise ValueError(f"number of frames must be between 1 and {MAX_FRAMES}, got {params.num_frames}")
    if params.fps is not None and not 0 < params.fps <= 60:
        raise ValueError(f"frames per second must be in (0, 60], got {params.fps}")
    if not 0 < params.budget_pct <= 1000:
        raise ValueError(
            f"the token budget must be between 0 and 1000% of the model's own count, got {params.budget_pct}"
        )
    digest = video_sha256(path)

    max_side = max_side or model.decode_max_side

    def compute() -> VisualContext:
        started = time.perf_counter()
        if params.fps:
            frames = sample_frames(path, fps=params.fps, max_frames=params.num_frames, max_side=max_side)
        else:
            frames = sample_frames(path, num_frames=params.num_frames, max_side=max_side)
        sampled = time.perf_counter() - started
        context = model.encode(frames, params, digest)
        context.stats.timings_s = {"sample_frames": sampled, **context.stats.timings_s}
        return context

    return ENCODE_CACHE.get_or_compute(EncodeCache.key(digest, model.name, params), compute)
