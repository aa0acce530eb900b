"""The settings sidebar: model, compression, frame and sampling controls, built before the tabs (they read its values
through `app.wiring.Shared`), and its handlers: the model picker applies a model's defaults or says why it cannot run
here, and the compressor menu offers only what the chosen model supports.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.session import Session
from app.settings import (
    MAX_FPS,
    MAX_NEW_TOKENS,
    check_runnable,
    compressor_description,
    compressors_for,
    model_choices,
    model_info_markdown,
)
from app.studio import Studio
from app.wiring import LIGHT, Panel, Shared
from models.base import ModelUnavailableError
from models.registry import default_model_name, get_spec

MODEL_OUTPUTS = ["model", "model_info", "num_frames", "fps", "compressor", "budget_pct", "session"]


def build(studio: Studio, session: gr.State) -> tuple[Shared, Panel]:
    """Model, compression, frame and sampling controls, and the annotator's name."""
    name = default_model_name()
    defaults = get_spec(name).defaults
    p = Panel(session=session)
    with gr.Sidebar(label="Settings", open=True, width=300, elem_id="settings-sidebar"):
        gr.Markdown("### Model")
        p["model"] = gr.Dropdown(
            model_choices(), value=name, label="Model", elem_id="model-dropdown", filterable=False
        )
        p["model_info"] = gr.Markdown(model_info_markdown(name), elem_classes="small-note")
        choice = compressor_update(name, defaults.compressor)
        p["compressor"] = gr.Dropdown(
            choice["choices"],
            value=choice["value"],
            label="Compressor",
            info="How visual tokens are reduced before the LLM reads them.",
            elem_id="compressor-dropdown",
        )
        p["budget_pct"] = gr.Slider(
            5,
            200,
            value=defaults.budget_pct,
            step=5,
            label="Token budget (% of the model's own count)",
            info="The global visual-token budget the compressor splits between clips.",
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
        gr.Markdown("### Annotator")
        p["annotator"] = gr.Textbox(
            label="Your name (optional)",
            max_length=100,
            elem_id="annotator",
            placeholder="stored with your ratings; else an anonymous session id",
        )
    fields = ["model", "num_frames", "fps", "compressor", "budget_pct", "temperature", "top_p", "max_new_tokens"]
    settings = [p[field] for field in [*fields, "seed"]]
    return Shared(studio, session, p["annotator"], p["model"], settings), p


def wire(p: Panel) -> None:
    def on_model(session, name):
        return p.updates(MODEL_OUTPUTS, select_model(session, name))

    p["model"].input(
        on_model, [p["session"], p["model"]], p.components(MODEL_OUTPUTS), api_name="select_model", **LIGHT
    )


def compressor_update(model: str, value: str | None = None) -> Any:
    """The compressor dropdown for `model`: only the compressors it supports, with a one-line description each."""
    supported = compressors_for(model)
    choices = [(f"{name} — {compressor_description(name)}", name) for name in supported]
    return gr.update(choices=choices, value=value if value in supported else supported[0])


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
