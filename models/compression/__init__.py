"""Visual-token compression shared by every model: the planner (clips and exact per-clip budgets), the realizers
(grids -> the planned tokens) and the compressor registry (`official`, `uniform`, `dynamic`). No gradio here."""

from models.compression.plan import (
    CompressionPlan,
    PlannedClip,
    PlannerSettings,
    allocate,
    global_budget_for,
    plan_clips,
    plan_uniform,
    split_by_weights,
)
from models.compression.realize import CompressedTokens, realize
from models.compression.registry import COMPRESSORS, CompressorSpec, check_compressor, compress

__all__ = [
    "COMPRESSORS",
    "CompressedTokens",
    "CompressionPlan",
    "CompressorSpec",
    "PlannedClip",
    "PlannerSettings",
    "allocate",
    "check_compressor",
    "compress",
    "global_budget_for",
    "plan_clips",
    "plan_uniform",
    "realize",
    "split_by_weights",
]
