"""What every button and gesture of the studio does, as plain functions of (inputs, session) -> outputs.

Each handler takes the `Studio` (process-wide: data directory, annotation store, example clips), the caller's
`Session` and the values of the input components, and returns (or, when it streams, yields) a dict keyed by output
names (`"chatbot"`, `"session"`, `"budget_plot"`, ...). `app/ui.py` maps those names onto components; tests call the
handlers directly without a browser. Two keys are not components: `"warning"` and `"info"` carry a message for the
person (the UI shows them as toasts; errors also land in the chat), so no handler lets an exception reach Gradio
for a bad video, a bad parameter or a model that cannot run here. Text that came from a person or a model is
escaped before it goes into Markdown or the Chatbot, so HTML in a question, a reason or a name is shown, not run.
"""

from __future__ import annotations

import html
import json
import logging
import queue
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from app import charts
from app.annotations import AnnotationStore, annotator_label, default_data_dir
from app.exports import (
    KTO_DESIRABLE_MIN_SCORE,
    KTO_UNDESIRABLE_MAX_SCORE,
    export_all,
    preview_dataframe,
    summary_counts,
)
from app.hub_sync import push_to_hub
from app.session import ABRound, Note, Session, Side, Turn, VideoRef, View
from models.base import (
    Answer,
    EncodeParams,
    GenerationParams,
    ModelUnavailableError,
    VideoError,
    VideoLLM,
    VisualContext,
)
from models.pipeline import ENCODE_CACHE, MAX_FRAMES, encode_video, video_sha256
from models.registry import DEFAULT_MODEL, MODELS, availability, get_spec, load_model
from models.video import probe_video

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
MAX_QUESTION_CHARS = 2_000
MAX_NEW_TOKENS = 512
MAX_TOKEN_BUDGET = 4_096
MAX_FPS = 10.0
OVERLAY_HEIGHT = 288  # thumbnails are ~96 px high; the overlay is shown larger (the map itself is 7x7)
GENERIC_QUESTIONS = ["What is shown in the video?", "What happens first, and what comes after?", "Is there a cut?"]
THUMBS = {"👍 good": 1, "👎 bad": -1, "no thumbs": None}
CHOICE_LABELS = {"a": "A is better", "b": "B is better", "tie": "a tie", "both_bad": "both are bad"}

Progress = Callable[..., Any]


def _no_progress(*_args: Any, **_kwargs: Any) -> None:
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


# ----------------------------------------------------------------------------------------------------------------
# Settings from the controls, validated at the boundary


@dataclass
class Settings:
    """The chat's controls. fps 0 means "spread num_frames evenly over the clip"."""

    model: str = DEFAULT_MODEL
    num_frames: int = 32
    fps: float = 2.0
    token_budget: int = 192
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0

    def encode_params(self) -> EncodeParams:
        num_frames = _whole("number of frames", self.num_frames, 1, MAX_FRAMES)
        fps = _number("frames per second", self.fps, 0.0, MAX_FPS)
        budget = _whole("token budget", self.token_budget, 8, MAX_TOKEN_BUDGET)
        return EncodeParams(num_frames=num_frames, fps=fps or None, token_budget=budget)

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


# ----------------------------------------------------------------------------------------------------------------
# Text for display


def escape_html(text: str) -> str:
    """Make text inert for Markdown-with-HTML renderers while keeping Markdown formatting."""
    return html.escape(text or "", quote=False)


_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~])")


def plain(text: str, max_chars: int | None = None) -> str:
    """User or model text shown literally inside our own Markdown: HTML escaped and Markdown syntax neutralised."""
    text = " ".join((text or "").split())
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return _MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(text, quote=False))


def _seconds(t: float) -> str:
    return f"{t:.1f} s"


# ----------------------------------------------------------------------------------------------------------------
# The chat as messages, rendered from the session


def render_chat(session: Session) -> list[dict[str, Any]]:
    """Gradio 6 messages for the Chatbot. Notes become collapsible "thought" messages that are never rated."""
    return [message for message, _owner in _messages_with_owners(session)]


def _messages_with_owners(session: Session) -> list[tuple[dict[str, Any], tuple[str, Turn | Note]]]:
    rendered: list[tuple[dict[str, Any], tuple[str, Turn | Note]]] = []
    for entry in session.entries:
        if isinstance(entry, Note):
            rendered.append(
                ({"role": "assistant", "content": entry.text, "metadata": {"title": entry.title}}, ("note", entry))
            )
            continue
        rendered.append(({"role": "user", "content": escape_html(entry.question)}, ("question", entry)))
        if entry.status == "pending":
            message = {
                "role": "assistant",
                "content": "",
                "metadata": {"title": _pending_title(entry), "status": "pending"},
            }
            rendered.append((message, ("note", entry)))
        elif entry.status == "error":
            message = {
                "role": "assistant",
                "content": escape_html(entry.error),
                "metadata": {"title": "⚠️ No answer"},
            }
            rendered.append((message, ("note", entry)))
        else:
            text = escape_html(entry.answer)
            if entry.status == "stopped":
                text = (text + " " if text else "") + "*(stopped)*"
            rendered.append(({"role": "assistant", "content": text}, ("answer", entry)))
    return rendered


def _pending_title(turn: Turn) -> str:
    if turn.video is None:
        return "⏳ Thinking…"
    return f"⏳ Looking at the frames of {_title_text(turn.video.name)}…"


def _title_text(text: str) -> str:
    """Text for a message title, which the Chatbot may render as HTML: markup characters dropped."""
    return re.sub(r"[<>&\"'`]", "", _short(text, 60))


def message_owner(session: Session, index: Any) -> tuple[str, Turn | Note] | None:
    """Which entry a Chatbot message index (from a like / edit event) belongs to, or None if out of range."""
    if isinstance(index, (list, tuple)):
        index = index[0] if index else None
    if not isinstance(index, int) or isinstance(index, bool):
        return None
    rendered = _messages_with_owners(session)
    if not 0 <= index < len(rendered):
        return None
    return rendered[index][1]


def rate_target_update(session: Session, select: Turn | None = None) -> dict[str, Any]:
    """Choices of the "answer to rate" dropdown: every answered turn, the newest (or `select`) chosen."""
    choices = []
    for number, turn in enumerate(session.turns, start=1):
        if turn.answered:
            label = f"#{number} · {_short(turn.question, 40)} → {_short(turn.answer, 40)}"
            choices.append((label, number))
    value = None
    if select is not None and select.answered:
        value = session.turn_number(select)
    elif choices:
        value = choices[-1][1]
    return gr.update(choices=choices, value=value)


def _short(text: str, max_chars: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def suggestions_update(session: Session) -> dict[str, Any]:
    if session.video is None:
        return gr.update(samples=[], visible=False)
    questions = session.video.questions or GENERIC_QUESTIONS
    return gr.update(samples=[[q] for q in questions], visible=True)


def chat_outputs(session: Session) -> dict[str, Any]:
    return {"chatbot": render_chat(session), "session": session}


# ----------------------------------------------------------------------------------------------------------------
# Views: frames, compression, attention


def view_outputs(view: View | None) -> dict[str, Any]:
    """Every figure and image of the Frames, Compression and Attention tabs for one view (or their empty state)."""
    stats = view.stats if view else None
    thumbnails = view.thumbnails if view else None
    times = view.timestamps_s if view else None
    attention = view.attention if view else None
    num_frames = len(times) if times else 0
    picked = _default_frame(view)
    return {
        "frames": gallery_items(thumbnails, times, attention),
        "key_figures": key_figures_html(stats),
        "summary": charts.compression_summary_markdown(stats),
        "strip": charts.clip_strip_image(thumbnails, stats),
        "budget_plot": charts.budget_figure(stats),
        "slow_fast_plot": charts.slow_fast_figure(stats, times),
        "heatmap": charts.attention_heatmap(attention, times, view.question if view else ""),
        "timeline": charts.attention_timeline(attention, times, stats),
        "frame_slider": gr.update(minimum=1, maximum=max(2, num_frames), value=picked, interactive=num_frames > 1),
        **frame_outputs(view, picked),
    }


def gallery_items(thumbnails: np.ndarray | None, times: list[float] | None, attention: Any) -> list[tuple]:
    """The Frames tab's thumbnails. Captions are shortened ("t = 3.5 s · 12%") to fit five tiles per row."""
    items = charts.frame_gallery_items(thumbnails, times, attention, with_overlays=False)
    return [(image, caption.replace("attention ", "").replace(" · peak", " ★")) for image, caption in items]


def key_figures_html(stats: Any) -> str:
    """Four headline numbers above the compression charts. Only numbers go in, so no escaping is needed."""
    if stats is None or not stats.clips:
        return ""
    ratio = f"{stats.compression_ratio:.1f}×" if stats.native_tokens else "—"
    cards = [
        (f"{stats.total_visual_tokens:,}", "visual tokens the LLM reads"),
        (ratio, f"fewer than uncompressed ({stats.native_tokens:,})" if stats.native_tokens else "compression"),
        (str(len(stats.clips)), f"clips sharing a budget of {stats.global_budget:,}"),
        (f"{stats.slow_tokens:,} / {stats.fast_tokens:,}", "slow / fast pathway tokens"),
    ]
    body = "".join(
        f'<div class="kf-card"><div class="kf-value">{value}</div>'
        f'<div class="kf-label">{html.escape(label)}</div></div>'
        for value, label in cards
    )
    return f'<div class="kf-row">{body}</div>'


def _default_frame(view: View | None) -> int:
    """The frame to show first: the most attended one that has a spatial map, else the most attended, else 1."""
    if view is None or view.attention is None or view.attention.frame_weights is None:
        return 1
    weights = np.nan_to_num(np.asarray(view.attention.frame_weights, dtype=float))
    if weights.size == 0:
        return 1
    with_maps = [p for p in view.attention.spatial if 0 <= p < weights.size]
    best = max(with_maps, key=lambda p: weights[p]) if with_maps else int(np.argmax(weights))
    return best + 1


def frame_outputs(view: View | None, frame_number: Any) -> dict[str, Any]:
    """The picked frame, with its spatial attention overlay where the model has one, and a caption."""
    if view is None or view.thumbnails is None or len(view.timestamps_s) == 0:
        return {"overlay": None, "overlay_caption": "*Load a video and ask a question to see where the model looked.*"}
    count = len(view.timestamps_s)
    try:
        number = int(round(float(frame_number)))
    except (TypeError, ValueError):
        number = 1
    number = min(max(number, 1), count)
    position = number - 1
    frame = view.thumbnails[position]
    height, width = frame.shape[:2]
    scale = OVERLAY_HEIGHT / max(1, height)
    big = np.asarray(Image.fromarray(frame).resize((max(1, round(width * scale)), OVERLAY_HEIGHT), Image.BICUBIC))
    parts = [f"**Frame {number} of {count}** · t = {_seconds(view.timestamps_s[position])}"]
    attention = view.attention
    if attention is not None and attention.frame_weights is not None and position < len(attention.frame_weights):
        parts.append(f"{100 * float(attention.frame_weights[position]):.0f}% of the answer's attention")
    heat = attention.spatial.get(position) if attention is not None else None
    if heat is not None:
        image = charts.overlay_image(big, heat)
        parts.append("overlay: where in the frame (bright = more)")
    else:
        image = big
        if attention is None:
            parts.append("ask a question to see an overlay")
        else:
            with_maps = sorted(p + 1 for p in attention.spatial)
            hint = f"frames with one: {', '.join(map(str, with_maps[:12]))}" if with_maps else "this model gives none"
            parts.append(f"no spatial map for this frame ({hint})")
    return {"overlay": image, "overlay_caption": " · ".join(parts)}


def _view_from(context: VisualContext, answer: Answer | None = None, question: str = "", turn_id: str = "") -> View:
    return View(
        thumbnails=context.thumbnails,
        timestamps_s=list(context.timestamps_s),
        stats=context.stats,
        attention=answer.attention if answer is not None else None,
        question=question,
        turn_id=turn_id,
    )


def video_status_markdown(session: Session, context: VisualContext | None = None) -> str:
    video = session.video
    if video is None:
        return "*No video: questions are answered as text-only turns. Upload a clip or pick an example.*"
    line = f"**{plain(video.name, 60)}** · {video.describe()}"
    if context is not None:
        times = context.timestamps_s
        span = f"t = {times[0]:.1f}–{times[-1]:.1f} s" if times else ""
        line += (
            f"  \n{context.num_frames} frames sampled ({span}) · {len(context.stats.clips)} clips · "
            f"{context.stats.total_visual_tokens} visual tokens"
        )
    return line


# ----------------------------------------------------------------------------------------------------------------
# Running a model


def _load(name: str, progress: Progress) -> VideoLLM:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; pick one from the list")
    progress(0.02, desc=f"Loading {name}…")
    return load_model(name)


def _encode(model: VideoLLM, video: VideoRef, params: EncodeParams, progress: Progress) -> tuple[VisualContext, bool]:
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


def _friendly(error: BaseException) -> str:
    if isinstance(error, (VideoError, ValueError, ModelUnavailableError)):
        return str(error)
    return f"the model failed ({type(error).__name__}: {error}). The studio is still running; try again."


# ----------------------------------------------------------------------------------------------------------------
# Chat handlers


def load_video(
    studio: Studio, session: Session, video_path: str | None, settings: Settings, progress: Progress = _no_progress
) -> dict[str, Any]:
    """A video was uploaded, picked from the examples or removed. Probes it, samples and encodes it (so the frames
    and the token budget show before the first question) and says in the chat that the next turn uses it."""
    out: dict[str, Any] = {}
    previous = session.video
    had_turns = bool(session.turns)
    if not video_path:
        session.video = None
        session.view = None
        if previous is not None:
            session.entries.append(Note("🎞 Video removed", "Questions from here on are text-only."))
        return {
            **out,
            **chat_outputs(session),
            **view_outputs(None),
            "suggestions": suggestions_update(session),
            "video_status": video_status_markdown(session),
        }

    name = Path(video_path).name
    try:
        progress(0.0, desc=f"Checking {name}…")
        info = probe_video(video_path)
        sha = video_sha256(video_path)
    except (VideoError, ValueError, OSError) as error:
        return _video_failed(session, name, error, previous)
    example = studio.example_for(sha)
    same_video = previous is not None and previous.sha256 == sha and previous.path == str(video_path)
    session.video = VideoRef(
        path=str(video_path),
        name=name,
        sha256=sha,
        duration_s=float(info.duration_s),
        width=int(info.width),
        height=int(info.height),
        fps=float(info.fps),
        title=example.title if example else "",
        questions=list(example.questions) if example else [],
    )
    context = None
    try:
        model = _load(settings.model, progress)
        context, _cached = _encode(model, session.video, settings.encode_params(), progress)
    except (VideoError, ValueError, ModelUnavailableError) as error:
        if isinstance(error, VideoError):
            return _video_failed(session, name, error, previous)
        out["warning"] = f"The video is loaded, but it could not be encoded yet: {error}"
    except Exception as error:  # keep serving whatever went wrong inside a model
        log.exception("encoding %s failed", name)
        out["warning"] = _friendly(error)
    session.view = _view_from(context) if context is not None else None

    if same_video:  # the same file again (e.g. the settings changed): refresh the views, no new note
        return {
            **out,
            **chat_outputs(session),
            **view_outputs(session.view),
            "suggestions": suggestions_update(session),
            "video_status": video_status_markdown(session, context),
        }
    title = f"🎞 Now watching: {_short(example.title, 80)}" if example else "🎞 Now watching a new video"
    lines = [f"**{plain(name, 60)}** · {session.video.describe()}."]
    if context is not None:
        times = context.timestamps_s
        lines.append(
            f"{context.num_frames} frames sampled at t = {times[0]:.1f}–{times[-1]:.1f} s, cut into "
            f"{len(context.stats.clips)} clips."
        )
    if previous is not None or had_turns:
        lines.append(
            "New questions are about this video; the model starts a fresh conversation (earlier turns stay above)."
        )
    else:
        lines.append("Ask anything about it below.")
    session.entries.append(Note(title, " ".join(lines)))
    return {
        **out,
        **chat_outputs(session),
        **view_outputs(session.view),
        "suggestions": suggestions_update(session),
        "video_status": video_status_markdown(session, context),
    }


def _video_failed(session: Session, name: str, error: BaseException, previous: VideoRef | None) -> dict[str, Any]:
    session.video = None
    session.view = None
    message = str(error)
    tail = " The previous video is no longer used either:" if previous is not None else ""
    session.entries.append(
        Note("⚠️ Video not usable", f"{escape_html(message)}{tail} Questions are text-only until a video loads.")
    )
    return {
        "warning": message,
        **chat_outputs(session),
        **view_outputs(None),
        "suggestions": suggestions_update(session),
        "video_status": f"⚠️ {plain(message, 300)}",
    }


def chat(
    studio: Studio,
    session: Session,
    question: str,
    settings: Settings,
    progress: Progress = _no_progress,
    seed_offset: int = 0,
) -> Iterator[dict[str, Any]]:
    """Answer a question about the session's video (or a text-only question without one), streaming the answer.

    Yields the chat after the question appears, after each text chunk, and once more at the end with the
    compression and attention views of this answer.
    """
    question = (question or "").strip()
    if not question:
        yield {"warning": "Type a question first, or click one of the suggested questions.", **chat_outputs(session)}
        return
    if len(question) > MAX_QUESTION_CHARS:
        yield {
            "warning": f"That question is {len(question):,} characters long; the limit is {MAX_QUESTION_CHARS:,}.",
            **chat_outputs(session),
        }
        return
    try:
        encode_params = settings.encode_params() if session.video is not None else None
        generation_params = settings.generation_params(seed_offset)
        ok, reason = availability(settings.model) if settings.model in MODELS else (False, "is not a known model")
        if not ok:
            raise ModelUnavailableError(f"{settings.model} cannot run here: it {reason}.")
    except (ValueError, ModelUnavailableError) as error:
        yield {"warning": str(error), **chat_outputs(session)}
        return

    video = session.video
    turn = Turn(
        question=question,
        model=settings.model,
        generation_params=generation_params.as_dict(),
        video=video,
        encode_params=encode_params.as_dict() if encode_params else None,
        history=session.history_for(video),
    )
    session.entries.append(turn)
    yield {**chat_outputs(session), "question": ""}

    try:
        model = _load(settings.model, progress)
        context, cached = None, False
        if video is not None:
            started = time.perf_counter()
            context, cached = _encode(model, video, encode_params, progress)
            turn.timings_s["frames_and_encode"] = time.perf_counter() - started
            turn.frame_indices = list(context.frame_indices)
            turn.frame_timestamps_s = list(context.timestamps_s)
        progress(0.95, desc="Answering…")
        turn.status = "streaming"
        answer = None
        stream = stream_answer(model, context, turn.history, question, generation_params)
        try:
            for item in stream:
                if isinstance(item, Answer):
                    answer = item
                else:
                    turn.answer += item
                    yield chat_outputs(session)
        finally:
            stream.close()  # on Stop, the model stops at the token at hand
        if answer is None:
            raise RuntimeError("the model's stream ended without an answer")
        turn.answer = answer.text or turn.answer.strip()
        turn.status = "done"
        turn.timings_s.update(answer.timings_s)
        turn.prompt_tokens, turn.new_tokens = answer.prompt_tokens, answer.new_tokens
        if context is not None:
            session.view = _view_from(context, answer, question, turn.id)
        out = {
            **chat_outputs(session),
            **view_outputs(session.view if context is not None else None),
            "rate_target": rate_target_update(session),
            "answer_stats": answer_stats_markdown(session, turn, context, cached),
        }
        if not turn.answer:
            out["info"] = "The model gave an empty answer; try rephrasing, or raise max new tokens."
        yield out
    except (VideoError, ValueError, ModelUnavailableError) as error:
        turn.status, turn.error = "error", _friendly(error)
        yield {"warning": turn.error, **chat_outputs(session)}
    except Exception as error:
        log.exception("answering failed")
        turn.status, turn.error = "error", _friendly(error)
        yield {"warning": turn.error, **chat_outputs(session)}
    finally:
        if turn.status in ("pending", "streaming"):  # closed early: the person pressed Stop
            turn.status = "stopped"
            turn.answer = turn.answer.strip()


def answer_stats_markdown(session: Session, turn: Turn, context: VisualContext | None, cached: bool) -> str:
    number = session.turn_number(turn)
    timings = turn.timings_s
    parts = [f"Answer #{number}"]
    if "first_token" in timings:
        parts.append(f"first token {timings['first_token']:.2f} s")
    if "generate" in timings:
        parts.append(f"{turn.new_tokens} tokens in {timings['generate']:.1f} s")
    if context is not None:
        stats = context.stats
        times = context.timestamps_s
        parts.append(f"{context.num_frames} frames ({times[0]:.1f}–{times[-1]:.1f} s)" if times else "no frames")
        ratio = f" ({stats.compression_ratio:.1f}× compression)" if stats.native_tokens else ""
        parts.append(f"{stats.total_visual_tokens} visual tokens in {len(stats.clips)} clips{ratio}")
        parts.append("frames from cache" if cached else f"frames + encode {timings.get('frames_and_encode', 0):.1f} s")
    else:
        parts.append("text-only turn")
    return "<small>" + " · ".join(parts) + "</small>"


def regenerate(
    studio: Studio, session: Session, settings: Settings, progress: Progress = _no_progress
) -> Iterator[dict[str, Any]]:
    """Answer the last question again with the current settings (a new seed, so sampling gives a new answer)."""
    turn = session.last_turn()
    if turn is None or turn.status in ("pending", "streaming"):
        yield {"warning": "There is no finished answer to regenerate yet.", **chat_outputs(session)}
        return
    session.remove_from(turn)
    session.regenerations += 1
    yield from chat(studio, session, turn.question, settings, progress, seed_offset=session.regenerations)


def undo(studio: Studio, session: Session) -> dict[str, Any]:
    """Remove the last turn and put its question back in the box, to edit and send again."""
    turn = session.last_turn()
    if turn is None:
        return {"warning": "Nothing to undo.", **chat_outputs(session)}
    session.remove_from(turn)
    return {**chat_outputs(session), "question": turn.question, "rate_target": rate_target_update(session)}


def edit_message(
    studio: Studio,
    session: Session,
    event: dict[str, Any] | None,
    settings: Settings,
    progress: Progress = _no_progress,
) -> Iterator[dict[str, Any]]:
    """The person edited a question in the chat: the last question is answered again as edited."""
    owner = message_owner(session, (event or {}).get("index"))
    new_text = _message_text((event or {}).get("value"))
    last = session.last_turn()
    if owner is None or owner[0] != "question" or owner[1] is not last:
        yield {
            "warning": "Only the last question can be edited; use Undo to go back further.",
            **chat_outputs(session),
        }
        return
    if not new_text.strip():
        yield {"warning": "The edited question is empty.", **chat_outputs(session)}
        return
    session.remove_from(last)
    yield from chat(studio, session, new_text, settings, progress)


def _message_text(value: Any) -> str:
    """Text of a Chatbot message value as an edit event sends it (a string, or content blocks)."""
    if isinstance(value, str):
        return html.unescape(value)  # the displayed question was HTML-escaped
    if isinstance(value, dict):
        return _message_text(value.get("text", value.get("content", "")))
    if isinstance(value, list):
        return " ".join(_message_text(part) for part in value).strip()
    return ""


def clear_chat(studio: Studio, session: Session) -> dict[str, Any]:
    """Forget the conversation; keep the video, the model and the settings."""
    session.entries.clear()
    if session.view is not None:
        session.view = View(session.view.thumbnails, session.view.timestamps_s, session.view.stats)
    return {
        **chat_outputs(session),
        **view_outputs(session.view),
        "rate_target": rate_target_update(session),
        "answer_stats": "",
    }


def select_model(session: Session, name: str) -> dict[str, Any]:
    """The model dropdown changed: refuse models that cannot run here (and say why), else apply its defaults."""
    if name not in MODELS:
        return {"warning": f"Unknown model {name!r}.", "model": gr.update(value=session.model)}
    ok, reason = availability(name)
    if not ok:
        return {
            "warning": f"{name} cannot run here: it {reason}. Staying with {session.model}.",
            "model": gr.update(value=session.model),
        }
    session.model = name
    defaults = get_spec(name).defaults
    return {
        "model": gr.update(value=name),
        "model_info": model_info_markdown(name),
        "num_frames": defaults.num_frames,
        "fps": defaults.fps or 0,
        "token_budget": defaults.token_budget,
        "session": session,
    }


def show_frame(session: Session, frame_number: Any) -> dict[str, Any]:
    return frame_outputs(session.view, frame_number)


def frame_from_gallery(session: Session, event: dict[str, Any] | None) -> dict[str, Any]:
    """A thumbnail in the Frames tab was clicked: pick it in the Attention tab's frame picker."""
    index = (event or {}).get("index")
    if isinstance(index, (list, tuple)):
        index = index[0] if index else None
    if not isinstance(index, int) or session.view is None:
        return {}
    number = index + 1
    return {"frame_slider": gr.update(value=number), **frame_outputs(session.view, number), "views_tab": "attention"}


# ----------------------------------------------------------------------------------------------------------------
# Ratings


def _keep_video(studio: Studio, session: Session, video: VideoRef | None) -> tuple[str | None, str | None]:
    """The video's path inside the data dir (copied there on its first judgement, by hash) and its sha256."""
    if video is None:
        return None, None
    stored = session.kept_videos.get(video.sha256)
    if stored is None:
        stored, sha = studio.store.keep_video(video.path)
        if sha != video.sha256:
            raise ValueError(f"{video.name} changed on disk since it was loaded; load it again")
        session.kept_videos[video.sha256] = stored
    return stored, video.sha256


def rate_answer(
    studio: Studio,
    session: Session,
    turn_number: Any,
    thumbs: Any,
    score: Any,
    reason: str,
    annotator: str,
    session_hash: str | None = None,
    source: str = "panel",
) -> dict[str, Any]:
    """Record one rating of an answer (thumbs and/or a 1-5 score and/or a reason) in the store."""
    turn = None
    if turn_number not in (None, ""):
        try:
            turn = session.turn_by_number(int(turn_number))
        except (TypeError, ValueError):
            turn = None
    else:
        answered = [t for t in session.turns if t.answered]
        turn = answered[-1] if answered else None
    if turn is None or not turn.answered:
        return {"warning": "There is no answer to rate yet: ask a question first."}
    thumbs_value = THUMBS.get(thumbs, thumbs) if isinstance(thumbs, str) else thumbs
    if thumbs_value not in (None, 1, -1, True, False):
        return {"warning": "Thumbs must be 👍, 👎 or none."}
    score_value = None if score in (None, "", 0, "0") else score
    try:
        if score_value is not None:
            score_value = int(score_value)
        video_path, sha = _keep_video(studio, session, turn.video)
        record_id = studio.store.record_rating(
            model=turn.model,
            question=turn.question,
            answer=turn.answer,
            conversation=turn.history,
            video_path=video_path,
            video_sha256=sha,
            video_duration_s=turn.video.duration_s if turn.video else None,
            frame_indices=turn.frame_indices,
            frame_timestamps_s=turn.frame_timestamps_s,
            encode_params=turn.encode_params,
            generation_params=turn.generation_params,
            thumbs=thumbs_value,
            score=score_value,
            reason=reason or "",
            annotator=annotator_label(annotator, session_hash),
            extra=_turn_extra(session, turn, source),
        )
    except (ValueError, OSError) as error:
        return {"warning": f"Not saved: {error}."}
    number = session.turn_number(turn)
    what = []
    if thumbs_value is not None:
        what.append("👍" if thumbs_value in (1, True) else "👎")
    if score_value is not None:
        what.append(f"{score_value}/5")
    if (reason or "").strip():
        what.append("a reason")
    total = studio.store.counts()["total"]
    status = (
        f"✅ Saved {' + '.join(what)} for answer #{number} (record `{record_id[:8]}`). "
        f"{total} judgement{'s' if total != 1 else ''} in the store."
    )
    return {
        "rating_status": status,
        "info": f"Rating saved for answer #{number}",
        "record_id": record_id,
        "rate_target": rate_target_update(session, select=turn),
        "session": session,
        "score": None,
        "reason": "",
        "thumbs": "no thumbs",
    }


def _turn_extra(session: Session, turn: Turn, source: str) -> dict[str, Any]:
    return {
        "source": source,
        "turn": session.turn_number(turn),
        "turn_id": turn.id,
        "status": turn.status,
        "video_name": turn.video.name if turn.video else None,
        "timings_s": {k: round(float(v), 4) for k, v in turn.timings_s.items()},
        "prompt_tokens": turn.prompt_tokens,
        "new_tokens": turn.new_tokens,
    }


def like(
    studio: Studio, session: Session, event: dict[str, Any] | None, annotator: str, session_hash: str | None = None
) -> dict[str, Any]:
    """The Chatbot's thumbs: recorded at once as a rating of that answer (FastChat style: a click is a vote)."""
    event = event or {}
    owner = message_owner(session, event.get("index"))
    if owner is None or owner[0] != "answer":
        return {"warning": "Only the model's answers can be rated."}
    liked = event.get("liked")
    if liked not in (True, False):
        return {"info": "Thumbs removed on screen; the earlier vote stays recorded (votes are never rewritten)."}
    turn = owner[1]
    return rate_answer(
        studio,
        session,
        session.turn_number(turn),
        1 if liked else -1,
        None,
        "",
        annotator,
        session_hash,
        source="like",
    )


# ----------------------------------------------------------------------------------------------------------------
# A/B comparisons


@dataclass
class SideSetup:
    model: str
    temperature: float
    top_p: float
    token_budget: int


def ab_run(
    studio: Studio,
    session: Session,
    question: str,
    setups: tuple[SideSetup, SideSetup],
    shared: Settings,
    progress: Progress = _no_progress,
) -> Iterator[dict[str, Any]]:
    """Answer one question with two setups, shown as A and B in a random order; names stay hidden until the vote."""
    question = (question or "").strip()
    if not question:
        yield {"warning": "Type the question both setups should answer."}
        return
    if len(question) > MAX_QUESTION_CHARS:
        yield {"warning": f"That question is longer than {MAX_QUESTION_CHARS:,} characters."}
        return
    video = session.video
    try:
        sides = []
        for number, setup in enumerate(setups, start=1):
            if setup.model not in MODELS:
                raise ValueError(f"setup {number}: unknown model {setup.model!r}")
            ok, reason = availability(setup.model)
            if not ok:
                raise ModelUnavailableError(f"setup {number}: {setup.model} cannot run here: it {reason}.")
            side_settings = Settings(
                model=setup.model,
                num_frames=shared.num_frames,
                fps=shared.fps,
                token_budget=setup.token_budget,
                temperature=setup.temperature,
                top_p=setup.top_p,
                max_new_tokens=shared.max_new_tokens,
                seed=shared.seed,
            )
            encode = side_settings.encode_params() if video is not None else None
            sides.append(
                Side(
                    number,
                    setup.model,
                    encode.as_dict() if encode else None,
                    side_settings.generation_params().as_dict(),
                )
            )
    except (ValueError, ModelUnavailableError) as error:
        yield {"warning": str(error)}
        return
    random.SystemRandom().shuffle(sides)  # which setup is A is a coin flip, so the labels give nothing away
    session.ab = round_ = ABRound(question=question, video=video, sides=sides)
    yield {**ab_outputs(round_), "session": session}

    try:
        for position, side in enumerate(sides):
            letter = "AB"[position]
            model = _load(side.model, progress)
            context = None
            if video is not None:
                context, _ = _encode(model, video, EncodeParams(**side.encode_params), progress)
                side.frame_indices, side.frame_timestamps_s = list(context.frame_indices), list(context.timestamps_s)
            progress(0.5 * position + 0.45, desc=f"Answer {letter}…")
            params = GenerationParams(**side.generation_params)
            answer = None
            stream = stream_answer(model, context, [], question, params, want_attention=False)
            try:
                for item in stream:
                    if isinstance(item, Answer):
                        answer = item
                    else:
                        side.answer += item
                        yield ab_outputs(round_)
            finally:
                stream.close()
            side.answer = (answer.text if answer is not None else "") or side.answer.strip()
            side.done = True
        yield {**ab_outputs(round_), "info": "Both answers are in: which one is better?"}
    except (VideoError, ValueError, ModelUnavailableError) as error:
        session.ab = None
        yield {**ab_outputs(None), "warning": _friendly(error)}
    except Exception as error:
        log.exception("A/B run failed")
        session.ab = None
        yield {**ab_outputs(None), "warning": _friendly(error)}
    finally:
        if session.ab is round_ and not round_.ready:
            session.ab = None  # stopped half-way: a round with a missing answer cannot be judged


def ab_outputs(round_: ABRound | None) -> dict[str, Any]:
    if round_ is None:
        return {"ab_chat_a": [], "ab_chat_b": [], "ab_reveal": "", "ab_votable": False}
    out: dict[str, Any] = {}
    for position, side in enumerate(round_.sides):
        messages = [{"role": "user", "content": escape_html(round_.question)}]
        if side.answer or side.done:
            messages.append({"role": "assistant", "content": escape_html(side.answer) or "*(empty answer)*"})
        else:
            messages.append(
                {"role": "assistant", "content": "", "metadata": {"title": "⏳ Waiting…", "status": "pending"}}
            )
        out["ab_chat_" + "ab"[position]] = messages
    if round_.voted:
        out["ab_reveal"] = _reveal_markdown(round_)
    elif round_.ready:
        out["ab_reveal"] = "**Which answer is better?** The setups are revealed after your vote."
    else:
        out["ab_reveal"] = "*Answering… setups stay hidden until you vote.*"
    out["ab_votable"] = round_.ready and not round_.voted
    return out


def _reveal_markdown(round_: ABRound) -> str:
    a, b = round_.sides
    return (
        f"You judged: **{CHOICE_LABELS[round_.voted]}**.  \n"
        f"**A** was setup {a.setup}: {plain(a.describe())}  \n"
        f"**B** was setup {b.setup}: {plain(b.describe())}"
    )


def ab_vote(
    studio: Studio,
    session: Session,
    choice: str,
    reason: str,
    annotator: str,
    session_hash: str | None = None,
) -> dict[str, Any]:
    """Record the judgement of the open A/B round, then reveal which setup was which."""
    round_ = session.ab
    if round_ is None or not round_.ready:
        return {"warning": "Run a comparison first: both answers must be in before you vote."}
    if round_.voted:
        return {"warning": "This round is already judged; run a new comparison to vote again.", **ab_outputs(round_)}
    a, b = round_.sides
    try:
        video_path, sha = _keep_video(studio, session, round_.video)
        record_id = studio.store.record_comparison(
            model_a=a.model,
            model_b=b.model,
            question=round_.question,
            answer_a=a.answer,
            answer_b=b.answer,
            choice=choice,
            conversation=[],
            video_path=video_path,
            video_sha256=sha,
            video_duration_s=round_.video.duration_s if round_.video else None,
            frame_indices_a=a.frame_indices,
            frame_timestamps_s_a=a.frame_timestamps_s,
            frame_indices_b=b.frame_indices,
            frame_timestamps_s_b=b.frame_timestamps_s,
            encode_params_a=a.encode_params,
            encode_params_b=b.encode_params,
            generation_params_a=a.generation_params,
            generation_params_b=b.generation_params,
            reason=reason or "",
            annotator=annotator_label(annotator, session_hash),
            extra={"round_id": round_.id, "setup_a": a.setup, "setup_b": b.setup, "blind": True},
        )
    except (ValueError, OSError) as error:
        return {"warning": f"Not saved: {error}."}
    round_.voted = choice
    total = studio.store.counts()["total"]
    out = ab_outputs(round_)
    out["ab_reveal"] += f"  \n✅ Saved (record `{record_id[:8]}`) · {total} judgements in the store."
    return {**out, "record_id": record_id, "session": session, "ab_reason": "", "info": "Vote saved"}


def ab_last_question(session: Session) -> dict[str, Any]:
    turn = session.last_turn()
    if turn is None:
        return {"warning": "The chat has no question yet."}
    return {"ab_question": turn.question}


def ab_video_markdown(session: Session) -> str:
    if session.video is None:
        return "*No video loaded in the chat: the comparison is text-only. Load a clip in the Chat tab.*"
    return f"Comparing on **{plain(session.video.name, 60)}** ({session.video.describe()}), the chat's current video."


# ----------------------------------------------------------------------------------------------------------------
# Export


def counts_markdown(studio: Studio) -> str:
    counts = summary_counts(studio.store)
    return (
        f"**{counts['total']}** judgements from **{counts['annotators']}** annotator(s) on **{counts['videos']}** "
        f"video(s)  \n"
        f"Ratings: **{counts['ratings']}** (👍 {counts['thumbs_up']} · 👎 {counts['thumbs_down']} · "
        f"scored {counts['scored']})  \n"
        f"A/B comparisons: **{counts['comparisons']}** (A {counts['a_better']} · B {counts['b_better']} · "
        f"tie {counts['ties']} · both bad {counts['both_bad']})  \n"
        f"TRL layouts: **{counts['dpo_pairs']}** DPO pairs · **{counts['kto_rows']}** KTO rows "
        f"({counts['kto_desirable']} desirable · {counts['kto_undesirable']} undesirable · "
        f"{counts['kto_excluded']} left out)  \n"
        f"<small>DPO pairs come from A/B votes with a winner (ties and “both bad” carry no preference). KTO labels: "
        f"👍 → desirable, 👎 → undesirable; without thumbs a score ≥ {KTO_DESIRABLE_MIN_SCORE} is desirable and "
        f"≤ {KTO_UNDESIRABLE_MAX_SCORE} undesirable; a 3, or thumbs the score contradicts, is left out.</small>"
    )


def refresh_export(studio: Studio) -> dict[str, Any]:
    return {"export_counts": counts_markdown(studio), "export_preview": preview_dataframe(studio.store)}


# Download buttons: output name -> (ExportResult.files key, button label).
DOWNLOADS = {
    "dl_jsonl": ("jsonl", "JSONL"),
    "dl_csv": ("csv", "CSV"),
    "dl_parquet": ("parquet", "Parquet"),
    "dl_datasets": ("datasets_zip", "HF datasets (zip)"),
    "dl_dpo": ("dpo_jsonl", "DPO pairs"),
    "dl_kto": ("kto_jsonl", "KTO rows"),
}


def export_data(studio: Studio, session: Session) -> dict[str, Any]:
    """Write every format from one snapshot of the store into a fresh folder under <data_dir>/exports/."""
    try:
        result = export_all(studio.store)
    except (ValueError, OSError) as error:
        return {"warning": f"Export failed: {error}"}
    dataset_dir = result.files.get("datasets")
    if dataset_dir is not None:
        archive = shutil.make_archive(
            str(result.directory / "dataset"), "zip", root_dir=result.directory, base_dir=dataset_dir.name
        )
        result.files["datasets_zip"] = Path(archive)
    session.last_export_dir = str(result.directory)
    counts = result.counts
    out: dict[str, Any] = {
        "export_status": (
            f"✅ Exported {counts['total']} judgements ({counts['dpo_pairs']} DPO pairs, {counts['kto_rows']} KTO "
            f"rows) to `{result.directory.name}`. Download below; the zip holds every file and the videos."
        ),
        "export_files": result.download_paths(),
        "session": session,
        "export_dir": str(result.directory),
        **refresh_export(studio),
    }
    for name, (key, _label) in DOWNLOADS.items():
        path = result.files.get(key)
        out[name] = gr.update(value=str(path) if path else None, interactive=path is not None)
    return out


def push_export(studio: Studio, session: Session, repo_id: str) -> dict[str, Any]:
    if not session.last_export_dir:
        return {"hub_status": "Export first: the push uploads the latest export folder."}
    status = push_to_hub(session.last_export_dir, repo_id or None)
    return {"hub_status": ("✅ " if status.ok else "⚠️ ") + plain(status.message, 400)}
