"""SmolVLM2 behind the studio's `VideoLLM` protocol.

Frames are resized (longest edge to the video size, then squashed to the tower's square) and encoded one image each
by SigLIP; the connector's pixel shuffle leaves an (s, s) grid per frame (8x8 = 64 tokens for the 256M/500M
checkpoints). The prompt is what SmolVLM's processor writes for a video: an intro with the frame count in words and
the duration, then per frame "Frame from mm:ss:" and the frame's `<image>` tokens between
`<fake_token_around_image><global-img>` and `<fake_token_around_image>`, in the processor's own chat layout
(it ignores the checkpoint's template for videos). A compressed frame keeps its timestamp line with fewer (or no)
image tokens. Positions are plain 1-D.
"""

from __future__ import annotations

from datetime import timedelta

import torch

from models.base import Frames
from models.hf.common import HFPayload, HFVideoLLM, load_parts, stop_ids
from models.hf.preprocessing import load_video_settings, smolvlm_preprocess, smolvlm_resized_frames

# The processor's video chat layout (transformers' SmolVLM DEFAULT_CHAT_TEMPLATE), written out for our messages.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is not string and message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'video' %}<video>{% endif %}{% endfor %}{% endif %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split()
)
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(number: int) -> str:
    """English words for 0..999 as `num2words` writes them ("twenty-one", "one hundred and five")."""
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens - 2] + (f"-{_ONES[ones]}" if ones else "")
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return f"{_ONES[hundreds]} hundred" + (f" and {number_words(rest)}" if rest else "")
    return str(number)


def video_prompt(timestamps_s, duration_s: float, tokens_per_frame: list[int]) -> str:
    """The processor's expansion of one `<video>`, with `tokens_per_frame[i]` image tokens for frame i."""
    text = (
        f"You are provided the following series of {number_words(len(tokens_per_frame))} frames from a "
        f"{timedelta(seconds=int(duration_s))} [H:MM:SS] video.\n"
    )
    for seconds, count in zip(timestamps_s, tokens_per_frame):
        stamp = f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"
        text += (
            f"\nFrame from {stamp}:<fake_token_around_image><global-img>{'<image>' * count}<fake_token_around_image>"
        )
    return text + "\n\n"


class SmolVLMVideoLLM(HFVideoLLM):
    family = "smolvlm"
    video_marker = "<video>"

    def _placeholder_id(self) -> int:
        return int(self.model.config.image_token_id)

    def _family_encode(self, frames: Frames) -> tuple[torch.Tensor, dict]:
        pixel_values, mask = smolvlm_preprocess(frames.pixels, self.video_settings)  # (1, T, 3, S, S)
        features = self.model.model.get_image_features(
            pixel_values.to(self.device, self.model.dtype), mask.to(self.device)
        ).pooler_output[0]  # (T * s * s, D)
        num_frames = pixel_values.shape[1]
        side = int(round((features.shape[0] / num_frames) ** 0.5))
        grids = features.reshape(num_frames, side, side, -1)
        info = {
            "llm_frame_positions": [[p] for p in range(num_frames)],
            "frames_seen": smolvlm_resized_frames(frames.pixels, self.video_settings),
            "pixel_values": pixel_values,
            "pixel_attention_mask": mask,
        }
        return grids, info

    def _family_video_text(self, payload: HFPayload) -> str:
        counts = payload.visual.count_per_llm_frame(payload.num_llm_frames)
        return video_prompt(payload.timestamps_s, payload.duration_s, counts)


def load(name: str, repo_id: str, *, device: str | None = None, dtype: str | None = None) -> SmolVLMVideoLLM:
    folder, model, tokenizer = load_parts(repo_id, device=device, dtype=dtype)
    return SmolVLMVideoLLM(
        name,
        model,
        tokenizer,
        folder,
        video_settings=load_video_settings(folder, "smolvlm"),
        chat_template=CHAT_TEMPLATE,
        stop_token_ids=stop_ids(tokenizer, model, ("<end_of_utterance>",)),
    )
