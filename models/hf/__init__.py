"""Hugging Face video LLMs (Qwen2.5-VL, LLaVA-OneVision, SmolVLM2) behind the studio's `VideoLLM` protocol.

`load(name, repo_id)` reads the checkpoint's `model_type` and hands it to that family's adapter module (imported
lazily, so picking one family never imports the others). From the hub it fetches only what transformers loads
(`HUB_PATTERNS`: configs, safetensors weights, tokenizer and chat-template files), not the ONNX or GGUF exports
some repos also carry.
"""

from __future__ import annotations

import importlib

from models.base import ModelUnavailableError

HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]
FAMILY_MODULES = {
    "qwen2_5_vl": "models.hf.qwen2_5_vl",
    "llava_onevision": "models.hf.llava_onevision",
    "smolvlm": "models.hf.smolvlm2",
}


def load(name: str, repo_id: str, *, device: str | None = None, dtype: str | None = None):
    """Load a checkpoint of a supported family by hub id or local folder."""
    from models.hf.common import model_type_of
    from models.hub import resolve_folder

    folder = resolve_folder(repo_id, allow_patterns=HUB_PATTERNS)
    model_type = model_type_of(folder)
    if model_type not in FAMILY_MODULES:
        supported = ", ".join(FAMILY_MODULES)
        raise ModelUnavailableError(
            f"{repo_id} is a {model_type!r} model; the studio's HF adapters support the model types {supported}"
        )
    module = importlib.import_module(FAMILY_MODULES[model_type])
    return module.load(name, str(folder), device=device, dtype=dtype)
