"""Realizers: per-frame token grids (T, h, w, C) + a `CompressionPlan` -> exactly the planned tokens, in time order.

The reduction is density-based merging (the density-based token merging of FastVID and the DPC-kNN centres of
HoliTom), chosen because it gives an exact count (unlike pooling, which needs awkward grids plus trimming) and
keeps the content of every token (unlike top-k selection, which drops it). Two steps:

1. Temporal: each clip's budget is split over its frames by the plan's per-frame novelty (changed positions since
   the previous frame), with caps of N tokens per frame and one token per frame when the clip's budget allows. A
   frame that repeats its predecessor gets few tokens or none; this is how static content is shared over time.
2. Spatial: in a frame that keeps n of its N tokens, the n tokens with the highest DPC-kNN score `rho * delta`
   (local density times distance to a denser token; ties to the earlier token, so no random noise) become centres;
   every other token of the frame, and every token of a frame in the same clip that kept none (it joins the nearest
   frame in time that kept some), is assigned to its most cosine-similar centre; a centre with members becomes
   `0.6 * centre + 0.4 * mean(members)` (beta = 0.6 as FastVID and HoliTom). A frame that keeps all N is unchanged.

Kept tokens carry their centre's (t, y, x) so M-RoPE models can keep the original positions. Cost: one (N, N)
distance matrix per frame plus one (members, n) similarity per frame: milliseconds next to a vision tower.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.compression.plan import CompressionPlan, allocate

MERGE_CENTRE_WEIGHT = 0.6
DPC_NEIGHBOURS = 4


@dataclass
class CompressedTokens:
    """What a compressor feeds the LLM.

    tokens (M, C) in temporal order; frame_of_token (M,) the sampled frame each comes from; positions (M, 3) its
    (t, y, x); per_frame_counts (T,) and per_clip_counts (K,) as lists of ints (for the charts); slow (M,) bool,
    True for the tokens of SlowFast-LLaVA's slow pathway (None for compressors without one).
    """

    tokens: torch.Tensor
    frame_of_token: torch.Tensor
    positions: torch.Tensor
    per_frame_counts: list[int]
    per_clip_counts: list[int]
    slow: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])


def frame_budgets(plan: CompressionPlan, tokens_per_frame: int) -> list[int]:
    """Split each clip's budget over its frames by the plan's per-frame novelty (length-mixed like the clips)."""
    counts = [0] * plan.num_frames
    weights = np.asarray(plan.frame_weights or [1.0] * plan.num_frames, dtype=float)
    for clip in plan.clips:
        length = clip.num_frames
        novelty = weights[clip.start : clip.end]
        share = novelty / novelty.sum() if novelty.sum() > 0 else np.full(length, 1.0 / length)
        mixed = plan.alpha / length + (1 - plan.alpha) * share
        floors = [1 if clip.budget >= length else 0] * length
        caps = [tokens_per_frame] * length
        counts[clip.start : clip.end] = allocate(min(clip.budget, length * tokens_per_frame), mixed, floors, caps)
    return counts


def dpc_scores(frames: torch.Tensor, neighbours: int = DPC_NEIGHBOURS) -> torch.Tensor:
    """(T, N, C) -> (T, N) DPC-kNN score rho * delta within each frame (higher: a better centre)."""
    x = frames.float()
    num_tokens, channels = x.shape[1], x.shape[2]
    if num_tokens == 1:
        return torch.ones(x.shape[:2], device=x.device)
    distance = torch.cdist(x, x) / channels**0.5  # (T, N, N)
    k = min(neighbours, num_tokens - 1)
    nearest = distance.topk(k + 1, dim=-1, largest=False).values[..., 1:]  # skip the token itself
    rho = torch.exp(-(nearest**2).mean(-1))  # (T, N)
    index = torch.arange(num_tokens, device=x.device)
    # "denser" with a deterministic tie-break: an equal rho counts as denser when its token comes first
    denser = (rho[:, None, :] > rho[:, :, None]) | (
        (rho[:, None, :] == rho[:, :, None]) & (index[None, None, :] < index[None, :, None])
    )
    far = distance.amax(dim=(1, 2), keepdim=True).expand_as(distance)
    delta = torch.where(denser, distance, far).amin(-1)  # the densest token gets the frame's largest distance
    return rho * delta


def _merge(centres: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Assign members (P, C) to their most similar centre (n, C) and merge: 0.6 * centre + 0.4 * mean(members)."""
    if members.shape[0] == 0:
        return centres
    similarity = (
        torch.nn.functional.normalize(members.float(), dim=-1)
        @ torch.nn.functional.normalize(centres.float(), dim=-1).T
    )
    owner = similarity.argmax(-1)
    sums = torch.zeros(centres.shape, dtype=torch.float32, device=centres.device).index_add_(0, owner, members.float())
    counts = torch.bincount(owner, minlength=centres.shape[0]).to(sums.dtype)[:, None]
    merged = MERGE_CENTRE_WEIGHT * centres.float() + (1 - MERGE_CENTRE_WEIGHT) * sums / counts.clamp(min=1)
    return torch.where(counts > 0, merged, centres.float()).to(centres.dtype)


def realize(grids: torch.Tensor, plan: CompressionPlan) -> CompressedTokens:
    """(T, h, w, C) grids -> the plan's tokens: exactly `plan.effective_budget` of them, frame-major, raster order."""
    num_frames, height, width, channels = grids.shape
    if num_frames != plan.num_frames:
        raise ValueError(f"the plan is for {plan.num_frames} frames but {num_frames} grids were given")
    num_tokens = height * width
    frames = grids.reshape(num_frames, num_tokens, channels)
    counts = frame_budgets(plan, num_tokens)
    partial = [t for t in range(num_frames) if 0 < counts[t] < num_tokens]
    scores = dpc_scores(frames[partial]) if partial else None
    score_of = {t: i for i, t in enumerate(partial)}

    keep: dict[int, torch.Tensor] = {}  # frame -> centre indices (raster order)
    members: dict[int, list[torch.Tensor]] = {}
    for t in range(num_frames):
        if counts[t] == num_tokens:
            keep[t] = torch.arange(num_tokens, device=grids.device)
        elif counts[t] > 0:
            chosen = scores[score_of[t]].topk(counts[t]).indices.sort().values
            keep[t] = chosen
            mask = torch.ones(num_tokens, dtype=torch.bool, device=grids.device)
            mask[chosen] = False
            members[t] = [frames[t][mask]]
    for clip in plan.clips:  # frames that kept nothing join the nearest frame in time that kept some
        holders = [t for t in range(clip.start, clip.end) if counts[t] > 0]
        for t in range(clip.start, clip.end):
            if counts[t] == 0 and holders:
                target = min(holders, key=lambda h: (abs(h - t), h))
                members.setdefault(target, []).append(frames[t])

    pieces, frame_ids, positions = [], [], []
    for t in sorted(keep):
        centres = frames[t][keep[t]]
        if t in members:
            centres = _merge(centres, torch.cat(members[t]))
        pieces.append(centres)
        frame_ids.append(torch.full((len(keep[t]),), t, dtype=torch.long, device=grids.device))
        index = keep[t]
        positions.append(torch.stack([torch.full_like(index, t), index // width, index % width], dim=1))
    tokens = torch.cat(pieces) if pieces else grids.new_zeros((0, channels))
    per_clip = [sum(counts[clip.start : clip.end]) for clip in plan.clips]
    for clip, used in zip(plan.clips, per_clip):
        clip.used_tokens = used
    return CompressedTokens(
        tokens=tokens,
        frame_of_token=torch.cat(frame_ids) if frame_ids else torch.zeros(0, dtype=torch.long),
        positions=torch.cat(positions) if positions else torch.zeros((0, 3), dtype=torch.long),
        per_frame_counts=counts,
        per_clip_counts=per_clip,
    )
