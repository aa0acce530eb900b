"""Layout of the Chat tab: the video and the conversation on the left, the Frames / Compression / Attention views of
the latest answer on the right, and the rating panel, with every event wired to its handler.

The handlers are the package's other modules (`handlers.py`: loading a video, asking, reworking the conversation;
`views.py`: the views; `ratings.py`: ratings); this module only places components and connects them. Events that
run a model share the "model" concurrency group, so a CPU never runs two generations at once.
"""

from __future__ import annotations

import gradio as gr

from app.session import Session
from app.tabs.chat import handlers as chat
from app.tabs.chat import ratings, views
from app.wiring import HIDDEN, LIGHT, MODEL_GROUP, PROGRESS, Panel, Shared, event_data, identity_of, stopped

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
VIDEO_OUTPUTS = [*CHAT_OUTPUTS, "suggestions", "video_status"]
CLEAR_OUTPUTS = ["chatbot", "session", *VIEW_OUTPUTS, "rate_target", "answer_stats"]
UNDO_OUTPUTS = ["chatbot", "question", "session", "rate_target"]
RATING_OUTPUTS = ["rating_status", "rate_target", "session", "score", "reason", "thumbs"]
PICK_OUTPUTS = ["frame_slider", "overlay", "overlay_caption", "views_tab"]


def build(shared: Shared) -> Panel:
    """Lay out the Chat tab inside the current `gr.Tab` and wire its events."""
    panel = Panel(session=shared.session)
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=420):
            _video_and_chat(shared, panel)
            _rating_panel(panel)
        with gr.Column(scale=6, min_width=460):
            _views(panel)
    panel.expand["views_tab"] = lambda selected: gr.Tabs(selected=selected)
    _wire_chat(shared, panel)
    _wire_views_and_ratings(shared, panel)
    return panel


def _video_and_chat(shared: Shared, panel: Panel) -> None:
    panel["video"] = gr.Video(label="Video", sources=["upload"], height=250, elem_id="video")
    panel["video_status"] = gr.Markdown(
        chat.video_status_markdown(Session()), elem_classes="small-note", elem_id="video-status"
    )
    examples = shared.studio.examples
    if examples:
        gr.Examples(
            examples=[[example.path] for example in examples],
            inputs=[panel["video"]],
            example_labels=[example.title.split(" (")[0] for example in examples],
            label="Example clips (click one to load it)",
            examples_per_page=8,
            api_name="load_example",
            elem_id="example-clips",
        )
    panel["chatbot"] = gr.Chatbot(
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
        panel["question"] = gr.Textbox(
            show_label=False, placeholder="Ask about the video…", scale=8, max_lines=4, elem_id="question"
        )
        panel["send"] = gr.Button("Send", variant="primary", scale=1, min_width=80, elem_id="send")
        panel["stop"] = gr.Button("Stop", variant="stop", scale=1, min_width=70, elem_id="stop")
    panel["suggestions"] = gr.Dataset(
        components=[panel["question"]],
        samples=[],
        label="Suggested questions (click to ask)",
        visible=False,
        elem_id="suggestions",
    )
    with gr.Row():
        panel["regenerate"] = gr.Button("Regenerate", size="sm", min_width=60, elem_id="regenerate")
        panel["undo"] = gr.Button("Undo last turn", size="sm", min_width=60, elem_id="undo")
        panel["clear"] = gr.Button("Clear chat", size="sm", min_width=60, elem_id="clear")
    panel["answer_stats"] = gr.Markdown("", elem_classes="small-note", elem_id="answer-stats")


def _rating_panel(panel: Panel) -> None:
    with gr.Accordion("Rate an answer", open=True, elem_id="rating-panel"):
        gr.Markdown(
            "Thumbs on an answer are saved the moment you click them. Here you can add a 1–5 score and a reason.",
            elem_classes="small-note",
        )
        panel["rate_target"] = gr.Dropdown(choices=[], label="Answer to rate", elem_id="rate-target")
        with gr.Row():
            panel["thumbs"] = gr.Radio(list(ratings.THUMBS), value="no thumbs", label="Thumbs", elem_id="rate-thumbs")
            panel["score"] = gr.Radio([1, 2, 3, 4, 5], value=None, label="Score (1–5)", elem_id="rate-score")
        panel["reason"] = gr.Textbox(
            label="Reason (optional)",
            lines=2,
            max_length=2000,
            placeholder="What is right or wrong about it?",
            elem_id="rate-reason",
        )
        panel["save_rating"] = gr.Button("Save rating", variant="primary", elem_id="save-rating")
        panel["rating_status"] = gr.Markdown("", elem_id="rating-status")


def _views(panel: Panel) -> None:
    with gr.Tabs(selected="frames", elem_id="views-tabs") as panel.c["views_tab"]:
        with gr.Tab("Frames", id="frames"):
            gr.Markdown(
                "The frames the model saw, with their timestamps. Click one to see where the model looked in it.",
                elem_classes="small-note",
            )
            panel["frames"] = gr.Gallery(
                label="Sampled frames",
                columns=5,
                height=520,
                object_fit="contain",
                allow_preview=False,
                elem_id="frames-gallery",
                show_label=False,
            )
        with gr.Tab("Compression", id="compression"):
            panel["key_figures"] = gr.HTML("", elem_id="key-figures")
            panel["strip"] = gr.Image(
                label="Clips (middle frame, time range, budget)",
                interactive=False,
                elem_id="clip-strip",
                buttons=["fullscreen"],
            )
            panel["budget_plot"] = gr.Plot(label="Per-clip budgets", elem_id="budget-plot", show_label=False)
            panel["slow_fast_plot"] = gr.Plot(label="Slow vs fast", elem_id="slow-fast-plot", show_label=False)
            with gr.Accordion("All numbers and timings", open=False):
                panel["summary"] = gr.Markdown(views.view_outputs(None)["summary"], elem_id="summary")
        with gr.Tab("Attention", id="attention"):
            _attention_view(panel)


def _attention_view(panel: Panel) -> None:
    panel["heatmap"] = gr.Plot(label="Answer × frames", elem_id="heatmap-plot", show_label=False)
    panel["timeline"] = gr.Plot(label="Attention over time", elem_id="timeline-plot", show_label=False)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=200):
            panel["frame_slider"] = gr.Slider(
                1, 2, value=1, step=1, label="Frame", interactive=False, elem_id="frame-slider"
            )
            panel["overlay_caption"] = gr.Markdown(
                views.frame_outputs(None, 1)["overlay_caption"], elem_id="overlay-caption"
            )
        with gr.Column(scale=3, min_width=260):
            panel["overlay"] = gr.Image(
                label="Where it looked in this frame", interactive=False, height=300, elem_id="overlay-image"
            )


def _wire_chat(shared: Shared, panel: Panel) -> None:
    """Loading a video, asking, regenerating, editing, undo, clear, stop, and the model picker."""
    p, studio, settings = panel, shared.studio, shared.settings
    # Gradio finds gr.Progress / gr.EventData parameters by position, so each wrapper spells out the settings.

    def on_video(session, video, model, frames, fps, compressor, budget, temp, top_p, max_new, seed,
                 request: gr.Request, progress=PROGRESS):  # fmt: skip
        s = shared.settings_from((model, frames, fps, compressor, budget, temp, top_p, max_new, seed))
        who = identity_of(studio, request)
        return p.updates(VIDEO_OUTPUTS, chat.load_video(studio, session, who, video, s, progress))

    def on_chat(session, question, model, frames, fps, compressor, budget, temp, top_p, max_new, seed,
                request: gr.Request, progress=PROGRESS):  # fmt: skip
        s = shared.settings_from((model, frames, fps, compressor, budget, temp, top_p, max_new, seed))
        who = identity_of(studio, request)
        yield from p.streamed(CHAT_OUTPUTS, chat.chat(studio, session, who, question, s, progress))

    def on_regenerate(session, model, frames, fps, compressor, budget, temp, top_p, max_new, seed,
                      request: gr.Request, progress=PROGRESS):  # fmt: skip
        s = shared.settings_from((model, frames, fps, compressor, budget, temp, top_p, max_new, seed))
        who = identity_of(studio, request)
        yield from p.streamed(CHAT_OUTPUTS, chat.regenerate(studio, session, who, s, progress))

    def on_edit(session, model, frames, fps, compressor, budget, temp, top_p, max_new, seed, request: gr.Request,
                evt: gr.EventData = None, progress=PROGRESS):  # fmt: skip
        s = shared.settings_from((model, frames, fps, compressor, budget, temp, top_p, max_new, seed))
        who = identity_of(studio, request)
        yield from p.streamed(CHAT_OUTPUTS, chat.edit_message(studio, session, who, event_data(evt), s, progress))

    streaming = {"show_progress": "minimal", "show_progress_on": [p["chatbot"]], **MODEL_GROUP}
    p["video"].change(
        on_video,
        [p["session"], p["video"], *settings],
        p.components(VIDEO_OUTPUTS),
        api_name="load_video",
        show_progress_on=[p["frames"], p["chatbot"]],
        **MODEL_GROUP,
    )
    chat_in, chat_out = [p["session"], p["question"], *settings], p.components(CHAT_OUTPUTS)
    asked = gr.on([p["send"].click, p["question"].submit], on_chat, chat_in, chat_out, api_name="chat", **streaming)
    suggested = (
        p["suggestions"]
        .click(_suggestion_text, p["suggestions"], p["question"], api_name="use_suggestion", queue=False, **HIDDEN)
        .then(on_chat, chat_in, chat_out, api_name="ask_suggestion", **HIDDEN, **streaming)
    )
    regen_in = [p["session"], *settings]
    regenerated = p["regenerate"].click(on_regenerate, regen_in, chat_out, api_name="regenerate", **streaming)
    retried = p["chatbot"].retry(on_regenerate, regen_in, chat_out, api_name="chatbot_retry", **HIDDEN, **streaming)
    edited = p["chatbot"].edit(on_edit, regen_in, chat_out, api_name="edit_message", **HIDDEN, **streaming)
    # From the API, stop a running job with `job.cancel()`: Gradio wires that to the same cancellation.
    p["stop"].click(
        stopped, None, None, cancels=[asked, suggested, regenerated, retried, edited], api_name="stop", queue=False,
        **HIDDEN,
    )  # fmt: skip

    def on_undo(session):
        return p.updates(UNDO_OUTPUTS, chat.undo(session))

    def on_clear(session):
        return p.updates(CLEAR_OUTPUTS, chat.clear_chat(session))

    undo_out, clear_out = p.components(UNDO_OUTPUTS), p.components(CLEAR_OUTPUTS)
    p["undo"].click(on_undo, p["session"], undo_out, api_name="undo", **MODEL_GROUP)
    p["chatbot"].undo(on_undo, p["session"], undo_out, api_name="chatbot_undo", **HIDDEN, **MODEL_GROUP)
    p["clear"].click(on_clear, p["session"], clear_out, api_name="clear_chat", **MODEL_GROUP)
    p["chatbot"].clear(on_clear, p["session"], clear_out, api_name="chatbot_clear", **HIDDEN, **MODEL_GROUP)


def _suggestion_text(sample):
    return sample[0] if isinstance(sample, (list, tuple)) and sample else (sample or "")


def _wire_views_and_ratings(shared: Shared, panel: Panel) -> None:
    p, studio = panel, shared.studio

    def on_frame(session, number):
        return p.updates(["overlay", "overlay_caption"], views.show_frame(session, number))

    def on_gallery(session, evt: gr.EventData = None):
        return p.updates(PICK_OUTPUTS, views.frame_from_gallery(session, event_data(evt)))

    def on_rate(session, turn_number, thumbs, score, reason, request: gr.Request):
        who = identity_of(studio, request)
        return p.updates(RATING_OUTPUTS, ratings.rate_answer(studio, session, turn_number, thumbs, score, reason, who))

    def on_like(session, request: gr.Request, evt: gr.EventData = None):
        out = ratings.like(studio, session, event_data(evt), identity_of(studio, request))
        return p.updates(RATING_OUTPUTS, out)

    p["frame_slider"].release(
        on_frame, [p["session"], p["frame_slider"]], [p["overlay"], p["overlay_caption"]], api_name="show_frame",
        **LIGHT,
    )  # fmt: skip
    p["frames"].select(on_gallery, p["session"], p.components(PICK_OUTPUTS), api_name="pick_frame", **HIDDEN, **LIGHT)
    rating_in = [p["session"], p["rate_target"], p["thumbs"], p["score"], p["reason"]]
    p["save_rating"].click(on_rate, rating_in, p.components(RATING_OUTPUTS), api_name="rate_answer", **LIGHT)
    p["chatbot"].like(on_like, p["session"], p.components(RATING_OUTPUTS), api_name="like_message", **HIDDEN, **LIGHT)
