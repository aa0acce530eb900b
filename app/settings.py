"""The controls a person sets, validated at the boundary: `Settings` (model, frames, compression, sampling) turned
into the models' `EncodeParams` / `GenerationParams` with a message a person can act on when a value is out of range,
and the model menu's choices, descriptions and compressors as the registry defines them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.base import EncodeParams, GenerationParams, ModelUnavailableError
from models.compression import COMPRESSORS
from models.experts import DEFAULT_EXPERT, check_expert
from models.hub import download_status
from models.pipeline import MAX_FRAMES
from models.registry import DEFAULT_MODEL, MODELS, availability, get_spec, is_loading

MAX_QUESTION_CHARS = 2_000
MAX_NEW_TOKENS = 512
MIN_BUDGET_PCT, MAX_BUDGET_PCT = 5.0, 400.0  # % of the model's official visual-token count
MAX_FPS = 10.0


@dataclass
class Settings:
    """The chat's controls. fps 0 means "spread num_frames evenly over the clip"."""

    model: str = DEFAULT_MODEL
    num_frames: int = 32
    fps: float = 2.0
    compressor: str = "official"
    budget_pct: float = 100.0
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0

    def encode_params(self) -> EncodeParams:
        num_frames = _whole("number of frames", self.num_frames, 1, MAX_FRAMES)
        fps = _number("frames per second", self.fps, 0.0, MAX_FPS)
        budget_pct = _number("token budget (%)", self.budget_pct, MIN_BUDGET_PCT, MAX_BUDGET_PCT)
        compressor = check_compressor(self.model, self.compressor)
        return EncodeParams(
            num_frames=num_frames,
            fps=fps or None,
            compressor=compressor,
            budget_pct=budget_pct,
            expert=langdc_expert(),
        )

    def generation_params(self, seed_offset: int = 0) -> GenerationParams:
        return GenerationParams(
            temperature=_number("temperature", self.temperature, 0.0, 2.0),
            top_p=_number("top-p", self.top_p, 0.01, 1.0),
            max_new_tokens=_whole("max new tokens", self.max_new_tokens, 1, MAX_NEW_TOKENS),
            seed=_whole("seed", self.seed, 0, 2**31 - 1) + seed_offset,
        )


def _number(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number (got {value!r})") from None
    if not np.isfinite(number) or not low <= number <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g} (got {value!r})")
    return number


def _whole(name: str, value: Any, low: int, high: int) -> int:
    number = _number(name, value, low, high)
    if not float(number).is_integer():
        raise ValueError(f"{name} must be a whole number (got {value!r})")
    return int(number)


def question_problem(question: str, if_empty: str) -> str | None:
    """Why a (stripped) question cannot be asked, or None when it can."""
    if not question:
        return if_empty
    if len(question) > MAX_QUESTION_CHARS:
        return f"That question is {len(question):,} characters long; the limit is {MAX_QUESTION_CHARS:,}."
    return None


def check_runnable(name: str) -> None:
    """Raise `ModelUnavailableError`, saying why, unless `name` is a registered model that can run here."""
    ok, reason = availability(name) if name in MODELS else (False, "is not a known model")
    if not ok:
        raise ModelUnavailableError(f"{name} cannot run here: it {reason}.")


def check_compressor(model: str, compressor: Any) -> str:
    """The compressor name if `model` supports it, else a ValueError listing the ones it does."""
    supported = compressors_for(model)
    name = str(compressor or supported[0])
    if name not in supported:
        raise ValueError(f"{model} supports the compressors {', '.join(supported)}; {name!r} is not one of them")
    return name


LANGDC_EXPERT_ENV = "STUDIO_LANGDC_EXPERT"


def langdc_expert() -> str:
    """The language expert that describes clips under `langdc`: $STUDIO_LANGDC_EXPERT (a key of
    `models.experts.EXPERTS`: lite, smolvlm2, self), else the offline `lite`."""
    name = os.environ.get(LANGDC_EXPERT_ENV, "").strip() or DEFAULT_EXPERT
    check_expert(name)
    return name


def compressor_description(name: str) -> str:
    return COMPRESSORS[name].description if name in COMPRESSORS else ""


def compressors_for(model: str) -> tuple[str, ...]:
    return tuple(get_spec(model).compressors) if model in MODELS else ("official",)


def model_choices() -> list[tuple[str, str]]:
    """(label, name) for every registered model; the ones that cannot run here say why in their label."""
    choices = []
    for name in MODELS:
        ok, reason = availability(name)
        choices.append((name if ok else f"{name} — unavailable here: {reason}", name))
    return choices


def model_loading(name: str) -> bool:
    """Whether `name` is being loaded or its checkpoint downloaded right now (the model note then changes)."""
    download = download_status(get_spec(name).kwargs.get("repo_id")) if name in MODELS else None
    return (name in MODELS and is_loading(name)) or (download is not None and not download.finished)


def model_info_markdown(name: str) -> str:
    spec = get_spec(name)
    ok, reason = availability(name)
    needs = " + ".join(sorted(spec.needs))
    status = "runs here" if ok else f"cannot run here: {reason}"
    download = download_status(spec.kwargs.get("repo_id"))
    if download is not None and not download.finished:
        status += f" · {download.line()}"
    elif is_loading(name):
        status += " · loading…"
    return f"{spec.description}  \n<small>needs {needs} · {status}</small>"
