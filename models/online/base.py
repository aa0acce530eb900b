"""The online (streaming) interface: frames go in one at a time, remarks come out while the video plays.

A VideoLLM-online-style assistant reads a video as a stream. For every frame it makes one decision, to stay
silent or to respond, from a *respond score*; when it responds it streams a short remark about what it sees now.
A user question is queued at a video timestamp and answered when the stream reaches that point. This module is
the model-independent half of that loop: the parameters, the events a session yields, the threshold rule, the
bounded per-session state and the loop itself (`OnlineSession.feed_many`). A model supplies four hooks: a
batched, stateless encoder (`_encode`), a sequential scorer that owns the model's context (`_score`), and the
slow paths that write a remark or an answer (`_remark`, `_answer`). `replay` runs a whole file through a
session server-side. Nothing here imports gradio or torch.

Threshold convention (as in VideoLLM-online): the respond score s lies in [0, 1]; a frame responds when
s > 1 - θ. Higher θ therefore lowers the bar and makes the assistant MORE talkative; θ = 0 never responds and
θ = 1 responds to any frame with a positive score. For a model that predicts the frame-separator token, s is
1 - P(separator), so the rule reads P(separator) < θ, exactly VideoLLM-online's. Because the rule is applied to
the scores as they are, a model whose scores do not depend on its own past decisions (the embedded default) is
monotone in θ by construction: raising θ only adds responding frames.

How a checkpoint of the VideoLLM-online project (its LIVE model) would fit, as a subclass of `OnlineSession`:

- `_encode(pixels, times)`: the vision tower (SigLIP-L/384, CLS + 3x3 pooled = 10 tokens) and the connector
  over the batch: the FIFO of frame embeddings, with no session state, so frames can be encoded ahead of the LLM.
- `_score(encoded, time_s)`: build the prefix (the start snippet `<bos>SYS\\n\\n[` on an empty cache, `,` after a
  silent frame, EOS + `\\n[` after a reply), run prefix + the 10 frame embeddings in one forward pass with the
  session's `past_key_values`, and return 1 - softmax(logits)[frame_token_interval_id]. The rule above then
  decides; nothing else is re-encoded.
- `_remark(time_s, score)`: force `]\\nAssistant:` (rather than trusting the argmax token), decode greedily to EOS
  (at most `params.generation.max_new_tokens`, LIVE uses 100), yield the text deltas, then a `Remark`; remember
  that the next prefix is EOS + `\\n[`. With LION-FS's slow path, append the keyframe's 2x2 grid sub-frames
  (4 x 10 tokens) before the prompt, as the embedded default does in language.
- `_answer(question, asked_at_s, time_s)`: feed `]\\nUser: <question>\\nAssistant:` and decode the same way.
- `_reset_context()`: drop the KV cache and pending prefix (called on rewind and on forward jumps).
- Bounding: the KV cache grows by 11 tokens per frame; when it passes `limits.max_context_tokens`, re-prime it
  from the system prompt plus the last `limits.max_context_frames` frame embeddings (kept in a deque), so a
  one-hour stream stays within a fixed cache size.
Its scores depend on its own replies (they enter the cache), so θ-monotonicity holds only on average there.
"""

from __future__ import annotations

import bisect
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from models.base import GenerationParams

DEFAULT_THRESHOLD = 0.5
DEFAULT_FPS = 2.0


def respond_bar(threshold: float) -> float:
    """The score a frame must exceed to respond: 1 - θ."""
    return 1.0 - threshold


def responds(score: float, threshold: float) -> bool:
    """The one decision rule every online model shares: respond when score > 1 - θ (higher θ, more remarks)."""
    return score > respond_bar(threshold)


def check_threshold(threshold: float) -> float:
    value = float(threshold)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"the respond threshold θ must lie in [0, 1] (higher = more talkative); got {threshold}")
    return value


@dataclass(frozen=True)
class OnlineParams:
    """How a session runs. threshold: θ (see the module docstring); fps: frames per second fed to the model;
    remark_text: "llm" writes remarks with the language model, "template" skips it (fast scans, tests);
    generation: sampling of remarks and answers."""

    threshold: float = DEFAULT_THRESHOLD
    fps: float = DEFAULT_FPS
    remark_text: Literal["llm", "template"] = "llm"
    generation: GenerationParams = field(default_factory=lambda: GenerationParams(max_new_tokens=32))

    def __post_init__(self) -> None:
        check_threshold(self.threshold)
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.remark_text not in ("llm", "template"):
            raise ValueError(f"remark_text must be 'llm' or 'template', got {self.remark_text!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SessionLimits:
    """Bounds on what a session keeps, so a one-hour stream does not grow memory.

    max_decisions: per-frame (time, score) entries kept for the timeline (3600 = 30 min at 2 fps); max_remarks:
    remarks and answers kept; max_pending_questions: queued questions (more are refused); max_context_frames and
    max_context_tokens: a model's sliding window (frames it compares against; KV-cache tokens before re-priming).
    """

    max_decisions: int = 3600
    max_remarks: int = 500
    max_pending_questions: int = 16
    max_context_frames: int = 64
    max_context_tokens: int = 4096


@dataclass(frozen=True)
class FrameDecision:
    """The decision on one frame: respond when score > 1 - threshold."""

    time_s: float
    score: float
    threshold: float
    respond: bool


@dataclass
class Remark:
    """Something the assistant said at `time_s` (video time of the frame it followed).

    kind "remark": spoken unprompted because the frame's score passed the bar; kind "answer": the reply to
    `question`, asked at `asked_at_s`. detail: what the model based it on (JSON-able, shown in the UI).
    """

    time_s: float
    score: float
    text: str
    kind: Literal["remark", "answer"] = "remark"
    question: str = ""
    asked_at_s: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The public JSON form (the replay endpoint's items): time_s, score, text, kind, plus question fields."""
        item: dict[str, Any] = {"time_s": round(self.time_s, 3), "score": round(self.score, 4), "text": self.text}
        item["kind"] = self.kind
        if self.kind == "answer":
            item["question"] = self.question
            item["asked_at_s"] = self.asked_at_s
        return item


@dataclass(frozen=True)
class AnswerStart:
    """Yielded just before the text deltas of an answer: which queued question (the id `ask` returned) they answer."""

    question_id: int
    question: str
    asked_at_s: float


OnlineEvent = FrameDecision | AnswerStart | str | Remark  # a str is a text delta of the remark/answer being written


@dataclass(order=True)
class _Question:
    time_s: float
    order: int
    text: str = field(compare=False)


class OnlineSession(ABC):
    """One viewer's stream through one model. Not shared between viewers; thread-safe for one viewer.

    `feed` / `feed_many` take frames with ascending video timestamps and yield, per frame, a `FrameDecision`;
    for a responding frame the remark follows as text deltas (str) and then a `Remark`. Questions queued with
    `ask` are answered right after the first frame at or after their timestamp (or by `answer_due` when the
    video is paused there), before that frame's own remark: an `AnswerStart`, text deltas, a `Remark`. `rewind`
    handles a seek. State is bounded by `SessionLimits`: old decisions and remarks fall off fixed-size deques.
    """

    def __init__(self, params: OnlineParams, limits: SessionLimits | None = None):
        self.params = params
        self.limits = limits or SessionLimits()
        self._threshold = params.threshold
        self.decisions: deque[FrameDecision] = deque(maxlen=self.limits.max_decisions)
        self.remarks: deque[Remark] = deque(maxlen=self.limits.max_remarks)
        self._questions: list[_Question] = []
        self._asked = 0
        self.position_s: float | None = None  # video time of the last frame fed
        self.frames_seen = 0
        # Seconds per frame of the fast path (its share of the batch's encoding + its scoring), latest last.
        self.fast_path_s: deque[float] = deque(maxlen=64)
        self._encode_s_per_frame = 0.0
        # Live playback: where the viewer's player is now. A remark on a frame already more than `max_lag_s`
        # behind it is late, and models write it the quick way (no LLM) so the commentary catches up.
        self.playhead: Callable[[], float] | None = None
        self.max_lag_s = 2.0
        self.lock = threading.RLock()

    # -- threshold

    @property
    def threshold(self) -> float:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._threshold = check_threshold(value)

    def is_late(self, time_s: float) -> bool:
        """Whether the player is already more than `max_lag_s` past `time_s` (never without a playhead)."""
        return self.playhead is not None and self.playhead() - time_s > self.max_lag_s

    # -- questions

    @property
    def pending_questions(self) -> list[tuple[int, float, str]]:
        """(id, video time, text) of the questions still waiting for the stream to reach them."""
        return [(q.order, q.time_s, q.text) for q in self._questions]

    def ask(self, question: str, time_s: float) -> int:
        """Queue a question at video time `time_s`; it is answered when the stream reaches that point. Returns the
        question's id (repeated in the `AnswerStart` that precedes its answer)."""
        text = (question or "").strip()
        if not text:
            raise ValueError("the question is empty")
        if len(text) > 1000:
            raise ValueError(f"the question is {len(text)} characters long; keep it under 1000")
        with self.lock:
            if len(self._questions) >= self.limits.max_pending_questions:
                raise ValueError(
                    f"{len(self._questions)} questions are already waiting for the video to reach them; "
                    "let it play on, or ask again later"
                )
            self._asked += 1
            bisect.insort(self._questions, _Question(max(0.0, float(time_s)), self._asked, text))
            return self._asked

    def answer_due(self, now_s: float) -> Iterator[AnswerStart | str | Remark]:
        """Answer the questions queued at or before `now_s` without a new frame (the video is paused there)."""
        with self.lock:
            if self.position_s is None:
                return
            yield from self._answer_until(max(now_s, self.position_s))

    def _answer_until(self, time_s: float) -> Iterator[AnswerStart | str | Remark]:
        while self._questions and self._questions[0].time_s <= time_s + 1e-6:
            question = self._questions.pop(0)
            yield AnswerStart(question.order, question.text, question.time_s)
            for item in self._answer(question.text, question.time_s, self.position_s):
                if isinstance(item, Remark):
                    self.remarks.append(item)
                yield item

    # -- frames

    def feed(self, pixels: np.ndarray, time_s: float) -> Iterator[OnlineEvent]:
        """One frame: pixels (H, W, 3) uint8 at video time `time_s`."""
        return self.feed_many(pixels[None], [time_s])

    def feed_many(self, pixels: np.ndarray, times_s: Sequence[float]) -> Iterator[OnlineEvent]:
        """Frames (T, H, W, 3) uint8 with ascending times: encoded as one batch, then decided one by one."""
        times = [float(t) for t in times_s]
        if len(pixels) != len(times):
            raise ValueError(f"{len(pixels)} frames but {len(times)} timestamps")
        if not times:
            return iter(())
        with self.lock:
            self._check_times(times)
            started = time.perf_counter()
            encoded = self._encode(pixels, np.asarray(times))
            self._encode_s_per_frame = (time.perf_counter() - started) / len(times)
        return self.feed_encoded(encoded, times)

    def feed_encoded(self, encoded: Sequence[Any], times_s: Sequence[float]) -> Iterator[OnlineEvent]:
        """Frames already passed through `_encode` (a replay may cache them): the sequential half of the loop."""
        with self.lock:
            if len(encoded) != len(times_s):
                raise ValueError(f"{len(encoded)} encoded frames but {len(times_s)} timestamps")
            self._check_times(list(times_s))
            for item, time_s in zip(encoded, times_s, strict=True):  # strict: one encoded item per frame
                started = time.perf_counter()
                score = float(self._score(item, float(time_s)))
                self.position_s = float(time_s)
                self.frames_seen += 1
                decision = FrameDecision(float(time_s), score, self._threshold, responds(score, self._threshold))
                self.decisions.append(decision)
                self.fast_path_s.append(self._encode_s_per_frame + time.perf_counter() - started)
                yield decision
                yield from self._answer_until(float(time_s))
                if decision.respond:
                    for event in self._remark(float(time_s), score):
                        if isinstance(event, Remark):
                            self.remarks.append(event)
                        yield event

    def _check_times(self, times: list[float]) -> None:
        previous = self.position_s
        for t in times:
            if previous is not None and t <= previous:
                raise ValueError(
                    f"frame times must increase: got {t:.3f} s after {previous:.3f} s (call rewind() to seek back)"
                )
            previous = t

    def rewind(self, time_s: float) -> None:
        """Seek: forget decisions and remarks at or after `time_s`, and the model's context (it would describe
        frames the viewer no longer sees). Questions still waiting stay queued. Also used for forward jumps."""
        with self.lock:
            while self.decisions and self.decisions[-1].time_s >= time_s:
                self.decisions.pop()
            while self.remarks and self.remarks[-1].time_s >= time_s:
                self.remarks.pop()
            self.position_s = None
            self._reset_context()

    def close(self) -> None:
        """Release what the session holds (model caches); the session must not be fed afterwards."""
        with self.lock:
            self._reset_context()
            self._questions.clear()

    # -- model hooks

    @abstractmethod
    def _encode(self, pixels: np.ndarray, times_s: np.ndarray) -> Sequence[Any]:
        """The vision side for a batch, without touching session state: one item per frame."""

    @abstractmethod
    def _score(self, encoded: Any, time_s: float) -> float:
        """Fold one encoded frame into the context and return its respond score in [0, 1]."""

    @abstractmethod
    def _remark(self, time_s: float, score: float) -> Iterator[str | Remark]:
        """Slow path for the frame just scored: yield text deltas, then exactly one `Remark`."""

    @abstractmethod
    def _answer(self, question: str, asked_at_s: float, time_s: float | None) -> Iterator[str | Remark]:
        """Answer a queued question from the context so far: yield text deltas, then one `Remark(kind="answer")`."""

    @abstractmethod
    def _reset_context(self) -> None:
        """Forget the model's context (sliding window, KV cache): the next frame starts a fresh stream."""


@runtime_checkable
class OnlineVideoLLM(Protocol):
    """A model that can run online: `start_session` gives each viewer their own bounded state."""

    name: str

    def start_session(
        self, params: OnlineParams | None = None, limits: SessionLimits | None = None
    ) -> OnlineSession: ...

    def replay(self, path: str, params: OnlineParams | None = None) -> list[Remark]:
        """A whole video file through a fresh session, its remarks in time order (`replay` below is the plain way;
        a model may cache what a file's frames cost it, as the embedded default does)."""
        ...


def replay(model: OnlineVideoLLM, path: str, params: OnlineParams | None = None, batch_size: int = 16) -> list[Remark]:
    """Run a whole video file through a fresh session at `params.fps` and return its remarks, in time order."""
    from models.online.frames import StreamReader  # PyAV only when a file is actually read

    params = params or OnlineParams()
    session = model.start_session(params)
    with StreamReader(path, fps=params.fps) as reader:
        for pixels, times in reader.batches(batch_size):
            for _ in session.feed_many(pixels, times):
                pass
    remarks = list(session.remarks)
    session.close()
    return remarks
