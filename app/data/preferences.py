"""Preferences about compression itself, summarised from comparison records (no gradio).

A comparison whose two sides ran the same model with different compressions (the A/B tab's "same model, two
compressions" mode, or any comparison whose records carry both plans) says which compression setting a person
preferred. `compression_preferences` groups them by the unordered pair of settings and counts, from the first
setting's side, wins / ties / both-bad / losses, with a Wilson 95% interval on its win rate among decisive votes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Z_95 = 1.959963984540054


@dataclass
class PreferenceRow:
    x: str
    y: str
    x_wins: int = 0
    y_wins: int = 0
    ties: int = 0
    both_bad: int = 0

    @property
    def decisive(self) -> int:
        return self.x_wins + self.y_wins

    @property
    def win_rate(self) -> float:
        return self.x_wins / self.decisive if self.decisive else math.nan

    @property
    def low(self) -> float:
        return wilson_interval(self.x_wins, self.decisive)[0]

    @property
    def high(self) -> float:
        return wilson_interval(self.x_wins, self.decisive)[1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "x": self.x,
            "y": self.y,
            "x_wins": self.x_wins,
            "ties": self.ties,
            "both_bad": self.both_bad,
            "y_wins": self.y_wins,
            "x_win_rate": None if not self.decisive else self.win_rate,
            "interval_95": None if not self.decisive else [self.low, self.high],
        }


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (sane at 0/n and n/n, unlike the normal approximation)."""
    if trials <= 0:
        return (math.nan, math.nan)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def compression_label(model: str | None, plan: Mapping[str, Any] | None) -> str | None:
    """ "model · compressor budget%" for one side, or None when the side carries no compression plan."""
    if not plan:
        return None
    budget = plan.get("budget_pct")
    budget_text = f" {float(budget):g}%" if budget is not None else ""
    return f"{model or '?'} · {plan.get('compressor', 'official')}{budget_text}"


def compression_preferences(records: Iterable[Mapping[str, Any]]) -> list[PreferenceRow]:
    """Rows per unordered pair of compression settings, in first-seen order. Comparisons between two different
    models, or whose sides ran the same setting, are not about compression and are left out."""
    rows: dict[tuple[str, str], PreferenceRow] = {}
    for record in records:
        if record.get("kind") != "comparison":
            continue
        extra = record.get("extra") or {}
        if record.get("model_a") != record.get("model_b"):
            continue
        a = compression_label(record.get("model_a"), extra.get("compression_a"))
        b = compression_label(record.get("model_b"), extra.get("compression_b"))
        if a is None or b is None or a == b:
            continue
        x, y = sorted((a, b))
        row = rows.setdefault((x, y), PreferenceRow(x, y))
        choice = record.get("choice")
        if choice == "tie":
            row.ties += 1
        elif choice == "both_bad":
            row.both_bad += 1
        elif choice in ("a", "b"):
            winner = a if choice == "a" else b
            if winner == x:
                row.x_wins += 1
            else:
                row.y_wins += 1
    return list(rows.values())
