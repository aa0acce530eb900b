"""Handlers of the Campaign tab: an annotator's queue (the next item, a judgement, a skip) and, for admins, defining
a campaign from uploaded files, generating its answers in the background with a progress line, its results and its
exports.

Every handler takes the caller's `Identity` and goes through `Studio.admit` (votes: "vote"; everything an admin does:
"campaigns"), so the tab's layout decides nothing about access. The item on screen is kept in a small dict in the
page's state ({campaign, item_id, kind}); which setup stands behind slot A or B stays in the campaign store.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import gradio as gr

from app.access.identity import Identity
from app.access.policies import may
from app.campaigns.exports import export_campaign
from app.campaigns.manifest import ManifestError, load_manifest, load_setups
from app.campaigns.results import campaign_results
from app.data.frame_images import DEFAULT_FRAMES
from app.studio import REFUSALS, Studio
from app.tabs.campaign.figures import ranking_figure, tokens_figure, win_rate_figure
from app.text import escape_html, plain

CHOICES = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}
EMPTY_ITEM = {
    "item": None,
    "item_video": None,
    "item_question": "",
    "answer_a": "",
    "answer_b": "",
    "judge_enabled": False,
    "score": gr.update(visible=False, value=None),
}


def campaign_menu(studio: Studio, who: Identity) -> Any:
    """The campaigns this person may work on (visitors: only those that allow visitors)."""
    names = []
    for name in studio.campaigns.names():
        campaign = studio.campaigns.get(name)
        if campaign is not None and (who.kind != "visitor" or campaign.allow_visitors or who.is_admin):
            names.append(name)
    return gr.update(choices=names, value=names[0] if names else None)


def next_item(studio: Studio, who: Identity, name: str | None) -> dict[str, Any]:
    """The next item for `who` in campaign `name`, or why there is none."""
    if not name:
        return {**EMPTY_ITEM, "queue_status": "*No campaign yet: an admin creates one below.*"}
    try:
        item = studio.campaigns.next_item(name, who)
    except REFUSALS as error:
        return {**EMPTY_ITEM, "queue_status": f"⚠️ {plain(str(error))}"}
    status = studio.campaigns.status(name)
    if item is None:
        done = status["per_annotator"].get(who.label, 0)
        return {**EMPTY_ITEM, "queue_status": f"🎉 Nothing left for you in **{plain(name)}** ({done} judged)."}
    answers = {answer["slot"]: answer["text"] for answer in item["answers"]}
    return {
        "item": {"campaign": name, "item_id": item["item_id"], "kind": item["kind"]},
        "item_video": item["video"],
        "item_question": f"**Question:** {escape_html(item['question'])}",
        "answer_a": "**Answer A** · " + (escape_html(answers.get("a", "")) or "*(empty answer)*"),
        "answer_b": "**Answer B** · " + (escape_html(answers["b"]) or "*(empty answer)*") if "b" in answers else "",
        "judge_enabled": item["kind"] == "pairwise",  # the four choices; a rating campaign shows the score instead
        "score": gr.update(visible=item["kind"] == "rating", value=None),
        "guidelines": item["guidelines"] or "*No guidelines for this campaign.*",
        "queue_status": f"**{item['done_by_me']} of {item['total']}** done by you in {plain(name)}",
    }


def judge(
    studio: Studio, who: Identity, current: dict | None, choice: str | None, score: Any, reason: str
) -> dict[str, Any]:
    """Record `who`'s judgement of the item on screen, then hand them the next one."""
    if not current:
        return {"warning": "No item on screen: pick a campaign and press Next."}
    try:
        studio.admit(who, "vote")
        studio.campaigns.judge(
            current["campaign"],
            current["item_id"],
            who,
            choice=choice if current["kind"] == "pairwise" else None,
            score=int(score) if current["kind"] == "rating" and score not in (None, "") else None,
            reason=reason or "",
        )
    except REFUSALS as error:
        return {"warning": f"Not saved: {error}."}
    return {**next_item(studio, who, current["campaign"]), "item_reason": "", "info": "Saved"}


def skip(studio: Studio, who: Identity, current: dict | None) -> dict[str, Any]:
    if not current:
        return {"warning": "No item on screen."}
    try:
        studio.campaigns.skip(current["campaign"], current["item_id"], who)
    except REFUSALS as error:
        return {"warning": str(error)}
    return next_item(studio, who, current["campaign"])


# ----------------------------------------------------------------------------------------------------------------
# Administration


def create(
    studio: Studio,
    who: Identity,
    name: str,
    manifest: str | None,
    setups: str | None,
    k: Any,
    kind: str,
    guidelines: str | None,
    allow_visitors: bool,
) -> dict[str, Any]:
    """Define a campaign from the uploaded manifest and setups files; a bad manifest is reported row by row."""
    try:
        studio.admit(who, "campaigns")
        if not (name or "").strip() or not manifest or not setups:
            raise ValueError("a campaign needs a name, a manifest file and a setups file")
        items, parsed = load_manifest(manifest), load_setups(setups)
        text = Path(guidelines).read_text(encoding="utf-8") if guidelines else ""
        studio.campaigns.create(name.strip(), items, parsed, int(k), kind, text, bool(allow_visitors), who.key)
    except ManifestError as error:
        report = "\n".join(f"- {plain(problem, 300)}" for problem in error.problems[:50])
        return {"admin_status": f"⚠️ Nothing created:\n{report}", "warning": "The manifest has problems"}
    except REFUSALS as error:
        return {"admin_status": f"⚠️ {plain(str(error), 500)}", "warning": str(error)}
    return {"admin_status": f"✅ Created **{plain(name)}**: {len(items)} items × {len(parsed)} setups, k = {k}."}


def start_generation(studio: Studio, who: Identity, name: str | None) -> dict[str, Any]:
    try:
        studio.admit(who, "campaigns")
        if not name:
            raise ValueError("pick a campaign first")
    except REFUSALS as error:
        return {"warning": str(error)}
    started = studio.runner(name).start()
    return {"generation": generation_markdown(studio, name), "info": "Generating" if started else "Already running"}


def generation_markdown(studio: Studio, name: str | None) -> str:
    """ "done / total · ETA" of the campaign's generation, from the store (it survives restarts) and the job."""
    if not name or studio.campaigns.get(name) is None:
        return ""
    status = studio.campaigns.status(name)
    state = studio.runner(name).state()
    total, done, failed = status["generations_total"], status["generated"], status["failed"]
    bar = f'<progress value="{done + failed}" max="{max(total, 1)}" style="width: 100%"></progress>\n\n'
    line = bar + f"Generated **{done} / {total}**" + (f" · {failed} failed" if failed else "")
    if state["running"]:
        eta = state.get("eta_s")
        line += " · running" + (f", about {eta:.0f} s left" if eta else "")
    elif state.get("error"):
        line += f" · stopped: {plain(state['error'], 300)}"
    return line


def results(studio: Studio, who: Identity, name: str | None) -> dict[str, Any]:
    """Agreement, ranking and the two result figures (admins only)."""
    if not name:
        return {"results_summary": "*Pick a campaign.*"}
    if not may(who, "campaigns", studio.access):
        return {"results_summary": f"🔒 only admins can see campaign results; you are {who.describe()}."}
    summary = campaign_results(studio.campaigns, name)
    agreement, progress = summary["agreement"], studio.campaigns.status(name)
    figures = {
        "ranking_plot": ranking_figure(summary["ranking"]) if "win_rates" in summary else None,
        "win_rate_plot": win_rate_figure(summary.get("win_rates", {})),
        "tokens_plot": tokens_figure(summary.get("tokens_vs_win_rate", [])),
    }
    return {"results_summary": _summary_markdown(agreement, progress, summary["ranking"]), **figures}


def _figure(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _summary_markdown(agreement: dict[str, Any], progress: dict[str, Any], ranking: list[dict]) -> str:
    lines = [
        f"**Progress:** {progress['completed_items']} of {progress['items']} items complete · "
        f"{progress['judgements']} judgements · "
        + ", ".join(f"{plain(name)} {count}" for name, count in progress["per_annotator"].items()),
        f"**Agreement:** raw {_figure(agreement.get('raw_agreement'))} · Krippendorff's α "
        f"{_figure(agreement.get('krippendorff_alpha'))} · Fleiss' κ {_figure(agreement.get('fleiss_kappa'))}",
        "",
        "| rank | setup | score | 95% interval |",
        "|---:|---|---:|---|",
    ]
    for row in ranking:
        score = row.get("strength", row.get("mean_score"))
        interval = "–".join(_figure(v, 2) for v in row["ci95"]) if "ci95" in row else "—"
        lines.append(f"| {row['rank']} | {plain(row['setup'])} | {_figure(score, 2)} | {interval} |")
    return "\n".join(lines)


def export(studio: Studio, who: Identity, name: str | None, format: str, frames: bool = False) -> dict[str, Any]:
    """The campaign as one file; with `frames`, a zip of the export folder (the JSONL, its frames and the
    `datasets` folder TRL's vision-language trainers read)."""
    try:
        studio.admit(who, "export")
        if not name:
            raise ValueError("pick a campaign first")
        images = DEFAULT_FRAMES if frames and format != "jsonl" else None
        path = export_campaign(studio.campaigns, name, format, images=images)  # a fresh folder under exports/
        if images is not None:
            path = Path(shutil.make_archive(str(path.parent), "zip", root_dir=path.parent))
    except REFUSALS as error:
        return {"warning": str(error)}
    studio.store.audit(who.key, "export", {"campaign": name, "format": format, "images": images})
    with_frames = f" with {images} frames per row" if images else ""
    return {"campaign_file": str(path), "admin_status": f"✅ Exported {plain(name)} as {format}{with_frames}."}
