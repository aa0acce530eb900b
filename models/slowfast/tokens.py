"""Slow and fast visual tokens, made from the projected per-frame feature maps.

Both come from the same maps F: the projector output of every frame, 2x2 average-pooled (81 tokens per frame at
576 px). The slow tokens are all of F; the hybrid layers cross-attend to them. The fast tokens, which the LLM reads
in its sequence in place of `<image>`, are F subsampled in time (stride s), average-pooled in time (stride t, with
the released floor / adaptive branches and `min_fast_frames`) and optionally in space (stride p). The rules are
those of the SHI-Labs release, including their quirks: the floor branch drops trailing frames that do not fill a
window, and the sampling indices are `int(i * T / n)`, not a linspace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class FastTokenPlan:
    """How the fast frames were made. windows[k] lists the positions (into the input frames) fast frame k averages."""

    sampled_indices: list[int]
    branch: str  # "none" (t == 1), "floor" (avg_pool3d, trailing frames dropped) or "adaptive"
    windows: list[list[int]]
    tokens_per_fast_frame: int

    @property
    def num_fast_frames(self) -> int:
        return len(self.windows)

    @property
    def num_fast_tokens(self) -> int:
        return self.num_fast_frames * self.tokens_per_fast_frame


def pool_frame_maps(frame_maps: torch.Tensor, pooling_stride: int) -> torch.Tensor:
    """(T, C, H, W) -> (T, C, H/stride, W/stride): the 2x2 pool of videos. A single image (T == 1) is not pooled."""
    if frame_maps.shape[0] > 1 and pooling_stride > 1:
        return F.avg_pool2d(frame_maps, kernel_size=pooling_stride, stride=pooling_stride)
    return frame_maps


def maps_to_tokens(frame_maps: torch.Tensor) -> torch.Tensor:
    """(T, C, h, w) -> (T*h*w, C), frame-major then row-major, the order both token kinds use."""
    return frame_maps.permute(0, 2, 3, 1).flatten(0, 2)


def temporal_sampling_indices(num_frames: int, sampling_stride: int, min_fast_frames: int) -> list[int]:
    """Frames kept before temporal pooling: every s-th frame (at least `min_fast_frames`), or all of them."""
    if sampling_stride <= 1 or num_frames < min_fast_frames:
        return list(range(num_frames))
    num_kept = max(num_frames // sampling_stride, min_fast_frames)
    step = num_frames / num_kept
    return [min(int(i * step), num_frames - 1) for i in range(num_kept)]


def temporal_pool_windows(num_frames: int, temporal_stride: int, min_fast_frames: int) -> tuple[str, list[list[int]]]:
    """Which input positions each fast frame averages, and the branch that decides it."""
    if temporal_stride <= 1:
        return "none", [[i] for i in range(num_frames)]
    if num_frames // temporal_stride >= min_fast_frames:
        # avg_pool3d with kernel = stride = t: floor mode, so a last incomplete window is dropped
        count = num_frames // temporal_stride
        return "floor", [list(range(k * temporal_stride, (k + 1) * temporal_stride)) for k in range(count)]
    # adaptive_avg_pool3d's bins: [floor(k*T/n), ceil((k+1)*T/n)), which overlap when n does not divide T
    count = min(num_frames, min_fast_frames)
    bins = [(k * num_frames // count, math.ceil((k + 1) * num_frames / count)) for k in range(count)]
    return "adaptive", [list(range(start, end)) for start, end in bins]


def plan_fast_tokens(
    num_frames: int,
    height: int,
    width: int,
    sampling_stride: int,
    temporal_stride: int,
    spatial_stride: int,
    min_fast_frames: int,
) -> FastTokenPlan:
    """The plan `make_fast_tokens` follows, without computing any token (its count is the 100% budget)."""
    sampled = temporal_sampling_indices(num_frames, sampling_stride, min_fast_frames)
    branch, windows = temporal_pool_windows(len(sampled), temporal_stride, min_fast_frames)
    stride = max(1, spatial_stride)
    return FastTokenPlan(
        sampled_indices=sampled,
        branch=branch,
        windows=[[sampled[i] for i in window] for window in windows],
        tokens_per_fast_frame=(height // stride) * (width // stride),
    )


def make_fast_tokens(
    frame_maps: torch.Tensor,
    sampling_stride: int,
    temporal_stride: int,
    spatial_stride: int,
    min_fast_frames: int,
) -> tuple[torch.Tensor, FastTokenPlan]:
    """Fast tokens from the pooled frame maps F (T, C, h, w) -> ((T''*h''*w'', C), plan)."""
    num_frames, channels, height, width = frame_maps.shape
    sampled = temporal_sampling_indices(num_frames, sampling_stride, min_fast_frames)
    maps = frame_maps[sampled]  # (T', C, h, w)
    branch, windows = temporal_pool_windows(len(sampled), temporal_stride, min_fast_frames)

    volume = maps.permute(1, 0, 2, 3)  # (C, T', h, w): avg_pool3d pools (T', h, w)
    if branch == "floor":
        volume = F.avg_pool3d(volume, kernel_size=(temporal_stride, 1, 1), stride=(temporal_stride, 1, 1))
    elif branch == "adaptive":
        volume = F.adaptive_avg_pool3d(volume, (len(windows), height, width))
    maps = volume.permute(1, 0, 2, 3)  # (T'', C, h, w)

    if spatial_stride > 1:
        maps = F.avg_pool2d(maps, kernel_size=spatial_stride, stride=spatial_stride)

    plan = FastTokenPlan(
        sampled_indices=sampled,
        branch=branch,
        windows=[[sampled[i] for i in window] for window in windows],
        tokens_per_fast_frame=maps.shape[2] * maps.shape[3],
    )
    return maps_to_tokens(maps), plan


def fast_tokens_per_frame(plan: FastTokenPlan, num_frames: int) -> list[int]:
    """Share of the fast tokens each input frame contributes to (integers summing to the fast-token count).

    A fast frame of k tokens averaging w frames gives each k/w; frames that were skipped or dropped get 0. The
    fractions are rounded by largest remainder so the per-frame counts add up exactly.
    """
    shares = [0.0] * num_frames
    for window in plan.windows:
        for position in window:
            shares[position] += plan.tokens_per_fast_frame / len(window)
    counts = [math.floor(share) for share in shares]
    leftover = plan.num_fast_tokens - sum(counts)
    by_remainder = sorted(range(num_frames), key=lambda i: shares[i] - counts[i], reverse=True)
    for i in by_remainder[:leftover]:
        counts[i] += 1
    return counts
