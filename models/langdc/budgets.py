"""LangDC's own token rule as a compression plan: 4 clips, each worth its pool tokens plus its caption's length.

The pool branch gives every clip the same 208 tokens (4 context images x 36 + 4 frames x 16); the captioner gives
clip c `count_c` soft tokens, the length of its caption. So the `official` compressor of LangDC *is* dynamic: a
clip's budget is `208 + count_c`, its density the caption's share of the longest possible one (255 tokens), and
the plan carries each clip's decoded caption. Clip spans are in sampled-frame positions: clip c starts at the first
frame its 4 frames came from and runs to the next clip's start (frames the towers skipped belong to their clip).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.compression import CompressionPlan, PlannedClip, allocate
from models.langdc.captioner import MAX_CAPTION_TOKENS
from models.langdc.preprocessing import FRAMES_PER_CLIP


def clip_spans(read_positions: Sequence[int], num_frames: int) -> list[tuple[int, int]]:
    """[start, end) in sampled-frame positions for each clip of `FRAMES_PER_CLIP` read positions."""
    starts = [int(read_positions[i]) for i in range(0, len(read_positions), FRAMES_PER_CLIP)]
    ends = [*starts[1:], num_frames]
    return [(start, max(start + 1, end)) for start, end in zip(starts, ends)]


def official_plan(
    counts: Sequence[int],
    captions: Sequence[str],
    pool_per_clip: int,
    read_positions: Sequence[int],
    num_frames: int,
    timestamps_s: Sequence[float],
) -> CompressionPlan:
    """The plan the studio draws for one encoded video (budgets sum to the visual tokens the LLM reads)."""
    budgets = [pool_per_clip + int(count) for count in counts]
    total = sum(budgets)
    baseline = allocate(total, np.ones(len(budgets)), [0] * len(budgets))
    clips = [
        PlannedClip(
            start=start,
            end=end,
            density=float(min(1.0, int(count) / (MAX_CAPTION_TOKENS - 1))),
            budget=budget,
            baseline_budget=base,
            used_tokens=budget,
            caption=caption,
            caption_tokens=int(count),
        )
        for (start, end), count, caption, budget, base in zip(
            clip_spans(read_positions, num_frames), counts, captions, budgets, baseline
        )
    ]
    return CompressionPlan(
        clips=clips,
        global_budget=total,
        effective_budget=total,
        num_frames=num_frames,
        timestamps_s=[float(t) for t in timestamps_s],
        frame_weights=[1.0] * num_frames,
        compressor="official",
        budget_pct=100.0,
        official_tokens=total,
    )


def per_frame_counts(counts: Sequence[int], per_frame_pool: int, read_positions: Sequence[int], num_frames: int):
    """(pool tokens per sampled frame, caption tokens per sampled frame): each read frame gets its pool tokens,
    and a clip's caption tokens are split over its 4 frames (the first ones get the remainder)."""
    pool, caption = [0] * num_frames, [0] * num_frames
    for index, position in enumerate(read_positions):
        pool[position] += per_frame_pool
        share, extra = divmod(int(counts[index // FRAMES_PER_CLIP]), FRAMES_PER_CLIP)
        caption[position] += share + (1 if index % FRAMES_PER_CLIP < extra else 0)
    return pool, caption
