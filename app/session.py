"""Per-browser-session state of the studio: the conversation, the video in use, the last answer's views and the open
A/B round. One `Session` lives in a `gr.State` per browser tab (Gradio deep-copies the initial value for each new
session, so sessions never share turns or votes). It holds plain data only — strings, numbers, small lists, the
numpy arrays an `Answer` carries and one thumbnail strip — so it copies cheaply and never references a model.
The chat is stored here as `entries` (turns and notes), and the Chatbot's messages are rendered from it: the
display is never read back as the source of truth, so a client cannot rewrite history by sending a doctored chat.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.base import Attention, TokenStats
from models.registry import DEFAULT_MODEL
from models.units import format_duration, format_fps

# A turn's life: "pending" while frames are sampled and encoded, "streaming" while text arrives, then "done",
# "stopped" (the person pressed Stop: the partial answer is kept and can be rated) or "error".
ANSWERED = ("done", "stopped")


@dataclass
class VideoRef:
    """A video the session uses. `path` is always a server-side path (Gradio's upload cache or assets/)."""

    path: str
    name: str
    sha256: str
    duration_s: float
    width: int
    height: int
    fps: float
    container_note: str = ""  # set when the container claims more than the frames it holds (models.video.claim_note)
    title: str = ""  # an example clip's title
    example: bool = False  # one of the studio's own example clips (shared with every record, no consent needed)
    questions: list[str] = field(default_factory=list)  # suggested questions (example clips)

    def describe(self) -> str:
        return f"{format_duration(self.duration_s)} · {self.width}×{self.height} · {format_fps(self.fps)}"


@dataclass
class Turn:
    """One question and its answer, with everything a rating of it must record."""

    question: str
    model: str
    generation_params: dict[str, Any]
    video: VideoRef | None = None
    encode_params: dict[str, Any] | None = None
    history: list[dict[str, str]] = field(default_factory=list)  # what the model saw before the question
    answer: str = ""
    status: str = "pending"
    error: str = ""
    frame_indices: list[int] = field(default_factory=list)
    frame_timestamps_s: list[float] = field(default_factory=list)
    compression: dict[str, Any] | None = None  # the plan the frames went through (`app.running.compression_dict`)
    timings_s: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    new_tokens: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def answered(self) -> bool:
        return self.status in ANSWERED and bool(self.answer.strip())


@dataclass
class Note:
    """A line the studio adds to the chat (video switched, a file could not be used). Never sent to the model."""

    title: str
    text: str = ""


@dataclass
class View:
    """What the compression and attention views draw for the latest answer (or the freshly loaded video)."""

    thumbnails: np.ndarray  # (T, h, w, 3) uint8
    timestamps_s: list[float]
    stats: TokenStats
    attention: Attention | None = None
    question: str = ""
    turn_id: str = ""


@dataclass
class Side:
    """One answer of an A/B round, with the setup that produced it."""

    setup: int  # 1 or 2: which of the person's setups this side ran
    model: str
    encode_params: dict[str, Any] | None
    generation_params: dict[str, Any]
    answer: str = ""
    frame_indices: list[int] = field(default_factory=list)
    frame_timestamps_s: list[float] = field(default_factory=list)
    compression: dict[str, Any] | None = None  # the plan this side's frames went through (see compression_dict)
    done: bool = False

    def describe(self) -> str:
        gen = self.generation_params
        sampling = "greedy" if not gen.get("temperature") else f"temperature {gen['temperature']:g}"
        parts = [self.model, sampling, f"top-p {gen.get('top_p', 1.0):g}"]
        if self.encode_params:
            enc = self.encode_params
            parts.append(f"{enc.get('compressor', 'official')} compressor at {enc.get('budget_pct', 100):g}% budget")
        return " · ".join(parts)


@dataclass
class ABRound:
    question: str
    video: VideoRef | None
    sides: list[Side]  # [A, B], in display order
    voted: str = ""  # the choice once judged; a round takes one vote
    mode: str = "setups"  # "setups" or "compression" (same model, greedy, two compressions)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def ready(self) -> bool:
        return all(side.done for side in self.sides)


@dataclass
class Session:
    model: str = DEFAULT_MODEL
    video: VideoRef | None = None
    entries: list[Turn | Note] = field(default_factory=list)
    view: View | None = None
    ab: ABRound | None = None
    kept_videos: dict[str, str] = field(default_factory=dict)  # sha256 -> path inside the data dir
    share_video: bool = False  # the person agreed that their uploaded videos may go into the dataset
    last_export_dir: str = ""
    regenerations: int = 0  # bumps the seed so "Regenerate" with sampling gives a new answer

    @property
    def turns(self) -> list[Turn]:
        return [entry for entry in self.entries if isinstance(entry, Turn)]

    def last_turn(self) -> Turn | None:
        turns = self.turns
        return turns[-1] if turns else None

    def turn_number(self, turn: Turn) -> int:
        """1-based position among the turns, as the chat and the rating panel number answers."""
        return self.turns.index(turn) + 1

    def turn_by_number(self, number: int) -> Turn | None:
        turns = self.turns
        return turns[number - 1] if 1 <= number <= len(turns) else None

    def history_for(self, video: VideoRef | None) -> list[dict[str, str]]:
        """The conversation the model sees before a new question: the answered turns since the video last changed.

        Switching videos starts a fresh conversation for the model (the turns above stay on screen): a small model
        given questions about another clip answers from the wrong timeline.
        """
        sha = video.sha256 if video else None
        segment: list[Turn] = []
        for turn in reversed(self.turns):
            if (turn.video.sha256 if turn.video else None) != sha:
                break
            segment.append(turn)
        history: list[dict[str, str]] = []
        for turn in reversed(segment):
            if turn.answered:
                history += [{"role": "user", "content": turn.question}, {"role": "assistant", "content": turn.answer}]
        return history

    def remove_from(self, turn: Turn) -> None:
        """Drop `turn` and every entry after it."""
        position = next(i for i, entry in enumerate(self.entries) if entry is turn)
        del self.entries[position:]
        if self.view is not None and self.view.turn_id == turn.id:
            self.view.attention = None
            self.view.question = ""
            self.view.turn_id = ""
