"""LLaVA-OneVision behind the studio's `VideoLLM` protocol.

Every frame is squashed to the tower's square (384 px for the released checkpoints), run through SigLIP and the
projector, and pooled 2x bilinearly to a (14, 14) grid: those grids are the per-frame tokens. The official rule
feeds all of them in frame-major, row-major order and then one learned `image_newline` for the whole video; the
prompt writes one `<video>` per token. Positions are plain 1-D.
"""

from __future__ import annotations

import torch

from models.base import Frames
from models.hf.common import HFPayload, HFVideoLLM, chat_template_of, load_parts, stop_ids
from models.hf.compressors import VisualTokens
from models.hf.preprocessing import load_video_settings, onevision_preprocess

FALLBACK_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'video' %}<video>\n{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class OneVisionVideoLLM(HFVideoLLM):
    family = "llava_onevision"
    video_marker = "<video>"

    def _placeholder_id(self) -> int:
        return int(self.model.config.video_token_id)

    def _family_encode(self, frames: Frames) -> tuple[torch.Tensor, dict]:
        pixel_values = onevision_preprocess(frames.pixels, self.video_settings)  # (1, T, 3, S, S)
        config = self.model.config
        pooled = self.model.model.get_video_features(
            pixel_values.to(self.device, self.model.dtype),
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
        ).pooler_output[0]  # (T * n + 1, D): the last row is image_newline
        num_frames = pixel_values.shape[1]
        side = int(round(((pooled.shape[0] - 1) / num_frames) ** 0.5))
        grids = pooled[:-1].reshape(num_frames, side, side, -1)
        seen = ((pixel_values[0] * 0.5 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        info = {
            "llm_frame_positions": [[p] for p in range(num_frames)],
            "frames_seen": seen,
            "pixel_values_videos": pixel_values,
        }
        return grids, info

    def finish(self, visual: VisualTokens) -> VisualTokens:
        """Append the one `image_newline` the official video path puts after all frames."""
        newline = self.model.model.image_newline.detach().to(visual.tokens.device, visual.tokens.dtype)
        return VisualTokens(
            torch.cat([visual.tokens, newline[None]]),
            torch.cat([visual.positions, torch.zeros(1, 3, dtype=torch.long)]),
            torch.cat([visual.llm_frame, torch.tensor([-1])]),
            torch.cat([visual.slow, torch.tensor([False])]),
        )

    def _family_video_text(self, payload: HFPayload) -> str:
        return "<video>" * len(payload.visual)


def load(name: str, repo_id: str, *, device: str | None = None, dtype: str | None = None) -> OneVisionVideoLLM:
    folder, model, tokenizer = load_parts(repo_id, device=device, dtype=dtype)
    return OneVisionVideoLLM(
        name,
        model,
        tokenizer,
        folder,
        video_settings=load_video_settings(folder, "llava_onevision"),
        chat_template=chat_template_of(folder, tokenizer, FALLBACK_TEMPLATE),
        stop_token_ids=stop_ids(tokenizer, model, ("<|im_end|>", "<|endoftext|>")),
    )
