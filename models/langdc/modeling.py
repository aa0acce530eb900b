"""LangDC's parts put together: both towers, the fixed pool branch, the caption branch and the answering Qwen2 LLM.

For one video (16 frames = 4 clips of 4, plus the same 16 frames as CLIP context images):

    InternVideo2(clip c) -> (1024, 1408) tokens (CLS dropped)     CLIP(image i) -> (576, 1024) patches
    pool branch:    16 context images: image_mm_projector, 6x6 pool (36 each), then 16 frames: mm_projector,
                    4x4 pool (16 each)                                              -> 832 tokens, always
    caption branch: per clip, 4 context images: cap_image_mm_projector, 12x12 pool (144 each), then its 4
                    frames: cap_mm_projector, 8x8 pool (64 each) -> 832 tokens in the caption prompt; the
                    captioner's decode gives `count_c` soft tokens (captioner.py) -> llm_projector
    answering LLM:  [text before the first <image>] + pool (832) + captions (sum of counts) + [text after the
                    last <image>], positions 0..S-1

So a clip's share of the LLM input is its 208 pool tokens plus its caption's length: the caption branch is the
dynamic part. `encode` returns a `LangDCVisual` (what a follow-up question reuses); `trace`, when given a dict,
receives the intermediate tensors by name (for conformance checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from models.langdc.captioner import Captions, DecodeSettings, generate_captions
from models.langdc.preprocessing import FRAMES_PER_CLIP
from models.langdc.projectors import pool_grid

IMAGE_TOKEN_INDEX = -200
CAPTION_CONTEXT_SIDE, CAPTION_FRAME_SIDE = 12, 8  # 144 tokens per context image, 64 per frame (captioner)
POOL_CONTEXT_SIDE, POOL_FRAME_SIDE = 6, 4  # 36 per context image, 16 per frame (answering LLM)


@dataclass
class LangDCVisual:
    """One encoded video. pool_tokens (832, H) and caption_tokens (sum(counts), H) go into the answering LLM in
    that order; captions holds the captioner's ids and counts; texts the decoded caption of each clip."""

    pool_tokens: torch.Tensor
    caption_tokens: torch.Tensor
    captions: Captions
    texts: list[str] = field(default_factory=list)
    num_clips: int = 4

    @property
    def counts(self) -> list[int]:
        return list(self.captions.counts)

    @property
    def pool_per_clip(self) -> int:
        return int(self.pool_tokens.shape[0]) // self.num_clips

    def to(self, device) -> LangDCVisual:
        return LangDCVisual(self.pool_tokens.to(device), self.caption_tokens.to(device), self.captions, self.texts,
                            self.num_clips)  # fmt: skip


@dataclass
class PromptEmbeddings:
    """The answering LLM's input (1, S, H) and where the visual rows sit: pool [start, start+832), then captions."""

    inputs_embeds: torch.Tensor
    pool_start: int
    num_pool: int
    num_caption: int

    @property
    def caption_start(self) -> int:
        return self.pool_start + self.num_pool


class LangDCModel(nn.Module):
    """The released model's parts under the release's own names (`mm_projector`, `cap_light_llm`, ...)."""

    def __init__(self, *, llm, cap_light_llm, vision_tower, image_vision_tower, projectors: dict[str, nn.Module],
                 decode: DecodeSettings):  # fmt: skip
        super().__init__()
        self.llm = llm
        self.cap_light_llm = cap_light_llm
        self.vision_tower = vision_tower
        self.image_vision_tower = image_vision_tower
        self.mm_projector = projectors["mm_projector"]
        self.image_mm_projector = projectors["image_mm_projector"]
        self.cap_mm_projector = projectors["cap_mm_projector"]
        self.cap_image_mm_projector = projectors["cap_image_mm_projector"]
        self.llm_projector = projectors["llm_projector"]
        self.decode = decode

    @property
    def device(self) -> torch.device:
        return self.llm.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.lm_head.weight.dtype

    # ---- towers ------------------------------------------------------------------------------------------------

    def video_features(self, video_pixels: torch.Tensor) -> torch.Tensor:
        """(16, 3, 224, 224) -> (4, 1025, 1408): each clip of 4 frames through InternVideo2, CLS first."""
        clips = video_pixels.reshape(-1, FRAMES_PER_CLIP, *video_pixels.shape[1:])
        return self.vision_tower(clips.to(self.device, self.dtype))

    def context_features(self, context_pixels: torch.Tensor) -> torch.Tensor:
        """(16, 3, 336, 336) -> (16, 576, 1024) CLIP patches."""
        return self.image_vision_tower(context_pixels.to(self.device, self.dtype))

    # ---- branches ----------------------------------------------------------------------------------------------

    def pool_tokens(self, video: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The fixed branch: every context image (36 tokens each), then every frame (16 each) -> (832, H)."""
        frames = video.reshape(-1, video.shape[1] // FRAMES_PER_CLIP, video.shape[-1])  # (16, 256, 1408)
        context_tokens = pool_grid(self.image_mm_projector(context), POOL_CONTEXT_SIDE)
        frame_tokens = pool_grid(self.mm_projector(frames), POOL_FRAME_SIDE)
        return torch.cat([context_tokens.flatten(0, 1), frame_tokens.flatten(0, 1)], dim=0)

    def caption_visual(self, video: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Per clip, what replaces the caption prompt's placeholders: its 4 context images (144 each), then its 4
        frames (64 each) -> (C, 832, d_cap)."""
        num_clips = video.shape[0]
        frames = video.reshape(num_clips * FRAMES_PER_CLIP, -1, video.shape[-1])
        frame_tokens = pool_grid(self.cap_mm_projector(frames), CAPTION_FRAME_SIDE)  # (16, 64, d)
        context_tokens = pool_grid(self.cap_image_mm_projector(context), CAPTION_CONTEXT_SIDE)  # (16, 144, d)
        per_clip = lambda t: t.reshape(num_clips, -1, t.shape[-1])
        return torch.cat([per_clip(context_tokens), per_clip(frame_tokens)], dim=1)

    def caption_inputs(self, caption_ids: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """(C, L) caption prompt ids with a run of placeholders -> (C, before + 832 + after, d_cap) embeddings."""
        first, last = _placeholder_span(caption_ids[0])
        embed = self.cap_light_llm.get_input_embeddings()
        ids = caption_ids.to(self.device)
        return torch.cat([embed(ids[:, :first]), visual, embed(ids[:, last + 1 :])], dim=1)

    @torch.inference_mode()
    def encode(self, video_pixels, context_pixels, caption_ids, *, seed: int = 0, trace: dict | None = None):
        """Both branches for one video: (16, 3, 224, 224) frames, (16, 3, 336, 336) context images and the (C, L)
        caption prompt ids (one row per clip) -> `LangDCVisual`."""
        tower_out = self.video_features(video_pixels)
        video = tower_out[:, 1:]  # (4, 1024, 1408): CLS dropped, as released
        context = self.context_features(context_pixels)
        cap_inputs = self.caption_inputs(caption_ids, self.caption_visual(video, context))
        captions = generate_captions(self.cap_light_llm, cap_inputs, self.decode, seed=seed)
        soft = captions.soft_tokens()
        caption_tokens = self.llm_projector(soft)
        pool = self.pool_tokens(video, context)
        if trace is not None:
            trace.update(iv2_features=tower_out, clip_features=context, cap_inputs_embeds=cap_inputs, pool_tokens=pool,
                         soft_caption_tokens_pre_projector=soft, soft_caption_tokens=caption_tokens)  # fmt: skip
        return LangDCVisual(pool_tokens=pool, caption_tokens=caption_tokens, captions=captions,
                            num_clips=int(video.shape[0]))  # fmt: skip

    # ---- answering LLM -----------------------------------------------------------------------------------------

    def embed_prompt(self, input_ids: torch.Tensor, visual: LangDCVisual | None) -> PromptEmbeddings:
        """(L,) prompt ids (a run of placeholders where the video goes, or none) -> the LLM's input rows."""
        embed = self.llm.get_input_embeddings()
        ids = input_ids.to(self.device)
        if visual is None or not bool((ids == IMAGE_TOKEN_INDEX).any()):
            return PromptEmbeddings(embed(ids).unsqueeze(0), int(ids.shape[0]), 0, 0)
        first, last = _placeholder_span(ids)
        rows = [embed(ids[:first]), visual.pool_tokens.to(self.dtype), visual.caption_tokens.to(self.dtype),
                embed(ids[last + 1 :])]  # fmt: skip
        return PromptEmbeddings(torch.cat(rows, 0).unsqueeze(0), first, visual.pool_tokens.shape[0],
                                visual.caption_tokens.shape[0])  # fmt: skip


def _placeholder_span(ids: torch.Tensor) -> tuple[int, int]:
    """First and last placeholder positions (the release replaces everything between them)."""
    positions = torch.nonzero(ids == IMAGE_TOKEN_INDEX).flatten()
    if positions.numel() == 0:
        raise ValueError("the prompt holds no <image> placeholder")
    return int(positions[0]), int(positions[-1])
