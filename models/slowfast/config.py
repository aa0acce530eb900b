"""Configuration of the Slow-Fast Video MLLM (`model_type` "llava_qwen_slow_fast").

A Qwen2 config plus the fields the official `config.json` adds for the vision tower, the projector, the slow and
fast visual tokens and the hybrid (cross-attention) decoder layers. Field names are the official ones, so an
official `config.json` loads as is; fields it lacks take the official code's defaults. The vision tower's shape is
not in `config.json` (the official code hard-codes ConvNeXt-XXLarge); `from_pretrained` fills
`vision_tower_depths` / `vision_tower_dims` from the checkpoint's tensors.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import Qwen2Config

SUPPORTED_CROSS_ATTN = ("text-only-vanilla", "text-only-vanilla-flashattn")
SUPPORTED_GATING = ("whole-dynamic-tanh-warmup",)


@strict
class SlowFastConfig(Qwen2Config):
    r"""Qwen2 fields (vocab, hidden sizes, heads, `rope_theta`, `rms_norm_eps`, ...) plus:

    mm_hidden_size: channels of the vision tower's last stage (the projector's input).
    mm_video_pooling_stride: 2x2 average pool applied to every frame after the projector; gives the slow tokens.
    fast_token_temporal_sampling_stride / fast_token_temporal_stride / fast_token_spatial_stride / min_fast_frames:
        how the fast tokens (the ones the LLM reads in its sequence) are made from the slow tokens.
    cross_attn_every_n_layers / cross_attn_min_layer_depth / cross_attn_max_layer_depth: the hybrid layers are
        `range(min, max, every_n)`; no `cross_attn_every_n_layers` means no hybrid layers.
    tokenizer_model_max_length: caps the assembled prompt (text + fast tokens), as the official model does.
    mm_training_video_frames: frames per video the checkpoint was trained with (64 / 96 / 128).
    """

    model_type = "llava_qwen_slow_fast"

    mm_vision_tower: str = "convnext-576"
    mm_hidden_size: int = 3072
    mm_projector_type: str = "mlp2x_gelu"
    mm_video_pooling_stride: int = 2
    fast_token_spatial_stride: int = 1
    fast_token_temporal_stride: int = 1
    fast_token_temporal_sampling_stride: int = 1
    min_fast_frames: int | None = None
    cross_attn_every_n_layers: int | None = None
    cross_attn_min_layer_depth: int | None = None
    cross_attn_max_layer_depth: int | None = None
    cross_attn_implementation: str = "text-only-vanilla"
    cross_attn_gating_type: str = "whole-dynamic-tanh-warmup"
    tokenizer_model_max_length: int | None = None
    tokenizer_padding_side: str = "right"
    mm_training_video_frames: int | None = None
    # Not official fields: the tower's shape, read from the checkpoint's tensors (defaults: ConvNeXt-XXLarge).
    vision_tower_depths: list[int] | None = None
    vision_tower_dims: list[int] | None = None
    vision_tower_mlp_ratio: int = 4
    vision_layer_norm_eps: float = 1e-5
    image_size: int = 576

    def __post_init__(self, **kwargs):
        if self.vision_tower_depths is None:
            self.vision_tower_depths = [3, 4, 30, 3]
        if self.vision_tower_dims is None:
            self.vision_tower_dims = [384, 768, 1536, 3072]
        super().__post_init__(**kwargs)

    def check_architecture(self) -> None:
        """Reject settings whose behaviour this implementation does not reproduce, with a message naming them."""
        if self.cross_attn_every_n_layers is not None and self.cross_attn_implementation not in SUPPORTED_CROSS_ATTN:
            raise NotImplementedError(
                f"cross_attn_implementation={self.cross_attn_implementation!r} is not supported; "
                f"supported: {', '.join(SUPPORTED_CROSS_ATTN)} (the released checkpoints use these)"
            )
        if self.cross_attn_every_n_layers is not None and self.cross_attn_gating_type not in SUPPORTED_GATING:
            raise NotImplementedError(
                f"cross_attn_gating_type={self.cross_attn_gating_type!r} is not supported; "
                f"supported: {', '.join(SUPPORTED_GATING)}"
            )
        if self.mm_projector_type != "mlp2x_gelu":
            raise NotImplementedError(f"mm_projector_type={self.mm_projector_type!r} is not supported (mlp2x_gelu)")
        if self.mm_hidden_size != self.vision_tower_dims[-1]:
            raise ValueError(
                f"mm_hidden_size={self.mm_hidden_size} but the vision tower's last stage has "
                f"{self.vision_tower_dims[-1]} channels"
            )

    @property
    def hybrid_layer_indices(self) -> list[int]:
        """Indices of the decoder layers that also cross-attend to the slow tokens."""
        if self.cross_attn_every_n_layers is None:
            return []
        start = self.cross_attn_min_layer_depth or 0
        stop = self.cross_attn_max_layer_depth
        stop = self.num_hidden_layers if stop is None else stop
        return list(range(start, stop, self.cross_attn_every_n_layers))

    @property
    def num_min_fast_frames(self) -> int:
        return self.min_fast_frames or 1
