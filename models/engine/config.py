"""What an engine entry on the command line or in `STUDIO_ENGINES` says, checked at the boundary.

An entry is `NAME=URL[,model=ID][,api_key_env=VAR][,input=video|images|timeline][,timeout=S][,retries=N]`: the
menu name, the server's OpenAI-compatible base URL (`/v1` is added when missing), the served model id (default: the
first one the server lists), the environment variable holding the API key (never the key itself, so it stays out
of shell history and logs), and how the studio's frames go in: `video` (vLLM's frame list, one `video_url` part),
`images` (one `image_url` part per frame, for servers without video input) or `timeline` (the embedded default's
perception runs in the studio and only its text timeline goes to the engine's language model). `STUDIO_ENGINES`
holds several entries separated by `;` or new lines.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

INPUTS = ("video", "images", "timeline")
ENV_VAR = "STUDIO_ENGINES"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@/-]{0,63}$")


class EngineConfigError(ValueError):
    """An engine entry cannot be used; the message shows the entry and what a valid one looks like."""


@dataclass(frozen=True)
class EngineConfig:
    """One remote model: where it is, which served model, how frames are sent, how long to wait and retry."""

    name: str
    base_url: str  # ends with /v1
    model: str | None = None  # None: the first model the server lists
    api_key_env: str | None = None
    input: str = "video"
    timeout_s: float = 120.0  # per request, for the whole answer
    connect_timeout_s: float = 5.0
    retries: int = 3  # tries before a request counts as failed (backoff 0.5 s, 1 s, 2 s, ...)

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def describe(self) -> str:
        served = self.model or "the first served model"
        how = {
            "video": "frames sent as one video (vLLM's frame list)",
            "images": "frames sent as images",
            "timeline": "the embedded default's perception here, its language model on the engine",
        }[self.input]
        return f"Remote engine at {self.base_url} ({served}): {how}. No attention view from a remote engine."


USAGE = "NAME=URL[,model=ID][,api_key_env=VAR][,input=video|images|timeline][,timeout=S][,retries=N]"


def parse_engine(entry: str) -> EngineConfig:
    """One `--engine` entry -> its config, or an `EngineConfigError` that says what is wrong."""
    text = entry.strip()
    head, *options = [part.strip() for part in text.split(",")]
    name, sep, url = head.partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url:
        raise EngineConfigError(f"engine entry {entry!r}: expected {USAGE}")
    if not NAME_PATTERN.match(name):
        raise EngineConfigError(f"engine name {name!r}: use letters, digits and . _ - @ / (at most 64)")
    if not re.match(r"^https?://[^\s/]+", url):
        raise EngineConfigError(f"engine {name}: {url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000/v1)")
    fields: dict[str, object] = {}
    for option in options:
        key, sep, value = option.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise EngineConfigError(f"engine {name}: option {option!r} is not KEY=VALUE; expected {USAGE}")
        field, parsed = _option(name, key, value)
        fields[field] = parsed
    return EngineConfig(name=name, base_url=_base_url(url), **fields)


def _option(name: str, key: str, value: str) -> tuple[str, object]:
    """(EngineConfig field, parsed value) for one KEY=VALUE option."""
    if key in ("model", "api_key_env"):
        return key, value
    if key == "input":
        if value not in INPUTS:
            raise EngineConfigError(f"engine {name}: input must be one of {', '.join(INPUTS)}, not {value!r}")
        return key, value
    if key in ("timeout", "retries"):
        try:
            number = float(value) if key == "timeout" else int(value)
        except ValueError:
            raise EngineConfigError(f"engine {name}: {key} must be a number, not {value!r}") from None
        if number <= 0 or (key == "retries" and number > 10):
            raise EngineConfigError(f"engine {name}: {key} must be positive (retries at most 10), not {value!r}")
        return ("timeout_s", float(number)) if key == "timeout" else ("retries", number)
    raise EngineConfigError(f"engine {name}: unknown option {key!r}; expected {USAGE}")


def _base_url(url: str) -> str:
    url = url.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        url = url.removesuffix(suffix)
    return url if url.endswith("/v1") else f"{url}/v1"


def engines_from_env(environ: dict[str, str] | None = None) -> list[EngineConfig]:
    """The entries of `STUDIO_ENGINES` (separated by `;` or new lines)."""
    environ = os.environ if environ is None else environ
    entries = re.split(r"[;\n]", environ.get(ENV_VAR, ""))
    return [parse_engine(entry) for entry in entries if entry.strip()]
