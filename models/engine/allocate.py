"""Compression on a remote engine is about which frames are sent: the shared planner, in frames instead of tokens.

The studio samples a pool of frames as the settings ask; `official` sends them all (the server's model then spends
its own tokens on each). Any planner compressor (`uniform`, `dynamic`, and whatever `PLANNERS` gains) plans clips
over cheap per-frame features (a 4x4 grid of small colour patches) with a global budget of `budget_pct` % of the
pool's frames and one "token" per frame, so each clip's budget is how many of its frames go; the frames sent from
a clip are spread evenly across it. The plan is what the Compression view draws, in frames until the engine
reports tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from models.base import Frames
from models.compression import (
    CompressionPlan,
    PlannerSettings,
    describe_official,
    global_budget_for,
    plan_clips,
    plan_uniform,
)

Planner = Callable[..., CompressionPlan]
# compressor name -> planner over (T, h, w, C) features; `official` is handled apart (every pooled frame is sent).
PLANNERS: dict[str, Planner] = {"uniform": plan_uniform, "dynamic": plan_clips}
ENGINE_COMPRESSORS = ("official", *PLANNERS)
GRID, PATCH = 4, 4  # features: a GRID x GRID grid of PATCH x PATCH colour patches per frame


def frame_features(pixels: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, GRID, GRID, PATCH*PATCH*3) centred colour patches: enough to see cuts and motion."""
    frames = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255.0  # (T, 3, H, W)
    small = torch.nn.functional.interpolate(frames, size=(GRID * PATCH, GRID * PATCH), mode="area")
    small = small - small.mean(dim=(0, 2, 3), keepdim=True)  # centred on the video's mean colour: cosines mean change
    patches = small.unfold(2, PATCH, PATCH).unfold(3, PATCH, PATCH)  # (T, 3, GRID, GRID, PATCH, PATCH)
    return patches.permute(0, 2, 3, 1, 4, 5).flatten(3)  # (T, GRID, GRID, 3*PATCH*PATCH)


def plan_frames(frames: Frames, compressor: str, budget_pct: float) -> CompressionPlan:
    """Clips over the pooled frames and how many frames of each are sent (the clips' budgets, in frames)."""
    count = len(frames)
    if count < 1:
        raise ValueError("no frames were sampled")
    features = frame_features(frames.pixels)
    settings = PlannerSettings(tokens_per_frame=1, min_tokens_per_frame=1)
    if compressor == "official":
        plan = plan_clips(features, frames.timestamps_s, count, settings)
        return describe_official(plan, [1] * count)
    if compressor not in PLANNERS:
        raise ValueError(f"an engine supports the compressors {', '.join(ENGINE_COMPRESSORS)}, not {compressor!r}")
    budget = min(count, global_budget_for(count, budget_pct))
    plan = PLANNERS[compressor](features, frames.timestamps_s, budget, settings)
    plan.compressor, plan.budget_pct, plan.official_tokens = compressor, float(budget_pct), count
    return plan


def chosen_positions(plan: CompressionPlan) -> list[int]:
    """Pool positions sent, in time order: each clip's budget spread evenly (centres of equal parts) over it."""
    positions: list[int] = []
    for clip in plan.clips:
        take = min(clip.budget, clip.num_frames)
        centres = clip.start + (np.arange(take) + 0.5) * clip.num_frames / max(1, take)
        picked = sorted({int(p) for p in np.floor(centres)})
        clip.used_tokens = len(picked)
        positions += picked
    return positions
