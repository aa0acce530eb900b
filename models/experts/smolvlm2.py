"""The `smolvlm2` expert: SmolVLM2-256M-Video-Instruct captions each clip (the role of LangDC's 0.5B captioner).

It loads through the studio's own HF adapter from a local folder named by `$STUDIO_SMOLVLM2_EXPERT` or, where the
hub can be reached (or the HF cache already holds it), from `HuggingFaceTB/SmolVLM2-256M-Video-Instruct`. With
neither it raises `ModelUnavailableError` saying so; it never falls back to another expert silently.
"""

from __future__ import annotations

import os

from models.base import ModelUnavailableError
from models.experts.own import VLMCaptioner

FOLDER_ENV = "STUDIO_SMOLVLM2_EXPERT"
HUB_ID = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"


def source() -> str:
    """The folder or hub id to load from; raises with what to do when neither is available here."""
    folder = os.environ.get(FOLDER_ENV, "").strip()
    if folder:
        if not os.path.isdir(folder):
            raise ModelUnavailableError(f"${FOLDER_ENV} names {folder!r}, which is not a folder")
        return folder
    from models.registry import SMOLVLM2_CPU, availability

    ok, reason = availability(SMOLVLM2_CPU)
    if not ok:
        raise ModelUnavailableError(
            f"the smolvlm2 language expert needs {HUB_ID}, which is not available here (it {reason}): allow hub "
            f"access, or download it and set ${FOLDER_ENV} to its folder; the `lite` expert runs offline"
        )
    return HUB_ID


def load(host: object | None = None) -> VLMCaptioner:
    from models.hf import load as load_hf

    return VLMCaptioner(load_hf("smolvlm2-expert", source()), name="smolvlm2")
