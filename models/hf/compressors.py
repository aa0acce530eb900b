"""Glue between the HF adapters and `models/compression/`: per-LLM-frame grids in, the `VisualTokens` to splice out.

The adapters' grids are one (h, w) grid per LLM frame (for Qwen2.5-VL a 2-frame temporal patch), so the planner
and realizers see LLM frames; the clips they return are mapped back to sampled frames for the charts. `official`
is each family's own rule (every grid token in transformers' order); the others are training-free and say so.
OneVision's single `image_newline` stays after the video whatever the compressor (it is not a frame's token): the
adapter's `finish` appends it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from models.base import ClipBudget
from models.compression import TRAINING_FREE_NOTE, CompressedTokens, Describe, PlannerSettings, compress
from models.compression.plan import LANGDC_CLIP_FRAMES


@dataclass
class VisualTokens:
    """The visual tokens the LLM reads, in prompt order.

    tokens (M, D); positions (M, 3) = (t, y, x) of each token on the LLM grid (t = LLM frame); llm_frame (M,) the
    LLM frame a token comes from (-1 for a token tied to no frame, like OneVision's newline); slow (M,) bool, True
    for SlowFast-LLaVA's slow-pathway tokens.
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    llm_frame: torch.Tensor
    slow: torch.Tensor

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def count_per_llm_frame(self, num_llm_frames: int, slow: bool | None = None) -> list[int]:
        mask = self.llm_frame >= 0
        if slow is not None:
            mask &= self.slow == slow
        counts = torch.bincount(self.llm_frame[mask], minlength=num_llm_frames)
        return [int(c) for c in counts]


def grid_tokens(grids: torch.Tensor) -> VisualTokens:
    """Every token of (G, h, w, D) grids in frame-major, row-major order, each at its (t, y, x)."""
    t, h, w, _ = grids.shape
    tt, yy, xx = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    positions = torch.stack([tt, yy, xx], dim=-1).reshape(-1, 3)
    return VisualTokens(
        grids.reshape(t * h * w, -1), positions, positions[:, 0].clone(), torch.zeros(t * h * w, dtype=torch.bool)
    )


def compress_grids(
    grids: torch.Tensor,
    official: VisualTokens,
    info: dict,
    compressor: str,
    budget_pct: float,
    frames,
    finish: Callable[[VisualTokens], VisualTokens],
    describe: Describe | None = None,
) -> tuple[VisualTokens, list[ClipBudget], str, int]:
    """Run `compressor` on the per-LLM-frame grids; returns the tokens (after `finish`), the clips on sampled
    frames, the chart's note and the effective budget. `describe` (for `langdc`) takes ranges of LLM frames."""
    groups = info["llm_frame_positions"]
    llm_times = [float(frames.timestamps_s[positions[0]]) for positions in groups]
    grid_token_count = grids.shape[0] * grids.shape[1] * grids.shape[2]

    def official_rule(_grids: torch.Tensor) -> CompressedTokens:
        keep = official.llm_frame >= 0
        counts = torch.bincount(official.llm_frame[keep], minlength=grids.shape[0]).tolist()
        return CompressedTokens(official.tokens[keep], official.llm_frame[keep], official.positions[keep], counts, [])

    cpu_grids = grids.detach().float().cpu()
    # LangDC's clips are 4 sampled frames; Qwen2.5-VL's LLM frames hold 2 each, so its clips are 2 LLM frames long
    settings = None
    if compressor == "langdc":
        settings = PlannerSettings(max_clip_frames=max(1, LANGDC_CLIP_FRAMES // max(1, len(groups[0]))))
    tokens, plan = compress(
        compressor, cpu_grids, llm_times, budget_pct, grid_token_count, official_rule, settings, describe
    )
    visual = finish(
        VisualTokens(
            tokens.tokens.to(grids.device, grids.dtype),
            tokens.positions.long(),
            tokens.frame_of_token.long(),
            tokens.slow.bool() if tokens.slow is not None else torch.zeros(tokens.num_tokens, dtype=torch.bool),
        )
    )
    clips = plan.to_clip_budgets(llm_times, duration_s=frames.info.duration_s if frames.info else None)
    for clip in clips:  # LLM frames -> sampled-frame positions
        clip.frame_positions = sorted({p for g in clip.frame_positions for p in groups[g]})
    note = ""
    if compressor != "official":
        what = f"{compressor} at {plan.budget_pct:g}% of its {plan.official_tokens} tokens"
        note = TRAINING_FREE_NOTE.format(what=what)
    if plan.effective_budget < plan.global_budget and compressor == "sf-llava":
        note += (
            f" (its slow and fast pathways make only {plan.effective_budget} of the {plan.global_budget} tokens "
            "asked from these frames: that is the effective budget)"
        )
    elif plan.effective_budget < plan.global_budget:
        note += f" (the frames hold only {plan.effective_budget} tokens: that is the effective budget)"
    if len(visual) > tokens.num_tokens:
        note = (note + "; " if note else "") + "plus OneVision's one newline token after the video"
    return visual, clips, note.strip(), int(plan.effective_budget)
