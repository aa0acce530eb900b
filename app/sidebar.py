"""The settings sidebar: who you are (sign-in, the terms and the consent box for uploaded videos), then the model,
compression, frame and sampling controls, built before the tabs (they read its values through `app.wiring.Shared`),
and its handlers: the model picker applies a model's defaults or says why it cannot run here, and the compressor menu
offers only what the chosen model supports.
"""

from __future__ import annotations

import os
from typing import Any

import gradio as gr

from app.access.identity import Identity
from app.session import Session
from app.settings import (
    MAX_FPS,
    MAX_NEW_TOKENS,
    check_runnable,
    compressor_description,
    compressors_for,
    model_choices,
    model_info_markdown,
    model_loading,
)
from app.studio import Studio
from app.text import plain
from app.wiring import HIDDEN, LIGHT, Panel, Shared
from models.base import ModelUnavailableError
from models.compression import COMPRESSORS
from models.registry import default_model_name, get_spec, is_loaded

MODEL_OUTPUTS = ["model", "model_info", "num_frames", "fps", "compressor", "budget_pct", "session"]
MODEL_POLL_S = 1.0
TERMS_ENV = "STUDIO_TERMS"
DEFAULT_TERMS = (
    "Your ratings and votes are stored under your identity and may be published as a dataset. Tick the box to let "
    "the videos you upload go with them; otherwise only each video's fingerprint (SHA-256), length and the sampled "
    "times are kept, never the file."
)


def build(studio: Studio, session: gr.State) -> tuple[Shared, Panel]:
    """Who you are (and the terms), then the model, compression, frame and sampling controls."""
    name = default_model_name()
    defaults = get_spec(name).defaults
    p = Panel(session=session)
    with gr.Sidebar(label="Settings", open=True, width=300, elem_id="settings-sidebar"):
        _identity_section(studio, p)
        gr.Markdown("### Model")
        p["model"] = gr.Dropdown(
            model_choices(), value=name, label="Model", elem_id="model-dropdown", filterable=False
        )
        p["model_info"] = gr.Markdown(model_info_markdown(name), elem_classes="small-note", elem_id="model-info")
        # refreshes the note while the model loads or downloads (the start-up preload), then stops
        p["model_poll"] = gr.Timer(MODEL_POLL_S, active=not is_loaded(name))
        choice = compressor_update(name, defaults.compressor)
        p["compressor"] = gr.Dropdown(
            choice["choices"],
            value=choice["value"],
            label="Compressor",
            info="How visual tokens are reduced before the LLM reads them.",
            elem_id="compressor-dropdown",
        )
        budget = budget_update(choice["value"])
        p["budget_pct"] = gr.Slider(
            5,
            200,
            value=defaults.budget_pct,
            step=5,
            label="Token budget (% of the model's own count)",
            info=budget["info"],
            interactive=budget["interactive"],
            elem_id="budget-slider",
        )
        gr.Markdown("### Frames")
        p["num_frames"] = gr.Slider(
            1, 128, value=defaults.num_frames, step=1, label="Max frames", info="Frames sampled from the clip."
        )
        p["fps"] = gr.Slider(
            0, MAX_FPS, value=defaults.fps or 0, step=0.5, label="Frames per second", info="0 spreads them evenly."
        )
        gr.Markdown("### Sampling")
        p["temperature"] = gr.Slider(0, 1.5, value=0.0, step=0.05, label="Temperature", info="0 = greedy.")
        p["top_p"] = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p")
        p["max_new_tokens"] = gr.Slider(1, MAX_NEW_TOKENS, value=64, step=1, label="Max new tokens")
        p["seed"] = gr.Number(0, precision=0, minimum=0, label="Seed")
    fields = ["model", "num_frames", "fps", "compressor", "budget_pct", "temperature", "top_p", "max_new_tokens"]
    settings = [p[field] for field in [*fields, "seed"]]
    return Shared(studio, session, p["model"], settings), p


def _identity_section(studio: Studio, p: Panel) -> None:
    """Who the studio thinks you are (filled on page load), sign-in where there is one, and the terms with the
    consent box for sharing uploaded videos (not shown to a laptop's own owner, whose videos are theirs)."""
    access = studio.access
    p["identity"] = gr.Markdown("", elem_id="identity", elem_classes="small-note")
    if access.oauth:
        gr.LoginButton(elem_id="login-button")
    elif access.accounts is not None:
        gr.Button("Sign out", link="/logout", size="sm", elem_id="logout-button")
    with gr.Group(visible=not access.local_owner):
        gr.Markdown(terms_text(), elem_classes="small-note", elem_id="terms")
        p["share_video"] = gr.Checkbox(
            False, label="My uploaded videos may go into the dataset", elem_id="share-video"
        )


def terms_text() -> str:
    """The terms shown beside the consent box: $STUDIO_TERMS, or what the studio does by default."""
    custom = os.environ.get(TERMS_ENV, "").strip()
    return plain(custom, 2000) if custom else DEFAULT_TERMS


def identity_markdown(who: Identity) -> str:
    if who.kind == "owner":
        return "**You:** the local owner (admin) · nothing is shared unless you export it"
    if who.kind == "visitor":
        return f"**You:** a visitor (`{plain(who.label)}`), not signed in · {who.role}"
    return f"**You:** {plain(who.id, 64)} · {who.role}"


def wire(studio: Studio, p: Panel) -> None:
    p["compressor"].change(
        budget_update, p["compressor"], p["budget_pct"], api_name="compressor_budget", **HIDDEN, **LIGHT
    )

    def on_model(session, name):
        return p.updates(MODEL_OUTPUTS, select_model(session, name))

    p["model"].input(
        on_model, [p["session"], p["model"]], p.components(MODEL_OUTPUTS), api_name="select_model", **LIGHT
    )

    def on_model_poll(session):
        note, loading = model_note(session)
        return note, gr.Timer(active=loading)

    p["model_poll"].tick(
        on_model_poll,
        p["session"],
        [p["model_info"], p["model_poll"]],
        api_name="model_note",
        show_progress="hidden",
        **HIDDEN,
        **LIGHT,
    )

    def on_share(session, agreed):
        session.share_video = bool(agreed)
        return session

    p["share_video"].change(on_share, [p["session"], p["share_video"]], p["session"], api_name="share_video", **LIGHT)


def model_note(session: Session) -> tuple[str, bool]:
    """The note under the model menu for the session's model, and whether it is still loading or downloading."""
    return model_info_markdown(session.model), model_loading(session.model)


def compressor_update(model: str, value: str | None = None) -> Any:
    """The compressor dropdown for `model`: only the compressors it supports, with a one-line description each."""
    supported = compressors_for(model)
    choices = [(f"{name} — {compressor_description(name)}", name) for name in supported]
    return gr.update(choices=choices, value=value if value in supported else supported[0])


BUDGET_INFO = "The global visual-token budget the compressor splits between clips."


def budget_update(compressor: str | None) -> Any:
    """The budget slider for `compressor`: off (and saying why) where the compressor ignores the budget."""
    spec = COMPRESSORS.get(str(compressor))
    if spec is not None and not spec.uses_budget:
        info = f"{compressor} ignores the budget: it feeds the checkpoint's own token count, as it was trained."
        return gr.update(interactive=False, info=info)
    return gr.update(interactive=True, info=BUDGET_INFO)


def select_model(session: Session, name: str) -> dict[str, Any]:
    """The model dropdown changed: refuse models that cannot run here (and say why), else apply its defaults."""
    try:
        check_runnable(name)
    except ModelUnavailableError as error:
        return {"warning": f"{error} Staying with {session.model}.", "model": gr.update(value=session.model)}
    session.model = name
    defaults = get_spec(name).defaults
    return {
        "model": gr.update(value=name),
        "model_info": model_info_markdown(name),
        "num_frames": defaults.num_frames,
        "fps": defaults.fps or 0,
        "compressor": compressor_update(name, defaults.compressor),
        "budget_pct": defaults.budget_pct,
        "session": session,
    }
