"""The model registry: a literal dict you can read on one screen.

Each entry names a loader by import path, so picking one model never imports the others. Loading is lazy and
cached per process. `availability(name)` says whether an entry can run on this machine and, if not, why; the UI
shows unavailable entries disabled with that reason instead of hiding them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from models.base import EncodeParams, ModelUnavailableError, VideoLLM


@dataclass(frozen=True)
class ModelSpec:
    loader: str  # "package.module:function" returning a VideoLLM; called with **kwargs
    description: str
    defaults: EncodeParams
    needs: frozenset[str]  # subset of {"cpu", "gpu", "offline", "hub"}
    kwargs: dict[str, Any] = field(default_factory=dict)


DEFAULT_MODEL = "slowfast-lite"

MODELS: dict[str, ModelSpec] = {
    "slowfast-lite": ModelSpec(
        loader="models.lite.model:load",
        description="Embedded default: EfficientNet-Lite0 labels in slow/fast pathways, LangDC-style per-clip "
        "budgets written as language, answered by SmolLM2-135M-Instruct. Runs offline on a CPU.",
        defaults=EncodeParams(num_frames=32, fps=2.0, token_budget=192),
        needs=frozenset({"cpu", "offline"}),
    ),
    "slowfast-mllm-7b-f64-s1t4": ModelSpec(
        loader="models.slowfast.loader:load",
        description="SHI-Labs Slow-Fast Video MLLM (Qwen2-7B + ConvNeXt-576), 64 frames, temporal stride 4.",
        defaults=EncodeParams(num_frames=64),
        needs=frozenset({"gpu", "hub"}),
        kwargs={"repo_id": "shi-labs/slowfast-video-mllm-qwen2-7b-convnext-576-frame64-s1t4"},
    ),
    "slowfast-mllm-7b-f96-s1t6": ModelSpec(
        loader="models.slowfast.loader:load",
        description="SHI-Labs Slow-Fast Video MLLM (Qwen2-7B + ConvNeXt-576), 96 frames, temporal stride 6.",
        defaults=EncodeParams(num_frames=96),
        needs=frozenset({"gpu", "hub"}),
        kwargs={"repo_id": "shi-labs/slowfast-video-mllm-qwen2-7b-convnext-576-frame96-s1t6"},
    ),
    "slowfast-mllm-7b-f128-s2t4": ModelSpec(
        loader="models.slowfast.loader:load",
        description="SHI-Labs Slow-Fast Video MLLM (Qwen2-7B + ConvNeXt-576), 128 frames, sampling stride 2.",
        defaults=EncodeParams(num_frames=128),
        needs=frozenset({"gpu", "hub"}),
        kwargs={"repo_id": "shi-labs/slowfast-video-mllm-qwen2-7b-convnext-576-frame128-s2t4"},
    ),
}

_loaded: dict[str, VideoLLM] = {}
_lock = threading.Lock()


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        known = ", ".join(sorted(MODELS))
        raise KeyError(f"unknown model {name!r}; known models: {known}")
    return MODELS[name]


def _has_gpu() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _hub_reachable() -> bool:
    """Hub access is a setting, not a probe: offline flags win; otherwise a token or SPACE_ID says we are online."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    return bool(os.environ.get("SPACE_ID") or os.environ.get("STUDIO_ASSUME_HUB"))


def availability(name: str) -> tuple[bool, str]:
    """(can_run, reason). The reason is empty when the model can run here."""
    needs = get_spec(name).needs
    missing = []
    if "gpu" in needs and not _has_gpu():
        missing.append("a GPU")
    if "hub" in needs and not _hub_reachable():
        missing.append("hub access")
    if not missing:
        return True, ""
    return False, "needs " + " and ".join(missing)


def load_model(name: str) -> VideoLLM:
    """Load (once per process) and return the model registered under `name`."""
    spec = get_spec(name)
    with _lock:
        if name in _loaded:
            return _loaded[name]
        ok, reason = availability(name)
        if not ok:
            raise ModelUnavailableError(f"{name} cannot run here: it {reason}.")
        module_name, function_name = spec.loader.split(":")
        loader = getattr(importlib.import_module(module_name), function_name)
        model = loader(name=name, **spec.kwargs)
        _loaded[name] = model
        return model
