"""Per-identity rate limits, as token buckets: Gradio has none, so every model call and vote takes a token first.

Each (action, key) pair has its own bucket, full (`burst` tokens) when first seen and refilled continuously at
`per_minute / 60` tokens a second up to `burst`. A call passes one key per thing it should be counted against (the
identity and, for visitors, the client address too); it takes one token from each, or none when any is empty, and
is then refused with `RateLimited`, whose text is the message to show ("Too many questions: try again in 12 s.").
The rates come from the environment (`rates_from_env`); 0 per minute turns an action's limit off. Memory is bounded:
beyond `max_keys` buckets the least recently used are dropped (a dropped bucket comes back full).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_EPSILON = 1e-9  # float slack, so a bucket refilled to exactly one token passes


class RateLimited(Exception):
    """A refused call: `str(error)` is the person's message, `retry_after_s` the seconds until it would pass."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Rate:
    """How often an action may run: `per_minute` on average (0: no limit), up to `burst` at once."""

    per_minute: float
    burst: int

    def __post_init__(self) -> None:
        if not (isinstance(self.per_minute, int | float) and math.isfinite(self.per_minute) and self.per_minute >= 0):
            raise ValueError(f"per_minute must be a number >= 0 (0 means no limit), not {self.per_minute!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst must be a whole number >= 1, not {self.burst!r}")

    @property
    def unlimited(self) -> bool:
        return self.per_minute == 0


DEFAULT_RATES = {"model": Rate(per_minute=12, burst=6), "vote": Rate(per_minute=60, burst=20)}
ACTION_NOUNS = {"model": "questions", "vote": "votes"}
ENV_VARIABLES = {
    "model": ("STUDIO_MODEL_CALLS_PER_MINUTE", "STUDIO_MODEL_CALLS_BURST"),
    "vote": ("STUDIO_VOTES_PER_MINUTE", "STUDIO_VOTES_BURST"),
}


def _per_minute(variable: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{variable} must be a number >= 0 (0 means no limit), not {text!r}")
    return value


def _burst(variable: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{variable} must be a whole number >= 1, not {text!r}")
    return value


def rates_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, Rate]:
    """The rates, from `DEFAULT_RATES` overridden by STUDIO_MODEL_CALLS_PER_MINUTE, STUDIO_MODEL_CALLS_BURST,
    STUDIO_VOTES_PER_MINUTE and STUDIO_VOTES_BURST (unset or empty: the default); a bad value raises ValueError
    naming the variable. 0 per minute means no limit for that action."""
    rates = dict(DEFAULT_RATES)
    for action, (per_minute_variable, burst_variable) in ENV_VARIABLES.items():
        default = rates[action]
        per_minute_text = environ.get(per_minute_variable, "").strip()
        burst_text = environ.get(burst_variable, "").strip()
        per_minute = _per_minute(per_minute_variable, per_minute_text) if per_minute_text else default.per_minute
        burst = _burst(burst_variable, burst_text) if burst_text else default.burst
        rates[action] = Rate(per_minute=per_minute, burst=burst)
    return rates


class Limits:
    """Token buckets per (action, key), thread-safe behind one lock, at most `max_keys` of them."""

    def __init__(
        self,
        rates: dict[str, Rate] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 50_000,
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, not {max_keys!r}")
        self.rates = dict(DEFAULT_RATES if rates is None else rates)
        self.clock = clock
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()  # (tokens, as of when)

    def _rate(self, action: str) -> Rate:
        try:
            return self.rates[action]
        except KeyError:
            raise ValueError(f"no rate for action {action!r}; known: {', '.join(sorted(self.rates))}") from None

    def _tokens(self, rate: Rate, bucket: tuple[str, str], now: float) -> float:
        """The bucket's tokens now, refilled since it was last touched (a full bucket when never seen)."""
        state = self._buckets.get(bucket)
        if state is None:
            return float(rate.burst)
        tokens, since = state
        return min(float(rate.burst), tokens + max(0.0, now - since) * rate.per_minute / 60.0)

    @staticmethod
    def _wait(rate: Rate, tokens: float) -> float:
        return 0.0 if tokens >= 1.0 - _EPSILON else (1.0 - tokens) * 60.0 / rate.per_minute

    def take(self, action: str, *keys: str) -> None:
        """Take one token for `action` from the bucket of every key (empty keys and repeats are ignored), or none at
        all: when any bucket is empty, raise `RateLimited` with the longest wait."""
        rate = self._rate(action)
        keys = tuple(dict.fromkeys(key for key in keys if key))
        if rate.unlimited or not keys:
            return
        with self._lock:
            now = self.clock()
            tokens = {key: self._tokens(rate, (action, key), now) for key in keys}
            wait = max(self._wait(rate, value) for value in tokens.values())
            if wait > 0:
                seconds = max(1, math.ceil(wait - _EPSILON))
                noun = ACTION_NOUNS.get(action, "requests")
                raise RateLimited(f"Too many {noun}: try again in {seconds} s.", retry_after_s=wait)
            for key, value in tokens.items():
                bucket = (action, key)
                self._buckets[bucket] = (value - 1.0, now)
                self._buckets.move_to_end(bucket)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)

    def wait_s(self, action: str, key: str) -> float:
        """Seconds until a call for `action` by `key` would pass; 0 when it would pass now."""
        rate = self._rate(action)
        if rate.unlimited or not key:
            return 0.0
        with self._lock:
            return self._wait(rate, self._tokens(rate, (action, key), self.clock()))
