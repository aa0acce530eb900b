"""Where the models meet the Hugging Face hub: whether it may be used, and checkpoint folders by path or hub id.

`hub_offline()` is the one reading of the offline switches for the whole studio (the models, the registry's
availability and the annotation sync): `HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE` set to anything but "", "0",
"false", "no" or "off" (any case). `resolve_folder` returns a local folder as is and fetches a hub id into the HF
cache, reading only the cache when offline.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from models.base import ModelUnavailableError

OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
OFF_VALUES = frozenset({"", "0", "false", "no", "off"})
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def hub_offline() -> bool:
    """True when either offline switch is set to a value other than "", "0", "false", "no" or "off"."""
    return any(os.environ.get(name, "").strip().lower() not in OFF_VALUES for name in OFFLINE_SWITCHES)


def resolve_folder(path_or_repo_id: str | os.PathLike, *, allow_patterns: list[str] | None = None) -> Path:
    """A local folder as is; otherwise a hub repo id (owner/name), fetched into the HF cache (only the files
    matching `allow_patterns` when given). Raises `ModelUnavailableError` when neither works."""
    path = Path(path_or_repo_id).expanduser()
    if path.is_dir():
        return path
    if path.exists() or not HUB_ID.fullmatch(str(path_or_repo_id)):
        raise ModelUnavailableError(f"{path_or_repo_id!s} is neither a model folder nor a hub repo id (owner/name)")
    from huggingface_hub import snapshot_download  # only when a download is really needed

    try:  # read the cache location and offline switches now: huggingface_hub reads them once, at import
        return Path(
            snapshot_download(
                str(path_or_repo_id),
                cache_dir=os.environ.get("HF_HUB_CACHE"),
                local_files_only=hub_offline(),
                allow_patterns=allow_patterns,
            )
        )
    except Exception as error:  # offline, gated or a typo: all mean "cannot run here"
        raise ModelUnavailableError(
            f"could not fetch {path_or_repo_id} from the Hugging Face hub, and it is not a local folder "
            f"({type(error).__name__}: {error})"
        ) from error
