"""Interfaces and dataclasses every model in the studio speaks.

The data path is one straight walk: `Frames` (from `models/video.py`) go into `VideoLLM.encode`, which returns a
`VisualContext` (what the LLM will see, plus per-clip token budgets); `VideoLLM.stream` yields text chunks while it
generates and finishes with an `Answer` (text, attention over frames, token stats, timings). The app only ever
reads these dataclasses: it never touches a model's tensors.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


class VideoError(ValueError):
    """A video cannot be used; the message is written for the person who supplied it."""


class ModelUnavailableError(RuntimeError):
    """A model cannot run on this machine; the message says why (e.g. "needs a GPU and hub access")."""


# ----------------------------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True)
class VideoInfo:
    """What probing a video file tells us, before any frame is decoded.

    duration_s, fps and num_frames describe the frames the file really holds. Some containers (edited MP4s, cut
    WebMs) claim far more: `claimed_duration_s` is that claim when it exceeds the content, None when they agree,
    so the UI can say "the container claims 2 h 50 min but holds 6.4 s".
    """

    path: str
    duration_s: float
    fps: float
    num_frames: int
    width: int
    height: int
    codec: str = ""
    backend: str = ""  # "decord" | "pyav"
    claimed_duration_s: float | None = None


@dataclass(frozen=True)
class Frames:
    """Sampled frames of one video.

    pixels: (T, H, W, 3) uint8 RGB; indices: (T,) frame numbers in the source; timestamps_s: (T,) seconds.
    """

    pixels: np.ndarray
    indices: np.ndarray
    timestamps_s: np.ndarray
    info: VideoInfo

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


# ----------------------------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class EncodeParams:
    """How to sample and compress a video. Models read the fields that apply to them.

    num_frames: frames to sample uniformly (the fast pathway's frame count); fps: if set, sample at this rate
    instead, capped at num_frames; compressor: a key of `models.compression.COMPRESSORS` (one the model's spec
    lists); budget_pct: the global visual-token budget as % of the model's `official` count for these frames
    (10..100, and above 100 where the frames hold more tokens; `official` ignores it); expert: who describes the
    clips under `langdc` (`models.experts.EXPERTS`; the other compressors ignore it).
    """

    num_frames: int = 32
    fps: float | None = None
    compressor: str = "official"
    budget_pct: float = 100.0
    expert: str = "lite"  # the language expert of `langdc` (a key of `models.experts.EXPERTS`)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a record keeps them: `expert` only where it decided something (under `langdc`)."""
        fields = asdict(self)
        if self.compressor != "langdc":
            del fields["expert"]
        return fields


@dataclass(frozen=True)
class GenerationParams:
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------------------
# Token accounting (what the compression view draws)


@dataclass
class ClipBudget:
    """One clip of the timeline and the tokens it was given.

    frame_positions index into the sampled `Frames` (not source frame numbers).
    """

    index: int
    start_s: float
    end_s: float
    frame_positions: list[int]
    density: float  # semantic density in [0, 1]: how much there is to say about this clip
    budget: int  # dynamic budget (tokens)
    baseline_budget: int  # fixed-rate baseline: the same global budget at the same tokens per frame
    used_tokens: int  # tokens actually spent writing the clip (<= budget)
    text: str = ""  # what the LLM reads for this clip (language-space models)
    caption: str | None = None  # `langdc`: the language expert's description of the clip ...
    caption_tokens: int | None = None  # ... and the tokens it took (what set the budget)


@dataclass
class TokenStats:
    """How a model spent its visual tokens on one video.

    slow_tokens / fast_tokens: counts over the whole video; per_frame_slow / per_frame_fast: one entry per sampled
    frame. native_tokens: what the same frames would cost without compression (for the compression ratio).
    global_budget: the effective budget (sum of the clips' budgets); compressor / budget_pct: how it was set;
    official_tokens: what the model's own rule would spend on these frames.
    """

    clips: list[ClipBudget] = field(default_factory=list)
    global_budget: int = 0
    slow_tokens: int = 0
    fast_tokens: int = 0
    per_frame_slow: list[int] = field(default_factory=list)
    per_frame_fast: list[int] = field(default_factory=list)
    native_tokens: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    compressor: str = "official"
    budget_pct: float = 100.0
    official_tokens: int = 0  # what the checkpoint's own rule would feed the LLM for these frames
    note: str = ""  # one honest line shown under the chart (e.g. "training-free: ...")
    unit: str = "tokens"  # what the clips' budgets count: "frames" for a remote engine until it reports tokens

    @property
    def total_visual_tokens(self) -> int:
        return self.slow_tokens + self.fast_tokens

    @property
    def baseline_total(self) -> int:
        return sum(c.baseline_budget for c in self.clips)

    @property
    def compression_ratio(self) -> float:
        """native / used: how many times fewer tokens the LLM sees than an uncompressed encoding."""
        return self.native_tokens / max(1, self.total_visual_tokens)


# ----------------------------------------------------------------------------------------------------------------
# Encoding and answering


@dataclass
class VisualContext:
    """What `encode` produced for one video: model-specific payload plus what the studio can show.

    frame_indices / timestamps_s: the sampled frames; thumbnails: small uint8 frames (T, h, w, 3) for the UI;
    payload: opaque to the app (a text timeline, tensors, ...); fingerprint: `input_fingerprint` of what the LLM
    reads.
    """

    model_name: str
    video_sha256: str
    params: EncodeParams
    frame_indices: list[int]
    timestamps_s: list[float]
    thumbnails: np.ndarray
    stats: TokenStats
    payload: Any = None
    info: VideoInfo | None = None
    fingerprint: str = ""  # sha256 of exactly what the LLM reads for this video ("" when the model cannot say)

    @property
    def num_frames(self) -> int:
        return len(self.frame_indices)


def input_fingerprint(*parts: str | bytes | np.ndarray) -> str:
    """sha256 over what an LLM reads for a video (texts, token arrays): two encodings with the same fingerprint
    feed the model identical input, so a comparison between them would judge nothing."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            part = np.ascontiguousarray(part)
            digest.update(f"{part.dtype}{part.shape}".encode())
            part = part.tobytes()
        elif isinstance(part, str):
            part = part.encode()
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


@dataclass
class Attention:
    """Where an answer looked.

    frame_weights: (T,) sums to 1 over the sampled frames. token_frame_weights: (N, T), one row per answer token
    (or word) in `tokens`, each row summing to 1. spatial: frame position -> (h, w) map in [0, 1] for frames that
    have one (e.g. class-activation overlays, or cross-attention over a 9x9 grid).
    """

    frame_weights: np.ndarray
    tokens: list[str] = field(default_factory=list)
    token_frame_weights: np.ndarray | None = None
    spatial: dict[int, np.ndarray] = field(default_factory=dict)
    source: str = ""  # one line on how the weights were obtained, shown under the plot
    rows: str = "answer"  # whose tokens the rows of `token_frame_weights` are: "answer" or "question"


@dataclass
class Answer:
    text: str
    attention: Attention | None
    stats: TokenStats
    timings_s: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    new_tokens: int = 0


Message = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": str}


@runtime_checkable
class VideoLLM(Protocol):
    """A chat model over videos. Text-only turns pass `context=None`.

    decode_max_side: the longest side, in pixels, its frames are decoded at (big enough for its preprocessing).
    """

    name: str
    decode_max_side: int

    def encode(self, frames: Frames, params: EncodeParams, video_sha256: str) -> VisualContext: ...

    def stream(
        self,
        context: VisualContext | None,
        history: list[Message],
        question: str,
        params: GenerationParams,
        want_attention: bool = True,
    ) -> Iterator[str | Answer]:
        """Yield text chunks as they are generated, then exactly one `Answer` as the last item."""
        ...


def own_payload(context: VisualContext | None, model_name: str, kind: type) -> Any:
    """The payload a model's own `encode` left in `context` (None for a text-only turn); a ValueError when another
    model encoded the video."""
    if context is None:
        return None
    if context.model_name != model_name or not isinstance(context.payload, kind):
        raise ValueError(f"this video was encoded by {context.model_name}, not {model_name}; encode it again")
    return context.payload


def collect(stream: Iterator[str | Answer]) -> Answer:
    """Drain a `stream` and return its final `Answer` (for tests and non-streaming callers)."""
    answer = None
    for item in stream:
        if isinstance(item, Answer):
            answer = item
    if answer is None:
        raise RuntimeError("the model's stream ended without an Answer")
    return answer


# ----------------------------------------------------------------------------------------------------------------
# Encode cache


def file_sha256(path: str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


class EncodeCache:
    """A small thread-safe LRU of `VisualContext`s keyed by (video sha256, model, encode params).

    `hits` and `misses` are counted so tests (and the UI's timings) can tell that a follow-up question did not
    re-run the visual expert.
    """

    def __init__(self, max_entries: int = 16):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, VisualContext] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(video_sha256: str, model_name: str, params: EncodeParams) -> tuple:
        return (video_sha256, model_name, tuple(sorted(params.as_dict().items())))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get_or_compute(self, key: tuple, compute: Callable[[], VisualContext]) -> VisualContext:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
        context = compute()  # outside the lock: encoding is slow and other videos may proceed
        with self._lock:
            self._entries[key] = context
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return context
