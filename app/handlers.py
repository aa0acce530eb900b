"""What the handlers of every tab share: the process-wide `Studio`, the validated `Settings`, safe text, model runs.

A handler is a plain function of (inputs, session) -> outputs that lives with its tab (`app/chat.py`,
`app/ratings.py`, `app/views.py`, `app/compare.py`, `app/exporting.py`). It takes the caller's `Session`, the
`Studio` when it needs the store or the examples, and the values of the input components, and returns (or, when it
streams, yields) a dict keyed by output names (`"chatbot"`, `"session"`, `"budget_plot"`, ...); `app/ui.py` maps
those names onto components, and tests call the handlers directly without a browser. Two keys are not components:
`"warning"` and `"info"` carry a message for the person (the UI shows them as toasts; errors also land in the
chat), so no handler lets an exception reach Gradio for a bad video, a bad parameter or a model that cannot run
here. Text that came from a person or a model is escaped before it goes into Markdown or the Chatbot, so HTML in a
question, a reason or a name is shown, not run.
"""

from __future__ import annotations

import html
import json
import logging
import queue
import re
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.data.store import AnnotationStore, default_data_dir
from app.session import Session, VideoRef
from models.base import (
    Answer,
    EncodeParams,
    GenerationParams,
    ModelUnavailableError,
    TokenStats,
    VideoError,
    VideoLLM,
    VisualContext,
)
from models.compression import COMPRESSORS
from models.pipeline import ENCODE_CACHE, MAX_FRAMES, encode_video, video_sha256
from models.registry import DEFAULT_MODEL, MODELS, availability, get_spec, load_model

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
MAX_QUESTION_CHARS = 2_000
MAX_NEW_TOKENS = 512
MIN_BUDGET_PCT, MAX_BUDGET_PCT = 5.0, 400.0  # % of the model's official visual-token count
MAX_FPS = 10.0
# Failures a person can act on (a bad video or parameter, a model that cannot run here): their text is the message.
EXPECTED_ERRORS = (VideoError, ValueError, ModelUnavailableError)

Progress = Callable[..., Any]


def no_progress(*_args: Any, **_kwargs: Any) -> None:
    return None


# ----------------------------------------------------------------------------------------------------------------
# The process-wide side: data directory, store, examples


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
    _store: AnnotationStore | None = None
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
            if self._store is not None:
                self._store.close()
                self._store = None


def video_record_fields(studio: Studio, session: Session, video: VideoRef | None) -> dict[str, Any]:
    """The video fields of a judgement for the store: its path inside the data dir (copied there, by hash, on its
    first judgement in this session), its sha256 and its duration; all None for a text-only judgement."""
    if video is None:
        return {"video_path": None, "video_sha256": None, "video_duration_s": None}
    stored = session.kept_videos.get(video.sha256)
    if stored is None:
        stored, sha = studio.store.keep_video(video.path)
        if sha != video.sha256:
            raise ValueError(f"{video.name} changed on disk since it was loaded; load it again")
        session.kept_videos[video.sha256] = stored
    return {"video_path": stored, "video_sha256": video.sha256, "video_duration_s": video.duration_s}


# ----------------------------------------------------------------------------------------------------------------
# Settings from the controls, validated at the boundary


@dataclass
class Settings:
    """The chat's controls. fps 0 means "spread num_frames evenly over the clip"."""

    model: str = DEFAULT_MODEL
    num_frames: int = 32
    fps: float = 2.0
    compressor: str = "official"
    budget_pct: float = 100.0
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0

    def encode_params(self) -> EncodeParams:
        num_frames = _whole("number of frames", self.num_frames, 1, MAX_FRAMES)
        fps = _number("frames per second", self.fps, 0.0, MAX_FPS)
        budget_pct = _number("token budget (%)", self.budget_pct, MIN_BUDGET_PCT, MAX_BUDGET_PCT)
        compressor = check_compressor(self.model, self.compressor)
        return EncodeParams(num_frames=num_frames, fps=fps or None, compressor=compressor, budget_pct=budget_pct)

    def generation_params(self, seed_offset: int = 0) -> GenerationParams:
        return GenerationParams(
            temperature=_number("temperature", self.temperature, 0.0, 2.0),
            top_p=_number("top-p", self.top_p, 0.01, 1.0),
            max_new_tokens=_whole("max new tokens", self.max_new_tokens, 1, MAX_NEW_TOKENS),
            seed=_whole("seed", self.seed, 0, 2**31 - 1) + seed_offset,
        )


def _number(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number (got {value!r})") from None
    if not np.isfinite(number) or not low <= number <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g} (got {value!r})")
    return number


def _whole(name: str, value: Any, low: int, high: int) -> int:
    number = _number(name, value, low, high)
    if not float(number).is_integer():
        raise ValueError(f"{name} must be a whole number (got {value!r})")
    return int(number)


def question_problem(question: str, if_empty: str) -> str | None:
    """Why a (stripped) question cannot be asked, or None when it can."""
    if not question:
        return if_empty
    if len(question) > MAX_QUESTION_CHARS:
        return f"That question is {len(question):,} characters long; the limit is {MAX_QUESTION_CHARS:,}."
    return None


def check_runnable(name: str) -> None:
    """Raise `ModelUnavailableError`, saying why, unless `name` is a registered model that can run here."""
    ok, reason = availability(name) if name in MODELS else (False, "is not a known model")
    if not ok:
        raise ModelUnavailableError(f"{name} cannot run here: it {reason}.")


def check_compressor(model: str, compressor: Any) -> str:
    """The compressor name if `model` supports it, else a ValueError listing the ones it does."""
    supported = compressors_for(model)
    name = str(compressor or supported[0])
    if name not in supported:
        raise ValueError(f"{model} supports the compressors {', '.join(supported)}; {name!r} is not one of them")
    return name


def compressor_description(name: str) -> str:
    spec = COMPRESSORS.get(name)
    return getattr(spec, "description", "") if spec is not None else ""


def compressors_for(model: str) -> tuple[str, ...]:
    return tuple(getattr(get_spec(model), "compressors", ("official",))) if model in MODELS else ("official",)


def model_choices() -> list[tuple[str, str]]:
    """(label, name) for every registered model; the ones that cannot run here say why in their label."""
    choices = []
    for name in MODELS:
        ok, reason = availability(name)
        choices.append((name if ok else f"{name} — unavailable here: {reason}", name))
    return choices


def model_info_markdown(name: str) -> str:
    spec = get_spec(name)
    ok, reason = availability(name)
    needs = " + ".join(sorted(spec.needs))
    status = "runs here" if ok else f"cannot run here: {reason}"
    return f"{spec.description}  \n<small>needs {needs} · {status}</small>"


def compression_dict(stats: TokenStats) -> dict[str, Any]:
    """The compression a model applied to one video, as plain JSON for records and the API: the compressor and its
    budget, the per-clip plan (time span, budget, tokens used, the equal-split baseline, density) and the totals."""
    return {
        "compressor": stats.compressor,
        "budget_pct": stats.budget_pct,
        "global_budget": stats.global_budget,
        "visual_tokens": stats.total_visual_tokens,
        "slow_tokens": stats.slow_tokens,
        "fast_tokens": stats.fast_tokens,
        "official_tokens": stats.official_tokens,
        "native_tokens": stats.native_tokens,
        "clips": [
            {
                "index": clip.index,
                "start_s": round(float(clip.start_s), 3),
                "end_s": round(float(clip.end_s), 3),
                "frames": len(clip.frame_positions),
                "budget": int(clip.budget),
                "used_tokens": int(clip.used_tokens),
                "baseline_budget": int(clip.baseline_budget),
                "density": round(float(clip.density), 4),
            }
            for clip in stats.clips
        ],
    }


# ----------------------------------------------------------------------------------------------------------------
# Text for display


def escape_html(text: str) -> str:
    """Make text inert for Markdown-with-HTML renderers while keeping Markdown formatting."""
    return html.escape(text or "", quote=False)


def short(text: str, max_chars: int | None = None) -> str:
    """Text on one line (whitespace runs collapsed), cut to `max_chars` with an ellipsis."""
    text = " ".join((text or "").split())
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return text


_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~])")


def plain(text: str, max_chars: int | None = None) -> str:
    """User or model text shown literally inside our own Markdown: HTML escaped and Markdown syntax neutralised."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(short(text, max_chars), quote=False))


# ----------------------------------------------------------------------------------------------------------------
# Running a model


def load_named_model(name: str, progress: Progress) -> VideoLLM:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; pick one from the list")
    progress(0.02, desc=f"Loading {name}…")
    return load_model(name)


def encode_clip(
    model: VideoLLM, video: VideoRef, params: EncodeParams, progress: Progress
) -> tuple[VisualContext, bool]:
    """Sample and encode (or fetch from the encode cache). Returns the context and whether it was cached."""
    how = f"at {params.fps:g} fps (at most {params.num_frames})" if params.fps else f"{params.num_frames} frames"
    progress(0.1, desc=f"Sampling {how} from {video.name} and encoding…")
    hits = ENCODE_CACHE.hits
    context = encode_video(model, video.path, params)
    progress(0.9, desc="Frames encoded")
    return context, ENCODE_CACHE.hits > hits


def stream_answer(
    model: VideoLLM,
    context: VisualContext | None,
    history: list[dict[str, str]],
    question: str,
    params: GenerationParams,
    want_attention: bool = True,
) -> Iterator[str | Answer]:
    """`model.stream` driven from one worker thread.

    Gradio advances a sync generator from whichever pool thread is free, and models hold thread-owned locks across
    their own generator; running the model's generator in a single thread keeps those locks sane. Closing this
    generator (Stop) tells the worker to finish the token at hand and close the model's stream.
    """
    items: queue.Queue = queue.Queue(maxsize=1)  # the worker runs at most a token ahead of the consumer
    stop = threading.Event()

    def offer(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                items.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        stream = model.stream(context, history, question, params, want_attention)
        try:
            for item in stream:
                if not offer(("item", item)):
                    break
        except BaseException as error:  # handed to the consumer, which turns it into a message
            offer(("error", error))
        finally:
            stream.close()
            offer(("done", None))

    worker = threading.Thread(target=work, name="model-stream", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


class _Answering(Protocol):
    answer: str


def relay_answer(
    stream: Iterator[str | Answer], target: _Answering, outputs: Callable[[], dict[str, Any]]
) -> Generator[dict[str, Any], None, Answer | None]:
    """Append each streamed text chunk to `target.answer`, yielding `outputs()` after each; return the final
    `Answer` (None if the stream ended without one). Closing early (Stop) closes the stream, so the model stops at
    the token at hand."""
    answer = None
    try:
        for item in stream:
            if isinstance(item, Answer):
                answer = item
            else:
                target.answer += item
                yield outputs()
    finally:
        stream.close()
    return answer


def failure_message(error: BaseException, doing: str) -> str:
    """The message for a failed model run. Call it inside the `except` block: an unexpected error is logged with its
    traceback (as "<doing> failed") and reported as the model's failure, while the studio keeps serving."""
    if isinstance(error, EXPECTED_ERRORS):
        return str(error)
    log.exception("%s failed", doing)
    return f"the model failed ({type(error).__name__}: {error}). The studio is still running; try again."
