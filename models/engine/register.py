"""Engines in the model menu: each `--engine` entry becomes a registry entry with a live reachability check.

An engine that is down at start is still registered: the menu shows it disabled with the reason ("cannot use its
engine at URL: the engine is not reachable (connection refused)"), and since the check runs again (at most every
`PROBE_EVERY_S`) whenever the studio asks, it becomes usable as soon as the server answers, without a restart.
"""

from __future__ import annotations

import logging
import threading
import time

from models.base import EncodeParams
from models.compression import PLANNER_COMPRESSORS
from models.engine.allocate import ENGINE_COMPRESSORS
from models.engine.client import EngineClient
from models.engine.config import EngineConfig, engines_from_env, parse_engine
from models.registry import DEFAULT_MODEL, ModelSpec, get_spec, register_model

PROBE_EVERY_S = 2.0
log = logging.getLogger(__name__)


class ReachabilityCheck:
    """Why an engine cannot be used now ("" when it can), probed at most every `PROBE_EVERY_S` seconds."""

    def __init__(self, config: EngineConfig):
        self.client = EngineClient(config)
        self._lock = threading.Lock()
        self._checked_at = -float("inf")
        self._problem = ""

    def __call__(self) -> str:
        with self._lock:
            if time.monotonic() - self._checked_at >= PROBE_EVERY_S:
                problem = self.client.problem()
                self._problem = _as_reason(self.client, problem) if problem else ""
                self._checked_at = time.monotonic()
            return self._problem


def _as_reason(client: EngineClient, problem: str) -> str:
    """The registry's reason (its messages read "NAME cannot run here: it <reason>.")."""
    return f"cannot use its engine at {client.config.base_url}: the engine {problem}"


def engine_spec(config: EngineConfig) -> ModelSpec:
    """The registry entry of one engine: its loader, menu description, default frames and compressors."""
    if config.input == "timeline":
        lite = get_spec(DEFAULT_MODEL)
        return ModelSpec(
            loader="models.engine.timeline:load",
            description=f"The embedded default with its language model on an engine. {config.describe()}",
            defaults=lite.defaults,
            needs=frozenset({"engine"}),
            kwargs={"config": config},
            compressors=PLANNER_COMPRESSORS,
        )
    return ModelSpec(
        loader="models.engine.adapter:load",
        description=config.describe(),
        defaults=EncodeParams(num_frames=16, fps=1.0),
        needs=frozenset({"engine"}),
        kwargs={"config": config},
        compressors=ENGINE_COMPRESSORS,
    )


def register_engine(config: EngineConfig) -> tuple[str, str]:
    """Add an engine to the menu; returns (its name, why it cannot be used now or "")."""
    check = ReachabilityCheck(config)
    register_model(config.name, engine_spec(config), check)
    return config.name, check()


def register_engines(entries: list[str], environ: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Register the `--engine` entries and those in `STUDIO_ENGINES`; logs each one's state."""
    configs = [*engines_from_env(environ), *(parse_engine(entry) for entry in entries)]
    registered = []
    for config in configs:
        name, problem = register_engine(config)
        if problem:
            log.warning("engine %s registered but unavailable for now: %s", name, problem)
        else:
            log.info("engine %s ready at %s", name, config.base_url)
        registered.append((name, problem))
    return registered
