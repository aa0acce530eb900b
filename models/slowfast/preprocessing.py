"""Frame preprocessing as the official path does it, in torch (no PIL / torchvision in the hot path).

The official model builds a `CLIPImageProcessor` with `size=576` (the short side), `crop_size=576`, bicubic
resampling and the CLIP mean/std: each frame is resized so its short side is 576 (aspect kept, the long side
truncated to an int), center-cropped to 576x576 (a 16:9 video loses its sides), rescaled by 1/255 and normalised.
PIL resizes a uint8 image in two passes (width, then height), rounding to uint8 after each; doing the same with
torch's antialiased bicubic (which uses PIL's kernel) reproduces it to within 1-2 grey levels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_short_side_and_crop(pixels: np.ndarray | torch.Tensor, size: int = 576, chunk: int = 16) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB -> (T, 3, size, size) uint8: short side to `size` (bicubic), then center crop."""
    frames = torch.as_tensor(pixels)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames shaped (T, H, W, 3), got {tuple(frames.shape)}")
    height, width = frames.shape[1:3]
    if height <= width:
        new_height, new_width = size, int(size * width / height)
    else:
        new_height, new_width = int(size * height / width), size
    top, left = (new_height - size) // 2, (new_width - size) // 2

    cropped = []
    for part in frames.split(chunk):  # chunks bound the float copy of long, high-resolution videos
        part = part.permute(0, 3, 1, 2).float()  # (t, 3, H, W)
        for pass_size in ((height, new_width), (new_height, new_width)):  # PIL's order, rounding in between
            if tuple(part.shape[2:]) != pass_size:
                part = F.interpolate(part, size=pass_size, mode="bicubic", antialias=True, align_corners=False)
                part = part.round().clamp(0, 255)
        cropped.append(part[:, :, top : top + size, left : left + size].to(torch.uint8))
    return torch.cat(cropped)


def normalize(frames_uint8: torch.Tensor) -> torch.Tensor:
    """(T, 3, S, S) uint8 -> float32 rescaled to [0, 1] and CLIP-normalised."""
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (frames_uint8.float() / 255.0 - mean) / std
