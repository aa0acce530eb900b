"""The `self` expert: the chosen VLM captions its own clips (and `smolvlm2` is this, around SmolVLM2-256M).

Each clip's sampled frames are encoded on their own with the model's official rule and the model answers LangDC's
captioning request greedily, capped at `CAPTION_MAX_TOKENS`; the tokens it generated are the clip's density. Works
for any `VideoLLM` (the HF adapters, the Slow-Fast MLLM); the embedded default's own LLM describes its clips from
labels instead (`models/experts/lite.py`), which is what `self` means there.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from models.base import EncodeParams, Frames, GenerationParams, VideoLLM, collect
from models.experts.base import CAPTION_MAX_TOKENS, CAPTION_PROMPT, ClipCaption, clip_frames


class VLMCaptioner:
    """A video LLM writing one caption per clip."""

    def __init__(self, model: VideoLLM, name: str = "self", max_new_tokens: int = CAPTION_MAX_TOKENS):
        self.model, self.name, self.max_new_tokens = model, name, max_new_tokens

    def describe(self, frames: Frames, clips: Sequence[tuple[int, int]]) -> list[ClipCaption]:
        params = GenerationParams(temperature=0.0, max_new_tokens=self.max_new_tokens)
        captions = []
        for start, end in clips:
            clip = clip_frames(frames, start, end)
            with warnings.catch_warnings():  # a clip has fewer frames than the checkpoint was trained with
                warnings.simplefilter("ignore")
                context = self.model.encode(clip, EncodeParams(num_frames=len(clip)), f"clip-{start}-{end}")
            answer = collect(self.model.stream(context, [], CAPTION_PROMPT, params, want_attention=False))
            captions.append(ClipCaption(answer.text, int(answer.new_tokens)))
        return captions


def load(host: VideoLLM | None = None) -> VLMCaptioner:
    if host is None:
        raise ValueError("the `self` expert captions the chosen model's clips: it needs that model")
    return VLMCaptioner(host)
