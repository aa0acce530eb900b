"""The studio's Gradio app: a header, the settings sidebar and one tab per room, plus the API for programs.

Each tab module (`app/tabs/chat.py`, `compare.py`, `export.py`, `live.py`) builds its own layout and wires its own
events; this module only composes them and hands each the few shared components it needs (`app.shared.Shared`:
the session state, the annotator's name and the sidebar's settings). `app/api.py` adds the named endpoints made for
programs (`ask`, `rate`, `compare`, `vote`, `export`, `records`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from app import api, chat
from app.data.store import default_data_dir
from app.handlers import ASSETS_DIR, MAX_FPS, MAX_NEW_TOKENS, Studio, model_choices, model_info_markdown
from app.session import Session
from app.shared import LIGHT, Panel, Shared
from app.tabs import chat as chat_tab
from app.tabs import compare as compare_tab
from app.tabs import export as export_tab
from app.tabs import live as live_tab
from models.registry import default_model_name, get_spec

CSS_PATH = ASSETS_DIR / "style.css"
MAX_UPLOAD = "500mb"
QUEUE_MAX_SIZE = 64
DELETE_CACHE = (3600, 86400)  # every hour, delete uploads and outputs older than a day
MODEL_OUTPUTS = ["model", "model_info", "num_frames", "fps", "compressor", "budget_pct", "session"]

HEADER = """
<div class="studio-header">
  <div class="studio-title">🎬 Video-LLM Studio</div>
  <div class="studio-tagline">Chat with a video LLM, see how it spent its visual tokens and where it looked,
  rate its answers, and export the ratings as training-ready datasets.</div>
</div>
"""


def theme() -> gr.themes.Base:
    # System fonts only: the studio must render offline, and a web-font request would stall there.
    return gr.themes.Soft(
        primary_hue="indigo",
        secondary_hue="blue",
        neutral_hue="slate",
        radius_size="md",
        font=["Inter", "ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    )


def launch_kwargs(studio: Studio) -> dict[str, Any]:
    """What `demo.launch` needs besides host/port: theme and CSS (Gradio 6 takes them here), the upload limit and
    the folders the app may serve files from (example clips, exports)."""
    studio.exports_dir.mkdir(parents=True, exist_ok=True)
    return {
        "theme": theme(),
        "css_paths": [CSS_PATH] if CSS_PATH.is_file() else None,
        "max_file_size": MAX_UPLOAD,
        "allowed_paths": [str(ASSETS_DIR), str(studio.exports_dir)],
        "footer_links": ["api", "gradio"],
    }


def build_demo(studio: Studio | None = None) -> gr.Blocks:
    """The whole studio as a Blocks app (not launched). `launch_kwargs(studio)` holds the launch settings."""
    studio = studio or Studio()
    with gr.Blocks(title="Video-LLM Studio", delete_cache=DELETE_CACHE, fill_width=True) as demo:
        session = gr.State(Session(model=default_model_name()), time_to_live=6 * 3600)
        shared, sidebar = _build_sidebar(studio, session)
        gr.HTML(HEADER)
        with gr.Tabs(elem_id="main-tabs"):
            with gr.Tab("Chat", id="chat"):
                chat_tab.build(shared)
            with gr.Tab("A/B compare", id="ab") as ab:
                compare_tab.build(shared, ab)
            with gr.Tab("Export", id="export") as export:
                export_tab.build(shared, export)
            with gr.Tab("Live", id="live"):
                live_tab.build(shared)
        _wire_sidebar(sidebar)
        api.register(studio)
        demo.load(lambda: _warn_if_sync_paused(studio), None, None, api_name="sync_warning", api_visibility="private")
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    return demo


def _build_sidebar(studio: Studio, session: gr.State) -> tuple[Shared, Panel]:
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
        choice = chat.compressor_update(name, defaults.compressor)
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


def _wire_sidebar(p: Panel) -> None:
    def on_model(session, name):
        return p.updates(MODEL_OUTPUTS, chat.select_model(session, name))

    p["model"].input(
        on_model, [p["session"], p["model"]], p.components(MODEL_OUTPUTS), api_name="select_model", **LIGHT
    )


def _warn_if_sync_paused(studio: Studio) -> None:
    message, warning = studio.hub_message()
    if warning:
        gr.Warning(message, duration=None)


def data_dir_from(path: str | Path | None) -> Path:
    return Path(path).expanduser().resolve() if path else default_data_dir()
