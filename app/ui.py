"""The studio's Gradio app: a header, the settings sidebar and one tab per room, plus the API for programs.

Each tab package under `app/tabs/` (chat, compare, export, live) builds its own layout and wires its own events;
this module only composes them and hands each the few shared components it needs (`app.wiring.Shared`: the session
state, the annotator's name and the sidebar's settings). `app/api.py` adds the named endpoints made for
programs (`ask`, `rate`, `compare`, `vote`, `export`, `records`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from app import api, sidebar
from app.data.store import default_data_dir
from app.session import Session
from app.studio import ASSETS_DIR, Studio
from app.tabs.chat import layout as chat_tab
from app.tabs.compare import layout as compare_tab
from app.tabs.export import layout as export_tab
from app.tabs.live import layout as live_tab
from models.registry import default_model_name

CSS_PATH = ASSETS_DIR / "style.css"
MAX_UPLOAD = "500mb"
QUEUE_MAX_SIZE = 64
DELETE_CACHE = (3600, 86400)  # every hour, delete uploads and outputs older than a day

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
        shared, settings_panel = sidebar.build(studio, session)
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
        sidebar.wire(settings_panel)
        api.register(studio)
        demo.load(lambda: _warn_if_sync_paused(studio), None, None, api_name="sync_warning", api_visibility="private")
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    return demo


def _warn_if_sync_paused(studio: Studio) -> None:
    message, warning = studio.hub_message()
    if warning:
        gr.Warning(message, duration=None)


def data_dir_from(path: str | Path | None) -> Path:
    return Path(path).expanduser().resolve() if path else default_data_dir()
