"""LangDC's preprocessing: which frames it reads, its 224 px video frames and its 336 px CLIP context frames.

The release samples 16 frames at `floor(arange(0, n, n / 16))` and feeds the same 16 to both towers. Video frames
are resized to 224x224 with OpenCV's `INTER_LINEAR` on uint8, which is fixed-point arithmetic, not exact bilinear:
11-bit weights per axis, and the vertical pass of OpenCV's vectorised path drops the low 4 bits of each row sum
before a rounding shift. We reproduce that integer recipe in numpy, so the pixels are bit-identical without
OpenCV. Context frames go through CLIP's image processor: the short side to 336 with PIL's bicubic filter, a
336x336 center crop, rescale and CLIP mean/std in float32, as transformers' slow processor does it.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

NUM_FRAMES = 16  # frames per video (both towers)
FRAMES_PER_CLIP = 4  # InternVideo2-f4 reads clips of 4 frames: 4 clips
VIDEO_SIZE = 224
VIDEO_MEAN = np.array([0.485, 0.456, 0.406])
VIDEO_STD = np.array([0.229, 0.224, 0.225])
CLIP_SIZE = 336
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_RESCALE = 0.00392156862745098
COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS
COEF_SCALE = 1 << COEF_BITS


def frame_positions(num_frames: int, wanted: int = NUM_FRAMES) -> list[int]:
    """The release's choice of `wanted` frames among `num_frames`: `floor(arange(0, n, n / wanted))`, thinned
    evenly when float steps give one too many; a short video gives every `stride`-th frame instead."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    positions = [int(p) for p in np.arange(0, num_frames, num_frames / wanted).astype(int)]
    if len(positions) > wanted:
        return [positions[i] for i in np.linspace(0, len(positions) - 1, num=wanted, dtype=int)]
    if len(positions) < wanted:
        count = min(wanted, num_frames)
        stride = max(1, (num_frames - 1) // max(1, count - 1))
        return list(range(0, stride * (count - 1) + 1, stride))
    return positions


def _linear_taps(source: int, target: int, clamp_low: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's per-output taps: source indices (i0, i1) and 11-bit weights (w0, w1), computed in float32."""
    scale = source / target
    position = np.array([np.float32((i + 0.5) * scale - 0.5) for i in range(target)], dtype=np.float32)
    start = np.floor(position).astype(np.int64)
    frac = (position - start.astype(np.float32)).astype(np.float32)
    if clamp_low:  # the horizontal pass pins the edges to one tap; the vertical one only clamps the row index
        low, high = start < 0, start >= source - 1
        frac[low | high] = 0.0
        start[low] = 0
        start[high] = source - 1
    w0 = np.rint((np.float32(1.0) - frac) * np.float32(COEF_SCALE)).astype(np.int64)
    w1 = np.rint(frac * np.float32(COEF_SCALE)).astype(np.int64)
    return np.clip(start, 0, source - 1), np.clip(start + 1, 0, source - 1), w0, w1


def resize_like_opencv(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, C) uint8 -> (height, width, C) uint8, bit-identical to `cv2.resize(frame, (width, height))`."""
    pixels = frame.astype(np.int64)
    x0, x1, a0, a1 = _linear_taps(frame.shape[1], width, clamp_low=True)
    rows = pixels[:, x0] * a0[None, :, None] + pixels[:, x1] * a1[None, :, None]  # (H, width, C), 2^11 scale
    y0, y1, b0, b1 = _linear_taps(frame.shape[0], height, clamp_low=False)
    top = ((rows[y0] >> 4) * b0[:, None, None]) >> 16  # OpenCV's SIMD path: (row >> 4) * w, high 16 bits
    bottom = ((rows[y1] >> 4) * b1[:, None, None]) >> 16
    return np.clip((top + bottom + 2) >> 2, 0, 255).astype(np.uint8)


def video_pixels(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB -> (T, 3, 224, 224) float32: resized, `(x / 255 - mean) / std` in float64."""
    resized = np.stack([resize_like_opencv(frame, VIDEO_SIZE, VIDEO_SIZE) for frame in frames])
    normalized = (resized / 255.0 - VIDEO_MEAN) / VIDEO_STD
    return torch.from_numpy(np.ascontiguousarray(normalized.transpose(0, 3, 1, 2))).float()


def _short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """transformers' `shortest_edge` rule: the short side to `short`, the long one scaled and floored."""
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


def context_pixels(frames: np.ndarray, size: int = CLIP_SIZE, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB -> (T, 3, size, size) float32 CLIP pixels (bicubic short side, center crop)."""
    out = []
    mean32 = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std32 = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    for frame in frames:
        height, width = _short_side_size(frame.shape[0], frame.shape[1], size)
        resized = np.asarray(Image.fromarray(frame).resize((width, height), resample=Image.BICUBIC))
        top, left = (height - size) // 2, (width - size) // 2
        crop = resized[top : top + size, left : left + size]
        scaled = torch.from_numpy((crop * CLIP_RESCALE).astype(np.float32)).permute(2, 0, 1)
        out.append((scaled - mean32) / std32)
    return torch.stack(out)
