"""Tiny random checkpoints of the three Hugging Face families, written offline for tests and benchmarks.

`write_tiny_checkpoint(family, folder)` saves a folder that `from_pretrained(folder)` loads with no network: a tiny
config of the family's real class (hidden 64, 2 layers, a 2-layer vision tower), random weights, a byte-level BPE
tokenizer carrying the family's special tokens, a chat template in the family's prompt layout, and a
`processor_config.json` with the video preprocessing settings our torch preprocessing reads (the layout
transformers 5 writes). Checkpoints are ~1 MB and load in well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

FAMILIES = ("qwen2_5_vl", "llava_onevision", "smolvlm")

# The family's special tokens, in the order they get ids after the 256 byte tokens.
SPECIAL_TOKENS = {
    "qwen2_5_vl": [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ],
    "llava_onevision": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
    "smolvlm": [
        "<|endoftext|>",
        "<|im_start|>",
        "<end_of_utterance>",
        "<fake_token_around_image>",
        "<global-img>",
        "<image>",
        "<video>",
    ],
}

# Chat templates written for each family's prompt layout (a video slot in the first user turn).
CHAT_TEMPLATES = {
    "qwen2_5_vl": (
        "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
        "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for part in message['content'] %}{% if part['type'] == 'video' %}"
        "<|vision_start|><|video_pad|><|vision_end|>{% elif part['type'] == 'text' %}{{ part['text'] }}"
        "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "llava_onevision": (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for part in message['content'] %}{% if part['type'] == 'video' %}<video>\n{% endif %}{% endfor %}"
        "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "smolvlm": (
        "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}: "
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
        "{% elif part['type'] == 'video' %}<video>{% endif %}{% endfor %}{% endif %}<end_of_utterance>\n"
        "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
    ),
}

# Video preprocessing settings, small enough for a tiny tower (real checkpoints ship their own).
TINY_VIDEO_PROCESSORS = {
    "qwen2_5_vl": {
        "size": {"shortest_edge": 56 * 56, "longest_edge": 84 * 112},
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
    },
    "llava_onevision": {"size": {"height": 56, "width": 56}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3},
    "smolvlm": {
        "size": {"longest_edge": 64},
        "max_image_size": {"longest_edge": 64},
        "image_mean": [0.5] * 3,
        "image_std": [0.5] * 3,
    },
}


def byte_level_tokenizer(family: str):
    """A byte-level BPE tokenizer (ids 0-255 are bytes) plus the family's special tokens and chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={char: i for i, char in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    specials = SPECIAL_TOKENS[family]
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    eos = {"qwen2_5_vl": "<|im_end|>", "llava_onevision": "<|im_end|>", "smolvlm": "<end_of_utterance>"}[family]
    extra = {"video_token": "<|video_pad|>" if family == "qwen2_5_vl" else "<video>"}
    extra["image_token"] = "<|image_pad|>" if family == "qwen2_5_vl" else "<image>"
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=eos, pad_token="<|endoftext|>", extra_special_tokens=extra
    )
    tokenizer.chat_template = CHAT_TEMPLATES[family]
    return tokenizer


def tiny_config(family: str, tokenizer):
    """A tiny config of the family's real class, with token ids taken from `tokenizer`."""
    from transformers import LlavaOnevisionConfig, Qwen2_5_VLConfig, SmolVLMConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS[family]}
    vocab_size = len(tokenizer) + 4  # padded like the real vocabularies
    text = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )
    if family == "qwen2_5_vl":
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
        vision = dict(
            depth=2,
            hidden_size=32,
            intermediate_size=48,
            num_heads=2,
            out_hidden_size=64,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[1],
            tokens_per_second=2,
        )
        return Qwen2_5_VLConfig(
            text_config={**text, "model_type": "qwen2_5_vl_text"},
            vision_config=vision,
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=False,
        )
    if family == "llava_onevision":
        vision = dict(
            model_type="siglip_vision_model",
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=56,
            patch_size=14,
        )
        return LlavaOnevisionConfig(
            text_config={**text, "model_type": "qwen2"},
            vision_config=vision,
            image_token_id=ids["<image>"],
            video_token_id=ids["<video>"],
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            image_grid_pinpoints=[[56, 56]],
            tie_word_embeddings=False,
        )
    vision = dict(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16
    )
    return SmolVLMConfig(
        text_config={**text, "model_type": "llama"},
        vision_config=vision,
        scale_factor=2,
        image_token_id=ids["<image>"],
        tie_word_embeddings=False,
    )


@torch.no_grad()
def random_model(config, seed: int = 0):
    """The family's real model class with random weights (norm weights away from 1 so a wrong formula shows)."""
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, attn_implementation="sdpa")
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        noise = torch.randn(parameter.shape, generator=generator)
        if parameter.ndim == 1 and "norm" in name and name.endswith("weight"):
            parameter.copy_(1.0 + 0.2 * noise)
        elif parameter.ndim == 1:
            parameter.copy_(0.1 * noise)
        else:
            parameter.copy_(noise * parameter[0].numel() ** -0.5)
    return model.eval()


def write_tiny_checkpoint(family: str, folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random checkpoint of `family` into `folder` (config, weights, tokenizer, processor config)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = byte_level_tokenizer(family)
    model = random_model(tiny_config(family, tokenizer), seed=seed)
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATES[family])
    processor = {"video_processor": TINY_VIDEO_PROCESSORS[family]}
    (folder / "processor_config.json").write_text(json.dumps(processor, indent=2))
    return folder
