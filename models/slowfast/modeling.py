"""The Slow-Fast Video MLLM: ConvNeXt tower -> GELU MLP projector -> slow / fast tokens -> Qwen2 with hybrid layers.

The module tree mirrors the official one, so `state_dict()` has the official key names
(`model.layers.N.self_attn.cross_attn_kv_proj.weight`, `model.vision_tower.vision_tower.stem.0.weight`, ...).
Plain decoder layers are transformers' `Qwen2DecoderLayer`. A hybrid layer is a Qwen2 layer whose attention also
lets the *text* rows cross-attend to the slow tokens, as in the SHI-Labs release:

    x = input_layernorm(h)                      S_n = input_layernorm(slow tokens)   (same weights)
    q, k, v = proj(x); RoPE(q, k); A = causal self-attention (heads concatenated, before o_proj)
    K_vis, V_vis = cross_attn_kv_proj(S_n), laid out per KV head as (Hkv, {K, V}, D); no RoPE on K_vis
    ctx = softmax(q_text K_vis^T / sqrt(D)) V_vis          q_text: the post-RoPE queries of the text rows
    A[text] += tanh(gate_proj(A[text])) * tanh(warm_up_gate) * ctx
    h = h + o_proj(A); then the usual MLP block

Which rows query is decided per call by `SlowTokenMemory.query_rows`: the prompt's text rows at prefill; during
decoding the released model gives generated tokens no cross-attention (see `generation.py`). Without
slow tokens (a text-only conversation) a hybrid layer is exactly a Qwen2 layer. Cross-attention assumes batch 1
(one video per sample is the only consistent case in the official code too).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from transformers.cache_utils import Cache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.qwen2.modeling_qwen2 import (
    Qwen2Attention,
    Qwen2DecoderLayer,
    Qwen2RMSNorm,
    Qwen2RotaryEmbedding,
    apply_rotary_pos_emb,
    eager_attention_forward,
    repeat_kv,
)
from transformers.utils import is_flash_attn_2_available

from models.compression import CompressedTokens, CompressionPlan, Describe, compress
from models.hub import resolve_folder
from models.slowfast import checkpoint
from models.slowfast.config import SlowFastConfig
from models.slowfast.convnext import ConvNextVisionTower
from models.slowfast.prompting import IMAGE_TOKEN_INDEX
from models.slowfast.tokens import (
    FastTokenPlan,
    fast_tokens_per_frame,
    make_fast_tokens,
    maps_to_tokens,
    plan_fast_tokens,
    pool_frame_maps,
)

TEXT_TOKEN, FAST_TOKEN = 1, 3  # the official token types (2 = supervised text and 4 = padding occur in training)


@dataclass
class VideoTokens:
    """One encoded video. fast_tokens (Nf, d) go into the LLM sequence; slow_tokens (Nv, d) are the hybrid layers'
    cross-attention memory; slow_grid is the (h, w) of one frame's slow tokens (9x9 at 576 px). fast_plan: how the
    checkpoint's own rule makes fast tokens from these frames (its count is the 100% budget); compression: the
    compressor's plan (clips and budgets); fast_per_frame: how many fast tokens come from each frame."""

    fast_tokens: torch.Tensor
    slow_tokens: torch.Tensor
    slow_grid: tuple[int, int]
    fast_plan: FastTokenPlan
    num_frames: int
    compression: CompressionPlan | None = None
    fast_per_frame: list[int] = field(default_factory=list)

    def to(self, device: torch.device | str) -> VideoTokens:
        return replace(self, fast_tokens=self.fast_tokens.to(device), slow_tokens=self.slow_tokens.to(device))


@dataclass
class SlowTokenMemory:
    """What the hybrid layers cross-attend to during one prefill or generation.

    slow_tokens: (1, Nv, d). query_rows: positions (in the current input) whose queries cross-attend.
    record_rows: a subset of query_rows whose attention weights to keep, as layer -> (Nr, Nv) weights averaged
    over heads in `attention` (None: keep nothing, the usual case). kv: per-layer cache of the visual keys/values.
    """

    slow_tokens: torch.Tensor
    query_rows: torch.Tensor
    record_rows: torch.Tensor | None = None
    kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    attention: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass
class PromptInputs:
    """The assembled prompt: inputs_embeds (1, L, d) and token_types (L,), TEXT_TOKEN or FAST_TOKEN per row."""

    inputs_embeds: torch.Tensor
    token_types: torch.Tensor
    truncated_rows: int = 0

    @property
    def text_rows(self) -> torch.Tensor:
        return (self.token_types == TEXT_TOKEN).nonzero().flatten()


class SlowFastHybridAttention(Qwen2Attention):
    """Qwen2 self-attention plus gated cross-attention from text rows to the slow tokens, added before o_proj."""

    def __init__(self, config: SlowFastConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.num_key_value_heads = config.num_key_value_heads
        self.cross_attn_warm_up_gate = nn.Parameter(torch.zeros(1))
        self.cross_attn_kv_proj = nn.Linear(config.hidden_size, 2 * config.num_key_value_heads * self.head_dim)
        self.cross_attn_gate_proj = nn.Sequential(nn.Linear(config.num_attention_heads * self.head_dim, 1), nn.Tanh())

    def project_visual_kv(self, slow_normed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, Nv, d) normalised slow tokens -> keys, values (1, Hkv, Nv, D). No RoPE on visual keys."""
        batch, num_slow, _ = slow_normed.shape
        kv = self.cross_attn_kv_proj(slow_normed).view(batch, num_slow, self.num_key_value_heads, 2, self.head_dim)
        kv = kv.permute(3, 0, 2, 1, 4)  # ({K, V}, 1, Hkv, Nv, D): interleaved per KV head, not [all K; all V]
        return kv[0], kv[1]

    def cross_attend(self, query: torch.Tensor, attn_output: torch.Tensor, memory: SlowTokenMemory) -> torch.Tensor:
        """Add the gated cross-attention to attn_output (1, L, Hq*D) at memory.query_rows; query (1, Hq, L, D)."""
        if query.shape[0] != 1:
            raise ValueError("cross-attention to slow tokens supports batch size 1 (one video per call)")
        rows = memory.query_rows
        visual_keys, visual_values = memory.kv[self.layer_idx]
        visual_keys = repeat_kv(visual_keys, self.num_key_value_groups)  # (1, Hq, Nv, D): head h uses h // groups
        visual_values = repeat_kv(visual_values, self.num_key_value_groups)
        text_queries = query[:, :, rows]  # (1, Hq, Lq, D), post-RoPE, not re-projected

        context = nn.functional.scaled_dot_product_attention(
            text_queries, visual_keys, visual_values, scale=self.scaling
        )
        context = context.transpose(1, 2).flatten(2)  # (1, Lq, Hq*D)
        if memory.record_rows is not None:  # the same softmax, written out for the rows the studio shows
            scores = torch.matmul(query[:, :, memory.record_rows], visual_keys.transpose(2, 3)) * self.scaling
            memory.attention[self.layer_idx] = scores.softmax(dim=-1, dtype=torch.float32)[0].mean(0)  # (Nr, Nv)

        text_output = attn_output[:, rows]  # the gate reads the self-attention output of the same rows
        gate = self.cross_attn_gate_proj(text_output) * torch.tanh(self.cross_attn_warm_up_gate)  # (1, Lq, 1)
        return attn_output.index_add(1, rows, gate * context)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        past_key_values: Cache | None = None,
        memory: SlowTokenMemory | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, None]:
        input_shape = hidden_states.shape[:-1]  # (B, L)
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)  # (B, Hq, L, D)
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)  # (B, Hkv, L, D)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        cos, sin = position_embeddings
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        if past_key_values is not None:
            key, value = past_key_values.update(key, value, self.layer_idx)

        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        attn_output, _ = attention(self, query, key, value, attention_mask, scaling=self.scaling, **kwargs)
        attn_output = attn_output.reshape(*input_shape, -1)  # (B, L, Hq*D), before o_proj

        if memory is not None and memory.query_rows.numel() > 0:
            attn_output = self.cross_attend(query, attn_output, memory)
        return self.o_proj(attn_output), None


class SlowFastHybridDecoderLayer(Qwen2DecoderLayer):
    def __init__(self, config: SlowFastConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.layer_idx = layer_idx
        self.self_attn = SlowFastHybridAttention(config, layer_idx)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        past_key_values: Cache | None = None,
        memory: SlowTokenMemory | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if memory is not None and memory.query_rows.numel() > 0 and self.layer_idx not in memory.kv:
            # the slow tokens go through this layer's own input norm, then its visual K/V projection
            memory.kv[self.layer_idx] = self.self_attn.project_visual_kv(self.input_layernorm(memory.slow_tokens))
        residual = hidden_states
        hidden_states, _ = self.self_attn(
            self.input_layernorm(hidden_states),
            position_embeddings=position_embeddings,
            attention_mask=attention_mask,
            past_key_values=past_key_values,
            memory=memory,
        )
        hidden_states = residual + hidden_states
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class SlowFastModel(nn.Module):
    """`model.*` of the checkpoint: token embeddings, decoder layers, final norm, vision tower and projector."""

    def __init__(self, config: SlowFastConfig):
        super().__init__()
        self.config = config
        hybrid = set(config.hybrid_layer_indices)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            [
                SlowFastHybridDecoderLayer(config, i) if i in hybrid else Qwen2DecoderLayer(config, i)
                for i in range(config.num_hidden_layers)
            ]
        )
        self.norm = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = Qwen2RotaryEmbedding(config)
        self.vision_tower = ConvNextVisionTower(
            config.vision_tower_depths,
            config.vision_tower_dims,
            config.vision_tower_mlp_ratio,
            config.vision_layer_norm_eps,
        )
        hidden = config.hidden_size
        self.mm_projector = nn.Sequential(  # mlp2x_gelu: exact GELU
            nn.Linear(config.mm_hidden_size, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        past_key_values: Cache | None = None,
        memory: SlowTokenMemory | None = None,
    ) -> torch.Tensor:
        """(B, L, d) -> final hidden states (B, L, d). Positions continue after what the cache already holds."""
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0
        position_ids = torch.arange(past_length, past_length + inputs_embeds.shape[1], device=inputs_embeds.device)
        position_ids = position_ids.unsqueeze(0)
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=None,
            past_key_values=past_key_values,
            position_ids=position_ids,
        )
        position_embeddings = self.rotary_emb(inputs_embeds, position_ids)
        hidden_states = inputs_embeds
        for layer in self.layers:
            extra = {"memory": memory} if isinstance(layer, SlowFastHybridDecoderLayer) else {}
            hidden_states = layer(
                hidden_states,
                attention_mask=causal_mask,
                position_embeddings=position_embeddings,
                position_ids=position_ids,
                past_key_values=past_key_values,
                **extra,
            )
        return self.norm(hidden_states)


class SlowFastForCausalLM(nn.Module):
    """The full model. Typical use:

    model = SlowFastForCausalLM.from_pretrained(folder_or_repo_id)
    video = model.encode_video(pixel_values)                   # (T, 3, 576, 576) -> VideoTokens
    prompt = model.embed_prompt(input_ids, video.fast_tokens)  # input_ids hold one -200
    logits = model(prompt.inputs_embeds, memory=model.memory_for(prompt, video))
    """

    def __init__(self, config: SlowFastConfig):
        super().__init__()
        config.check_architecture()
        if config._attn_implementation is None:
            config._attn_implementation = "sdpa"
        self.config = config
        self.model = SlowFastModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        past_key_values: Cache | None = None,
        memory: SlowTokenMemory | None = None,
        logits_to_keep: int = 0,
    ) -> torch.Tensor:
        """(B, L, d) -> logits (B, L, V), or only the last `logits_to_keep` rows when it is > 0."""
        hidden_states = self.model(inputs_embeds, past_key_values=past_key_values, memory=memory)
        return self.lm_head(hidden_states[:, -logits_to_keep:] if logits_to_keep else hidden_states)

    @torch.inference_mode()
    def encode_video(
        self,
        pixel_values: torch.Tensor,
        frames_per_chunk: int | None = None,
        compressor: str = "official",
        budget_pct: float = 100.0,
        timestamps_s: Sequence[float] | None = None,
        describe: Describe | None = None,
    ) -> VideoTokens:
        """Preprocessed frames (T, 3, H, W) -> fast and slow tokens in LLM embedding space.

        The fast tokens go through `compressor` (models.compression.COMPRESSORS): `official` is the checkpoint's
        own rule (bit-identical to the released model); `uniform` / `dynamic` merge the pooled frame maps down to
        `budget_pct` % of the official count (`langdc` by the lengths `describe` gives each clip of frames). Slow
        tokens are never compressed.
        """
        config = self.config
        pixel_values = pixel_values.to(self.device, self.dtype)
        feature_maps = self.model.vision_tower(pixel_values, frames_per_chunk)  # (T, Cv, H/32, W/32)
        num_frames, _, height, width = feature_maps.shape
        features = self.model.mm_projector(feature_maps.flatten(2).transpose(1, 2))  # (T, H*W, d), per patch
        frame_maps = features.transpose(1, 2).reshape(num_frames, -1, height, width)  # (T, d, H, W)
        frame_maps = pool_frame_maps(frame_maps, config.mm_video_pooling_stride)  # (T, d, h, w)
        strides = dict(
            sampling_stride=config.fast_token_temporal_sampling_stride,
            temporal_stride=config.fast_token_temporal_stride,
            spatial_stride=config.fast_token_spatial_stride,
            min_fast_frames=config.num_min_fast_frames,
        )
        fast_plan = plan_fast_tokens(num_frames, frame_maps.shape[2], frame_maps.shape[3], **strides)

        def checkpoint_fast_tokens(grids: torch.Tensor) -> CompressedTokens:
            # the released rule on the frame maps themselves (not a re-permuted copy): bit-identical fast tokens
            fast, made = make_fast_tokens(frame_maps, **strides)
            return _as_compressed(fast, made, num_frames, frame_maps.shape[3] // config.fast_token_spatial_stride)

        grids = frame_maps.permute(0, 2, 3, 1)  # (T, h, w, d)
        compressed, compression = compress(
            compressor,
            grids,
            timestamps_s,
            budget_pct,
            fast_plan.num_fast_tokens,
            official=checkpoint_fast_tokens,
            describe=describe,
        )
        return VideoTokens(
            fast_tokens=compressed.tokens,
            slow_tokens=maps_to_tokens(frame_maps),
            slow_grid=(frame_maps.shape[2], frame_maps.shape[3]),
            fast_plan=fast_plan,
            num_frames=num_frames,
            compression=compression,
            fast_per_frame=list(compressed.per_frame_counts),
        )

    @torch.inference_mode()
    def embed_prompt(
        self, input_ids: torch.Tensor | list[int], fast_tokens: torch.Tensor | None = None
    ) -> PromptInputs:
        """Token ids (N,) with at most one IMAGE_TOKEN_INDEX -> embeddings with the fast tokens spliced in.

        The result is capped at `tokenizer_model_max_length` like the official model does (it cuts the end).
        """
        input_ids = torch.as_tensor(input_ids, dtype=torch.long, device=self.device).flatten()
        placeholders = (input_ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist()
        if len(placeholders) > 1:
            raise ValueError(f"the prompt has {len(placeholders)} <image> placeholders; one video per conversation")
        if placeholders and fast_tokens is None:
            raise ValueError("the prompt has an <image> placeholder but no video was given")
        if fast_tokens is not None and not placeholders:
            raise ValueError("a video was given but the prompt has no <image> placeholder")

        embed = self.model.embed_tokens
        if not placeholders:
            inputs_embeds = embed(input_ids)
            token_types = torch.full_like(input_ids, TEXT_TOKEN)
        else:
            before, after = input_ids[: placeholders[0]], input_ids[placeholders[0] + 1 :]
            fast_tokens = fast_tokens.to(self.device, self.dtype)
            inputs_embeds = torch.cat([embed(before), fast_tokens, embed(after)])  # (L, d)
            token_types = torch.cat(
                [
                    torch.full_like(before, TEXT_TOKEN),
                    torch.full((len(fast_tokens),), FAST_TOKEN, device=self.device),
                    torch.full_like(after, TEXT_TOKEN),
                ]
            )
        cap = self.config.tokenizer_model_max_length
        truncated = max(0, len(token_types) - cap) if cap else 0
        if truncated:
            inputs_embeds, token_types = inputs_embeds[:cap], token_types[:cap]
        return PromptInputs(inputs_embeds.unsqueeze(0), token_types, truncated_rows=truncated)

    def memory_for(
        self, prompt: PromptInputs, video: VideoTokens | None, record_rows: list[int] | None = None
    ) -> SlowTokenMemory | None:
        """The cross-attention memory for a prefill of `prompt`: its text rows query the video's slow tokens.
        record_rows: text rows whose attention weights to keep (e.g. the question's)."""
        if video is None:
            return None
        slow_tokens = video.slow_tokens.to(self.device, self.dtype).unsqueeze(0)
        if record_rows is not None:
            record_rows = torch.as_tensor(record_rows, dtype=torch.long, device=self.device)
        return SlowTokenMemory(slow_tokens, prompt.text_rows, record_rows=record_rows)

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | Path,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        vocab_size: int | None = None,
        attn_implementation: str | None = None,
    ) -> SlowFastForCausalLM:
        """Load an official checkpoint folder or hub id (single `model.safetensors` or a sharded index).

        The tower's depths and widths come from the tensors. Checkpoint keys must match the module tree exactly,
        except the vision tower's unused classifier `head.*`; anything else missing or unexpected raises
        `checkpoint.CheckpointError` naming the keys. vocab_size: keep only the first rows of the embeddings and
        lm_head, as the official loader does with `resize_token_embeddings(len(tokenizer))`.
        """
        folder = resolve_folder(path_or_repo_id, allow_patterns=checkpoint.HUB_PATTERNS)
        files = checkpoint.weight_files(folder)
        config = SlowFastConfig.from_dict(json.loads((folder / "config.json").read_text()))
        tower = checkpoint.vision_tower_shape(checkpoint.tensor_shapes(files))
        config.vision_tower_depths, config.vision_tower_dims, config.vision_tower_mlp_ratio = tower
        config._attn_implementation = attn_implementation or _default_attention(device, dtype)

        with torch.device("meta"):
            model = cls(config)
        expected = set(model.state_dict())
        if config.tie_word_embeddings:
            expected.discard("lm_head.weight")
        state = checkpoint.load_tensors(files, expected, device=device, dtype=dtype, folder=folder)
        if vocab_size is not None:
            state = checkpoint.slice_vocab(state, vocab_size)
            config.vocab_size = vocab_size
            model.model.embed_tokens = nn.Embedding(vocab_size, config.hidden_size, device="meta")
            model.lm_head = nn.Linear(config.hidden_size, vocab_size, bias=False, device="meta")
        checkpoint.check_shapes(state, model.state_dict())
        model.load_state_dict(state, strict=not config.tie_word_embeddings, assign=True)
        if config.tie_word_embeddings:
            model.lm_head.weight = model.model.embed_tokens.weight
        model.model.rotary_emb = Qwen2RotaryEmbedding(config).to(device)  # its buffers were left on "meta"
        return model.eval().requires_grad_(False)


def _as_compressed(tokens: torch.Tensor, plan: FastTokenPlan, num_frames: int, width: int) -> CompressedTokens:
    """The checkpoint's fast tokens as a compressor's output: a fast token belongs to the first frame of its window,
    and per-frame counts are the windows' shares (`fast_tokens_per_frame`), as the charts have always shown."""
    per_fast_frame = plan.tokens_per_fast_frame
    index = torch.arange(per_fast_frame, device=tokens.device)
    first = torch.tensor([window[0] for window in plan.windows], dtype=torch.long, device=tokens.device)
    frame_of_token = first.repeat_interleave(per_fast_frame)
    cells = index.repeat(len(plan.windows))
    positions = torch.stack([frame_of_token, cells // width, cells % width], dim=1)
    return CompressedTokens(tokens, frame_of_token, positions, fast_tokens_per_frame(plan, num_frames), [])


def _default_attention(device: torch.device | str, dtype: torch.dtype) -> str:
    """SDPA everywhere; flash-attn 2 only when it is installed and the model runs in half precision on CUDA."""
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda and dtype in (torch.float16, torch.bfloat16) and is_flash_attn_2_available():
        return "flash_attention_2"
    return "sdpa"
