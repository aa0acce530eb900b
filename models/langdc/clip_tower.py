"""The CLIP image tower LangDC runs on its context frames: transformers' `CLIPVisionModel`, one chosen layer's patches.

LangDC reads `hidden_states[mm_vision_select_layer]` (-2: the output of the second-to-last layer) and, for the
`patch` feature, drops the CLS token: (N, 576, 1024) for ViT-L/14 at 336 px. Layers after the chosen one never
influence the result, so they are dropped at load time. Weights come from the tower's own folder (or hub id).
"""

from __future__ import annotations

import torch
from torch import nn


class CLIPTower(nn.Module):
    def __init__(self, model, select_layer: int = -2, select_feature: str = "patch"):
        super().__init__()
        if select_feature not in ("patch", "cls_patch"):
            raise ValueError(f"unknown mm_vision_select_feature {select_feature!r} (expected 'patch' or 'cls_patch')")
        encoder = getattr(model, "vision_model", model).encoder  # transformers 5 flattened `vision_model`
        layers = encoder.layers
        index = len(layers) + 1 + select_layer if select_layer < 0 else select_layer  # into hidden_states
        if not 0 <= index <= len(layers):
            raise ValueError(f"mm_vision_select_layer {select_layer} is outside the tower's {len(layers)} layers")
        encoder.layers = layers[:index]  # later layers cannot change hidden_states[index]
        self.vision_tower = model
        self.index = index
        self.select_feature = select_feature

    @property
    def hidden_size(self) -> int:
        return self.vision_tower.config.hidden_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, 336, 336) -> (N, 576, D) patch features (CLS dropped for 'patch')."""
        dtype = next(self.vision_tower.parameters()).dtype
        out = self.vision_tower(pixel_values=images.to(dtype), output_hidden_states=True)
        features = out.hidden_states[self.index]
        return features[:, 1:] if self.select_feature == "patch" else features


def load_clip_tower(folder, select_layer: int, select_feature: str, dtype: torch.dtype, device) -> CLIPTower:
    """The tower from a CLIP folder (a full CLIPModel checkpoint works too: only its vision half is read)."""
    from transformers import CLIPVisionModel

    model = CLIPVisionModel.from_pretrained(folder, dtype=dtype, attn_implementation="eager")
    return CLIPTower(model, select_layer, select_feature).to(device).eval().requires_grad_(False)
