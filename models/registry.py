"""The model registry: a literal dict you can read on one screen.

Each entry names a loader by import path, so picking one model never imports the others. Loading is lazy and
cached per process. `availability(name)` says whether an entry can run on this machine and, if not, why; the UI
shows unavailable entries disabled with that reason instead of hiding them. Each entry lists the compressors it
supports (`models.compression.COMPRESSORS` keys, the default first): `PLANNER_COMPRESSORS` or `GRID_COMPRESSORS`,
the tuples the models' own checks read too.

Local checkpoints: `register_local_model(path)` adds a downloaded model folder, its family read from the
`model_type` in its `config.json` (see `LOCAL_FAMILIES`); `load_local_models_from_env()` registers the folders
named in `STUDIO_LOCAL_MODELS` (os.pathsep-separated, each `path` or `name=path`) and in the JSON or TOML file
named by `STUDIO_MODELS_FILE`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.base import EncodeParams, ModelUnavailableError, VideoLLM
from models.compression import GRID_COMPRESSORS, PLANNER_COMPRESSORS
from models.hub import OFF_VALUES, hub_answers, hub_offline


@dataclass(frozen=True)
class ModelSpec:
    loader: str  # "package.module:function" returning a VideoLLM; called with **kwargs
    description: str
    defaults: EncodeParams
    needs: frozenset[str]  # subset of {"cpu", "gpu", "offline", "hub", "engine"}
    kwargs: dict[str, Any] = field(default_factory=dict)
    compressors: tuple[str, ...] = ("official",)  # keys of models.compression.COMPRESSORS; the first is the default
    family: str = ""  # the model family, as the README's models table names it
    size: str = ""  # parameters, as the model card states them


DEFAULT_MODEL = "slowfast-lite"
LANGDC_COMPRESSORS = ("official",)  # its captioner's rule (dynamic by itself); see models/langdc/budgets.py
SMOLVLM2_CPU = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"


def default_model_name() -> str:
    """The model the studio starts with on a CPU: SmolVLM2-256M where the hub answers (or on a Space that has it in
    its HF cache); the embedded default offline and on a GPU (GPU machines choose in the menu)."""
    if _has_gpu() or not (_hub_reachable() or os.environ.get("SPACE_ID")):
        return DEFAULT_MODEL
    return SMOLVLM2_CPU if availability(SMOLVLM2_CPU)[0] else DEFAULT_MODEL


MODELS: dict[str, ModelSpec] = {
    "slowfast-lite": ModelSpec(
        loader="models.lite.model:load",
        description="Embedded default: EfficientNet-Lite0 labels in slow/fast pathways, per-clip budgets "
        "written as language, answered by SmolLM2-135M-Instruct. Runs offline on a CPU.",
        defaults=EncodeParams(num_frames=32, fps=2.0),
        needs=frozenset({"cpu", "offline"}),
        compressors=PLANNER_COMPRESSORS,
        family="Embedded Slow-Fast (language space)",
        size="135M LLM + 5M tower + 22M retriever",
    ),
    "slowfast-mllm-7b-f64-s1t4": ModelSpec(
        loader="models.slowfast.loader:load",
        description="SHI-Labs Slow-Fast Video MLLM (Qwen2-7B + ConvNeXt-576), 64 frames, temporal stride 4.",
        defaults=EncodeParams(num_frames=64),
        needs=frozenset({"gpu", "hub"}),
        kwargs={"repo_id": "shi-labs/slowfast-video-mllm-qwen2-7b-convnext-576-frame64-s1t4"},
        compressors=PLANNER_COMPRESSORS,
        family="Slow-Fast Video MLLM",
        size="7B LLM + 0.85B tower",
    ),
    "slowfast-mllm-7b-f96-s1t6": ModelSpec(
        loader="models.slowfast.loader:load",
        description="SHI-Labs Slow-Fast Video MLLM (Qwen2-7B + ConvNeXt-576), 96 frames, temporal stride 6.",
        defaults=EncodeParams(num_frames=96),
        needs=frozenset({"gpu", "hub"}),
        kwargs={"repo_id": "shi-labs/slowfast-video-mllm-qwen2-7b-convnext-576-frame96-s1t6"},
        compressors=PLANNER_COMPRESSORS,
        family="Slow-Fast Video MLLM",
        size="7B LLM + 0.85B tower",
    ),
    "slowfast-mllm-7b-f128-s2t4": ModelSpec(
        loader="models.slowfast.loader:load",
        description="SHI-Labs Slow-Fast Video MLLM (Qwen2-7B + ConvNeXt-576), 128 frames, sampling stride 2.",
        defaults=EncodeParams(num_frames=128),
        needs=frozenset({"gpu", "hub"}),
        kwargs={"repo_id": "shi-labs/slowfast-video-mllm-qwen2-7b-convnext-576-frame128-s2t4"},
        compressors=PLANNER_COMPRESSORS,
        family="Slow-Fast Video MLLM",
        size="7B LLM + 0.85B tower",
    ),
    "LangDC": ModelSpec(
        loader="models.langdc.loader:load",
        description="LangDC (InternVideo2 + CLIP towers, Qwen2.5-3B): 16 frames in 4 clips; a small captioner "
        "describes each clip and its caption's length is that clip's extra tokens.",
        defaults=EncodeParams(num_frames=16),
        needs=frozenset({"gpu", "hub"}),
        kwargs={"repo_id": "Wangxc1000/LangDC"},
        compressors=LANGDC_COMPRESSORS,
        family="LangDC",
        size="3B LLM + 0.5B captioner + 1B video tower + 0.3B CLIP",
    ),
    # Hugging Face video LLMs (models/hf/): any checkpoint of these families also loads from a local folder.
    "Qwen/Qwen2.5-VL-3B-Instruct": ModelSpec(
        loader="models.hf:load",
        description="Qwen2.5-VL 3B Instruct: 2-frame temporal patches, 3-D M-RoPE with real timestamps.",
        defaults=EncodeParams(num_frames=32, fps=2.0),
        needs=frozenset({"gpu", "hub"}),
        kwargs={"repo_id": "Qwen/Qwen2.5-VL-3B-Instruct"},
        compressors=GRID_COMPRESSORS,
        family="Qwen2.5-VL",
        size="3B",
    ),
    "Qwen/Qwen2.5-VL-7B-Instruct": ModelSpec(
        loader="models.hf:load",
        description="Qwen2.5-VL 7B Instruct: 2-frame temporal patches, 3-D M-RoPE with real timestamps.",
        defaults=EncodeParams(num_frames=32, fps=2.0),
        needs=frozenset({"gpu", "hub"}),
        kwargs={"repo_id": "Qwen/Qwen2.5-VL-7B-Instruct"},
        compressors=GRID_COMPRESSORS,
        family="Qwen2.5-VL",
        size="7B",
    ),
    "llava-hf/llava-onevision-qwen2-0.5b-ov-hf": ModelSpec(
        loader="models.hf:load",
        description="LLaVA-OneVision 0.5B (SigLIP + Qwen2-0.5B): 196 tokens per frame. Runs on a CPU (slowly).",
        defaults=EncodeParams(num_frames=8),
        needs=frozenset({"cpu", "hub"}),
        kwargs={"repo_id": "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"},
        compressors=GRID_COMPRESSORS,
        family="LLaVA-OneVision",
        size="0.5B",
    ),
    "llava-hf/llava-onevision-qwen2-7b-ov-hf": ModelSpec(
        loader="models.hf:load",
        description="LLaVA-OneVision 7B (SigLIP + Qwen2-7B): 196 tokens per frame.",
        defaults=EncodeParams(num_frames=16),
        needs=frozenset({"gpu", "hub"}),
        kwargs={"repo_id": "llava-hf/llava-onevision-qwen2-7b-ov-hf"},
        compressors=GRID_COMPRESSORS,
        family="LLaVA-OneVision",
        size="7B",
    ),
    SMOLVLM2_CPU: ModelSpec(
        loader="models.hf:load",
        description="SmolVLM2 256M Video Instruct: 64 tokens per frame with per-frame timestamps. Runs on a CPU; "
        "the CPU default where the hub answers.",
        defaults=EncodeParams(num_frames=8),
        needs=frozenset({"cpu", "hub"}),
        kwargs={"repo_id": SMOLVLM2_CPU},
        compressors=GRID_COMPRESSORS,
        family="SmolVLM2",
        size="256M",
    ),
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct": ModelSpec(
        loader="models.hf:load",
        description="SmolVLM2 2.2B Instruct: 81 tokens per frame with per-frame timestamps.",
        defaults=EncodeParams(num_frames=16),
        needs=frozenset({"gpu", "hub"}),
        kwargs={"repo_id": "HuggingFaceTB/SmolVLM2-2.2B-Instruct"},
        compressors=GRID_COMPRESSORS,
        family="SmolVLM2",
        size="2.2B",
    ),
}

BUILTIN_MODELS = tuple(MODELS)  # the entries above, before any local folder joins
_loaded: dict[str, VideoLLM] = {}
_loading: set[str] = set()
_lock = threading.Lock()
# name -> a check run on every availability question: "" when the model can run now, else why not (e.g. a remote
# engine that is not reachable). Entries come from `register_model`.
AVAILABILITY_CHECKS: dict[str, Callable[[], str]] = {}


def register_model(name: str, spec: ModelSpec, check: Callable[[], str] | None = None) -> str:
    """Add a model to the menu at run time (a remote engine), with an optional live availability check."""
    with _lock:
        existing = MODELS.get(name)
        if existing is not None and existing.loader != spec.loader:
            raise ValueError(f"the name {name!r} is taken by another model; pick another name")
        MODELS[name] = spec
        _loaded.pop(name, None)
        if check is not None:
            AVAILABILITY_CHECKS[name] = check
    return name


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
    """Offline switches win; then STUDIO_ASSUME_HUB says so without asking (set: yes; "0", "false", "no", "off":
    no), and so does SPACE_ID (a Space is online); otherwise the start-up probe's answer (`models.hub.check_hub`)."""
    if hub_offline():
        return False
    assume = os.environ.get("STUDIO_ASSUME_HUB", "").strip().lower()
    if assume:
        return assume not in OFF_VALUES
    return bool(os.environ.get("SPACE_ID")) or hub_answers()


def _in_hub_cache(repo_id: str | None) -> bool:
    """Whether the HF cache already holds this repo (a Space's persistent cache, or a pre-filled one offline)."""
    if not repo_id or importlib.util.find_spec("huggingface_hub") is None:
        return False
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=os.environ.get("HF_HUB_CACHE"))
    return isinstance(found, str)


def availability(name: str) -> tuple[bool, str]:
    """(can_run, reason). The reason is empty when the model can run here."""
    needs = get_spec(name).needs
    missing = []
    if "gpu" in needs and not _has_gpu():
        missing.append("a GPU")
    if "hub" in needs and not _hub_reachable() and not _in_hub_cache(get_spec(name).kwargs.get("repo_id")):
        missing.append("hub access")
    if missing:
        return False, "needs " + " and ".join(missing)
    problem = AVAILABILITY_CHECKS[name]() if name in AVAILABILITY_CHECKS else ""
    return (False, problem) if problem else (True, "")


def is_loaded(name: str) -> bool:
    """Whether `load_model(name)` would return at once (it was loaded before in this process)."""
    return name in _loaded


def is_loading(name: str) -> bool:
    """Whether `load_model(name)` is under way (in the start-up preload or for a question)."""
    return name in _loading


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
        _loading.add(name)
        try:
            loader = getattr(importlib.import_module(module_name), function_name)
            model = loader(name=name, **spec.kwargs)
        finally:
            _loading.discard(name)
        _loaded[name] = model
        return model


# ----------------------------------------------------------------------------------------------------------------
# Local checkpoints


@dataclass(frozen=True)
class LocalFamily:
    """How to run a model folder whose config.json has a given `model_type`."""

    loader: str  # "package.module:function", called with name=..., repo_id=<folder>, **kwargs
    label: str
    compressors: tuple[str, ...] = ("official",)
    kwargs: dict[str, Any] = field(default_factory=dict)
    num_frames: int | None = None  # the family's frame count, when its config.json does not say
    weights_bytes: str | None = None  # "module:function" (folder -> bytes) when weights live outside the folder


# model_type (from the folder's config.json) -> family: the three HF families (models/hf/), the Slow-Fast MLLM and
# LangDC (whose base LLM, captioner and towers sit beside its folder: `weights_bytes` counts them all).
LOCAL_FAMILIES: dict[str, LocalFamily] = {
    "qwen2_5_vl": LocalFamily("models.hf:load", "Qwen2.5-VL", GRID_COMPRESSORS),
    "llava_onevision": LocalFamily("models.hf:load", "LLaVA-OneVision", GRID_COMPRESSORS),
    "smolvlm": LocalFamily("models.hf:load", "SmolVLM2", GRID_COMPRESSORS),
    "llava_qwen_slow_fast": LocalFamily(
        loader="models.slowfast.loader:load",
        label="Slow-Fast Video MLLM",
        compressors=PLANNER_COMPRESSORS,
        kwargs={"device": "auto"},
    ),
    "VideoQwenVQA": LocalFamily(
        loader="models.langdc.loader:load",
        label="LangDC",
        compressors=LANGDC_COMPRESSORS,
        kwargs={"device": "auto"},
        num_frames=16,
        weights_bytes="models.langdc.checkpoint:release_bytes",
    ),
}
GPU_WEIGHTS_BYTES = 2 * 1024**3  # above this a local model is marked as needing a GPU
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class LocalModelError(ValueError):
    """A local model folder cannot be registered; the message says why and what would work."""


def _weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def _read_model_type(folder: Path) -> str:
    config = folder / "config.json"
    if not config.is_file():
        raise LocalModelError(f"{folder} has no config.json; point at the folder that holds the model's config.json")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LocalModelError(f"{config} is not valid JSON ({error})") from error
    if model_type not in LOCAL_FAMILIES:
        supported = ", ".join(f"{key} ({family.label})" for key, family in LOCAL_FAMILIES.items())
        raise LocalModelError(
            f"{folder} holds a model of type {model_type!r}, which the studio cannot run; supported types: {supported}"
        )
    return model_type


def register_local_model(path: str | os.PathLike, name: str | None = None) -> str:
    """Register the model folder at `path` and return its registry name (the folder name unless `name` is given).

    Registering the same folder again returns the same name; a name taken by another model is refused.
    """
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise LocalModelError(f"no model folder at {path}")
    model_type = _read_model_type(folder)
    family = LOCAL_FAMILIES[model_type]
    name = name or folder.name
    size = _weights_bytes(folder)
    if family.weights_bytes:
        module_name, function_name = family.weights_bytes.split(":")
        size = getattr(importlib.import_module(module_name), function_name)(folder)
    spec = ModelSpec(
        loader=family.loader,
        description=f"{family.label} from the local folder {folder} ({size / 1e9:.2f} GB of weights).",
        defaults=EncodeParams(num_frames=_training_frames(folder) or family.num_frames or 32),
        needs=frozenset({"gpu" if size > GPU_WEIGHTS_BYTES else "cpu", "offline"}),
        kwargs={**family.kwargs, "repo_id": str(folder)},
        compressors=family.compressors,
        family=family.label,
        size=f"{size / 1e9:.2f} GB of weights",
    )
    with _lock:
        existing = MODELS.get(name)
        if existing is not None and existing.kwargs.get("repo_id") != str(folder):
            raise LocalModelError(f"the name {name!r} is taken by another model; pass another name")
        MODELS[name] = spec
    return name


def _training_frames(folder: Path) -> int | None:
    frames = json.loads((folder / "config.json").read_text()).get("mm_training_video_frames")
    return int(frames) if isinstance(frames, int) and frames > 0 else None


def _entries_from_file(path: Path) -> list[tuple[str | None, str]]:
    """(name, path) pairs from a JSON or TOML file: {"models": [{"path": ..., "name": ...}]} or {name: path}."""
    if not path.is_file():
        raise LocalModelError(f"STUDIO_MODELS_FILE points at {path}, which does not exist")
    text = path.read_text()
    if path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise LocalModelError(f"{path} is not valid TOML ({error})") from error
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise LocalModelError(f"{path} is not valid JSON ({error})") from error
    items = data.get("models", data) if isinstance(data, dict) else data
    pairs: list[tuple[str | None, str]] = []
    if isinstance(items, dict):
        pairs = [(str(key), str(value)) for key, value in items.items()]
    elif isinstance(items, list):
        for item in items:
            if isinstance(item, str):
                pairs.append((None, item))
            elif isinstance(item, dict) and "path" in item:
                pairs.append((item.get("name"), str(item["path"])))
            else:
                raise LocalModelError(f"{path}: each model needs a 'path' (and optionally a 'name'), got {item!r}")
    else:
        raise LocalModelError(f"{path}: expected a list of models or a name -> path table")
    # relative paths are relative to the file, so a config can sit next to its checkpoints
    return [(name, str((path.parent / Path(p).expanduser()).resolve())) for name, p in pairs]


def load_local_models_from_env(environ: dict[str, str] | None = None) -> list[str]:
    """Register the folders in STUDIO_LOCAL_MODELS and STUDIO_MODELS_FILE; returns their registry names."""
    environ = os.environ if environ is None else environ
    entries: list[tuple[str | None, str]] = []
    for item in environ.get("STUDIO_LOCAL_MODELS", "").split(os.pathsep):
        if item.strip():
            name, sep, folder = item.strip().partition("=")
            entries.append((name, folder) if sep else (None, name))
    if environ.get("STUDIO_MODELS_FILE"):
        entries += _entries_from_file(Path(environ["STUDIO_MODELS_FILE"]).expanduser())
    return [register_local_model(folder, name) for name, folder in entries]
