"""Tiny random Slow-Fast checkpoints in the official layout, for tests and benchmarks (no download needed).

`write_checkpoint` saves a folder like a released one: an official-style `config.json` (`rope_theta`, no vision
tower shape), the state dict with official key names plus the unused tower `head.*` tensors, optionally sharded
with `model.safetensors.index.json`, and a byte-level ChatML tokenizer (256 byte tokens + 3 specials). Weights are
random with non-default values everywhere (norm weights away from 1, non-zero gates), so a wrong formula shows up
as a wrong number instead of hiding behind an identity.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from models.slowfast.config import SlowFastConfig
from models.slowfast.modeling import SlowFastForCausalLM

TINY_DEFAULTS = dict(
    vocab_size=272,  # more rows than the byte tokenizer's 259, like Qwen2's padded 152064 vs 151646
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    rope_theta=1e6,
    rms_norm_eps=1e-6,
    max_position_embeddings=4096,
    mm_hidden_size=32,
    mm_video_pooling_stride=2,
    fast_token_temporal_sampling_stride=1,
    fast_token_temporal_stride=4,
    fast_token_spatial_stride=1,
    min_fast_frames=2,
    cross_attn_every_n_layers=2,
    cross_attn_implementation="text-only-vanilla-flashattn",
    cross_attn_gating_type="whole-dynamic-tanh-warmup",
    tokenizer_model_max_length=4096,
    mm_training_video_frames=8,
    vision_tower_depths=[1, 1, 2, 1],
    vision_tower_dims=[8, 16, 24, 32],
)
OURS_ONLY = (
    "vision_tower_depths",
    "vision_tower_dims",
    "vision_tower_mlp_ratio",
    "vision_layer_norm_eps",
    "image_size",
)
TOLERATED_HEAD_KEYS = ("model.vision_tower.vision_tower.head.norm", "model.vision_tower.vision_tower.head.fc")


def tiny_config(**overrides) -> SlowFastConfig:
    return SlowFastConfig(**{**TINY_DEFAULTS, **overrides})


@torch.no_grad()
def random_model(config: SlowFastConfig, seed: int = 0) -> SlowFastForCausalLM:
    model = SlowFastForCausalLM(config)
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        noise = torch.randn(parameter.shape, generator=generator)
        if name.endswith("cross_attn_warm_up_gate"):
            parameter.fill_(1.5)
        elif re.fullmatch(r".*blocks\.\d+\.weight", name):  # ConvNeXt layer scale
            parameter.copy_(0.3 + 0.7 * torch.rand(parameter.shape, generator=generator))
        elif parameter.ndim == 1 and ("norm" in name or "stem.1" in name or "downsample.0" in name):
            parameter.copy_(1.0 + 0.2 * noise if name.endswith("weight") else 0.1 * noise)
        elif parameter.ndim == 1:
            parameter.copy_(0.1 * noise)  # biases
        else:
            fan_in = parameter[0].numel()
            parameter.copy_(noise * (0.02 if "embed_tokens" in name else fan_in**-0.5))
    return model.eval()


def released_config_dict(config: SlowFastConfig) -> dict:
    """The config as the official code writes it: `rope_theta` instead of `rope_parameters`, no tower shape."""
    values = config.to_dict()
    for key in (*OURS_ONLY, "rope_parameters", "layer_types"):
        values.pop(key, None)
    values["rope_theta"] = config.rope_parameters["rope_theta"]
    values["architectures"] = ["LlavaQwenSlowFastForCausalLM"]
    return values


def byte_tokenizer():
    """A ChatML-capable byte-level tokenizer: ids 0-255 are bytes, then <|im_end|>, <|endoftext|>, <|im_start|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={char: i for i, char in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )


def write_checkpoint(
    model: SlowFastForCausalLM,
    folder: Path,
    num_shards: int = 1,
    with_head: bool = True,
    with_tokenizer: bool = True,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    drop_keys: tuple[str, ...] = (),
) -> Path:
    """Save `model` as an official checkpoint folder (single file, or `num_shards` shards with an index)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: tensor.contiguous() for key, tensor in model.state_dict().items() if key not in drop_keys}
    if with_head:
        dim = model.config.vision_tower_dims[-1]
        state[f"{TOLERATED_HEAD_KEYS[0]}.weight"] = torch.ones(dim)
        state[f"{TOLERATED_HEAD_KEYS[0]}.bias"] = torch.zeros(dim)
        state[f"{TOLERATED_HEAD_KEYS[1]}.weight"] = torch.zeros(1000, dim)
        state[f"{TOLERATED_HEAD_KEYS[1]}.bias"] = torch.zeros(1000)
    state.update(extra_tensors or {})
    (folder / "config.json").write_text(json.dumps(released_config_dict(model.config), indent=2))

    keys = sorted(state)
    if num_shards == 1:
        save_file(state, folder / "model.safetensors")
    else:
        weight_map = {}
        for shard in range(num_shards):
            name = f"model-{shard + 1:05d}-of-{num_shards:05d}.safetensors"
            shard_keys = keys[shard::num_shards]
            save_file({key: state[key] for key in shard_keys}, folder / name)
            weight_map.update(dict.fromkeys(shard_keys, name))
        index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    if with_tokenizer:
        byte_tokenizer().save_pretrained(folder)
    return folder
