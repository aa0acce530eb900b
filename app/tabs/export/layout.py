"""Layout of the Export tab: counts of what the store holds, every export format, the newest judgements and the Hub
push, wired to `app/tabs/export/handlers.py`.
"""

from __future__ import annotations

import gradio as gr

from app.tabs.export import handlers as exporting
from app.wiring import EXPORT_GROUP, FRAMES_LABEL, HIDDEN, LIGHT, Panel, Shared, identity_of

EXPORT_OUTPUTS = ["export_status", "export_files", "session", "export_counts", "export_preview", *exporting.DOWNLOADS]
REFRESH_OUTPUTS = ["export_counts", "export_preview", "sync_status"]


def build(shared: Shared, tab: gr.Tab) -> Panel:
    panel = Panel(session=shared.session)
    panel["export_counts"] = gr.Markdown("", elem_id="export-counts")
    panel["sync_status"] = gr.Markdown(exporting.sync_markdown(shared.studio), elem_id="sync-status")
    with gr.Row():
        panel["export_go"] = gr.Button("Export all formats", variant="primary", elem_id="export-run")
        panel["export_refresh"] = gr.Button("Refresh counts", elem_id="export-refresh")
    panel["export_frames"] = gr.Checkbox(False, label=FRAMES_LABEL, elem_id="export-frames")
    panel["export_status"] = gr.Markdown("", elem_id="export-status")
    with gr.Row(elem_id="download-row"):
        for name, (_key, label) in exporting.DOWNLOADS.items():
            panel[name] = gr.DownloadButton(
                f"Download {label}", interactive=False, size="sm", elem_id=name.replace("_", "-")
            )
    panel["export_files"] = gr.File(
        label="All files of the latest export (the zip holds the videos too)",
        file_count="multiple",
        interactive=False,
        elem_id="export-files",
    )
    panel["export_preview"] = gr.Dataframe(
        label="Newest judgements", interactive=False, wrap=True, max_height=360, elem_id="export-preview"
    )
    with gr.Accordion("Push to the Hugging Face Hub", open=False):
        panel["hub_repo"] = gr.Textbox(
            label="Dataset repo (user/name)", placeholder="defaults to $STUDIO_HUB_DATASET_REPO"
        )
        panel["hub_push"] = gr.Button("Push latest export")
        panel["hub_status"] = gr.Markdown("*Pushes the latest export folder; needs HF_TOKEN and the Hub.*")
    _wire(shared, panel, tab)
    return panel


def _wire(shared: Shared, panel: Panel, tab: gr.Tab) -> None:
    p, studio = panel, shared.studio

    def on_export(session, frames, request: gr.Request):
        out = exporting.export_data(studio, session, identity_of(studio, request), frames)
        return p.updates(EXPORT_OUTPUTS, out)

    def on_refresh(request: gr.Request):
        return p.updates(REFRESH_OUTPUTS, exporting.refresh_export(studio, identity_of(studio, request)))

    def on_push(session, repo, request: gr.Request):
        return p.updates(["hub_status"], exporting.push_export(studio, session, identity_of(studio, request), repo))

    refresh_out = p.components(REFRESH_OUTPUTS)
    export_in = [p["session"], p["export_frames"]]
    p["export_go"].click(on_export, export_in, p.components(EXPORT_OUTPUTS), api_name="export_all", **EXPORT_GROUP)
    p["export_refresh"].click(on_refresh, None, refresh_out, api_name="refresh_export", **LIGHT)
    tab.select(on_refresh, None, refresh_out, api_name="open_export_tab", **HIDDEN, **LIGHT)
    p["hub_push"].click(
        on_push, [p["session"], p["hub_repo"]], p["hub_status"], api_name="push_to_hub", **EXPORT_GROUP
    )
