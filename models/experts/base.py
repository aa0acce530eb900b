"""What a language expert is: it reads a video's sampled frames and the clips the planner cut, and writes one short
description per clip; the tokens it wrote are the clip's semantic density (LangDC's rule: more to say, more tokens).

Descriptions are greedy and capped at `CAPTION_MAX_TOKENS` (LangDC caps its captioner at 128 or 256; a short cap
keeps the expert's cost small next to encoding). `describe_clips` is the helper the models use: it runs an expert,
times it and returns what the planner wants (caption, tokens) per clip range.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from models.base import Frames

CAPTION_MAX_TOKENS = 32
# LangDC's captioner prompt, shortened to the one-sentence descriptions a small expert can write
CAPTION_PROMPT = "Describe this video clip in one short sentence: the main subjects, their actions, the background."


@dataclass(frozen=True)
class ClipCaption:
    """One clip's description and the number of tokens the expert wrote for it (its semantic density)."""

    text: str
    tokens: int


class LanguageExpert(Protocol):
    """Describes clips: `clips` are [start, end) positions into `frames` (the sampled frames)."""

    name: str

    def describe(self, frames: Frames, clips: Sequence[tuple[int, int]]) -> list[ClipCaption]: ...


def clip_frames(frames: Frames, start: int, end: int) -> Frames:
    """The sampled frames [start, end) of one clip, as a `Frames` of their own (the clip's time span as duration)."""
    times = np.asarray(frames.timestamps_s[start:end], dtype=float)
    step = float(times[1] - times[0]) if len(times) > 1 else 0.5
    info = replace(frames.info, duration_s=float(times[-1] - times[0] + step), num_frames=end - start)
    return Frames(frames.pixels[start:end], frames.indices[start:end], times - times[0], info)


@dataclass
class CaptionTimer:
    """Seconds the expert spent, summed over calls (the encode reports it with its timings)."""

    seconds: float = 0.0


def describe_clips(
    expert: LanguageExpert, frames: Frames, to_frames: Callable[[int, int], tuple[int, int]] | None = None
) -> tuple[Callable[[Sequence[tuple[int, int]]], list[tuple[str, int]]], CaptionTimer]:
    """A `describe` callable for the planner (clip ranges -> (caption, tokens)) and the timer it adds to.

    `to_frames` maps a planner range to sampled-frame positions (HF models plan on LLM frames)."""
    timer = CaptionTimer()

    def describe(ranges: Sequence[tuple[int, int]]) -> list[tuple[str, int]]:
        started = time.perf_counter()
        mapped = [to_frames(s, e) if to_frames else (s, e) for s, e in ranges]
        captions = expert.describe(frames, mapped)
        timer.seconds += time.perf_counter() - started
        return [(caption.text, int(caption.tokens)) for caption in captions]

    return describe, timer
