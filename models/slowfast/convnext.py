"""ConvNeXt vision tower with timm's module layout, so the official checkpoint's keys load unchanged.

Only the feature trunk is built (stem + 4 stages); the official model never runs timm's classifier `head`, and the
checkpoint's `head.*` tensors are ignored by the loader. The tower's depths and widths come from the config, which
`from_pretrained` fills from the checkpoint's tensors (ConvNeXt-XXLarge for the released models: depths 3/4/30/3,
dims 384/768/1536/3072). Output: the last stage as a (B, C, H/32, W/32) map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a channels-first (B, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtMlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()  # exact (erf) GELU, as timm's default
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv -> LayerNorm -> MLP, scaled per channel by `weight` (timm's layer scale) + shortcut."""

    def __init__(self, dim: int, mlp_ratio: int, eps: float):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mlp = ConvNeXtMlp(dim, mlp_ratio * dim)
        self.weight = nn.Parameter(torch.ones(dim))  # the official loader renamed timm's `gamma` to `weight`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv_dw(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        x = self.mlp(self.norm(x)) * self.weight
        return shortcut + x.permute(0, 3, 1, 2)


class ConvNeXtStage(nn.Module):
    def __init__(self, in_dim: int, dim: int, depth: int, mlp_ratio: int, eps: float, downsample: bool):
        super().__init__()
        if downsample:
            norm, conv = LayerNorm2d(in_dim, eps=eps), nn.Conv2d(in_dim, dim, kernel_size=2, stride=2)
            self.downsample = nn.Sequential(norm, conv)
        else:
            self.downsample = nn.Identity()  # stage 0: no parameters, hence no keys
        self.blocks = nn.Sequential(*[ConvNeXtBlock(dim, mlp_ratio, eps) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class ConvNeXt(nn.Module):
    """The feature trunk: stem (4x4 patchify conv + LayerNorm2d), then 4 stages; each stage after the first halves
    the resolution. (B, 3, H, W) -> (B, dims[-1], H/32, W/32)."""

    def __init__(self, depths: list[int], dims: list[int], mlp_ratio: int = 4, eps: float = 1e-5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0], eps=eps))
        in_dims = [dims[0], *dims[:-1]]
        self.stages = nn.Sequential(
            *[
                ConvNeXtStage(in_dims[i], dims[i], depths[i], mlp_ratio, eps, downsample=i > 0)
                for i in range(len(depths))
            ]
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(pixel_values))


class ConvNextVisionTower(nn.Module):
    """The official wrapper: its trunk sits under `.vision_tower`, hence the doubled name in the checkpoint keys."""

    def __init__(self, depths: list[int], dims: list[int], mlp_ratio: int = 4, eps: float = 1e-5):
        super().__init__()
        self.vision_tower = ConvNeXt(depths, dims, mlp_ratio, eps)

    def forward(self, pixel_values: torch.Tensor, frames_per_chunk: int | None = None) -> torch.Tensor:
        """(T, 3, H, W) -> (T, C, H/32, W/32). Frames are independent, so chunking only bounds peak memory."""
        if frames_per_chunk is None or pixel_values.shape[0] <= frames_per_chunk:
            return self.vision_tower(pixel_values)
        return torch.cat([self.vision_tower(chunk) for chunk in pixel_values.split(frames_per_chunk)])
