"""Glue between the HF adapters and `models/compression/`: per-LLM-frame grids in, the tokens to splice out.

The adapters' grids are one (h, w) grid per LLM frame (for Qwen2.5-VL a 2-frame temporal patch), so the planner
and realizers see LLM frames; the clips they return are mapped back to sampled frames for the charts. `official`
is each family's own rule (every grid token in transformers' order); the others are training-free and say so.
OneVision's single `image_newline` stays after the video whatever the compressor (it is not a frame's token).
"""

from __future__ import annotations

import torch

from models.base import ClipBudget
from models.hf.common import TRAINING_FREE_NOTE, VisualTokens


def compress_grids(
    adapter, grids: torch.Tensor, official: VisualTokens, info: dict, compressor: str, budget_pct: float, frames
) -> tuple[VisualTokens, list[ClipBudget], str, int]:
    from models.compression import CompressedTokens, compress

    groups = info["llm_frame_positions"]
    llm_times = [float(frames.timestamps_s[positions[0]]) for positions in groups]
    grid_tokens = grids.shape[0] * grids.shape[1] * grids.shape[2]

    def official_rule(_grids: torch.Tensor) -> CompressedTokens:
        keep = official.llm_frame >= 0
        counts = torch.bincount(official.llm_frame[keep], minlength=grids.shape[0]).tolist()
        return CompressedTokens(official.tokens[keep], official.llm_frame[keep], official.positions[keep], counts, [])

    cpu_grids = grids.detach().float().cpu()
    tokens, plan = compress(compressor, cpu_grids, llm_times, budget_pct, grid_tokens, official=official_rule)
    slow = getattr(tokens, "slow", None)
    visual = VisualTokens(
        tokens.tokens.to(grids.device, grids.dtype),
        tokens.positions.long(),
        tokens.frame_of_token.long(),
        slow.bool() if slow is not None else torch.zeros(tokens.num_tokens, dtype=torch.bool),
    )
    finish = getattr(adapter, "finish", None)
    if finish is not None:
        visual = finish(visual)
    clips = plan.to_clip_budgets(llm_times, duration_s=frames.info.duration_s if frames.info else None)
    for clip in clips:  # LLM frames -> sampled-frame positions
        clip.frame_positions = sorted({p for g in clip.frame_positions for p in groups[g]})
    note = "" if compressor == "official" else TRAINING_FREE_NOTE
    if plan.effective_budget < plan.global_budget:
        note += f" (the frames hold only {plan.effective_budget} tokens: that is the effective budget)"
    if len(visual) > tokens.num_tokens:
        note = (note + "; " if note else "") + "plus OneVision's one newline token after the video"
    return visual, clips, note.strip(), int(plan.effective_budget)
