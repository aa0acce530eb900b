"""Running a model for a handler: load it by name, sample and encode a video through the encode cache, stream an
answer from one worker thread, and turn a failure into a message while the studio keeps serving.

Every tab and the program API run models through these few functions, so a bad video, a bad parameter or a model
that cannot run here always ends as a message (`EXPECTED_ERRORS` carry their own text), never as an exception that
reaches Gradio; `compression_dict` is the plan a model applied, as the plain JSON that records and `/ask` carry.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any, Protocol

from app.access.limits import RateLimited
from app.session import VideoRef
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
from models.hub import download_status
from models.pipeline import ENCODE_CACHE, encode_video
from models.registry import MODELS, get_spec, is_loaded, load_model

log = logging.getLogger(__name__)

# Failures a person can act on (a bad video or parameter, a model that cannot run here, an action their role does not
# allow, too many calls): their text is the message.
EXPECTED_ERRORS = (VideoError, ValueError, ModelUnavailableError, PermissionError, RateLimited)

Progress = Callable[..., Any]


def no_progress(*_args: Any, **_kwargs: Any) -> None:
    return None


def compression_dict(stats: TokenStats) -> dict[str, Any]:
    """The compression a model applied to one video, as plain JSON for records and the API: the compressor and its
    budget, the per-clip plan (time span, budget, tokens used, the fixed-rate per-frame baseline, density, and a
    language expert's caption where one wrote it) and the totals."""
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
                "caption": clip.caption,
                "caption_tokens": None if clip.caption_tokens is None else int(clip.caption_tokens),
            }
            for clip in stats.clips
        ],
    }


DOWNLOAD_POLL_S = 0.5


def load_named_model(name: str, progress: Progress) -> VideoLLM:
    """The model `name`, loaded now if it is not yet; while its checkpoint downloads (here, or in the start-up
    preload) the progress bar says how far it got."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; pick one from the list")
    if is_loaded(name):
        return load_model(name)
    progress(0.02, desc=f"Loading {name}…")
    loaded: dict[str, Any] = {}

    def work() -> None:
        try:
            loaded["model"] = load_model(name)
        except BaseException as error:  # raised again in the handler's thread
            loaded["error"] = error

    worker = threading.Thread(target=work, name=f"load-{name}", daemon=True)
    worker.start()
    repo_id = get_spec(name).kwargs.get("repo_id")
    while worker.is_alive():
        worker.join(DOWNLOAD_POLL_S)
        download = download_status(repo_id)
        if download is not None and not download.finished:
            progress(0.02 + 0.06 * download.fraction, desc=download.line())
    if "error" in loaded:
        raise loaded["error"]
    return loaded["model"]


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

    # the worker runs in this request's context: ZeroGPU's `spaces` reads the visitor's request from it for quotas
    worker = threading.Thread(target=contextvars.copy_context().run, args=(work,), name="model-stream", daemon=True)
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
    """What an answer is streamed into and its frames noted on: a chat `Turn` or an A/B `Side`."""

    answer: str
    frame_indices: list[int]
    frame_timestamps_s: list[float]
    compression: dict[str, Any] | None


def note_frames(target: _Answering, context: VisualContext) -> None:
    """Keep on `target` what a judgement of it must record: the frames the model saw and the compression plan."""
    target.frame_indices = list(context.frame_indices)
    target.frame_timestamps_s = list(context.timestamps_s)
    target.compression = compression_dict(context.stats)


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
