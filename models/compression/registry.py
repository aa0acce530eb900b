"""The compressor registry: a literal dict of the ways a model may turn its visual tokens into the LLM's input.

`official` is the checkpoint's own rule (a callable the model passes in; it ignores the budget), `uniform` the
content-blind fixed-rate baseline and `dynamic` the LangDC-style per-clip budgets. `compress` runs one of them on
token grids and returns the tokens with the plan the compression view draws. The HF-models work adds `sf-llava`.
Language-space models (the embedded default) use the planners directly and write text instead of merging tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from models.compression.plan import (
    CompressionPlan,
    PlannerSettings,
    allocate,
    global_budget_for,
    plan_clips,
    plan_uniform,
)
from models.compression.realize import CompressedTokens, realize


@dataclass(frozen=True)
class CompressorSpec:
    description: str
    uses_budget: bool = True  # False: the budget slider does not apply


COMPRESSORS: dict[str, CompressorSpec] = {
    "official": CompressorSpec(
        "The checkpoint's own rule at its own token count, as it was trained (the default; ignores the budget).",
        uses_budget=False,
    ),
    "uniform": CompressorSpec(
        "Fixed rate: equal-length clips, the same tokens per frame, tokens merged within each frame (the fair "
        "baseline at any budget)."
    ),
    "dynamic": CompressorSpec(
        "LangDC-style: clips cut at content changes, per-clip budgets by semantic density, tokens merged within "
        "each frame. Training-free."
    ),
    "sf-llava": CompressorSpec(
        "SlowFast-LLaVA: a slow pathway (a fifth of the frames, adjacent tokens max-pooled in pairs) plus a fast "
        "pathway (every frame average-pooled to a coarse grid), fitted to the budget. Training-free."
    ),
}

OfficialRule = Callable[[torch.Tensor], CompressedTokens]


def check_compressor(name: str, supported: Sequence[str] | None = None) -> None:
    """Raise a readable ValueError for an unknown compressor or one the model does not support."""
    if name not in COMPRESSORS:
        raise ValueError(f"unknown compressor {name!r}; known compressors: {', '.join(COMPRESSORS)}")
    if supported is not None and name not in supported:
        raise ValueError(f"this model supports the compressors {', '.join(supported)}, not {name!r}")


def describe_official(plan: CompressionPlan, per_frame_counts: Sequence[int]) -> CompressionPlan:
    """Recast a content plan as a description of the official rule: each clip's budget (and used tokens) is the
    official tokens that come from its frames; the baseline is the equal split of the official count."""
    total = int(sum(per_frame_counts))
    for clip in plan.clips:
        clip.budget = clip.used_tokens = int(sum(per_frame_counts[clip.start : clip.end]))
        clip.cap = None
    baseline = allocate(total, np.ones(len(plan.clips)), [0] * len(plan.clips))
    for clip, share in zip(plan.clips, baseline):
        clip.baseline_budget = share
    plan.global_budget = plan.effective_budget = total
    plan.compressor, plan.budget_pct, plan.official_tokens = "official", 100.0, total
    return plan


def compress(
    name: str,
    grids: torch.Tensor,
    timestamps_s: Sequence[float] | None,
    budget_pct: float,
    official_count: int,
    official: OfficialRule | None = None,
    settings: PlannerSettings | None = None,
) -> tuple[CompressedTokens, CompressionPlan]:
    """Compress (T, h, w, C) grids with compressor `name` at `budget_pct` % of `official_count` tokens.

    The budget is capped at the T*h*w tokens the grids hold; the plan then reports the smaller effective budget.
    """
    check_compressor(name)
    num_frames, height, width, _ = grids.shape
    settings = replace(settings or PlannerSettings(), tokens_per_frame=height * width)
    if name == "official":
        if official is None:
            raise ValueError("the official compressor needs the model's own rule")
        tokens = official(grids)
        plan = plan_clips(grids, timestamps_s, max(1, tokens.num_tokens), settings)
        plan = describe_official(plan, tokens.per_frame_counts)
        tokens.per_clip_counts = [clip.budget for clip in plan.clips]
        return tokens, plan
    budget = global_budget_for(official_count, budget_pct)
    if name == "sf-llava":
        from models.compression.slowfast import compress_slowfast

        tokens, plan = compress_slowfast(grids, timestamps_s, budget, settings)
        plan.budget_pct, plan.official_tokens = float(budget_pct), int(official_count)
        return tokens, plan
    planner = plan_clips if name == "dynamic" else plan_uniform
    plan = planner(grids, timestamps_s, budget, settings)
    plan.compressor, plan.budget_pct, plan.official_tokens = name, float(budget_pct), int(official_count)
    return realize(grids, plan), plan
