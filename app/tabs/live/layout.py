"""Layout of the Live tab: the video plays in the browser, an online assistant speaks up when something changes,
and its remarks can be rated; the handlers and per-viewer state are in `app/tabs/live/handlers.py`.

The clock (a `gr.Timer` reading the player's time) and the player's own events are UI gestures: callable, but hidden
from the API docs. Programs use `live_replay(video, threshold, fps)`, which processes a whole file server-side.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from app.access.identity import Identity
from app.studio import ASSETS_DIR, REFUSALS, Studio
from app.tabs.live.handlers import (
    CHAT_ELEM_ID,
    DEFAULT_FPS,
    DEFAULT_THRESHOLD,
    TICK_S,
    VIDEO_ELEM_ID,
    LiveController,
    clock_js,
    timeline_figure,
)
from app.wiring import HIDDEN, MODEL_GROUP, Panel, Shared, identity_of


def example_clips(assets_dir: Path = ASSETS_DIR) -> list[tuple[str, str]]:
    """(title, path) of the example clips, clips with cuts first (they make the liveliest commentary)."""
    listing = assets_dir / "examples.json"
    if not listing.is_file():
        return []
    clips = json.loads(listing.read_text(encoding="utf-8")).get("clips", [])
    clips = sorted(clips, key=lambda c: -len(c.get("cut_times_s", [])))
    return [
        (c.get("title", c["file"]), str(assets_dir / c["file"])) for c in clips if (assets_dir / c["file"]).is_file()
    ]


def build(shared: Shared) -> LiveController:
    """Create the Live tab's components and events in the current Blocks context."""
    studio = shared.studio
    controller = LiveController(store_getter=lambda: studio.store)  # the studio opens its store on first use
    p = Panel(key=gr.State("", delete_callback=controller.registry.drop))  # the viewer left: close their stream
    p["clock"] = gr.Number(value=0.0, visible=False)
    p["timer"] = gr.Timer(TICK_S, active=False)
    gr.Markdown(
        "The assistant watches the video **as it plays** (2 frames per second) and speaks up when something new "
        "appears. **θ**: higher = more talkative (a frame speaks when its novelty score passes 1 − θ)."
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            p["example"] = gr.Dropdown(
                choices=example_clips(), value=None, label="Example clip", elem_id="live-example", interactive=True
            )
            p["video"] = gr.Video(
                label="Video", sources=["upload"], elem_id=VIDEO_ELEM_ID, autoplay=False, interactive=True, height=360
            )
            p["timeline"] = gr.Plot(
                value=timeline_figure([], [], DEFAULT_THRESHOLD, 1.0, 0.0), label="Timeline", elem_id="live-timeline"
            )
        with gr.Column(scale=2):
            _remarks_column(p)
    _wire(shared, controller, p)
    return controller


def _remarks_column(p: Panel) -> None:
    p["chat"] = gr.Chatbot(
        label="Live remarks",
        elem_id=CHAT_ELEM_ID,
        height=420,
        feedback_options=("Like", "Dislike"),
        group_consecutive_messages=False,  # each remark is rated on its own
    )
    with gr.Row():
        p["question"] = gr.Textbox(
            placeholder="Ask about what is on screen now…", show_label=False, scale=4, elem_id="live-question"
        )
        p["ask"] = gr.Button("Ask", scale=1, elem_id="live-ask")
    p["threshold"] = gr.Slider(
        0.0,
        1.0,
        value=DEFAULT_THRESHOLD,
        step=0.05,
        label="Respond threshold θ (higher = more talkative)",
        elem_id="live-threshold",
    )
    p["status"] = gr.Markdown("Load a video, then press play.", elem_id="live-status")
    with gr.Accordion("Replay the whole video on the server (API: live_replay)", open=False):
        p["replay_fps"] = gr.Number(value=DEFAULT_FPS, label="frames per second", minimum=0.25, maximum=8)
        p["replay"] = gr.Button("Replay", elem_id="live-replay")
        p["replay_out"] = gr.JSON(label="Remarks", elem_id="live-replay-out")


def _wire(shared: Shared, controller: LiveController, p: Panel) -> None:
    key, video, timer, chat = p["key"], p["video"], p["timer"], p["chat"]
    ticked = [chat, p["timeline"], p["status"]]

    studio = shared.studio

    def rate(key_value: str, data: gr.LikeData, request: gr.Request) -> str:
        who = identity_of(studio, request)
        try:
            studio.admit(who, "vote")
        except REFUSALS as error:
            raise gr.Error(str(error)) from None
        return controller.rate(key_value, data.liked, data.index, who, lambda sha: _shareable(studio, who, sha))

    p["example"].change(lambda path: path, [p["example"]], [video], api_name="live_example", **HIDDEN)
    # Stop the clock first: a play pressed while the new video loads must not be undone when loading finishes.
    video.change(lambda: gr.Timer(active=False), None, [timer], api_name="live_stop_clock", **HIDDEN).then(
        controller.load,
        [video, p["threshold"], key],
        [key, chat, p["timeline"], p["status"]],
        api_name="live_load",
        **HIDDEN,
        **MODEL_GROUP,
    )
    video.play(controller.play, [key], [timer], api_name="live_play", **HIDDEN)
    clock_in = [key, p["clock"], p["threshold"]]
    for event, name in ((video.pause, "live_pause"), (video.end, "live_end")):
        event(controller.pause, [key], [timer], api_name=name, **HIDDEN).then(
            controller.tick, clock_in, ticked, js=clock_js(1), api_name=f"{name}_ingest", **HIDDEN, **MODEL_GROUP
        )
    timer.tick(
        controller.tick, clock_in, ticked, js=clock_js(1), api_name="live_tick", trigger_mode="once", **HIDDEN,
        **MODEL_GROUP,
    )  # fmt: skip
    p["threshold"].release(
        controller.set_threshold, [key, p["threshold"]], [p["timeline"]], api_name="live_threshold", **HIDDEN
    )
    for trigger, name in ((p["ask"].click, "live_ask"), (p["question"].submit, "live_ask_submit")):
        trigger(
            controller.ask,
            [key, p["question"], p["clock"], p["threshold"]],
            [chat, p["question"], p["timeline"], p["status"]],
            js=clock_js(2),
            api_name=name,
            **HIDDEN,
            **MODEL_GROUP,
        )
    chat.clear(controller.clear_chat, [key], None, api_name="live_clear", **HIDDEN)
    chat.like(rate, [key], [p["status"]], api_name="live_rate", **HIDDEN)
    p["replay"].click(
        controller.replay,
        [video, p["threshold"], p["replay_fps"]],
        [p["replay_out"]],
        api_name="live_replay",
        **MODEL_GROUP,
    )


def _shareable(studio: Studio, who: Identity, sha256: str) -> bool:
    """A live rating keeps the video file only for an example clip or the local owner's own video (the Live tab
    has no consent box; the record keeps the sha256 otherwise)."""
    return who.kind == "owner" or studio.example_for(sha256) is not None
