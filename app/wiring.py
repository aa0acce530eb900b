"""How a tab turns its handlers into Gradio events: the `Shared` handles `app/ui.py` passes to each tab, the `Panel`
that maps a handler's named outputs onto component updates, and the concurrency groups every event runs in.

A tab builds its components into a `Panel` (its own components by name: no dict of everything), wires its
events with `panel.emit(names)` / `panel.streamed(names, results)`, and reads the sidebar's settings and the session
from `Shared`. Handlers stay plain functions of (inputs, session) -> {output name: value}, testable without a browser;
two keys are not components: "warning" and "info" become toasts.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from app.access.identity import Identity
from app.settings import Settings
from app.studio import Studio

MODEL_GROUP = {"concurrency_id": "model", "concurrency_limit": 1}
FRAMES_LABEL = "Also put the judged answers' frames in an `images` column (TRL vision-language DPO / KTO; slower)"
EXPORT_GROUP = {"concurrency_id": "export", "concurrency_limit": 1}
LIGHT = {"concurrency_limit": 8}  # votes and views: many at once (the store serializes its writes)
HIDDEN = {"api_visibility": "undocumented"}  # UI gestures (clock ticks, selections): callable, not in the API docs
# Gradio finds the progress parameter by its default and hands each call a fresh tracker, so one marker will do.
PROGRESS = gr.Progress()


@dataclass
class Shared:
    """The few components every tab may need, built by `app/ui.py` before the tabs."""

    studio: Studio
    session: gr.State
    model: gr.Dropdown
    settings: list[Any] = field(default_factory=list)  # components in `Settings` field order

    def settings_from(self, values: tuple[Any, ...]) -> Settings:
        return Settings(*values)


class Panel:
    """One tab's components by name, and the translation of a handler's named outputs into updates.

    `groups` map one output name onto several components (e.g. the four vote buttons take `ab_votable`);
    `expand` turns a value into an update for special outputs (e.g. a `gr.Tabs` selection).
    """

    def __init__(self, **components: Any):
        self.c: dict[str, Any] = dict(components)
        self.groups: dict[str, tuple[list[Any], Callable[[Any], Any]]] = {}
        self.expand: dict[str, Callable[[Any], Any]] = {}

    def __getitem__(self, name: str) -> Any:
        return self.c[name]

    def __setitem__(self, name: str, component: Any) -> None:
        self.c[name] = component

    def components(self, names: list[str]) -> list[Any]:
        found: list[Any] = []
        for name in names:
            found += self.groups[name][0] if name in self.groups else [self.c[name]]
        return found

    def updates(self, names: list[str], out: dict[str, Any]) -> dict[Any, Any]:
        """A handler's named outputs as {component: update}, limited to `names`; warnings/infos shown as toasts."""
        # Toasts render HTML, and messages can quote a file name or text a person typed.
        if out.get("warning"):
            gr.Warning(html.escape(out["warning"]), duration=8)
        if out.get("info"):
            gr.Info(html.escape(out["info"]), duration=3)
        updates: dict[Any, Any] = {}
        for name in names:
            if name not in out:
                continue
            value = out[name]
            if name in self.groups:
                members, to_update = self.groups[name]
                updates.update({member: to_update(value) for member in members})
            else:
                updates[self.c[name]] = self.expand[name](value) if name in self.expand else value
        if not updates:  # Gradio reads an empty dict as one value, not as "no updates"
            updates[self.components(names)[0]] = gr.skip()
        return updates

    def emit(self, names: list[str]) -> Callable[[dict[str, Any]], dict[Any, Any]]:
        return lambda out: self.updates(names, out)

    def streamed(self, names: list[str], results: Iterator[dict[str, Any]]) -> Iterator[dict[Any, Any]]:
        try:
            for out in results:
                yield self.updates(names, out)
        finally:
            results.close()  # Stop closes this generator; the handler then records the partial answer


def event_data(evt: Any) -> dict[str, Any] | None:
    data = getattr(evt, "_data", None)
    return data if isinstance(data, dict) else None


def identity_of(studio: Studio, request: gr.Request | None) -> Identity:
    """Who sent this event: Gradio's signed-in username, the OAuth session, or the browser's visitor cookie (a
    program without one is known by its session). The one place a `gr.Request` becomes an `Identity`."""
    if request is None:
        return studio.access.identify()
    return studio.access.from_http(request.request, username=request.username, session_hash=request.session_hash)


def stopped() -> None:
    """Stop buttons: the work is done by `cancels`; a function keeps the endpoint callable from the API."""
    return None
