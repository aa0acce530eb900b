"""Language experts for the `langdc` compressor: a literal dict of who describes each clip, loaded lazily by path.

LangDC's idea is that a small language expert writes a short description of each clip and the number of tokens it
wrote is the clip's semantic density; the planner (`models.compression.plan_langdc`) turns those lengths into
per-clip budgets. An expert is anything with `describe(frames, clips) -> [ClipCaption]` (`models/experts/base.py`):

* `lite` (offline): the embedded default's EfficientNet-Lite0 labels of each clip, and SmolLM2-135M writing a free
  one-sentence description from them (greedy, capped);
* `smolvlm2`: SmolVLM2-256M-Video-Instruct captions each clip's frames (the role of LangDC's 0.5B captioner), from
  the hub or a local folder (`$STUDIO_SMOLVLM2_EXPERT`); it says clearly when neither is there;
* `self`: the chosen VLM captions its own clips.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass

from models.experts.base import CAPTION_MAX_TOKENS, CAPTION_PROMPT, ClipCaption, LanguageExpert


@dataclass(frozen=True)
class ExpertSpec:
    loader: str  # "package.module:function"; called with the host model (the VLM whose clips are described)
    description: str
    shared: bool = True  # one instance per process; False: one per host model (`self`)


EXPERTS: dict[str, ExpertSpec] = {
    "lite": ExpertSpec(
        "models.experts.lite:load",
        "Offline: EfficientNet-Lite0 labels of each clip, described in one sentence by SmolLM2-135M-Instruct.",
    ),
    "smolvlm2": ExpertSpec(
        "models.experts.smolvlm2:load",
        "SmolVLM2-256M-Video-Instruct captions each clip's frames (like LangDC's 0.5B captioner); needs the hub or "
        "a local folder named by $STUDIO_SMOLVLM2_EXPERT.",
    ),
    "self": ExpertSpec("models.experts.own:load", "The chosen VLM captions its own clips.", shared=False),
}
DEFAULT_EXPERT = "lite"

_loaded: dict[tuple[str, int], LanguageExpert] = {}
_lock = threading.Lock()


def check_expert(name: str) -> None:
    """Raise a readable ValueError for an unknown expert."""
    if name not in EXPERTS:
        raise ValueError(f"unknown language expert {name!r}; known experts: {', '.join(EXPERTS)}")


def load_expert(name: str, host: object | None = None) -> LanguageExpert:
    """The expert `name` (loaded once per process; `self` once per host model)."""
    check_expert(name)
    spec = EXPERTS[name]
    key = (name, 0 if spec.shared else id(host))
    with _lock:
        if key not in _loaded:
            module_name, function_name = spec.loader.split(":")
            _loaded[key] = getattr(importlib.import_module(module_name), function_name)(host)
        return _loaded[key]


def forget_captions(*experts: object) -> None:
    """Drop the captions the loaded experts (and `experts`) remember, so the next encode pays for fresh ones (what
    a benchmark of the expert's cost needs)."""
    with _lock:
        for expert in [*_loaded.values(), *experts]:
            memo = getattr(expert, "memo", None)
            if isinstance(memo, dict):
                memo.clear()


__all__ = [
    "CAPTION_MAX_TOKENS",
    "CAPTION_PROMPT",
    "DEFAULT_EXPERT",
    "EXPERTS",
    "ClipCaption",
    "ExpertSpec",
    "LanguageExpert",
    "check_expert",
    "forget_captions",
    "load_expert",
]
