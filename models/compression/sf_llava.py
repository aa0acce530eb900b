"""SlowFast-LLaVA's training-free slow and fast pathways on a model's per-frame token grids (the `sf-llava` key).

As in the paper's released config (slow 10 of 50 frames with a 1-D max pool of adjacent token pairs, fast all 50
frames average-pooled to 4x4 from 24x24): the slow pathway takes `slow_frames` evenly spaced frames (default a
fifth) and max-pools each frame's row-major tokens to `slow_keep` of them (default a half: pairs of neighbours);
the fast pathway average-pools every frame to a grid `fast_ratio` of its side (default 1/6). Under a budget the
fast grid shrinks first (keeping its shape as far as it can) and the slow frames take the rest, so the total is
exactly the global budget. Tokens are emitted frame by frame (a slow frame's slow tokens, then its fast ones), so
models that write per-frame text (SmolVLM2) keep their layout; each token carries the (t, y, x) of its window's
centre for M-RoPE. Per-clip budgets describe the tokens each clip received.

This is the pooling of the SlowFast-LLaVA paper, applied to any model's grids; the SHI-Labs Slow-Fast MLLM, a model
with its own slow and fast tokens, is `models/slowfast/`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.compression.plan import CompressionPlan, PlannerSettings, allocate, describe_official, plan_uniform
from models.compression.realize import CompressedTokens


@dataclass(frozen=True)
class SFLlavaSettings:
    slow_frames: int | None = None  # None: a fifth of the frames (10 of 50 in the paper)
    slow_keep: float = 0.5  # share of a slow frame's tokens kept by 1-D max pooling (pairs of neighbours)
    fast_ratio: float = 1 / 6  # fast grid side as a share of the frame grid's side (24 -> 4 in the paper)


def slow_frame_indices(num_frames: int, count: int) -> list[int]:
    """The paper's rule: int(linspace(0, T, S + 1)) without the last element."""
    count = max(0, min(count, num_frames))
    return sorted({int(v) for v in np.linspace(0, num_frames, count + 1)[:-1]}) if count else []


def _fast_tokens(grid: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, w, C) -> (fh*fw, C) adaptive average pool and each cell's centre (y, x) on the frame grid."""
    height, width, _ = grid.shape
    pooled = F.adaptive_avg_pool2d(grid.permute(2, 0, 1)[None], size)[0]  # (C, fh, fw)
    ys = ((torch.arange(size[0]) + 0.5) * height / size[0]).long().clamp(max=height - 1)
    xs = ((torch.arange(size[1]) + 0.5) * width / size[1]).long().clamp(max=width - 1)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return pooled.flatten(1).T, torch.stack([yy.flatten(), xx.flatten()], dim=1)


def _slow_tokens(grid: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, w, C) -> (keep, C) 1-D max pool over the row-major tokens (exact count), each window's centre (y, x)."""
    height, width, _ = grid.shape
    flat = grid.reshape(height * width, -1)
    pooled = F.adaptive_max_pool1d(flat.T[None], keep)[0].T
    starts = (torch.arange(keep) * height * width) // keep
    ends = -((-(torch.arange(keep) + 1) * height * width) // keep)
    centres = (starts + ends - 1) // 2
    return pooled, torch.stack([centres // width, centres % width], dim=1)


def _fast_grid(height: int, width: int, per_frame: int, ratio: float) -> tuple[int, int]:
    """The largest grid within `per_frame` tokens, starting from the paper's ratio, shrinking the longer side."""
    fh, fw = max(1, round(height * ratio)), max(1, round(width * ratio))
    while fh * fw > per_frame and (fh > 1 or fw > 1):
        if fh >= fw and fh > 1:
            fh -= 1
        else:
            fw -= 1
    return fh, fw


def sf_llava_tokens(
    grids: torch.Tensor, global_budget: int | None, settings: SFLlavaSettings | None = None
) -> CompressedTokens:
    """(T, h, w, C) grids -> the slow and fast tokens (exactly `global_budget` when given), `slow` marking the
    slow pathway's."""
    settings = settings or SFLlavaSettings()
    num_frames, height, width, _ = grids.shape
    per_grid = height * width
    slow_count = settings.slow_frames if settings.slow_frames is not None else max(1, math.ceil(num_frames / 5))
    slow_count = min(slow_count, num_frames)
    slow_keep = max(1, round(per_grid * settings.slow_keep))
    fh, fw = _fast_grid(height, width, per_grid, settings.fast_ratio)
    natural = slow_count * slow_keep + num_frames * fh * fw
    budget = natural if global_budget is None else int(global_budget)
    fast_frames = list(range(num_frames))
    if budget < num_frames:  # not even one fast token per frame: fast pathway on evenly spaced frames only
        fast_frames = slow_frame_indices(num_frames, budget)
        fh = fw = 1
        slow_count = 0
    else:
        fast_share = budget * (num_frames * fh * fw) / natural
        fh, fw = _fast_grid(height, width, max(1, int(fast_share // num_frames)), settings.fast_ratio)
    # the slow pathway takes the rest; it can hold at most every frame at full resolution
    remaining = min(budget - len(fast_frames) * fh * fw, num_frames * per_grid)
    slow_count = min(max(slow_count, math.ceil(remaining / per_grid)), num_frames, remaining)
    slow = slow_frame_indices(num_frames, slow_count)
    slow_counts = allocate(remaining, np.ones(len(slow)), [0] * len(slow), [per_grid] * len(slow)) if slow else []

    tokens, positions, frame_of, is_slow = [], [], [], []
    slow_of = dict(zip(slow, slow_counts))
    for t in range(num_frames):
        pieces = []
        if slow_of.get(t):
            pieces.append((*_slow_tokens(grids[t], slow_of[t]), True))
        if t in fast_frames:
            pieces.append((*_fast_tokens(grids[t], (fh, fw)), False))
        for values, where, flag in pieces:
            tokens.append(values)
            positions.append(torch.cat([torch.full((len(values), 1), t), where], dim=1))
            frame_of.append(torch.full((len(values),), t))
            is_slow.append(torch.full((len(values),), flag))
    return CompressedTokens(
        tokens=torch.cat(tokens),
        frame_of_token=torch.cat(frame_of).long(),
        positions=torch.cat(positions).long(),
        per_frame_counts=[int(c) for c in torch.bincount(torch.cat(frame_of).long(), minlength=num_frames)],
        per_clip_counts=[],
        slow=torch.cat(is_slow),
    )


def compress_sf_llava(
    grids: torch.Tensor,
    timestamps_s: Sequence[float] | None,
    global_budget: int,
    settings: PlannerSettings | None = None,
    pathways: SFLlavaSettings | None = None,
) -> tuple[CompressedTokens, CompressionPlan]:
    """(tokens with their `slow` mask, plan): clips of the content-blind plan, budgets = tokens received."""
    tokens = sf_llava_tokens(grids, global_budget, pathways)
    plan = plan_uniform(grids, timestamps_s, max(1, tokens.num_tokens), settings)
    plan = describe_official(plan, tokens.per_frame_counts)
    plan.compressor = "sf-llava"
    tokens.per_clip_counts = [clip.budget for clip in plan.clips]
    return tokens, plan
