"""Qwen2.5-VL behind the studio's `VideoLLM` protocol.

Frames are resized by Qwen's smart resize (sides multiples of 28, area within the processor's pixel range), cut into
14-pixel patches two frames deep, and run through the vision tower once; the merger's output is one grid of
(h/2, w/2) tokens per LLM frame (a 2-frame temporal patch). The prompt writes one `<|video_pad|>` per kept token
between `<|vision_start|>` and `<|vision_end|>`. Positions are Qwen's 3-D M-RoPE computed from each kept token's
own (t, y, x) and the real sampling rate (`second_per_grid` = temporal patch / fps), by the same rule as
transformers' `get_rope_index`, so a compressed video keeps where and when each token was.
"""

from __future__ import annotations

import numpy as np
import torch

from models.base import Frames
from models.hf.common import HFPayload, HFVideoLLM, chat_template_of, load_parts, stop_ids
from models.hf.preprocessing import load_video_settings, normalize, qwen_patchify, qwen_resized_frames

FALLBACK_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'video' %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def sampling_second_per_grid(timestamps_s, temporal_patch: int, source_fps: float | None) -> float:
    """Seconds covered by one LLM frame: the temporal patch over the real sampling rate of these frames."""
    times = np.asarray(timestamps_s, dtype=np.float64)
    if len(times) > 1 and times[-1] > times[0]:
        return float(temporal_patch * (times[-1] - times[0]) / (len(times) - 1))
    return float(temporal_patch / source_fps) if source_fps else float(temporal_patch)


def mrope_positions(
    ids: torch.Tensor,
    video_token_id: int,
    visual_positions: torch.Tensor,
    grid_hw: tuple[int, int],
    tokens_per_second: float,
    second_per_grid: float,
) -> tuple[torch.Tensor, int]:
    """(L,) ids -> (3, 1, L) positions and the decode delta, by transformers 5.23's `get_rope_index` rule.

    Text runs count on from the current position on all three axes; a video run gives each token
    start + (t * tokens_per_second * second_per_grid, y, x); text after a video continues at start + max(h, w).
    """
    is_video = (ids == video_token_id).tolist()
    pieces, current, index, consumed = [], 0, 0, 0
    while index < len(is_video):
        end = index
        while end < len(is_video) and is_video[end] == is_video[index]:
            end += 1
        count = end - index
        if is_video[index]:
            chunk = visual_positions[consumed : consumed + count]
            consumed += count
            temporal = (chunk[:, 0].double() * (tokens_per_second * second_per_grid)).long()
            pieces.append(torch.stack([temporal + current, chunk[:, 1] + current, chunk[:, 2] + current]))
            current += max(grid_hw)
        else:
            pieces.append(torch.arange(current, current + count).expand(3, -1))
            current += count
        index = end
    positions = torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0, dtype=torch.long)
    delta = int(positions.max()) + 1 - len(is_video) if len(is_video) else 0
    return positions.unsqueeze(1), delta


class QwenVideoLLM(HFVideoLLM):
    family = "qwen2_5_vl"
    video_marker = "<|video_pad|>"

    def _placeholder_id(self) -> int:
        return int(self.model.config.video_token_id)

    def _family_encode(self, frames: Frames) -> tuple[torch.Tensor, dict]:
        settings = self.video_settings
        resized = qwen_resized_frames(frames.pixels, settings)  # (T, 3, h, w) uint8
        pixel_values, grid_thw = qwen_patchify(
            normalize(resized, settings["image_mean"], settings["image_std"]), settings
        )
        merge = settings["merge_size"]
        features = self.model.model.get_video_features(
            pixel_values.to(self.device), grid_thw.to(self.device)
        ).pooler_output[0]  # (t * h/2 * w/2, D), merge blocks in raster order
        grid_t, grid_h, grid_w = (int(v) for v in grid_thw[0])
        grids = features.reshape(grid_t, grid_h // merge, grid_w // merge, -1)
        temporal = settings["temporal_patch_size"]
        num_frames = len(frames)
        groups = [[p for p in range(g * temporal, (g + 1) * temporal) if p < num_frames] for g in range(grid_t)]
        source_fps = frames.info.fps if frames.info is not None else None
        info = {
            "llm_frame_positions": groups,
            "frames_seen": resized,
            "second_per_grid": sampling_second_per_grid(frames.timestamps_s, temporal, source_fps),
            "pixel_values_videos": pixel_values,
            "video_grid_thw": grid_thw,
        }
        return grids, info

    def _family_video_text(self, payload: HFPayload) -> str:
        return "<|video_pad|>" * len(payload.visual)

    def _family_positions(self, ids: torch.Tensor, payload: HFPayload | None) -> tuple[torch.Tensor, int]:
        if payload is None:
            return torch.arange(ids.shape[0]).expand(3, 1, -1), 0
        return mrope_positions(
            ids,
            self._placeholder_id(),
            payload.visual.positions,
            payload.grid_hw,
            float(self.model.config.vision_config.tokens_per_second),
            payload.second_per_grid,
        )


def load(name: str, repo_id: str, *, device: str | None = None, dtype: str | None = None) -> QwenVideoLLM:
    folder, model, tokenizer = load_parts(repo_id, device=device, dtype=dtype)
    return QwenVideoLLM(
        name,
        model,
        tokenizer,
        folder,
        video_settings=load_video_settings(folder, "qwen2_5_vl"),
        chat_template=chat_template_of(folder, tokenizer, FALLBACK_TEMPLATE),
        stop_token_ids=stop_ids(tokenizer, model, ("<|im_end|>", "<|endoftext|>")),
    )
