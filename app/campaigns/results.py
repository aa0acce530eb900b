"""What a campaign's judgements say, computed by pure functions over plain rows (the dicts `CampaignStore.judgements`
and `.answers` return), so tests can feed fixed votes: progress per item and per annotator; agreement (raw pairwise
agreement, Krippendorff's alpha, Fleiss' kappa); a Bradley-Terry ranking of the setups with bootstrap intervals; a
win-rate matrix; and each setup's win rate against the visual tokens it spent.

A unit of agreement is what several people judged alike: for a comparison the item and the (unordered) pair of
setups shown, the choice turned to the pair's sorted order; for a rating the item and the rated setup. Overshoot
judgements are kept everywhere except in Fleiss' kappa, which needs exactly k ratings per unit.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import krippendorff
import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from app.campaigns.store import CampaignStore

PAIRWISE_CHOICES = ("a", "b", "tie", "both_bad")
BOOTSTRAP_SAMPLES = 200
BOOTSTRAP_SEED = 0
RIDGE = 1e-4  # keeps a setup that never lost (or never won) at a finite strength; small against any real count

Row = Mapping[str, Any]
Unit = tuple[str, ...]


# ----------------------------------------------------------------------------------------------------------------
# Units and progress


def units(judgements: Iterable[Row], kind: str = "pairwise") -> dict[Unit, dict[str, Any]]:
    """unit -> {annotator: value}. Comparisons: unit (item, setup, setup) in sorted order and the choice as seen
    from that order ("a" is the first setup); ratings: unit (item, setup) and the score."""
    found: dict[Unit, dict[str, Any]] = defaultdict(dict)
    for row in judgements:
        if kind == "rating":
            found[(row["item_id"], row["setup_a"])][row["annotator"]] = int(row["score"])
            continue
        first, second = sorted((row["setup_a"], row["setup_b"]))
        choice = row["choice"]
        if first != row["setup_a"] and choice in ("a", "b"):
            choice = "b" if choice == "a" else "a"
        found[(row["item_id"], first, second)][row["annotator"]] = choice
    return dict(found)


def progress(judgements: Iterable[Row], item_ids: Sequence[str], k: int) -> dict[str, Any]:
    """Judgements per item (counted towards k, and overshoot) and per annotator."""
    counted: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    annotators: Counter[str] = Counter()
    for row in judgements:
        (extra if row["overshoot"] else counted)[row["item_id"]] += 1
        annotators[row["annotator"]] += 1
    items = [
        {"item_id": item, "judgements": counted[item], "overshoot": extra[item], "done": counted[item] >= k}
        for item in item_ids
    ]
    return {
        "items": items,
        "completed_items": sum(item["done"] for item in items),
        "per_annotator": dict(sorted(annotators.items())),
    }


def majority(votes: Iterable[Any]) -> tuple[Any, float]:
    """(the value more than half the votes agree on, or None; the share of votes for the most common value)."""
    counts = Counter(votes)
    if not counts:
        return None, 0.0
    value, count = counts.most_common(1)[0]
    total = sum(counts.values())
    return (value if count * 2 > total else None), count / total


# ----------------------------------------------------------------------------------------------------------------
# Agreement


def raw_agreement(by_unit: Mapping[Unit, Mapping[str, Any]]) -> float | None:
    """The share of pairs of annotators, over all units judged by two or more, who gave the same value."""
    agreeing = pairs = 0
    for values in by_unit.values():
        counts = Counter(values.values())
        m = sum(counts.values())
        pairs += m * (m - 1) // 2
        agreeing += sum(c * (c - 1) // 2 for c in counts.values())
    return agreeing / pairs if pairs else None


def krippendorff_alpha(by_unit: Mapping[Unit, Mapping[str, Any]], level: str = "nominal") -> float | None:
    """Krippendorff's alpha over annotators x units (missing = NaN); None when undefined (fewer than two values
    or no unit judged twice)."""
    codes = {value: n for n, value in enumerate(sorted({v for values in by_unit.values() for v in values.values()}))}
    raters = sorted({rater for values in by_unit.values() for rater in values})
    if len(codes) < 2 or not any(len(values) >= 2 for values in by_unit.values()):
        return None
    data = np.full((len(raters), len(by_unit)), np.nan)
    column = {rater: n for n, rater in enumerate(raters)}
    for position, values in enumerate(by_unit.values()):
        for rater, value in values.items():
            data[column[rater], position] = codes[value] if level == "nominal" else float(value)
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))


def fleiss(by_unit: Mapping[Unit, Mapping[str, Any]], k: int) -> tuple[float | None, int]:
    """(Fleiss' kappa over the units with exactly k ratings, how many such units); None when undefined."""
    rows = [list(values.values()) for values in by_unit.values() if len(values) == k]
    if k < 2 or not rows:
        return None, len(rows)
    codes = {value: n for n, value in enumerate(sorted({v for row in rows for v in row}))}
    table, _ = aggregate_raters(np.array([[codes[v] for v in row] for row in rows]), n_cat=max(2, len(codes)))
    kappa = float(fleiss_kappa(table, method="fleiss"))
    return (kappa if math.isfinite(kappa) else None), len(rows)


def agreement(judgements: Sequence[Row], kind: str, k: int) -> dict[str, Any]:
    """Raw agreement, Krippendorff's alpha (nominal over a/b/tie/both_bad, ordinal over 1-5 scores) and Fleiss'
    kappa (units with exactly k counted ratings), with how many units each rests on."""
    by_unit = units(judgements, kind)
    counted = units([row for row in judgements if not row["overshoot"]], kind)
    kappa, kappa_units = fleiss(counted, k)
    level = "ordinal" if kind == "rating" else "nominal"
    return {
        "units": len(by_unit),
        "units_judged_twice": sum(len(values) >= 2 for values in by_unit.values()),
        "raw_agreement": raw_agreement(by_unit),
        "krippendorff_alpha": krippendorff_alpha(by_unit, level),
        "alpha_level": level,
        "fleiss_kappa": kappa,
        "fleiss_units": kappa_units,
    }


# ----------------------------------------------------------------------------------------------------------------
# Ranking


def outcomes(judgements: Iterable[Row], setups: Sequence[str]) -> list[tuple[int, int, float]]:
    """(winner, loser, weight) per comparison between two known setups: a win weighs 1, a tie half a win each way;
    "both bad" says nothing about the order and is left out."""
    index = {name: n for n, name in enumerate(setups)}
    found = []
    for row in judgements:
        a, b = index.get(row["setup_a"]), index.get(row.get("setup_b"))
        if a is None or b is None or row["choice"] == "both_bad":
            continue
        if row["choice"] == "tie":
            found += [(a, b, 0.5), (b, a, 0.5)]
        elif row["choice"] in ("a", "b"):
            found.append((a, b, 1.0) if row["choice"] == "a" else (b, a, 1.0))
    return found


def _wins(events: Iterable[tuple[int, int, float]], n: int) -> np.ndarray:
    wins = np.zeros((n, n))
    for winner, loser, weight in events:
        wins[winner, loser] += weight
    return wins


def bradley_terry(wins: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """Maximum-likelihood Bradley-Terry log-strengths (mean 0) from wins[i, j] = times i beat j, with a tiny ridge
    so the fit stays finite when a setup never wins or never loses."""

    def objective(scores: np.ndarray) -> tuple[float, np.ndarray]:
        diff = scores[:, None] - scores[None, :]
        loss = float(np.sum(wins * np.logaddexp(0.0, -diff)) + ridge * scores @ scores)
        pull = wins * expit(-diff)  # d(-loss)/d(score_i) from i's wins over j, and its mirror for j
        return loss, -(pull.sum(axis=1) - pull.sum(axis=0)) + 2 * ridge * scores

    fitted = minimize(objective, np.zeros(len(wins)), jac=True, method="L-BFGS-B", options={"gtol": 1e-10})
    return fitted.x - fitted.x.mean()


def ranking(
    judgements: Sequence[Row], setups: Sequence[str], samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> list[dict[str, Any]]:
    """Setups from strongest to weakest: Bradley-Terry log-strength with a 95% bootstrap interval (judgements
    resampled with replacement, fixed seed) and the comparisons each rests on."""
    rows = [row for row in judgements if row.get("setup_b") is not None]
    events_per_row = [outcomes([row], setups) for row in rows]
    strengths = bradley_terry(_wins([e for events in events_per_row for e in events], len(setups)))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(samples if rows else 0):
        picked = rng.integers(0, len(rows), len(rows))
        draws.append(bradley_terry(_wins([e for i in picked for e in events_per_row[i]], len(setups))))
    low, high = np.percentile(draws, [2.5, 97.5], axis=0) if draws else (strengths, strengths)
    compared = Counter(name for row in rows for name in (row["setup_a"], row["setup_b"]))
    order = sorted(range(len(setups)), key=lambda n: -strengths[n])
    return [
        {
            "rank": rank,
            "setup": setups[n],
            "strength": round(float(strengths[n]), 4),
            "ci95": [round(float(low[n]), 4), round(float(high[n]), 4)],
            "comparisons": compared[setups[n]],
        }
        for rank, n in enumerate(order, start=1)
    ]


def win_rates(judgements: Sequence[Row], setups: Sequence[str]) -> dict[str, Any]:
    """matrix[i][j]: the share of i-vs-j comparisons i won (a tie counts half; "both bad" left out), None when the
    two were never compared."""
    wins = _wins(outcomes(judgements, setups), len(setups))
    games = wins + wins.T
    matrix = [
        [None if i == j or games[i, j] == 0 else round(float(wins[i, j] / games[i, j]), 4) for j in range(len(setups))]
        for i in range(len(setups))
    ]
    return {"setups": list(setups), "matrix": matrix}


def tokens_vs_win_rate(judgements: Sequence[Row], answers: Iterable[Row], setups: Sequence[str]) -> list[dict]:
    """Per setup: its overall win rate (ties half, "both bad" left out) and the mean visual tokens of its answers."""
    wins = _wins(outcomes(judgements, setups), len(setups))
    tokens: dict[str, list[int]] = defaultdict(list)
    for answer in answers:
        if answer.get("visual_tokens") is not None and answer.get("error") is None:
            tokens[answer["setup"]].append(int(answer["visual_tokens"]))
    found = []
    for n, name in enumerate(setups):
        games = float(wins[n].sum() + wins[:, n].sum())
        found.append(
            {
                "setup": name,
                "win_rate": round(float(wins[n].sum()) / games, 4) if games else None,
                "comparisons": games,
                "mean_visual_tokens": round(float(np.mean(tokens[name])), 2) if tokens[name] else None,
            }
        )
    return found


def mean_scores(judgements: Sequence[Row], setups: Sequence[str]) -> list[dict[str, Any]]:
    """A rating campaign's ranking: each setup's mean 1-5 score and how many ratings it rests on, best first."""
    scores: dict[str, list[int]] = defaultdict(list)
    for row in judgements:
        if row.get("score") is not None:
            scores[row["setup_a"]].append(int(row["score"]))
    means = [(name, float(np.mean(scores[name])) if scores[name] else None) for name in setups]
    means.sort(key=lambda pair: math.inf if pair[1] is None else -pair[1])  # unrated last
    return [
        {
            "rank": rank,
            "setup": name,
            "mean_score": mean if mean is None else round(mean, 4),
            "ratings": len(scores[name]),
        }
        for rank, (name, mean) in enumerate(means, start=1)
    ]


# ----------------------------------------------------------------------------------------------------------------
# Everything at once


def summarize(
    kind: str,
    k: int,
    setups: Sequence[str],
    item_ids: Sequence[str],
    judgements: Sequence[Row],
    answers: Sequence[Row],
) -> dict[str, Any]:
    """Progress, agreement, ranking and, for comparisons, the win-rate matrix and win rate vs visual tokens."""
    summary = {
        "progress": progress(judgements, item_ids, k),
        "agreement": agreement(judgements, kind, k),
    }
    if kind == "rating":
        summary["ranking"] = mean_scores(judgements, setups)
        return summary
    summary["ranking"] = ranking(judgements, setups)
    summary["win_rates"] = win_rates(judgements, setups)
    summary["tokens_vs_win_rate"] = tokens_vs_win_rate(judgements, answers, setups)
    return summary


def campaign_results(store: CampaignStore, name: str) -> dict[str, Any]:
    """`summarize` for a stored campaign."""
    campaign = store.campaign(name)
    return summarize(
        campaign.kind,
        campaign.k,
        [setup.name for setup in campaign.setups],
        [item.id for item in store.items(name)],
        store.judgements(name),
        store.answers(name),
    )
