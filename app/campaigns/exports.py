"""A campaign's judgements as training data: TRL conversational DPO pairs and KTO rows from each unit's majority
label (a unit is an item with the pair of setups shown, or for a rating campaign the item and the rated setup), or
every judgement as JSONL, with a dataset card (README.md beside the file) giving the agreement and the ranking.

Rows are shaped by `app.data.exports` (`dpo_rows`, `kto_rows`), like the studio's own exports, and carry the
campaign's fields besides: the unit's agreement (the share of votes for the majority), both setups' names and
compression plans, the guidelines version, the video path and the sampled timestamps.

Majority rules: DPO takes units whose majority (more than half the votes) is "a" or "b"; ties, "both bad" and
units without a majority give no pair. KTO marks the majority's winner desirable and the loser undesirable, both
answers undesirable when the majority says both are bad, and leaves ties and units without a majority out; in a
rating campaign each vote's score gives a label as `app.data.exports.kto_label` does, and the majority label counts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from app.campaigns.results import campaign_results, majority, units
from app.campaigns.store import Campaign, CampaignStore
from app.data.exports import (
    KTO_DESIRABLE_MIN_SCORE,
    KTO_UNDESIRABLE_MAX_SCORE,
    dpo_rows,
    kto_label,
    kto_rows,
    resolve_export_dir,
)
from app.data.frame_images import add_images, vision_card_lines, write_vision_dataset

FORMATS = ("dpo", "kto", "jsonl")
MAJORITY_RULES = (
    "A unit is an item with the pair of setups shown (for ratings: the item and the rated setup); its label is the "
    "value more than half of its votes agree on, and `agreement` is the share of votes for the most common value. "
    "DPO: the majority's winner is `chosen`; ties, both bad and units without a majority give no pair. KTO: the "
    "winner is desirable and the loser undesirable, both undesirable when the majority says both are bad; ties and "
    f"units without a majority are left out; ratings are labelled per vote (score >= {KTO_DESIRABLE_MIN_SCORE} "
    f"desirable, <= {KTO_UNDESIRABLE_MAX_SCORE} undesirable) "
    "and the majority label counts. Overshoot judgements (beyond k) are kept as votes."
)


def export_campaign(
    store: CampaignStore, name: str, format: str, directory: str | Path | None = None, images: int | None = None
) -> Path:
    """Write campaign `name` as `format` (dpo, kto or jsonl) into `directory` (default: a new folder under
    `<data_dir>/exports/`; a given one is used as is, so a web handler should pass it through
    `app.data.exports.resolve_export_dir` first) with a README.md dataset card. Returns the data file's path.

    `images`: also put up to that many of the judged answer's frames in an `images` column and write the rows as a
    `datasets` folder `<name>-<format>-images/` for TRL's vision-language trainers (`app.data.frame_images`)."""
    if format not in FORMATS:
        raise ValueError(f"unknown campaign export format {format!r}; use one of {', '.join(FORMATS)}")
    if images is not None and format == "jsonl":
        raise ValueError("the images column is for the dpo and kto formats")
    campaign = store.campaign(name)
    if format == "dpo" and campaign.kind != "pairwise":
        raise ValueError(f"DPO pairs come from pairwise campaigns; {name!r} is a {campaign.kind} campaign")
    folder = Path(directory) if directory is not None else resolve_export_dir(store.data_dir, None, f"campaign-{name}")
    folder.mkdir(parents=True, exist_ok=True)
    context = _Context(store, campaign)
    rows = {"dpo": context.dpo, "kto": context.kto, "jsonl": context.judgement_rows}[format]()
    path = folder / f"{name}-{format}.jsonl"
    vision = None
    if images is not None:
        vision = add_images(rows, folder, lambda row: Path(row["video"]), kind=format, max_frames=images)
        write_vision_dataset(rows, folder, folder / f"{name}-{format}-images", format)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    card = dataset_card(campaign, format, path.name, len(rows), campaign_results(store, name), vision)
    (folder / "README.md").write_text(card, encoding="utf-8")
    return path


class _Context:
    """One snapshot of a campaign's items, answers and judgements, and the records the TRL shapers read."""

    def __init__(self, store: CampaignStore, campaign: Campaign) -> None:
        self.campaign = campaign
        self.items = {item.id: item for item in store.items(campaign.name)}
        self.answers = {(a["item_id"], a["setup"]): a for a in store.answers(campaign.name)}
        self.judgements = store.judgements(campaign.name)
        self.votes = units(self.judgements, campaign.kind)
        self.reasons: dict[tuple, list[str]] = defaultdict(list)
        for row in self.judgements:
            if row["reason"].strip():
                self.reasons[(row["item_id"], row["annotator"])].append(row["reason"].strip())

    def common(self, unit: tuple) -> dict[str, Any]:
        """The campaign fields every exported row of a unit carries."""
        value, share = majority(self.votes[unit].values()) if unit in self.votes else (None, 0.0)
        return {
            "campaign": self.campaign.name,
            "item_id": unit[0],
            "guidelines_version": self.campaign.guidelines_version,
            "votes": len(self.votes.get(unit, {})),
            "majority": value,
            "agreement": round(share, 4),
        }

    def record(self, item_id: str, setup: str, kind: str, suffix: str = "") -> dict[str, Any]:
        """The store-record fields `app.data.exports` reads for one answer (side `_a` / `_b` of a comparison)."""
        answer, spec = self.answers[(item_id, setup)], self.campaign.setup(setup)
        item = self.items[item_id]
        return {
            "kind": kind,
            "conversation": [],
            "question": item.question,
            "video_path": item.video,
            "video_sha256": item.sha256,
            "video_duration_s": item.duration_s,
            f"model{suffix}": spec.model,
            f"answer{suffix}": answer["text"],
            f"frame_timestamps_s{suffix}": answer["frame_timestamps_s"],
            f"compression{suffix}": answer["compression"],
        }

    def voters(self, unit: tuple, accepted: set) -> dict[str, str]:
        """Who cast the votes that made a unit's label (`accepted` values), and the reasons they gave."""
        names = sorted(rater for rater, vote in self.votes[unit].items() if vote in accepted)
        reasons = [text for rater in names for text in self.reasons[(unit[0], rater)]]
        return {"annotator": ", ".join(names), "reason": " | ".join(reasons)}

    def dpo(self) -> list[dict[str, Any]]:
        rows = []
        for unit, votes in self.votes.items():
            item_id, first, second = unit
            choice, _ = majority(votes.values())
            if choice not in ("a", "b"):
                continue
            side_a, side_b = (
                self.record(item_id, first, "comparison", "_a"),
                self.record(item_id, second, "comparison", "_b"),
            )
            record = {**side_a, **side_b, "id": "/".join(unit), "choice": choice, **self.voters(unit, {choice})}
            record["extra"] = {"compression_a": side_a["compression_a"], "compression_b": side_b["compression_b"]}
            chosen, rejected = (first, second) if choice == "a" else (second, first)
            rows += [
                {**row, **self.common(unit), "chosen_setup": chosen, "rejected_setup": rejected}
                for row in dpo_rows([record])
            ]
        return rows

    def kto(self) -> list[dict[str, Any]]:
        rows = []
        for unit, votes in self.votes.items():
            for setup, label, accepted in self._kto_labels(unit, votes):
                record = self.record(unit[0], setup, "rating")
                record.update(id=f"{'/'.join(unit)}/{setup}", thumbs=1 if label else -1, score=None)
                record.update(extra={"compression": record["compression"]}, **self.voters(unit, accepted))
                rows += [{**row, **self.common(unit), "setup": setup} for row in kto_rows([record])]
        return rows

    def _kto_labels(self, unit: tuple, votes: dict[str, Any]) -> list[tuple[str, bool, set]]:
        """(setup, desirable, the votes that agree with the label) for each answer of a unit the majority labels."""
        if self.campaign.kind == "rating":
            label, _ = majority(kto_label(None, score) for score in votes.values())
            agreeing = {score for score in votes.values() if kto_label(None, score) == label}
            return [] if label is None else [(unit[1], label, agreeing)]
        choice, _ = majority(votes.values())
        first, second = unit[1], unit[2]
        if choice == "both_bad":
            return [(first, False, {choice}), (second, False, {choice})]
        if choice in ("a", "b"):
            winner, loser = (first, second) if choice == "a" else (second, first)
            return [(winner, True, {choice}), (loser, False, {choice})]
        return []

    def judgement_rows(self) -> list[dict[str, Any]]:
        rows = []
        for row in self.judgements:
            unit = _unit_of(row, self.campaign.kind)
            sides = {}
            for suffix, setup in (("_a", row["setup_a"]), ("_b", row["setup_b"])):
                if setup is not None:
                    side = self.record(row["item_id"], setup, self.campaign.kind, suffix)
                    sides.update({key: value for key, value in side.items() if key.endswith(suffix)})
            item = self.items[row["item_id"]]
            rows.append(
                {
                    **row,
                    **self.common(unit),
                    "question": item.question,
                    "video": item.video,
                    "video_sha256": item.sha256,
                    **sides,
                }
            )
        return rows


def _unit_of(row: dict[str, Any], kind: str) -> tuple:
    if kind == "rating":
        return (row["item_id"], row["setup_a"])
    return (row["item_id"], *sorted((row["setup_a"], row["setup_b"])))


def dataset_card(
    campaign: Campaign,
    format: str,
    filename: str,
    rows: int,
    results: dict[str, Any],
    vision: dict[str, int] | None = None,
) -> str:
    """The README.md of a campaign export: what the campaign was, the agreement figures and the ranking."""
    agreement = results["agreement"]

    def figure(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        "---",
        f"pretty_name: Video-LLM Studio campaign {campaign.name}",
        "tags:",
        "- video",
        "- human-feedback",
        "- preference",
        "- video-llm-studio",
        "---",
        "",
        f"# Campaign `{campaign.name}` ({format})",
        "",
        f"A {campaign.kind} campaign: {campaign.items} items, setups {', '.join(s.name for s in campaign.setups)}, "
        f"k = {campaign.k} judgements per item, guidelines version `{campaign.guidelines_version}`.",
        f"`{filename}` holds {rows} rows (TRL conversational format for dpo / kto; every judgement for jsonl).",
        "",
        "## Agreement",
        "",
        "| measure | value | over |",
        "|---|---|---|",
        f"| raw agreement | {figure(agreement['raw_agreement'])} | "
        f"{agreement['units_judged_twice']} units judged twice |",
        f"| Krippendorff's alpha ({agreement['alpha_level']}) | {figure(agreement['krippendorff_alpha'])} | "
        f"{agreement['units']} units |",
        f"| Fleiss' kappa | {figure(agreement['fleiss_kappa'])} | {agreement['fleiss_units']} units with k ratings |",
        "",
        "## Ranking",
        "",
    ]
    if campaign.kind == "rating":
        lines += ["| rank | setup | mean score | ratings |", "|---|---|---|---|"]
        lines += [
            f"| {r['rank']} | {r['setup']} | {figure(r['mean_score'])} | {r['ratings']} |" for r in results["ranking"]
        ]
    else:
        lines += ["| rank | setup | Bradley-Terry strength | 95% interval | comparisons |", "|---|---|---|---|---|"]
        lines += [
            f"| {r['rank']} | {r['setup']} | {r['strength']:.3f} | {r['ci95'][0]:.3f} – {r['ci95'][1]:.3f} | "
            f"{r['comparisons']} |"
            for r in results["ranking"]
        ]
    lines += ["", "## How labels were made", "", MAJORITY_RULES, ""]
    if vision is not None:
        lines += [*vision_card_lines(f"{campaign.name}-{format}-images", vision), ""]
    return "\n".join(lines)
