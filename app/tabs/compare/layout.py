"""Layout of the A/B compare tab: one question, two setups, two blind answers and one vote, wired to the handlers in
`app/tabs/compare/handlers.py`.

Two modes: "two setups" (two models, or one model with different sampling or compression) and "same model, two
compressions", which keeps the model and greedy decoding identical on both sides so the vote is about compression
alone. Below the vote, a summary table shows, per pair of compression settings, wins / ties / losses with a 95%
interval.
"""

from __future__ import annotations

import gradio as gr

from app.session import Session
from app.settings import model_choices
from app.sidebar import budget_update, compressor_update
from app.tabs.compare import handlers as compare
from app.wiring import HIDDEN, LIGHT, MODEL_GROUP, PROGRESS, Panel, Shared, identity_of, stopped
from models.registry import DEFAULT_MODEL

AB_OUTPUTS = ["ab_chat_a", "ab_chat_b", "ab_reveal", "ab_votable", "session"]
VOTE_OUTPUTS = [*AB_OUTPUTS, "ab_reason", "ab_summary"]
CHOICES = ("a", "b", "tie", "both_bad")
# Per setup: compressor, budget %, temperature, top-p. Setup 2 starts as the classic "sampling vs greedy" pair.
SETUP_DEFAULTS = (("official", 100.0, 0.0, 1.0), ("dynamic", 50.0, 0.8, 0.9))


def build(shared: Shared, tab: gr.Tab) -> Panel:
    panel = Panel(session=shared.session)
    gr.Markdown(
        "Ask one question, get two answers from two setups. Which setup is **A** is decided by a coin flip and "
        "revealed after your vote. In **same model, two compressions** mode both sides run the same model with "
        "greedy decoding, so your vote is about the compression alone.",
        elem_classes="small-note",
    )
    panel["ab_video"] = gr.Markdown(compare.ab_video_markdown(Session()), elem_id="ab-video")
    with gr.Row(equal_height=True):
        panel["ab_question"] = gr.Textbox(
            show_label=False, placeholder="The question both setups answer…", scale=6, elem_id="ab-question"
        )
        panel["ab_last"] = gr.Button("Last chat question", scale=1, min_width=120, size="sm")
        panel["ab_go"] = gr.Button("Compare", variant="primary", scale=1, min_width=100, elem_id="ab-run")
        panel["ab_stop"] = gr.Button("Stop", variant="stop", scale=1, min_width=70)
    _setups(panel)
    with gr.Row(equal_height=True):
        for letter in "ab":
            panel[f"ab_chat_{letter}"] = gr.Chatbot(
                label=f"Answer {letter.upper()}",
                height=260,
                allow_tags=False,
                feedback_options=None,
                buttons=["copy"],
                elem_id=f"ab-chat-{letter}",
            )
    with gr.Row():
        buttons = [
            gr.Button("👈 A is better", interactive=False, elem_id="vote-a"),
            gr.Button("👉 B is better", interactive=False, elem_id="vote-b"),
            gr.Button("🤝 Tie", interactive=False, elem_id="vote-tie"),
            gr.Button("👎 Both are bad", interactive=False, elem_id="vote-both-bad"),
        ]
    panel.groups["ab_votable"] = (buttons, lambda votable: gr.update(interactive=bool(votable)))
    panel["ab_reason"] = gr.Textbox(label="Reason (optional)", lines=2, max_length=2000, elem_id="ab-reason")
    panel["ab_reveal"] = gr.Markdown("", elem_id="ab-reveal")
    with gr.Accordion("Compression preferences so far", open=False, elem_id="ab-summary-panel"):
        panel["ab_summary"] = gr.Markdown(compare.summary_markdown(shared.studio), elem_id="ab-summary")
    _wire(shared, panel, tab, buttons)
    return panel


def _setups(panel: Panel) -> None:
    panel["ab_mode"] = gr.Radio(
        [("Two setups", "setups"), ("Same model, two compressions", "compression")],
        value="setups",
        label="Mode",
        elem_id="ab-mode",
    )
    setups: list = []  # per setup: model, compressor, budget %, temperature, top-p
    with gr.Accordion("Setups", open=True), gr.Row():
        for number, (compressor, budget, temperature, top_p) in enumerate(SETUP_DEFAULTS, 1):
            with gr.Column(variant="panel"):
                gr.Markdown(f"**Setup {number}**")
                model = gr.Dropdown(
                    model_choices(), value=DEFAULT_MODEL, label="Model", filterable=False, elem_id=f"ab-model-{number}"
                )
                choice = compressor_update(DEFAULT_MODEL, compressor)
                budget_state = budget_update(choice["value"])
                setups += [
                    model,
                    gr.Dropdown(
                        choice["choices"], value=choice["value"], label="Compressor", elem_id=f"ab-compressor-{number}"
                    ),
                    gr.Slider(
                        5,
                        200,
                        value=budget,
                        step=5,
                        label="Token budget (%)",
                        info=budget_state["info"],
                        interactive=budget_state["interactive"],
                        elem_id=f"ab-budget-{number}",
                    ),
                    gr.Slider(0, 1.5, value=temperature, step=0.05, label="Temperature"),
                    gr.Slider(0.05, 1.0, value=top_p, step=0.05, label="Top-p"),
                ]
    panel.c["ab_setups"] = setups


def _wire(shared: Shared, panel: Panel, tab: gr.Tab, buttons: list) -> None:
    p, studio, setups = panel, shared.studio, panel.c["ab_setups"]

    def on_run(session, question, mode, model_1, compressor_1, budget_1, temperature_1, top_p_1, model_2, compressor_2,
               budget_2, temperature_2, top_p_2, model, frames, fps, compressor, budget, temp, top_p, max_new, seed,
               request: gr.Request, progress=PROGRESS):  # fmt: skip
        sides = (
            compare.SideSetup(model_1, compressor_1, budget_1, temperature_1, top_p_1),
            compare.SideSetup(model_2, compressor_2, budget_2, temperature_2, top_p_2),
        )
        chat_settings = shared.settings_from((model, frames, fps, compressor, budget, temp, top_p, max_new, seed))
        who = identity_of(studio, request)
        run = compare.ab_run(studio, session, who, question, sides, chat_settings, progress, mode)
        yield from p.streamed(AB_OUTPUTS, run)

    ran = gr.on(
        [p["ab_go"].click, p["ab_question"].submit],
        on_run,
        [p["session"], p["ab_question"], p["ab_mode"], *setups, *shared.settings],
        p.components(AB_OUTPUTS),
        api_name="ab_run",
        show_progress="minimal",
        show_progress_on=[p["ab_chat_a"], p["ab_chat_b"]],
        **MODEL_GROUP,
    )
    p["ab_stop"].click(stopped, None, None, cancels=[ran], api_name="ab_stop", queue=False, **HIDDEN)

    def vote_handler(choice: str):
        def on_vote(session, reason, request: gr.Request):
            out = compare.ab_vote(studio, session, identity_of(studio, request), choice, reason)
            return p.updates(VOTE_OUTPUTS, out)

        return on_vote

    vote_in = [p["session"], p["ab_reason"]]
    for button, choice in zip(buttons, CHOICES, strict=True):
        button.click(vote_handler(choice), vote_in, p.components(VOTE_OUTPUTS), api_name=f"ab_vote_{choice}", **LIGHT)
    p["ab_last"].click(
        lambda session: p.updates(["ab_question"], compare.ab_last_question(session)),
        p["session"],
        p["ab_question"],
        api_name="ab_last_question",
        **LIGHT,
    )
    tab.select(
        lambda session: (compare.ab_video_markdown(session), compare.summary_markdown(studio)),
        p["session"],
        [p["ab_video"], p["ab_summary"]],
        api_name="open_ab_tab",
        **HIDDEN,
        **LIGHT,
    )
    _wire_setup_controls(p, setups)


def _wire_setup_controls(p: Panel, setups: list) -> None:
    """A setup's compressor list follows its model; compression mode pins both sides to one model, greedy."""
    for number in range(2):
        model, compressor = setups[5 * number], setups[5 * number + 1]
        model.input(compressor_update, model, compressor, api_name=f"ab_model_{number + 1}", **HIDDEN, **LIGHT)
        budget = setups[5 * number + 2]
        compressor.change(budget_update, compressor, budget, api_name=f"ab_budget_{number + 1}", **HIDDEN, **LIGHT)

    def on_mode(mode, model_1):
        if mode != "compression":
            return [gr.skip()] * 6
        same = compressor_update(model_1, "dynamic")
        return [model_1, same, 0.0, 1.0, 0.0, 1.0]

    p["ab_mode"].input(
        on_mode,
        [p["ab_mode"], setups[0]],
        [setups[5], setups[6], setups[3], setups[4], setups[8], setups[9]],
        api_name="ab_mode",
        **HIDDEN,
        **LIGHT,
    )
