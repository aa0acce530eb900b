"""Layout of the Campaign tab: the annotator's queue (video, question, two blind answers, the four choices with
keyboard shortcuts, skip, the guidelines and "12 of 40 done") and, for admins, an accordion to define a campaign,
generate its answers with a progress line, read its results and export it; every event is wired to
`app/tabs/campaign/handlers.py`.
"""

from __future__ import annotations

import gradio as gr

from app.tabs.campaign import handlers as campaign
from app.wiring import EXPORT_GROUP, FRAMES_LABEL, LIGHT, Panel, Shared, identity_of

QUEUE_OUTPUTS = ["item", "item_video", "item_question", "answer_a", "answer_b", "score", "guidelines", "queue_status"]
JUDGE_OUTPUTS = [*QUEUE_OUTPUTS, "item_reason"]
RESULT_OUTPUTS = ["results_summary", "ranking_plot", "win_rate_plot", "tokens_plot"]
SHORTCUT_KEYS = {"1": "a", "2": "b", "3": "tie", "4": "both_bad"}
POLL_S = 2.0
# Keys 1-4 press the choice buttons and S skips, unless the person is typing (a reason, a question).
SHORTCUTS_JS = """() => {
  document.addEventListener('keydown', (event) => {
    const typing = ['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement?.tagName);
    const tab = document.querySelector('#campaign-queue');
    if (typing || !tab || tab.offsetParent === null || event.ctrlKey || event.metaKey || event.altKey) return;
    const targets = {'1': 'campaign-a', '2': 'campaign-b', '3': 'campaign-tie', '4': 'campaign-both_bad',
                     's': 'campaign-skip'};
    const button = document.getElementById(targets[event.key.toLowerCase()]);
    if (button && !button.disabled) { event.preventDefault(); button.click(); }
  });
}"""


def build(shared: Shared, tab: gr.Tab) -> Panel:
    """Create the Campaign tab's components and events inside the current `gr.Tab`."""
    p = Panel(item=gr.State(None))
    with gr.Column(elem_id="campaign-queue"):
        with gr.Row(equal_height=True):
            p["campaign"] = gr.Dropdown(
                [], label="Campaign", allow_custom_value=True, elem_id="campaign-name", scale=3
            )
            p["next"] = gr.Button("Next item", variant="primary", scale=1, elem_id="campaign-next")
        p["queue_status"] = gr.Markdown("*Pick a campaign and press Next item.*", elem_id="campaign-status")
        with gr.Accordion("Guidelines", open=False):
            p["guidelines"] = gr.Markdown("", elem_id="campaign-guidelines")
        with gr.Row(equal_height=False):
            p["item_video"] = gr.Video(label="Video", interactive=False, height=300, elem_id="campaign-video")
            with gr.Column():
                p["item_question"] = gr.Markdown("", elem_id="campaign-question")
                with gr.Row(equal_height=False):
                    p["answer_a"] = gr.Markdown("", label="Answer A", container=True, elem_id="campaign-answer-a")
                    p["answer_b"] = gr.Markdown("", label="Answer B", container=True, elem_id="campaign-answer-b")
        p["item_reason"] = gr.Textbox(label="Reason (optional)", max_length=2000, lines=1, elem_id="campaign-reason")
        with gr.Row():
            buttons = {
                choice: gr.Button(f"{label} ({key})", interactive=False, elem_id=f"campaign-{choice}")
                for key, choice in SHORTCUT_KEYS.items()
                for label in [campaign.CHOICES[choice]]
            }
            p["score"] = gr.Radio([1, 2, 3, 4, 5], label="Score (1–5)", visible=False, elem_id="campaign-score")
            p["skip"] = gr.Button("Skip (S)", size="sm", elem_id="campaign-skip")
    p.groups["judge_enabled"] = (list(buttons.values()), lambda on: gr.update(interactive=bool(on)))
    with gr.Accordion("Manage campaigns (admins)", open=False, visible=False) as admin:
        _admin(p)
    p["admin"] = admin
    _wire(shared, p, tab, buttons)
    return p


def _admin(p: Panel) -> None:
    with gr.Row():
        p["new_name"] = gr.Textbox(label="Name", max_length=64, elem_id="campaign-new-name")
        p["new_k"] = gr.Number(2, precision=0, minimum=1, maximum=50, label="Judgements per item (k)")
        p["new_kind"] = gr.Radio(["pairwise", "rating"], value="pairwise", label="Judgement")
        p["new_visitors"] = gr.Checkbox(False, label="Visitors may judge")
    with gr.Row():
        p["new_manifest"] = gr.File(label="Manifest (CSV / JSONL / Parquet)", type="filepath")
        p["new_setups"] = gr.File(label="Setups (JSON / TOML)", type="filepath")
        p["new_guidelines"] = gr.File(label="Guidelines (Markdown)", type="filepath")
    with gr.Row():
        p["create"] = gr.Button("Create campaign", elem_id="campaign-create")
        p["generate"] = gr.Button("Generate answers", variant="primary", elem_id="campaign-generate")
        p["refresh_results"] = gr.Button("Results", elem_id="campaign-results")
    p["admin_status"] = gr.Markdown("", elem_id="campaign-admin-status")
    p["generation"] = gr.Markdown("", elem_id="campaign-generation")
    p["results_summary"] = gr.Markdown("", elem_id="campaign-summary")
    p["ranking_plot"] = gr.Plot(show_label=False, elem_id="campaign-ranking")
    with gr.Row():
        p["win_rate_plot"] = gr.Plot(show_label=False, elem_id="campaign-win-rates")
        p["tokens_plot"] = gr.Plot(show_label=False, elem_id="campaign-tokens")
    with gr.Row():
        p["export_format"] = gr.Radio(["dpo", "kto", "jsonl"], value="dpo", label="Export as")
        p["export_frames"] = gr.Checkbox(False, label=FRAMES_LABEL, elem_id="campaign-export-frames")
        p["export_go"] = gr.Button("Export campaign", elem_id="campaign-export")
        p["campaign_file"] = gr.File(label="Campaign export", interactive=False)
    p["poll"] = gr.Timer(POLL_S, active=False)  # ticks only while this page's generation job runs


def _wire(shared: Shared, p: Panel, tab: gr.Tab, buttons: dict[str, gr.Button]) -> None:
    studio = shared.studio

    def on_open(request: gr.Request):
        who = identity_of(studio, request)
        return campaign.campaign_menu(studio, who), gr.update(visible=who.is_admin)

    def on_next(name, request: gr.Request):
        return p.updates(
            QUEUE_OUTPUTS + ["judge_enabled"], campaign.next_item(studio, identity_of(studio, request), name)
        )

    def judged(choice: str):
        def on_judge(item, score, reason, request: gr.Request):
            out = campaign.judge(studio, identity_of(studio, request), item, choice, score, reason)
            return p.updates(JUDGE_OUTPUTS + ["judge_enabled"], out)

        return on_judge

    tab.select(on_open, None, [p["campaign"], p["admin"]], api_name="open_campaign_tab", api_visibility="undocumented")
    queue_out = p.components(QUEUE_OUTPUTS + ["judge_enabled"])
    p["next"].click(on_next, p["campaign"], queue_out, api_name="campaign_queue_next", **LIGHT)
    p["campaign"].change(on_next, p["campaign"], queue_out, api_name="campaign_pick", api_visibility="undocumented")
    judge_out = p.components(JUDGE_OUTPUTS + ["judge_enabled"])
    for choice, button in buttons.items():
        button.click(judged(choice), [p["item"], p["score"], p["item_reason"]], judge_out,
                     api_name=f"campaign_judge_{choice}", api_visibility="undocumented", **LIGHT)  # fmt: skip
    p["score"].input(judged(""), [p["item"], p["score"], p["item_reason"]], judge_out,
                     api_name="campaign_score", api_visibility="undocumented", **LIGHT)  # fmt: skip

    def on_skip(item, request: gr.Request):
        return p.updates(QUEUE_OUTPUTS + ["judge_enabled"], campaign.skip(studio, identity_of(studio, request), item))

    p["skip"].click(on_skip, p["item"], queue_out, api_name="campaign_skip", api_visibility="undocumented", **LIGHT)
    _wire_admin(shared, p)


def _wire_admin(shared: Shared, p: Panel) -> None:
    studio = shared.studio

    def on_create(name, manifest, setups, k, kind, guidelines, visitors, request: gr.Request):
        who = identity_of(studio, request)
        out = campaign.create(studio, who, name, manifest, setups, k, kind, guidelines, visitors)
        return {**p.updates(["admin_status"], out), p["campaign"]: campaign.campaign_menu(studio, who)}

    def on_generate(name, request: gr.Request):
        out = campaign.start_generation(studio, identity_of(studio, request), name)
        return {**p.updates(["generation"], out), p["poll"]: gr.Timer(active="warning" not in out)}

    def on_poll(name):
        running = bool(name) and studio.runner(name).state()["running"]
        return campaign.generation_markdown(studio, name), gr.Timer(active=running)

    def on_results(name, request: gr.Request):
        return p.updates(RESULT_OUTPUTS, campaign.results(studio, identity_of(studio, request), name))

    def on_export(name, format, frames, request: gr.Request):
        out = campaign.export(studio, identity_of(studio, request), name, format, frames)
        return p.updates(["campaign_file", "admin_status"], out)

    create_in = [p[n] for n in ("new_name", "new_manifest", "new_setups", "new_k", "new_kind", "new_guidelines",
                                "new_visitors")]  # fmt: skip
    p["create"].click(on_create, create_in, [p["admin_status"], p["campaign"]], api_name="campaign_create", **LIGHT)
    progress_out = [p["generation"], p["poll"]]
    p["generate"].click(on_generate, p["campaign"], progress_out, api_name="campaign_generate", **LIGHT)
    p["poll"].tick(on_poll, p["campaign"], progress_out, api_name="campaign_progress",
                   api_visibility="undocumented", show_progress="hidden")  # fmt: skip
    p["refresh_results"].click(on_results, p["campaign"], p.components(RESULT_OUTPUTS), api_name="campaign_results")
    export_in = [p["campaign"], p["export_format"], p["export_frames"]]
    p["export_go"].click(on_export, export_in, [p["campaign_file"], p["admin_status"]],
                         api_name="campaign_export", **EXPORT_GROUP)  # fmt: skip
