"""The studio's Gradio app: a header, the settings sidebar and one tab per room, plus the API for programs.

Each tab package under `app/tabs/` (chat, compare, export, campaign, live) builds its own layout and wires its own
events; this module only composes them and hands each the few shared components it needs (`app.wiring.Shared`: the
studio, the session state, the model picker and the sidebar's settings). `app/api.py` adds the named endpoints made
for programs (`ask`, `rate`, `compare`, `vote`, `export`, `records`, `campaign_next`, `campaign_judge`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from app import api, sidebar
from app.access.uploads import UploadGuard
from app.data.store import default_data_dir
from app.session import Session
from app.studio import ASSETS_DIR, Studio
from app.tabs.campaign import layout as campaign_tab
from app.tabs.chat import layout as chat_tab
from app.tabs.compare import layout as compare_tab
from app.tabs.export import layout as export_tab
from app.tabs.live import layout as live_tab
from app.wiring import identity_of
from models.registry import default_model_name

CSS_PATH = ASSETS_DIR / "style.css"
MAX_UPLOAD = "500mb"
QUEUE_MAX_SIZE = 64
UPLOAD_TTL_ENV = "STUDIO_UPLOAD_TTL_HOURS"

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
    """What `demo.launch` needs besides host/port: theme and CSS (Gradio 6 takes them here), the upload limit, the
    folders the app may serve files from (example clips, exports), sign-in when there is an accounts file, and the
    guard that keeps each upload with its uploader and exports with admins."""
    studio.exports_dir.mkdir(parents=True, exist_ok=True)
    guard = Middleware(UploadGuard, config=studio.access, owners=studio.uploads, exports_dir=studio.exports_dir)
    kwargs: dict[str, Any] = {
        "theme": theme(),
        "css_paths": [CSS_PATH] if CSS_PATH.is_file() else None,
        "max_file_size": MAX_UPLOAD,
        "allowed_paths": [str(ASSETS_DIR), str(studio.exports_dir)],
        "footer_links": ["api", "gradio"],
        "js": campaign_tab.SHORTCUTS_JS,
        "app_kwargs": {"middleware": [guard]},
    }
    if studio.access.accounts is not None:
        kwargs["auth"] = studio.access.accounts.verify
        kwargs["auth_message"] = "Sign in with your Video-LLM Studio account (ask the studio's admin for one)."
    return kwargs


def delete_cache() -> tuple[int, int]:
    """Gradio deletes uploads and outputs older than $STUDIO_UPLOAD_TTL_HOURS (default 24), checking every hour
    (or sooner for a shorter TTL). A judged video the uploader shared lives on as a copy in the data directory."""
    raw = os.environ.get(UPLOAD_TTL_ENV, "24")
    try:
        hours = float(raw)
    except ValueError:
        raise ValueError(f"{UPLOAD_TTL_ENV} must be a number of hours (got {raw!r})") from None
    if not 0 < hours <= 24 * 365:
        raise ValueError(f"{UPLOAD_TTL_ENV} must lie between 0 and 8760 hours (got {raw!r})")
    ttl_s = max(60, int(hours * 3600))
    return min(3600, ttl_s), ttl_s


def build_demo(studio: Studio | None = None) -> gr.Blocks:
    """The whole studio as a Blocks app (not launched). `launch_kwargs(studio)` holds the launch settings."""
    studio = studio or Studio()
    with gr.Blocks(title="Video-LLM Studio", delete_cache=delete_cache(), fill_width=True) as demo:
        session = gr.State(Session(model=default_model_name()), time_to_live=6 * 3600)
        shared, settings_panel = sidebar.build(studio, session)
        gr.HTML(HEADER)
        with gr.Tabs(elem_id="main-tabs"):
            with gr.Tab("Chat", id="chat"):
                chat_tab.build(shared)
            with gr.Tab("A/B compare", id="ab") as ab:
                compare_tab.build(shared, ab)
            # Shown to admins only (set per person on page load); its handlers refuse everyone else anyway.
            with gr.Tab("Export", id="export", visible=studio.access.local_owner) as export:
                export_tab.build(shared, export)
            with gr.Tab("Campaign", id="campaign") as campaign:
                campaign_tab.build(shared, campaign)
            with gr.Tab("Live", id="live"):
                live_tab.build(shared)
        sidebar.wire(studio, settings_panel)
        api.register(studio)

        def on_load(request: gr.Request):
            who = identity_of(studio, request)
            if who.is_admin:
                _warn_if_sync_paused(studio)
            return sidebar.identity_markdown(who), gr.Tab(visible=who.is_admin)

        demo.load(on_load, None, [settings_panel["identity"], export], api_name="whoami", api_visibility="private")
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    return demo


def _warn_if_sync_paused(studio: Studio) -> None:
    message, warning = studio.hub_message()
    if warning:
        gr.Warning(message, duration=None)


def data_dir_from(path: str | Path | None) -> Path:
    return Path(path).expanduser().resolve() if path else default_data_dir()
