"""Loading LangDC from the released layout, without the release's code and without peft.

A release is several folders. The *model folder* holds `config.json` (`model_type` "VideoQwenVQA"), a PEFT LoRA
adapter for the answering LLM (`adapter_config.json` + `adapter_model.safetensors`, or `.bin`) and
`non_lora_trainables.bin` (the projectors; keys lose a leading `base_model.`, then one `model.` when they start with
`model.model.`, as the release's loader does). The *base* answering LLM is named by the adapter's
`base_model_name_or_path`; the *captioner* folder (a Qwen2 with `mm_projector.bin` holding `model.cap_mm_projector.*`
and `model.cap_image_mm_projector.*`) is a command-line argument of the release, so it is taken from the caller,
from a `cap_light_llm` config key, or found beside the model folder. The towers load from their own files:
`mm_vision_tower` (the InternVideo2 `.pt`, `{"module": {...}}`) and `image_mm_vision_tower` (a CLIP folder or hub id).
Recorded paths are often absolute paths of the machine that trained the model: each is tried as written, then
relative to the model folder and its parent, then by its last name(s) there, then as a hub id (`KNOWN_ON_HUB` maps the
usual parts, e.g. the InternVideo2 `.pt` and the Qwen2.5 and CLIP folders, to their hub repos).

The LoRA merge is `W + (B @ A) * alpha / r` per target module (rsLoRA: `alpha / sqrt(r)`), in float32. As in the
release, the captioner is loaded after the merge (the adapter never touches it), and the answering LLM's vocabulary
is cut to its tokenizer's length (`resize_token_embeddings(len(tokenizer))`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from models.base import ModelUnavailableError
from models.hub import HUB_ID, resolve_folder
from models.langdc.captioner import DecodeSettings
from models.langdc.clip_tower import load_clip_tower
from models.langdc.internvideo2 import tower_from_state
from models.langdc.modeling import LangDCModel
from models.langdc.projectors import build_projector

logger = logging.getLogger(__name__)
MODEL_TYPE = "VideoQwenVQA"
# Parts a release names by a path of the machine it was trained on, and where the hub has them (repo, file).
KNOWN_ON_HUB = {
    "Qwen2.5-3B-Instruct": ("Qwen/Qwen2.5-3B-Instruct", None),
    "Qwen2.5-0.5B-Instruct": ("Qwen/Qwen2.5-0.5B-Instruct", None),
    "clip-vit-large-patch14-336": ("openai/clip-vit-large-patch14-336", None),
    "InternVideo2-stage2_1b-224p-f4.pt": (
        "OpenGVLab/InternVideo2-Stage2_1B-224p-f4",
        "InternVideo2-stage2_1b-224p-f4.pt",
    ),
}
HUB_FILE_SEPARATOR = "::"  # "repo::file": a single file on the hub
PROJECTORS = ("mm_projector", "image_mm_projector", "cap_mm_projector", "cap_image_mm_projector", "llm_projector")


@dataclass(frozen=True)
class LangDCPaths:
    """Where each part of one release lives (image_tower may be a hub id)."""

    model: Path
    base: Path
    captioner: Path
    video_tower: Path | str  # a str is "repo::file" on the hub
    image_tower: Path | str
    cap_projector: Path


@dataclass
class LoadedLangDC:
    model: LangDCModel
    tokenizer: object  # the answering LLM's (the base folder's, as released)
    caption_tokenizer: object
    paths: LangDCPaths
    config: dict


def read_config(folder: Path) -> dict:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelUnavailableError(f"{folder} has no config.json: it is not a LangDC model folder")
    config = json.loads(config_path.read_text())
    if config.get("model_type") != MODEL_TYPE:
        raise ModelUnavailableError(f"{folder} holds a {config.get('model_type')!r} model, not {MODEL_TYPE!r}")
    return config


def locate(reference: str | None, model_dir: Path, *, want_file: bool, what: str) -> Path | str:
    """A recorded path as written, else relative to the model folder or its parent, else by its last one or two
    names there; a hub id (owner/name) that is none of those is returned as is, for the hub to resolve."""
    if not reference:
        raise ModelUnavailableError(f"the LangDC config names no {what}")
    path = Path(reference).expanduser()
    tail = path.parts[-2:] if len(path.parts) >= 2 else path.parts
    candidates = [path] if path.is_absolute() else [model_dir / path, model_dir.parent / path]
    for root in (model_dir, model_dir.parent):
        candidates += [root / Path(*tail), root / path.name]
    for candidate in candidates:
        if candidate.is_file() if want_file else candidate.is_dir():
            return candidate.resolve()
    if not want_file and not path.is_absolute() and HUB_ID.fullmatch(str(reference)):
        return str(reference)
    if path.name in KNOWN_ON_HUB and (KNOWN_ON_HUB[path.name][1] is not None) == want_file:
        repo, filename = KNOWN_ON_HUB[path.name]
        return f"{repo}{HUB_FILE_SEPARATOR}{filename}" if want_file else repo
    tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise ModelUnavailableError(f"cannot find the {what} {reference!r} (looked at {tried})")


def _find_captioner(model_dir: Path, hidden_size: int | None) -> Path:
    """A folder beside (or inside) the model folder that holds a Qwen2 config and `mm_projector.bin`."""
    for folder in sorted([*model_dir.iterdir(), *model_dir.parent.iterdir()]):
        if not (folder.is_dir() and (folder / "mm_projector.bin").is_file() and (folder / "config.json").is_file()):
            continue
        config = json.loads((folder / "config.json").read_text())
        if hidden_size is None or config.get("hidden_size") == hidden_size:
            return folder.resolve()
    raise ModelUnavailableError(
        f"cannot find LangDC's captioner (a Qwen2 folder with mm_projector.bin) beside {model_dir}; pass its folder"
    )


def resolve_paths(
    model_dir: Path, *, base=None, captioner=None, video_tower=None, image_tower=None, fetch: bool = True
) -> LangDCPaths:
    """Every part's location for the model folder `model_dir`; explicit arguments win over recorded paths.
    fetch: download LLM folders named by hub id (else such a part raises `ModelUnavailableError`)."""
    config = read_config(model_dir)
    adapter = _adapter_config(model_dir)
    base_ref = base or adapter.get("base_model_name_or_path") or config.get("vqa_llm")
    base_path = locate(str(base_ref) if base_ref else None, model_dir, want_file=False, what="answering LLM")
    cap_ref = captioner or config.get("cap_light_llm")
    cap_path = (
        locate(str(cap_ref), model_dir, want_file=False, what="captioner")
        if cap_ref
        else _find_captioner(model_dir, config.get("cap_hidden_size"))
    )
    if not fetch and (isinstance(base_path, str) or isinstance(cap_path, str)):
        raise ModelUnavailableError("the answering LLM or the captioner is on the hub, not in a local folder")
    base_path, cap_path = (resolve_folder(p) if isinstance(p, str) else p for p in (base_path, cap_path))
    cap_projector = config.get("cap_mm_projector_path") or str(cap_path / "mm_projector.bin")
    return LangDCPaths(
        model=model_dir,
        base=base_path,
        captioner=cap_path,
        video_tower=locate(
            video_tower or config.get("mm_vision_tower"), model_dir, want_file=True, what="InternVideo2 video tower"
        ),  # fmt: skip
        image_tower=locate(
            image_tower or config.get("image_mm_vision_tower"), model_dir, want_file=False, what="CLIP image tower"
        ),  # fmt: skip
        cap_projector=locate(cap_projector, model_dir, want_file=True, what="captioner projectors"),
    )


# ----------------------------------------------------------------------------------------------------------------
# Tensors


def _adapter_config(model_dir: Path) -> dict:
    path = model_dir / "adapter_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _load_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickles with more than tensors are refused rather than executed
        reason = f"{type(error).__name__}: {error}"
        raise ModelUnavailableError(f"cannot read {path} as plain tensors ({reason})") from error


def release_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The release's renames: drop a leading `base_model.`, then one `model.` if any key starts with `model.model.`."""
    state = {(k[len("base_model.") :] if k.startswith("base_model.") else k): v for k, v in state.items()}
    if any(k.startswith("model.model.") for k in state):
        state = {(k[len("model.") :] if k.startswith("model.") else k): v for k, v in state.items()}
    return state


def lora_deltas(model_dir: Path) -> dict[str, torch.Tensor]:
    """Module weight name in the answering LLM (`model.layers.0.self_attn.q_proj.weight`) -> its float32 delta."""
    config = _adapter_config(model_dir)
    if not config:
        return {}
    if config.get("use_dora"):
        raise ModelUnavailableError(f"{model_dir}: DoRA adapters are not supported")
    files = [model_dir / "adapter_model.safetensors", model_dir / "adapter_model.bin"]
    found = next((f for f in files if f.is_file()), None)
    if found is None:
        raise ModelUnavailableError(f"{model_dir} has adapter_config.json but no adapter_model.safetensors")
    if found.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(found)
    else:
        tensors = _load_torch(found)
    deltas = {}
    for key, lora_a in tensors.items():
        match = re.fullmatch(r"base_model\.model\.(.+)\.lora_A(?:\.default)?\.weight", key)
        if not match:
            continue
        module = match.group(1)
        lora_b = tensors[key.replace("lora_A", "lora_B")]
        rank = config.get("rank_pattern", {}).get(module.rsplit(".", 1)[-1], config["r"])
        alpha = config.get("alpha_pattern", {}).get(module.rsplit(".", 1)[-1], config["lora_alpha"])
        scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        deltas[module + ".weight"] = (lora_b.float() @ lora_a.float()) * scale
    return deltas


def _projectors(state: dict[str, torch.Tensor]) -> dict[str, torch.nn.Module]:
    """Each projector rebuilt from its tensors (`linear` or `mlpNx_gelu`: the number of Linear layers)."""
    projectors = {}
    for name in PROJECTORS:
        prefix = f"model.{name}."
        own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not own:
            raise ModelUnavailableError(f"the release holds no {name} weights (model.{name}.*)")
        if "weight" in own:
            kind, first, last = "linear", own["weight"], own["weight"]
        else:
            indices = sorted({int(k.split(".")[0]) for k in own})
            kind, first, last = f"mlp{len(indices)}x_gelu", own[f"{indices[0]}.weight"], own[f"{indices[-1]}.weight"]
        projector = build_projector(kind, first.shape[1], last.shape[0])
        projector.load_state_dict(own)
        projectors[name] = projector
    return projectors


# ----------------------------------------------------------------------------------------------------------------
# Parts


def _qwen2_config(config: dict):
    """The answering LLM's config: the release builds it from the model folder's own config.json."""
    from transformers import Qwen2Config

    values = {k: v for k, v in config.items() if k not in ("model_type", "architectures", "auto_map")}
    return Qwen2Config(**values)


def _answering_llm(paths: LangDCPaths, config: dict, non_lora: dict, device, dtype):
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    llm = Qwen2ForCausalLM.from_pretrained(paths.base, config=_qwen2_config(config), dtype=dtype,
                                           attn_implementation="sdpa")  # fmt: skip
    weights = dict(llm.named_parameters())
    deltas = lora_deltas(paths.model)
    skipped = sorted(name for name in deltas if name not in weights)
    if skipped:  # the release reloads those parts (towers, captioner) after merging, so it loses them too
        logger.info("LoRA deltas outside the answering LLM are ignored: %s", skipped[:5])
    with torch.no_grad():
        for name, delta in deltas.items():
            if name in weights:
                weights[name].copy_((weights[name].float() + delta).to(dtype))
        own = {k: v for k, v in non_lora.items() if k.split(".")[1] not in (*PROJECTORS, "cap_light_llm")}
        for name, tensor in own.items():  # e.g. tuned embeddings, when a release ships them
            if name in weights and weights[name].shape == tensor.shape:
                weights[name].copy_(tensor.to(dtype))
    tokenizer = AutoTokenizer.from_pretrained(paths.base)
    if len(tokenizer) != llm.get_input_embeddings().num_embeddings:
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return llm.to(device).eval().requires_grad_(False), tokenizer


def _captioner(paths: LangDCPaths, non_lora: dict, device, dtype):
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    llm = Qwen2ForCausalLM.from_pretrained(paths.captioner, dtype=dtype, attn_implementation="sdpa")
    prefix = "model.cap_light_llm."
    tuned = {k[len(prefix) :]: v.to(dtype) for k, v in non_lora.items() if k.startswith(prefix)}
    if tuned:  # a release that trained the captioner ships its weights here; they replace the folder's
        llm.load_state_dict(tuned, strict=False)
    generation = paths.captioner / "generation_config.json"
    values = json.loads(generation.read_text()) if generation.is_file() else {}
    decode = DecodeSettings.from_generation_config(values)
    tokenizer = AutoTokenizer.from_pretrained(paths.captioner, padding_side="right")
    return llm.to(device).eval().requires_grad_(False), tokenizer, decode


def _hub_file(reference: str) -> Path:
    """Download `repo::file` from the hub (or find it in the cache when offline)."""
    from huggingface_hub import hf_hub_download

    from models.hub import hub_offline

    repo, filename = reference.split(HUB_FILE_SEPARATOR)
    try:
        return Path(hf_hub_download(repo, filename, local_files_only=hub_offline()))
    except Exception as error:
        raise ModelUnavailableError(f"could not fetch {filename} from {repo} ({type(error).__name__})") from error


def _video_tower(path: Path | str, device, dtype):
    state = _load_torch(path if isinstance(path, Path) else _hub_file(path))
    state = state.get("model", state.get("module", state)) if isinstance(state, dict) else state
    tower, tensors = tower_from_state(state)
    tower.load_state_dict(tensors)
    return tower.to(device, dtype).eval().requires_grad_(False)


def load_langdc(model_dir: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                **paths_override) -> LoadedLangDC:  # fmt: skip
    """Load a release from its model folder (see the module docstring); `paths_override` may name the `base`,
    `captioner`, `video_tower` or `image_tower` explicitly."""
    model_dir = Path(model_dir).expanduser().resolve()
    config = read_config(model_dir)
    paths = resolve_paths(model_dir, **paths_override)
    non_lora_file = model_dir / "non_lora_trainables.bin"
    if not non_lora_file.is_file():
        raise ModelUnavailableError(f"{model_dir} has no non_lora_trainables.bin (the projectors)")
    non_lora = release_keys(_load_torch(non_lora_file))
    llm, tokenizer = _answering_llm(paths, config, non_lora, device, dtype)
    captioner, caption_tokenizer, decode = _captioner(paths, non_lora, device, dtype)
    projectors = _projectors({**release_keys(_load_torch(paths.cap_projector)), **non_lora})  # non_lora loads last
    image_tower = paths.image_tower if isinstance(paths.image_tower, Path) else resolve_folder(paths.image_tower)
    model = LangDCModel(
        llm=llm,
        cap_light_llm=captioner,
        vision_tower=_video_tower(paths.video_tower, device, dtype),
        image_vision_tower=load_clip_tower(image_tower, int(config.get("mm_vision_select_layer", -2)),
                                           str(config.get("mm_vision_select_feature", "patch")), dtype, device),
        projectors={name: module.to(device, dtype) for name, module in projectors.items()},
        decode=decode,
    )  # fmt: skip
    return LoadedLangDC(model.eval(), tokenizer, caption_tokenizer, paths, config)


def release_bytes(model_dir: str | Path) -> int:
    """Bytes of weights of a whole local release (model folder, base LLM, captioner, towers), for the registry's
    GPU-or-CPU call; just the model folder's when some part cannot be found locally."""
    model_dir = Path(model_dir)
    weights = lambda folder: sum(p.stat().st_size for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin"))
    try:
        paths = resolve_paths(model_dir, fetch=False)
    except ModelUnavailableError:
        return weights(model_dir)
    total = weights(model_dir) + weights(paths.base) + weights(paths.captioner)
    for part in (paths.video_tower, paths.image_tower):  # parts on the hub are not counted
        total += (part.stat().st_size if part.is_file() else weights(part)) if isinstance(part, Path) else 0
    return total
