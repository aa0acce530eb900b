"""Thumbnails for the UI: small copies of the frames as a model saw them, made one way for every model.

Every model's `VisualContext.thumbnails` is `thumbnails(frames)`: (T, 3, H, W) uint8 frames, `THUMBNAIL_HEIGHT`
pixels high with the aspect kept, as a (T, h, w, 3) uint8 array. The resampling is the caller's choice, so each
model keeps the filter its own preprocessing uses: antialiased bilinear by default (the embedded default), `area`
for the Slow-Fast model's square crops, or a function (the HF families pass their PIL-exact bilinear).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

THUMBNAIL_HEIGHT = 96
Resize = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]  # (T, 3, H, W) uint8, (h, w) -> (T, 3, h, w) uint8


def interpolate(frames_uint8: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """torch's resampling of uint8 frames, rounded back to uint8; bilinear is antialiased (PIL's triangle filter)."""
    frames = frames_uint8.float()
    if mode == "area":
        small = F.interpolate(frames, size=size, mode="area")
    else:
        small = F.interpolate(frames, size=size, mode=mode, antialias=True, align_corners=False)
    return small.round().clamp(0, 255).to(torch.uint8)


def thumbnails(
    frames_uint8: torch.Tensor, resize: str | Resize = "bilinear", height: int = THUMBNAIL_HEIGHT
) -> np.ndarray:
    """(T, 3, H, W) uint8 -> (T, height, height * W / H, 3) uint8. `resize`: a torch mode ("bilinear", "area")
    or a function (frames, (h, w)) -> frames."""
    frame_height, frame_width = frames_uint8.shape[-2:]
    size = (height, max(1, round(height * frame_width / frame_height)))
    small = interpolate(frames_uint8, size, resize) if isinstance(resize, str) else resize(frames_uint8, size)
    return small.permute(0, 2, 3, 1).numpy()
