"""Visual-token compression shared by every model: the planner (clips and exact per-clip budgets), the realizers
(grids -> the planned tokens), SlowFast-LLaVA's pathways and the compressor registry (`official`, `uniform`,
`dynamic`, `langdc`, `sf-llava`). No gradio here."""

from models.compression.plan import (
    CompressionPlan,
    Describe,
    PlannedClip,
    PlannerSettings,
    allocate,
    describe_official,
    global_budget_for,
    plan_clips,
    plan_langdc,
    plan_uniform,
    split_by_weights,
)
from models.compression.realize import CompressedTokens, realize
from models.compression.registry import (
    COMPRESSORS,
    GRID_COMPRESSORS,
    PLANNER_COMPRESSORS,
    TRAINING_FREE_NOTE,
    CompressorSpec,
    check_compressor,
    compress,
)

__all__ = [
    "COMPRESSORS",
    "GRID_COMPRESSORS",
    "PLANNER_COMPRESSORS",
    "TRAINING_FREE_NOTE",
    "CompressedTokens",
    "CompressionPlan",
    "Describe",
    "CompressorSpec",
    "PlannedClip",
    "PlannerSettings",
    "allocate",
    "check_compressor",
    "compress",
    "describe_official",
    "global_budget_for",
    "plan_clips",
    "plan_langdc",
    "plan_uniform",
    "realize",
    "split_by_weights",
]
