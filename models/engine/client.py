"""Talking to an OpenAI-compatible server: list its models, stream a chat answer, read the token counts it reports.

`stream_chat` posts one streaming `/chat/completions` request and yields the answer's text deltas as the server
sends them (server-sent events), then one `Usage` from the final chunk. A server that is down, slow to answer or
answering 429/5xx is tried again with exponential backoff (0.5 s, 1 s, 2 s, ...) as long as no text has been
yielded; past that, or after the last try, or on a request the server refuses (4xx), it raises `EngineError`,
whose message says which engine, what happened and what to do, for the chat to show. Closing the stream (Stop)
closes the connection, so the server stops generating.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from models.base import ModelUnavailableError
from models.engine.config import EngineConfig

RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
PROBE_TIMEOUT_S = 3.0


class EngineError(ModelUnavailableError):
    """A remote engine did not answer; the message names it, says what happened and that the question can be
    asked again."""


@dataclass
class Usage:
    """Token counts as the server reported them. details: `prompt_tokens_details` as sent (per modality where the
    server reports it, e.g. vLLM's with `--enable-prompt-tokens-details`)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    reported: bool = False  # False: the server sent no usage at all

    @classmethod
    def from_json(cls, usage: dict[str, Any] | None) -> Usage:
        if not usage:
            return cls()
        details = usage.get("prompt_tokens_details") or {}
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            details=dict(details) if isinstance(details, dict) else {},
            reported=True,
        )

    def visual_tokens(self) -> int | None:
        """Prompt tokens the server says came from images and video, when it reports them per modality."""
        per_modality = self.details.get("multimodal_tokens")  # vLLM: {"video": n, "image": m}
        if isinstance(per_modality, dict):
            return sum(int(v) for v in per_modality.values() if isinstance(v, (int, float)))
        counts = [self.details.get(key) for key in ("image_tokens", "video_tokens")]
        numbers = [int(c) for c in counts if isinstance(c, (int, float))]
        return sum(numbers) if numbers else None


class EngineClient:
    """One engine's HTTP side: the base URL, the key from its environment variable, timeouts and retries."""

    def __init__(self, config: EngineConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.sleep = sleep
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self.http = httpx.Client(base_url=config.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def models(self, timeout_s: float | None = None) -> list[str]:
        """The served model ids (`GET /models`)."""
        response = self.http.get("/models", timeout=timeout_s or self.config.timeout_s)
        response.raise_for_status()
        return [str(item["id"]) for item in response.json().get("data", []) if "id" in item]

    def problem(self) -> str:
        """Why this engine cannot be used right now, as a phrase after "the engine" ("" when it answers and
        serves the configured model)."""
        try:
            served = self.models(timeout_s=PROBE_TIMEOUT_S)
        except httpx.HTTPStatusError as error:
            return f"answered HTTP {error.response.status_code} to a model listing"
        except (httpx.HTTPError, ValueError) as error:
            return f"is not reachable ({_reason(error)})"
        if not served:
            return "serves no model"
        if self.config.model and self.config.model not in served:
            return f"serves {', '.join(served)}, not {self.config.model}"
        return ""

    def stream_chat(self, body: dict[str, Any]) -> Iterator[str | Usage]:
        """Text deltas of one streamed answer, then its `Usage`; retried with backoff until text has flowed."""
        yielded = False
        for attempt in range(1, self.config.retries + 1):
            try:
                for item in self._stream_once(body):
                    if isinstance(item, str):
                        yielded = True
                    yield item
                return
            except _Retryable as error:
                if yielded:
                    raise self.error(f"stopped in the middle of the answer ({error})") from None
                if attempt == self.config.retries:
                    raise self.error(f"did not answer after {attempt} tries ({error})") from None
                self.sleep(0.5 * 2 ** (attempt - 1))

    def _stream_once(self, body: dict[str, Any]) -> Iterator[str | Usage]:
        usage = Usage()
        try:
            with self.http.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code in RETRY_STATUSES:
                    raise _Retryable(f"HTTP {response.status_code}: {_body_text(response)}")
                if response.status_code >= 400:
                    raise self.error(f"refused the request (HTTP {response.status_code}: {_body_text(response)})")
                for data in _events(response.iter_lines()):
                    chunk = json.loads(data)
                    if chunk.get("error"):
                        raise self.error(f"reported an error: {_error_text(chunk['error'])}")
                    if chunk.get("usage"):
                        usage = Usage.from_json(chunk["usage"])
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield text
        except httpx.HTTPError as error:
            raise _Retryable(_reason(error)) from error
        except json.JSONDecodeError as error:
            raise _Retryable(f"sent a malformed event ({error})") from error
        yield usage

    def error(self, what: str) -> EngineError:
        """An `EngineError` saying that this engine `what` (a phrase: "is not reachable (...)")."""
        return EngineError(
            f"The engine {self.config.name!r} at {self.config.base_url} {what}. Nothing is lost: ask again (or "
            "regenerate) once it is back, or pick another model."
        )


class _Retryable(Exception):
    """A failure worth another try: no connection, a timeout, a dropped stream or a busy server."""


def _events(lines: Iterator[str]) -> Iterator[str]:
    """The `data:` payloads of a server-sent event stream, up to `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield data


def _body_text(response: httpx.Response, limit: int = 300) -> str:
    try:
        text = response.read().decode("utf-8", "replace")
        payload = json.loads(text)
        message = _error_text(payload.get("error", payload)) if isinstance(payload, dict) else text
    except (ValueError, httpx.HTTPError):
        message = response.reason_phrase
    return " ".join(str(message).split())[:limit]


def _error_text(error: Any) -> str:
    return str(error.get("message", error)) if isinstance(error, dict) else str(error)


def _reason(error: BaseException) -> str:
    """A short cause: "connection refused", "timed out", else the error's own text."""
    text = str(error) or type(error).__name__
    if isinstance(error, httpx.ConnectError):
        return "connection refused" if "refused" in text.lower() else f"cannot connect: {text}"
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__})"
    if isinstance(error, httpx.RemoteProtocolError):
        return "the connection closed mid-stream"
    return text
