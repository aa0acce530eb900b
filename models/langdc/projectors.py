"""LangDC's projectors and the grid pooling that sets how many tokens each frame gives.

Five projectors, each a `linear` or `mlpNx_gelu` stack (Linear, then GELU + Linear N-1 times, exact-erf GELU):
`mm_projector` and `image_mm_projector` take video and context features into the answering LLM (the pool branch),
`cap_mm_projector` and `cap_image_mm_projector` take them into the captioner, and `llm_projector` takes the
captioner's soft caption tokens into the answering LLM. `pool_grid` is the release's square adaptive average pool.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """`linear` or `mlpNx_gelu` (keys `0`, `2`, ... as released)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    match = re.fullmatch(r"mlp(\d+)x_gelu", kind)
    if not match:
        raise ValueError(f"unsupported projector type {kind!r} (expected 'linear' or 'mlpNx_gelu')")
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(int(match.group(1)) - 1):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


def pool_grid(tokens: torch.Tensor, side: int) -> torch.Tensor:
    """(N, L, D) tokens of a square grid (L = h*h) -> (N, side*side, D), adaptive average pooled, row-major."""
    count, length, dim = tokens.shape
    height = math.isqrt(length)
    assert height * height == length, f"{length} tokens are not a square grid"
    grid = tokens.transpose(1, 2).reshape(count, dim, height, height)
    return F.adaptive_avg_pool2d(grid, (side, side)).flatten(2).transpose(1, 2)
