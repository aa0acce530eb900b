"""The InternVideo2-1B video tower (Stage2, 224 px, patch 14, clips of 4 frames) in plain torch.

A ViT over space-time patches: a (1, 14, 14) Conv3d patch embedding, a CLS token, one learned position embedding
over all T*16*16 patches (+1), then pre-norm blocks with RMSNorm, multi-head attention without qkv bias whose
queries and keys are RMS-normalised over all heads together (before the head split), LayerScale on both branches
and a GELU MLP. LangDC reads the tokens after block `depth - 2` (the release's `x_vis_return_idx=-2`), so the last
block and the distillation heads (`clip_projector`, `clip_decoder`, `final_clip_decoder`, `vision_proj`) never
run: they are not built here. Parameter names follow the release's `.pt` (`vision_encoder.blocks.N.attn.qkv`, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EMBED_DIM = 1408
NUM_HEADS = 16
MLP_DIM = 6144  # int(1408 * 48 / 11)
PATCH = 14
RMS_EPS = 1e-6


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = RMS_EPS):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * self.gamma.float()).to(x.dtype)  # the release keeps LayerScale in float32


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.q_norm = RMSNorm(dim)
        self.k_norm = RMSNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, dim).unbind(2)  # (B, N, C) each, heads concatenated
        q, k = self.q_norm(q), self.k_norm(k)
        heads = lambda t: t.reshape(batch, length, self.num_heads, -1).transpose(1, 2)  # (B, h, N, d)
        q, k, v = heads(q), heads(k), heads(v)
        weights = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)  # the release's own order
        out = weights @ v
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = RMSNorm(dim)
        self.mlp = Mlp(dim, mlp_dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv3d(3, dim, kernel_size=(1, patch, patch), stride=(1, patch, patch))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, T * h * w, C), frame-major."""
        x = self.proj(video)  # (B, C, T, h, w)
        return x.flatten(2).transpose(1, 2)


class VisionEncoder(nn.Module):
    def __init__(self, num_blocks: int, num_patches: int, dim: int, num_heads: int, mlp_dim: int, patch: int):
        super().__init__()
        self.patch_embed = PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_dim) for _ in range(num_blocks))


class InternVideo2Tower(nn.Module):
    """The tower LangDC reads: `forward` takes (B, T, 3, 224, 224) clips and returns (B, 1 + T*256, 1408) tokens,
    CLS first, after the first `num_blocks` blocks (the release's depth minus one)."""

    def __init__(self, num_blocks: int, num_frames: int = 4, image_size: int = 224, dim: int = EMBED_DIM,
                 num_heads: int = NUM_HEADS, mlp_dim: int = MLP_DIM, patch: int = PATCH):  # fmt: skip
        super().__init__()
        self.num_frames = num_frames
        self.grid = image_size // patch
        self.vision_encoder = VisionEncoder(num_blocks, num_frames * self.grid**2, dim, num_heads, mlp_dim, patch)

    @property
    def hidden_size(self) -> int:
        return self.vision_encoder.cls_token.shape[-1]

    def position_embedding(self, num_frames: int) -> torch.Tensor:
        """The learned embedding for `num_frames` frames; a single image gets the mean over frames (as released)."""
        pos = self.vision_encoder.pos_embed
        if num_frames == self.num_frames:
            return pos
        if num_frames != 1:
            raise ValueError(f"the video tower reads clips of {self.num_frames} frames (or 1 image), not {num_frames}")
        per_frame = pos[:, 1:].reshape(1, self.num_frames, self.grid**2, -1).mean(1)
        return torch.cat([pos[:, :1], per_frame], dim=1)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        encoder = self.vision_encoder
        dtype = encoder.patch_embed.proj.weight.dtype
        x = encoder.patch_embed(clips.permute(0, 2, 1, 3, 4).to(dtype))  # (B, T*h*w, C)
        x = torch.cat([encoder.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.position_embedding(clips.shape[1])
        for block in encoder.blocks:
            x = block(x)
        return x


def tower_from_state(state: dict[str, torch.Tensor]) -> tuple[InternVideo2Tower, dict[str, torch.Tensor]]:
    """Build the tower for a release state dict (keys `vision_encoder.*`; others ignored) and return it with the
    tensors it needs. Depth, width, heads-compatible MLP size and frame count come from the tensors."""
    prefix = "vision_encoder."
    blocks = {int(key.split(".")[2]) for key in state if key.startswith(prefix + "blocks.")}
    if not blocks:
        raise KeyError("the InternVideo2 file holds no vision_encoder.blocks.* tensors")
    depth = max(blocks) + 1
    dim = state[prefix + "cls_token"].shape[-1]
    mlp_dim = state[prefix + "blocks.0.mlp.fc1.weight"].shape[0]
    patch = state[prefix + "patch_embed.proj.weight"].shape[-1]
    grid = 224 // patch
    num_frames = (state[prefix + "pos_embed"].shape[1] - 1) // grid**2
    tower = InternVideo2Tower(depth - 1, num_frames=num_frames, dim=dim, mlp_dim=mlp_dim, patch=patch)
    wanted = {key: state[key] for key in tower.state_dict()}
    return tower, wanted
