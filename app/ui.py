"""The studio's Gradio layout and event wiring; what each event does lives with its tab (see `app/handlers.py`).

Layout: a header, then tabs. **Chat**: the video, example clips and the conversation on the left; Frames /
Compression / Attention views of the latest answer on the right; model, frame and sampling controls in a sidebar.
**A/B compare**: one question, two setups, blind vote. **Export**: counts, a preview table and downloads.
**Live** (when `app/live.py` exists). Every event has an explicit `api_name`; events that run a model share one
concurrency group (`"model"`, one at a time), so a CPU never runs two generations at once. Handlers return dicts
keyed by output names; `_outputs` turns them into component updates and shows their warnings as toasts.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import inspect
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from app import chat, compare, export_tab, ratings, views
from app.annotations import default_data_dir
from app.handlers import (
    ASSETS_DIR,
    MAX_FPS,
    MAX_NEW_TOKENS,
    Settings,
    Studio,
    model_choices,
    model_info_markdown,
    plain,
)
from app.session import Session
from models.registry import DEFAULT_MODEL, get_spec

log = logging.getLogger(__name__)

CSS_PATH = ASSETS_DIR / "style.css"
MAX_UPLOAD = "500mb"
QUEUE_MAX_SIZE = 64
DELETE_CACHE = (3600, 86400)  # every hour, delete uploads and outputs older than a day
MODEL_GROUP = {"concurrency_id": "model", "concurrency_limit": 1}
EXPORT_GROUP = {"concurrency_id": "export", "concurrency_limit": 1}
LIGHT = {"concurrency_limit": 8}
# Gradio finds the progress parameter by its default and hands each call a fresh tracker, so one marker will do.
PROGRESS = gr.Progress()  # votes and views: many at once (the store serializes its writes)

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


def _outputs(names: list[str], comps: dict[str, Any], out: dict[str, Any]) -> dict[Any, Any]:
    """A handler's named outputs as {component: update}, limited to this event's outputs; toasts shown."""
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
        if name == "ab_votable":
            for button in comps["vote_buttons"]:
                updates[button] = gr.update(interactive=bool(value))
        elif name == "views_tab":
            updates[comps[name]] = gr.Tabs(selected=value)
        else:
            updates[comps[name]] = value
    if not updates:  # Gradio reads an empty dict as one value, not as "no updates"
        updates[_components(names, comps)[0]] = gr.skip()
    return updates


def _components(names: list[str], comps: dict[str, Any]) -> list[Any]:
    found: list[Any] = []
    for name in names:
        found += comps["vote_buttons"] if name == "ab_votable" else [comps[name]]
    return found


def _event_data(evt: Any) -> dict[str, Any] | None:
    data = getattr(evt, "_data", None)
    return data if isinstance(data, dict) else None


def _stopped() -> None:
    """Stop buttons: the work is done by `cancels`; a function keeps the endpoint callable from the API."""
    return None


def _session_hash(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None) if request is not None else None


def _build_live_tab(shared: dict[str, Any]) -> None:
    """The Live tab comes from app/live.py when it exists; it gets the shared pieces its builder asks for."""
    if importlib.util.find_spec("app.live") is None:
        gr.Markdown("*Live mode is not installed in this build.*")
        return
    try:
        from app import live

        builder = live.build_live_tab
        accepted = inspect.signature(builder).parameters
        kwargs = {name: value for name, value in shared.items() if name in accepted}
        builder(**kwargs)
    except Exception as error:  # a broken optional tab must not take the studio down
        log.exception("the Live tab could not be built")
        gr.Markdown(f"⚠️ Live mode could not be loaded: {plain(f'{type(error).__name__}: {error}', 300)}")


def build_demo(studio: Studio | None = None) -> gr.Blocks:
    """The whole studio as a Blocks app (not launched). `launch_kwargs(studio)` holds the launch settings."""
    studio = studio or Studio()
    comps: dict[str, Any] = {}  # every component, button and tab the events use, by name
    with gr.Blocks(title="Video-LLM Studio", delete_cache=DELETE_CACHE, fill_width=True) as demo:
        comps["session"] = gr.State(Session(), time_to_live=6 * 3600)
        _build_sidebar(comps)
        gr.HTML(HEADER)
        with gr.Tabs(elem_id="main-tabs"):
            with gr.Tab("Chat", id="chat"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5, min_width=420):
                        _build_chat_column(studio, comps)
                    with gr.Column(scale=6, min_width=460):
                        _build_views_column(comps)
            with gr.Tab("A/B compare", id="ab") as comps["ab_tab"]:
                _build_ab_tab(comps)
            with gr.Tab("Export", id="export") as comps["export_tab"]:
                _build_export_tab(studio, comps)
            with gr.Tab("Live", id="live"):
                _build_live_tab(
                    {
                        "studio": studio,
                        "session": comps["session"],
                        "model": comps["model"],
                        "annotator": comps["annotator"],
                    }
                )
        _wire(studio, comps)
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    return demo


def _build_sidebar(comps: dict[str, Any]) -> None:
    """Model, frame and sampling controls, and the annotator's name."""
    defaults = get_spec(DEFAULT_MODEL).defaults
    with gr.Sidebar(label="Settings", open=True, width=300, elem_id="settings-sidebar"):
        gr.Markdown("### Model")
        comps["model"] = gr.Dropdown(
            model_choices(), value=DEFAULT_MODEL, label="Model", elem_id="model-dropdown", filterable=False
        )
        comps["model_info"] = gr.Markdown(model_info_markdown(DEFAULT_MODEL), elem_classes="small-note")
        gr.Markdown("### Frames")
        comps["num_frames"] = gr.Slider(
            1,
            128,
            value=defaults.num_frames,
            step=1,
            label="Max frames",
            info="Frames sampled from the clip (the fast pathway).",
        )
        comps["fps"] = gr.Slider(
            0,
            MAX_FPS,
            value=defaults.fps or 0,
            step=0.5,
            label="Frames per second",
            info="0 spreads the frames evenly over the clip.",
        )
        comps["token_budget"] = gr.Slider(
            16,
            1024,
            value=defaults.token_budget,
            step=8,
            label="Visual token budget",
            info="Global budget the compressor splits between clips.",
        )
        gr.Markdown("### Sampling")
        comps["temperature"] = gr.Slider(0, 1.5, value=0.0, step=0.05, label="Temperature", info="0 = greedy.")
        comps["top_p"] = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p")
        comps["max_new_tokens"] = gr.Slider(1, MAX_NEW_TOKENS, value=64, step=1, label="Max new tokens")
        comps["seed"] = gr.Number(0, precision=0, minimum=0, label="Seed")
        gr.Markdown("### Annotator")
        comps["annotator"] = gr.Textbox(
            label="Your name (optional)",
            max_length=100,
            elem_id="annotator",
            placeholder="stored with your ratings; else an anonymous session id",
        )


def _build_chat_column(studio: Studio, comps: dict[str, Any]) -> None:
    """The video and example clips, the conversation with its buttons, and the rating panel."""
    comps["video"] = gr.Video(label="Video", sources=["upload"], height=250, elem_id="video")
    comps["video_status"] = gr.Markdown(
        chat.video_status_markdown(Session()), elem_classes="small-note", elem_id="video-status"
    )
    if studio.examples:
        gr.Examples(
            examples=[[example.path] for example in studio.examples],
            inputs=[comps["video"]],
            example_labels=[example.title.split(" (")[0] for example in studio.examples],
            label="Example clips (click one to load it)",
            examples_per_page=8,
            api_name="load_example",
            elem_id="example-clips",
        )
    comps["chatbot"] = gr.Chatbot(
        label="Conversation",
        height=430,
        editable="user",
        allow_tags=False,
        group_consecutive_messages=False,  # a note and an answer are separate bubbles
        buttons=["copy", "copy_all"],
        placeholder="**Load a video** (upload, or click an example above), then ask about it. "
        "Without a video, questions are answered as text.",
        elem_id="chatbot",
    )
    with gr.Row(equal_height=True, elem_id="ask-row"):
        comps["question"] = gr.Textbox(
            show_label=False,
            placeholder="Ask about the video…",
            scale=8,
            max_lines=4,
            elem_id="question",
        )
        comps["send"] = gr.Button("Send", variant="primary", scale=1, min_width=80, elem_id="send")
        comps["stop"] = gr.Button("Stop", variant="stop", scale=1, min_width=70, elem_id="stop")
    comps["suggestions"] = gr.Dataset(
        components=[comps["question"]],
        samples=[],
        label="Suggested questions (click to ask)",
        visible=False,
        elem_id="suggestions",
    )
    with gr.Row():
        comps["regenerate"] = gr.Button("Regenerate", size="sm", min_width=60, elem_id="regenerate")
        comps["undo"] = gr.Button("Undo last turn", size="sm", min_width=60, elem_id="undo")
        comps["clear"] = gr.Button("Clear chat", size="sm", min_width=60, elem_id="clear")
    comps["answer_stats"] = gr.Markdown("", elem_classes="small-note", elem_id="answer-stats")
    with gr.Accordion("Rate an answer", open=True, elem_id="rating-panel"):
        gr.Markdown(
            "Thumbs on an answer are saved the moment you click them. Here you can add a 1–5 score and a reason.",
            elem_classes="small-note",
        )
        comps["rate_target"] = gr.Dropdown(choices=[], label="Answer to rate", elem_id="rate-target")
        with gr.Row():
            comps["thumbs"] = gr.Radio(list(ratings.THUMBS), value="no thumbs", label="Thumbs", elem_id="rate-thumbs")
            comps["score"] = gr.Radio([1, 2, 3, 4, 5], value=None, label="Score (1–5)", elem_id="rate-score")
        comps["reason"] = gr.Textbox(
            label="Reason (optional)",
            lines=2,
            max_length=2000,
            placeholder="What is right or wrong about it?",
            elem_id="rate-reason",
        )
        comps["save_rating"] = gr.Button("Save rating", variant="primary", elem_id="save-rating")
        comps["rating_status"] = gr.Markdown("", elem_id="rating-status")


def _build_views_column(comps: dict[str, Any]) -> None:
    """The Frames, Compression and Attention views of the latest answer."""
    with gr.Tabs(selected="frames", elem_id="views-tabs") as views_tabs:
        comps["views_tab"] = views_tabs
        with gr.Tab("Frames", id="frames"):
            gr.Markdown(
                "The frames the model saw, with their timestamps. Click one to see where the model looked in it.",
                elem_classes="small-note",
            )
            comps["frames"] = gr.Gallery(
                label="Sampled frames",
                columns=5,
                height=520,
                object_fit="contain",
                allow_preview=False,
                elem_id="frames-gallery",
                show_label=False,
            )
        with gr.Tab("Compression", id="compression"):
            comps["key_figures"] = gr.HTML("", elem_id="key-figures")
            comps["strip"] = gr.Image(
                label="Clips (middle frame, time range, budget)",
                interactive=False,
                elem_id="clip-strip",
                buttons=["fullscreen"],
            )
            comps["budget_plot"] = gr.Plot(label="Per-clip budgets", elem_id="budget-plot", show_label=False)
            comps["slow_fast_plot"] = gr.Plot(label="Slow vs fast", elem_id="slow-fast-plot", show_label=False)
            with gr.Accordion("All numbers and timings", open=False):
                comps["summary"] = gr.Markdown(views.view_outputs(None)["summary"], elem_id="summary")
        with gr.Tab("Attention", id="attention"):
            comps["heatmap"] = gr.Plot(label="Answer × frames", elem_id="heatmap-plot", show_label=False)
            comps["timeline"] = gr.Plot(label="Attention over time", elem_id="timeline-plot", show_label=False)
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=200):
                    comps["frame_slider"] = gr.Slider(
                        1,
                        2,
                        value=1,
                        step=1,
                        label="Frame",
                        interactive=False,
                        elem_id="frame-slider",
                    )
                    comps["overlay_caption"] = gr.Markdown(
                        views.frame_outputs(None, 1)["overlay_caption"], elem_id="overlay-caption"
                    )
                with gr.Column(scale=3, min_width=260):
                    comps["overlay"] = gr.Image(
                        label="Where it looked in this frame",
                        interactive=False,
                        height=300,
                        elem_id="overlay-image",
                    )


def _build_ab_tab(comps: dict[str, Any]) -> None:
    """One question, two setups side by side, two blind answers and the vote."""
    gr.Markdown(
        "Ask one question, get two answers from two setups (two models, or the same model with "
        "different sampling or token budgets). Which setup is **A** is decided by a coin flip and "
        "revealed after your vote.",
        elem_classes="small-note",
    )
    comps["ab_video"] = gr.Markdown(compare.ab_video_markdown(Session()), elem_id="ab-video")
    with gr.Row(equal_height=True):
        comps["ab_question"] = gr.Textbox(
            show_label=False,
            placeholder="The question both setups answer…",
            scale=6,
            elem_id="ab-question",
        )
        comps["ab_last"] = gr.Button("Last chat question", scale=1, min_width=120, size="sm")
        comps["ab_go"] = gr.Button("Compare", variant="primary", scale=1, min_width=100, elem_id="ab-run")
        comps["ab_stop"] = gr.Button("Stop", variant="stop", scale=1, min_width=70)
    with gr.Accordion("Setups", open=True):
        with gr.Row():
            comps["ab_setups"] = []  # model, temperature, top-p, budget of setup 1, then of setup 2
            for number, (temperature, top_p, budget) in enumerate(((0.0, 1.0, 192), (0.8, 0.9, 96)), 1):
                with gr.Column(variant="panel"):
                    gr.Markdown(f"**Setup {number}**")
                    comps["ab_setups"] += [
                        gr.Dropdown(
                            model_choices(),
                            value=DEFAULT_MODEL,
                            label="Model",
                            filterable=False,
                            elem_id=f"ab-model-{number}",
                        ),
                        gr.Slider(0, 1.5, value=temperature, step=0.05, label="Temperature"),
                        gr.Slider(0.05, 1.0, value=top_p, step=0.05, label="Top-p"),
                        gr.Slider(16, 1024, value=budget, step=8, label="Visual token budget"),
                    ]
    with gr.Row(equal_height=True):
        for letter in "ab":
            comps[f"ab_chat_{letter}"] = gr.Chatbot(
                label=f"Answer {letter.upper()}",
                height=260,
                allow_tags=False,
                feedback_options=None,
                buttons=["copy"],
                elem_id=f"ab-chat-{letter}",
            )
    with gr.Row():
        comps["vote_buttons"] = [
            gr.Button("👈 A is better", interactive=False, elem_id="vote-a"),
            gr.Button("👉 B is better", interactive=False, elem_id="vote-b"),
            gr.Button("🤝 Tie", interactive=False, elem_id="vote-tie"),
            gr.Button("👎 Both are bad", interactive=False, elem_id="vote-both-bad"),
        ]
    comps["ab_reason"] = gr.Textbox(label="Reason (optional)", lines=2, max_length=2000, elem_id="ab-reason")
    comps["ab_reveal"] = gr.Markdown("", elem_id="ab-reveal")


def _build_export_tab(studio: Studio, comps: dict[str, Any]) -> None:
    """Counts, export and download buttons, the newest judgements, and the Hub push."""
    comps["export_counts"] = gr.Markdown("", elem_id="export-counts")
    with gr.Row():
        comps["export_go"] = gr.Button("Export all formats", variant="primary", elem_id="export-run")
        comps["export_refresh"] = gr.Button("Refresh counts", elem_id="export-refresh")
    comps["export_status"] = gr.Markdown("", elem_id="export-status")
    with gr.Row(elem_id="download-row"):
        for name, (_key, label) in export_tab.DOWNLOADS.items():
            comps[name] = gr.DownloadButton(
                f"Download {label}", interactive=False, size="sm", elem_id=name.replace("_", "-")
            )
    comps["export_files"] = gr.File(
        label="All files of the latest export (the zip holds the videos too)",
        file_count="multiple",
        interactive=False,
        elem_id="export-files",
    )
    comps["export_preview"] = gr.Dataframe(
        label="Newest judgements", interactive=False, wrap=True, max_height=360, elem_id="export-preview"
    )
    with gr.Accordion("Push to the Hugging Face Hub", open=False):
        comps["hub_repo"] = gr.Textbox(
            label="Dataset repo (user/name)", placeholder="defaults to $STUDIO_HUB_DATASET_REPO"
        )
        comps["hub_push"] = gr.Button("Push latest export")
        comps["hub_status"] = gr.Markdown(
            plain(studio.hub_status, 300) if studio.hub_status else "*Needs HF_TOKEN and network access to the Hub.*"
        )


SETTINGS_INPUTS = ["model", "num_frames", "fps", "token_budget", "temperature", "top_p", "max_new_tokens", "seed"]
VIEW_OUTPUTS = [
    "frames",
    "key_figures",
    "summary",
    "strip",
    "budget_plot",
    "slow_fast_plot",
    "heatmap",
    "timeline",
    "frame_slider",
    "overlay",
    "overlay_caption",
]
CHAT_OUTPUTS = ["chatbot", "question", "session", *VIEW_OUTPUTS, "rate_target", "answer_stats"]
RATING_OUTPUTS = ["rating_status", "rate_target", "session", "score", "reason", "thumbs"]
AB_OUTPUTS = ["ab_chat_a", "ab_chat_b", "ab_reveal", "ab_votable", "session"]
EXPORT_OUTPUTS = ["export_status", "export_files", "session", "export_counts", "export_preview", *export_tab.DOWNLOADS]


def _wire(studio: Studio, comps: dict[str, Any]) -> None:
    """Connect every event of the layout in `comps` (components, buttons and tabs by name) to its handler."""
    # Gradio finds gr.Progress / gr.Request / gr.EventData parameters by position, so the wrappers below spell
    # out every input instead of taking *args.
    c = comps
    settings_in = [c[name] for name in SETTINGS_INPUTS]

    def emit(names: list[str]) -> Callable[[dict[str, Any]], dict[Any, Any]]:
        return functools.partial(_outputs, names, comps)

    def streamed(names: list[str], results: Iterator[dict[str, Any]]) -> Iterator[dict[Any, Any]]:
        to_updates = emit(names)
        try:
            for out in results:
                yield to_updates(out)
        finally:
            results.close()  # Stop closes this generator; the handler then records the partial answer

    # -- chat ---------------------------------------------------------------------------------------------------
    video_names = [*CHAT_OUTPUTS, "suggestions", "video_status"]

    def on_video(
        session,
        video,
        model,
        num_frames,
        fps,
        token_budget,
        temperature,
        top_p,
        max_new_tokens,
        seed,
        progress=PROGRESS,
    ):
        settings = Settings(model, num_frames, fps, token_budget, temperature, top_p, max_new_tokens, seed)
        return emit(video_names)(chat.load_video(studio, session, video, settings, progress))

    c["video"].change(
        on_video,
        [c["session"], c["video"], *settings_in],
        _components(video_names, c),
        api_name="load_video",
        show_progress_on=[c["frames"], c["chatbot"]],
        **MODEL_GROUP,
    )

    def on_chat(
        session,
        question,
        model,
        num_frames,
        fps,
        token_budget,
        temperature,
        top_p,
        max_new_tokens,
        seed,
        progress=PROGRESS,
    ):
        settings = Settings(model, num_frames, fps, token_budget, temperature, top_p, max_new_tokens, seed)
        yield from streamed(CHAT_OUTPUTS, chat.chat(session, question, settings, progress))

    chat_inputs = [c["session"], c["question"], *settings_in]
    chat_outputs = _components(CHAT_OUTPUTS, c)
    chat_event = gr.on(
        [c["send"].click, c["question"].submit],
        on_chat,
        chat_inputs,
        chat_outputs,
        api_name="chat",
        show_progress="minimal",
        show_progress_on=[c["chatbot"]],
        **MODEL_GROUP,
    )

    def on_suggestion(sample):
        return sample[0] if isinstance(sample, (list, tuple)) and sample else (sample or "")

    suggestion_event = (
        c["suggestions"]
        .click(
            on_suggestion,
            c["suggestions"],
            c["question"],
            api_name="use_suggestion",
            api_visibility="undocumented",
            queue=False,
        )
        .then(
            on_chat,
            chat_inputs,
            chat_outputs,
            api_name="ask_suggestion",
            api_visibility="undocumented",
            show_progress="minimal",
            show_progress_on=[c["chatbot"]],
            **MODEL_GROUP,
        )
    )

    def on_regenerate(
        session, model, num_frames, fps, token_budget, temperature, top_p, max_new_tokens, seed, progress=PROGRESS
    ):
        settings = Settings(model, num_frames, fps, token_budget, temperature, top_p, max_new_tokens, seed)
        yield from streamed(CHAT_OUTPUTS, chat.regenerate(session, settings, progress))

    regen_inputs = [c["session"], *settings_in]
    regen_event = c["regenerate"].click(
        on_regenerate,
        regen_inputs,
        chat_outputs,
        api_name="regenerate",
        show_progress="minimal",
        show_progress_on=[c["chatbot"]],
        **MODEL_GROUP,
    )
    retry_event = c["chatbot"].retry(
        on_regenerate,
        regen_inputs,
        chat_outputs,
        api_name="chatbot_retry",
        api_visibility="undocumented",
        show_progress="minimal",
        show_progress_on=[c["chatbot"]],
        **MODEL_GROUP,
    )

    def on_edit(
        session,
        model,
        num_frames,
        fps,
        token_budget,
        temperature,
        top_p,
        max_new_tokens,
        seed,
        evt: gr.EventData = None,
        progress=PROGRESS,
    ):
        settings = Settings(model, num_frames, fps, token_budget, temperature, top_p, max_new_tokens, seed)
        yield from streamed(CHAT_OUTPUTS, chat.edit_message(session, _event_data(evt), settings, progress))

    edit_event = c["chatbot"].edit(
        on_edit,
        regen_inputs,
        chat_outputs,
        api_name="edit_message",
        api_visibility="undocumented",
        show_progress="minimal",
        show_progress_on=[c["chatbot"]],
        **MODEL_GROUP,
    )

    def on_undo(session):
        return emit(["chatbot", "question", "session", "rate_target"])(chat.undo(session))

    undo_outputs = _components(["chatbot", "question", "session", "rate_target"], c)
    c["undo"].click(on_undo, c["session"], undo_outputs, api_name="undo", **MODEL_GROUP)
    c["chatbot"].undo(
        on_undo, c["session"], undo_outputs, api_name="chatbot_undo", api_visibility="undocumented", **MODEL_GROUP
    )

    clear_names = ["chatbot", "session", *VIEW_OUTPUTS, "rate_target", "answer_stats"]

    def on_clear(session):
        return emit(clear_names)(chat.clear_chat(session))

    c["clear"].click(on_clear, c["session"], _components(clear_names, c), api_name="clear_chat", **MODEL_GROUP)
    c["chatbot"].clear(
        on_clear,
        c["session"],
        _components(clear_names, c),
        api_name="chatbot_clear",
        api_visibility="undocumented",
        **MODEL_GROUP,
    )

    model_events = [chat_event, suggestion_event, regen_event, retry_event, edit_event]
    # From the API, stop a running job with `job.cancel()`: Gradio wires that to the same cancellation.
    c["stop"].click(
        _stopped, None, None, cancels=model_events, api_name="stop", api_visibility="undocumented", queue=False
    )

    model_names = ["model", "model_info", "num_frames", "fps", "token_budget", "session"]

    def on_model(session, name):
        return emit(model_names)(chat.select_model(session, name))

    c["model"].input(
        on_model, [c["session"], c["model"]], _components(model_names, c), api_name="select_model", **LIGHT
    )

    # -- views --------------------------------------------------------------------------------------------------
    def on_frame(session, number):
        return emit(["overlay", "overlay_caption"])(views.show_frame(session, number))

    c["frame_slider"].release(
        on_frame,
        [c["session"], c["frame_slider"]],
        [c["overlay"], c["overlay_caption"]],
        api_name="show_frame",
        **LIGHT,
    )

    pick_names = ["frame_slider", "overlay", "overlay_caption", "views_tab"]

    def on_gallery(session, evt: gr.EventData = None):
        return emit(pick_names)(views.frame_from_gallery(session, _event_data(evt)))

    c["frames"].select(
        on_gallery,
        c["session"],
        _components(pick_names, c),
        api_name="pick_frame",
        api_visibility="undocumented",
        **LIGHT,
    )

    # -- ratings ------------------------------------------------------------------------------------------------
    def on_rate(session, turn_number, thumbs, score, reason, annotator, request: gr.Request):
        out = ratings.rate_answer(
            studio, session, turn_number, thumbs, score, reason, annotator, _session_hash(request)
        )
        return emit(RATING_OUTPUTS)(out)

    c["save_rating"].click(
        on_rate,
        [c["session"], c["rate_target"], c["thumbs"], c["score"], c["reason"], c["annotator"]],
        _components(RATING_OUTPUTS, c),
        api_name="rate_answer",
        **LIGHT,
    )

    def on_like(session, annotator, request: gr.Request, evt: gr.EventData = None):
        out = ratings.like(studio, session, _event_data(evt), annotator, _session_hash(request))
        return emit(RATING_OUTPUTS)(out)

    c["chatbot"].like(
        on_like,
        [c["session"], c["annotator"]],
        _components(RATING_OUTPUTS, c),
        api_name="like_message",
        api_visibility="undocumented",
        **LIGHT,
    )

    # -- A/B ----------------------------------------------------------------------------------------------------
    def on_ab_run(
        session,
        question,
        model_1,
        temperature_1,
        top_p_1,
        budget_1,
        model_2,
        temperature_2,
        top_p_2,
        budget_2,
        model,
        num_frames,
        fps,
        token_budget,
        temperature,
        top_p,
        max_new_tokens,
        seed,
        progress=PROGRESS,
    ):
        setups = (
            compare.SideSetup(model_1, temperature_1, top_p_1, budget_1),
            compare.SideSetup(model_2, temperature_2, top_p_2, budget_2),
        )
        shared = Settings(model, num_frames, fps, token_budget, temperature, top_p, max_new_tokens, seed)
        yield from streamed(AB_OUTPUTS, compare.ab_run(session, question, setups, shared, progress))

    ab_event = gr.on(
        [c["ab_go"].click, c["ab_question"].submit],
        on_ab_run,
        [c["session"], c["ab_question"], *c["ab_setups"], *settings_in],
        _components(AB_OUTPUTS, c),
        api_name="ab_run",
        show_progress="minimal",
        show_progress_on=[c["ab_chat_a"], c["ab_chat_b"]],
        **MODEL_GROUP,
    )
    c["ab_stop"].click(
        _stopped, None, None, cancels=[ab_event], api_name="ab_stop", api_visibility="undocumented", queue=False
    )

    vote_names = [*AB_OUTPUTS, "ab_reason"]

    def vote_handler(choice: str) -> Callable:
        def on_vote(session, reason, annotator, request: gr.Request):
            return emit(vote_names)(
                compare.ab_vote(studio, session, choice, reason, annotator, _session_hash(request))
            )

        return on_vote

    for button, choice in zip(c["vote_buttons"], ("a", "b", "tie", "both_bad"), strict=True):
        button.click(
            vote_handler(choice),
            [c["session"], c["ab_reason"], c["annotator"]],
            _components(vote_names, c),
            api_name=f"ab_vote_{choice}",
            **LIGHT,
        )

    def on_ab_last(session):
        return emit(["ab_question"])(compare.ab_last_question(session))

    c["ab_last"].click(on_ab_last, c["session"], c["ab_question"], api_name="ab_last_question", **LIGHT)

    def on_ab_tab(session):
        return compare.ab_video_markdown(session)

    c["ab_tab"].select(
        on_ab_tab, c["session"], c["ab_video"], api_name="open_ab_tab", api_visibility="undocumented", **LIGHT
    )

    # -- export -------------------------------------------------------------------------------------------------
    def on_export(session):
        return emit(EXPORT_OUTPUTS)(export_tab.export_data(studio, session))

    c["export_go"].click(on_export, c["session"], _components(EXPORT_OUTPUTS, c), api_name="export", **EXPORT_GROUP)

    refresh_names = ["export_counts", "export_preview"]

    def on_refresh():
        return emit(refresh_names)(export_tab.refresh_export(studio))

    c["export_refresh"].click(on_refresh, None, _components(refresh_names, c), api_name="refresh_export", **LIGHT)
    c["export_tab"].select(
        on_refresh,
        None,
        _components(refresh_names, c),
        api_name="open_export_tab",
        api_visibility="undocumented",
        **LIGHT,
    )

    def on_push(session, repo):
        return emit(["hub_status"])(export_tab.push_export(session, repo))

    c["hub_push"].click(
        on_push, [c["session"], c["hub_repo"]], c["hub_status"], api_name="push_to_hub", **EXPORT_GROUP
    )


def data_dir_from(path: str | Path | None) -> Path:
    return Path(path).expanduser().resolve() if path else default_data_dir()
