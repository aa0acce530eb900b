"""Video frame preprocessing for the three HF families, in torch (their video processors need torchvision).

Each family's processor resizes frames with a PIL filter, rescales by 1/255 and normalises; Qwen2.5-VL then cuts
the frames into 14-pixel patches grouped by 2 frames in time and 2x2 in space. We resize with PIL's own separable
filters written as two small matrices (horizontal pass, round to uint8, vertical pass, round), which reproduces
the PIL image processors to within one grey level, and then do the rest exactly as the processors do.
`load_video_settings` reads the checkpoint's saved processor settings, falling back to each family's defaults.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Defaults of transformers 5.23's video processors, used when a checkpoint does not save its own.
DEFAULT_VIDEO_SETTINGS = {
    "qwen2_5_vl": {
        "size": {"shortest_edge": 128 * 28 * 28, "longest_edge": 768 * 28 * 28},
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD),
        "resample": "bicubic",
    },
    "llava_onevision": {
        "size": {"height": 384, "width": 384},
        "image_mean": [0.5] * 3,
        "image_std": [0.5] * 3,
        "resample": "bicubic",
    },
    "smolvlm": {
        "size": {"longest_edge": 512},
        "max_image_size": {"longest_edge": 512},
        "image_mean": [0.5] * 3,
        "image_std": [0.5] * 3,
        "resample": "lanczos",
    },
}
_PIL_RESAMPLE = {1: "lanczos", 2: "bilinear", 3: "bicubic"}  # PIL enum values as saved in processor configs


def load_video_settings(folder: str | Path | None, family: str) -> dict:
    """The family's video preprocessing settings, overridden by what the checkpoint folder saved."""
    settings = dict(DEFAULT_VIDEO_SETTINGS[family])
    if folder is None:
        return settings
    folder = Path(folder)
    saved: dict = {}
    # Only video settings count: Qwen's preprocessor_config.json holds the *image* pixel range, far larger.
    image_config = folder / "preprocessor_config.json"
    if family != "qwen2_5_vl" and image_config.is_file():
        values = json.loads(image_config.read_text())
        saved.update(
            {k: v for k, v in values.items() if k in ("max_image_size", "image_mean", "image_std", "video_sampling")}
        )
    video_config = folder / "video_preprocessor_config.json"
    if video_config.is_file():
        saved.update(json.loads(video_config.read_text()))
    processor_config = folder / "processor_config.json"
    if processor_config.is_file():
        saved.update(json.loads(processor_config.read_text()).get("video_processor") or {})
    if family == "smolvlm" and isinstance(saved.get("video_sampling"), dict):
        video_size = saved["video_sampling"].get("video_size")
        if video_size:
            saved["size"] = video_size  # SmolVLM's processor resizes videos to video_sampling.video_size
    if family == "qwen2_5_vl" and saved.get("min_pixels") and "size" not in saved:
        saved["size"] = {"shortest_edge": saved["min_pixels"], "longest_edge": saved["max_pixels"]}
    for key in (
        "size",
        "max_image_size",
        "patch_size",
        "temporal_patch_size",
        "merge_size",
        "image_mean",
        "image_std",
    ):
        if saved.get(key) is not None:
            settings[key] = saved[key]
    if isinstance(saved.get("resample"), int):
        settings["resample"] = _PIL_RESAMPLE.get(saved["resample"], settings["resample"])
    return settings


# ----------------------------------------------------------------------------------------------------------------
# PIL's resampling as matrices


def _kernel(name: str):
    if name == "bilinear":
        return 1.0, lambda x: np.clip(1.0 - np.abs(x), 0.0, None)
    if name == "bicubic":
        a = -0.5

        def cubic(x):
            x = np.abs(x)
            return np.where(
                x < 1,
                ((a + 2) * x - (a + 3)) * x * x + 1,
                np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0),
            )

        return 2.0, cubic
    if name == "lanczos":
        return 3.0, lambda x: np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)
    raise ValueError(f"unknown resampling filter {name!r}")


def resize_matrix(in_size: int, out_size: int, filter_name: str) -> torch.Tensor:
    """(out, in) weights of PIL's 1-D resampling: filter widened by the scale when shrinking, rows sum to 1."""
    support, kernel = _kernel(filter_name)
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = support * filter_scale
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    for out_index in range(out_size):
        center = (out_index + 0.5) * scale
        low = max(int(center - support + 0.5), 0)
        high = min(int(center + support + 0.5), in_size)
        taps = np.arange(low, high)
        values = kernel((taps - center + 0.5) / filter_scale)
        total = values.sum()
        weights[out_index, low:high] = values / total if total != 0 else values
    return torch.from_numpy(weights)


def pil_resize(frames: torch.Tensor, size: tuple[int, int], filter_name: str) -> torch.Tensor:
    """(T, 3, H, W) uint8 -> (T, 3, h, w) uint8 as PIL resizes: horizontal pass, round, vertical pass, round."""
    height, width = frames.shape[-2:]
    out_height, out_width = size
    result = frames.double()
    if out_width != width:
        result = (result @ resize_matrix(width, out_width, filter_name).T).round().clamp(0, 255)
    if out_height != height:
        result = (resize_matrix(height, out_height, filter_name) @ result).round().clamp(0, 255)
    return result.to(torch.uint8)


def to_channels_first(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    frames = torch.as_tensor(pixels)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames shaped (T, H, W, 3), got {tuple(frames.shape)}")
    return frames.permute(0, 3, 1, 2).contiguous()


def normalize(frames_uint8: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 -> float32 rescaled by 1/255 and normalised per channel (the processors' fused rescale+normalize)."""
    mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (frames_uint8.float() * (1 / 255) - mean) / std


# ----------------------------------------------------------------------------------------------------------------
# Families


def qwen_smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's rule: both sides multiples of `factor`, area within [min_pixels, max_pixels], aspect kept."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError("the video's aspect ratio is too extreme for Qwen2.5-VL (more than 200:1)")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen_resized_frames(pixels, settings: dict) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, h, w) uint8 resized by Qwen's smart resize."""
    frames = to_channels_first(pixels)
    factor = settings["patch_size"] * settings["merge_size"]
    size = settings["size"]
    target = qwen_smart_resize(*frames.shape[-2:], factor, size["shortest_edge"], size["longest_edge"])
    return pil_resize(frames, target, settings["resample"])


def qwen_patchify(frames: torch.Tensor, settings: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, 3, h, w) float -> pixel_values_videos (t*gh*gw, 3*tp*p*p) and video_grid_thw (1, 3).

    Frames are padded to a multiple of the temporal patch by repeating the last one, as the processor does; the
    patch order puts each 2x2 merge block's patches next to each other (the merger expects that).
    """
    patch, temporal, merge = settings["patch_size"], settings["temporal_patch_size"], settings["merge_size"]
    if pad := -frames.shape[0] % temporal:
        frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
    num_frames, channels, height, width = frames.shape
    grid_t, grid_h, grid_w = num_frames // temporal, height // patch, width // patch
    patches = frames.reshape(
        grid_t, temporal, channels, grid_h // merge, merge, patch, grid_w // merge, merge, patch
    )  # (t, tp, C, bh, m, p, bw, m, p)
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (t, bh, bw, m, m, C, tp, p, p)
    flat = patches.reshape(grid_t * grid_h * grid_w, channels * temporal * patch * patch)
    return flat, torch.tensor([[grid_t, grid_h, grid_w]])


def onevision_preprocess(pixels, settings: dict) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> pixel_values_videos (1, T, 3, S, S): every frame squashed to the tower's square."""
    size = settings["size"]
    target = (size["height"], size["width"]) if "height" in size else (size["shortest_edge"],) * 2
    resized = pil_resize(to_channels_first(pixels), target, settings["resample"])
    return normalize(resized, settings["image_mean"], settings["image_std"]).unsqueeze(0)


def smolvlm_resized_frames(pixels, settings: dict) -> torch.Tensor:
    """SmolVLM's two resizes: longest edge to the video size (even short side), then a square of max_image_size."""
    frames = to_channels_first(pixels)
    height, width = frames.shape[-2:]
    longest = min(4096, settings["size"]["longest_edge"])
    if width >= height:
        new_width, new_height = longest, int(longest / (width / height))
        new_height += new_height % 2
    else:
        new_height, new_width = longest, int(longest * (width / height))
        new_width += new_width % 2
    frames = pil_resize(frames, (max(new_height, 1), max(new_width, 1)), settings["resample"])
    side = settings["max_image_size"]["longest_edge"]
    return pil_resize(frames, (side, side), settings["resample"])


def smolvlm_preprocess(pixels, settings: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, H, W, 3) uint8 -> pixel_values (1, T, 3, S, S) and pixel_attention_mask (1, T, S, S)."""
    resized = smolvlm_resized_frames(pixels, settings)
    values = normalize(resized, settings["image_mean"], settings["image_std"]).unsqueeze(0)
    mask = torch.ones(values.shape[0], values.shape[1], *values.shape[-2:], dtype=torch.bool)
    return values, mask
