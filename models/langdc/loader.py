"""How the registry loads LangDC: `load(name, repo_id)` returns a ready `LangDCVideoLLM`, or says why it cannot.

The release (a Qwen2.5-3B answering LLM, a Qwen2 captioner, InternVideo2-1B and CLIP ViT-L towers, several GB in
fp16) needs a CUDA GPU, and its parts come from the hub or from local folders: `repo_id` may be the model folder
itself (the one whose config.json says "VideoQwenVQA") or a folder or hub snapshot holding it one or two levels
down. The other parts are found as `models.langdc.checkpoint` describes; keyword arguments `base`, `captioner`,
`video_tower` and `image_tower` name them explicitly.
"""

from __future__ import annotations

import json
from pathlib import Path

from models.base import ModelUnavailableError
from models.langdc.adapter import LangDCVideoLLM
from models.langdc.checkpoint import MODEL_TYPE


def find_model_folder(folder: Path) -> Path:
    """`folder` if its config.json is a LangDC one, else the first such folder one or two levels below it."""
    for candidate in [folder, *sorted(folder.glob("*/")), *sorted(folder.glob("*/*/"))]:
        config = candidate / "config.json"
        if config.is_file() and json.loads(config.read_text()).get("model_type") == MODEL_TYPE:
            return candidate
    raise ModelUnavailableError(f"no LangDC model folder (config.json with model_type {MODEL_TYPE!r}) in {folder}")


def _stop_ids(folder: Path) -> tuple[int, ...]:
    generation = folder / "generation_config.json"
    if not generation.is_file():
        return ()
    eos = json.loads(generation.read_text()).get("eos_token_id")
    return tuple(eos) if isinstance(eos, list) else (eos,) if eos is not None else ()


def load(name: str, repo_id: str, *, device: str | None = None, dtype: str = "float16", **paths) -> LangDCVideoLLM:
    """Load a LangDC release for the studio.

    device: None means "cuda" and refuses to run without it; "cpu" runs anyway (float32, slow for the 3B model);
    "auto" means CUDA when there is one, else CPU (the registry's choice for local folders).
    """
    import torch

    from models.hub import resolve_folder
    from models.langdc.checkpoint import load_langdc

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device is None:
        if not torch.cuda.is_available():
            raise ModelUnavailableError(
                f"{name} needs a CUDA GPU: a 3B answering LLM, a captioner LLM and two vision towers, and no GPU "
                "is visible on this machine"
            )
        device = "cuda"
    torch_dtype = torch.float32 if device == "cpu" else getattr(torch, dtype)
    model_dir = find_model_folder(resolve_folder(repo_id))
    loaded = load_langdc(model_dir, device=device, dtype=torch_dtype, **paths)
    return LangDCVideoLLM(name, loaded, stop_token_ids=_stop_ids(loaded.paths.base))
