"""The compressor registry: a literal dict of the ways a model may turn its visual tokens into the LLM's input.

`official` is the checkpoint's own rule (a callable the model passes in; it ignores the budget), `uniform` the
content-blind fixed-rate baseline, `dynamic` per-clip budgets by visual change (FastVID-style), `langdc` per-clip
budgets by the length of a language expert's description of each clip (LangDC's semantic density) and `sf-llava`
SlowFast-LLaVA's slow and fast pathways. `compress` runs one of them on token grids and returns the tokens with the
plan the compression view draws. Language-space models (the embedded default) use the planners directly and write text
instead of merging tokens. Which compressors a model supports is one of the two tuples here, which both the
model registry's specs and the models' own checks read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from models.compression.plan import (
    CompressionPlan,
    Describe,
    PlannerSettings,
    describe_official,
    global_budget_for,
    plan_clips,
    plan_langdc,
    plan_uniform,
)
from models.compression.realize import CompressedTokens, realize
from models.compression.sf_llava import compress_sf_llava


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
        "Visual change (FastVID-style): clips cut where the frames change, per-clip budgets by how much changed, "
        "tokens merged within each frame. Training-free."
    ),
    "langdc": CompressorSpec(
        "LangDC: clips cut where the frames change, a language expert describes each one, per-clip budgets by the "
        "length of its description (semantic density), tokens merged within each frame. Training-free."
    ),
    "sf-llava": CompressorSpec(
        "SlowFast-LLaVA: a slow pathway (a fifth of the frames, adjacent tokens max-pooled in pairs) plus a fast "
        "pathway (every frame average-pooled to a coarse grid), fitted to the budget. Training-free."
    ),
}

# What a model supports, the default first: the planner's compressors (the model's own rule and the two plans)
# for every model; SlowFast-LLaVA's pathways too where the LLM reads a sequence of per-frame token grids.
PLANNER_COMPRESSORS = ("official", "uniform", "dynamic", "langdc")
GRID_COMPRESSORS = (*PLANNER_COMPRESSORS, "sf-llava")

# The line under the chart for any compressor but `official`; `what` says what the model read instead.
TRAINING_FREE_NOTE = (
    "training-free: the checkpoint was trained with its official tokens, not with {what}; answers may degrade in "
    "ways the official rule would not show"
)

OfficialRule = Callable[[torch.Tensor], CompressedTokens]


def check_compressor(name: str, supported: Sequence[str] | None = None) -> None:
    """Raise a readable ValueError for an unknown compressor or one the model does not support."""
    if name not in COMPRESSORS:
        raise ValueError(f"unknown compressor {name!r}; known compressors: {', '.join(COMPRESSORS)}")
    if supported is not None and name not in supported:
        raise ValueError(f"this model supports the compressors {', '.join(supported)}, not {name!r}")


def compress(
    name: str,
    grids: torch.Tensor,
    timestamps_s: Sequence[float] | None,
    budget_pct: float,
    official_count: int,
    official: OfficialRule | None = None,
    settings: PlannerSettings | None = None,
    describe: Describe | None = None,
) -> tuple[CompressedTokens, CompressionPlan]:
    """Compress (T, h, w, C) grids with compressor `name` at `budget_pct` % of `official_count` tokens.

    The budget is capped at the T*h*w tokens the grids hold; the plan then reports the smaller effective budget.
    `langdc` needs `describe` (clip ranges of the grids' frames -> (caption, caption tokens), a language expert).
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
        tokens, plan = compress_sf_llava(grids, timestamps_s, budget, settings)
        # its pathways hold fewer tokens than a high budget asks (the slow frames at full size at most): the plan
        # reports the budget asked and the tokens made, as the planner's compressors do
        plan.global_budget, plan.effective_budget = budget, tokens.num_tokens
        plan.budget_pct, plan.official_tokens = float(budget_pct), int(official_count)
        return tokens, plan
    if name == "langdc":
        if describe is None:
            raise ValueError("the langdc compressor needs a language expert to describe the clips")
        plan = plan_langdc(grids, timestamps_s, budget, describe, settings)
    else:
        plan = (plan_clips if name == "dynamic" else plan_uniform)(grids, timestamps_s, budget, settings)
    plan.compressor, plan.budget_pct, plan.official_tokens = name, float(budget_pct), int(official_count)
    return realize(grids, plan), plan
