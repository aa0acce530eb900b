"""Figures of a campaign's results, from `app.campaigns.results.summarize`: the setups ranked by Bradley-Terry
strength with their 95% bootstrap intervals, the win-rate matrix, and win rate against the visual tokens each setup
spent, the view that says which budget annotators still accept.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from app.charts import TEMPLATE, empty_figure, escape_text

RANK_COLOR = "#3b5bdb"
POINT_COLOR = "#e8590c"


def ranking_figure(ranking: list[dict[str, Any]]) -> go.Figure:
    """One bar per setup (strongest on top) at its strength, with the bootstrap interval as an error bar."""
    rows = [row for row in ranking if row.get("strength") is not None]
    if not rows:
        return empty_figure("No comparisons yet: the ranking appears after the first votes", "Ranking of the setups")
    rows = rows[::-1]  # plotly draws the first category at the bottom
    strengths = [row["strength"] for row in rows]
    fig = go.Figure(
        go.Bar(
            x=strengths,
            y=[escape_text(row["setup"], 40) for row in rows],
            orientation="h",
            marker={"color": RANK_COLOR},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [row["ci95"][1] - row["strength"] for row in rows],
                "arrayminus": [row["strength"] - row["ci95"][0] for row in rows],
                "color": "#495057",
            },
            customdata=[[row["rank"], row["comparisons"], *row["ci95"]] for row in rows],
            hovertemplate="#%{customdata[0]} %{y}<br>strength %{x:.2f} "
            "(95%: %{customdata[2]:.2f}–%{customdata[3]:.2f})<br>%{customdata[1]} comparisons<extra></extra>",
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        title={"text": "Ranking of the setups (Bradley-Terry, 95% bootstrap interval)", "font": {"size": 14}},
        height=120 + 48 * len(rows),
        margin={"l": 10, "r": 20, "t": 50, "b": 40},
        xaxis_title="log-strength (0 = the average setup)",
    )
    return fig


def win_rate_figure(win_rates: dict[str, Any]) -> go.Figure:
    """The share of its comparisons with the column's setup that the row's setup won (ties count half)."""
    setups = [escape_text(name, 30) for name in win_rates.get("setups", [])]
    matrix = win_rates.get("matrix", [])
    if not setups or all(value is None for row in matrix for value in row):
        return empty_figure("No decided comparisons yet", "Win rates")
    text = [["" if value is None else f"{value:.0%}" for value in row] for row in matrix]
    fig = go.Figure(
        go.Heatmap(
            z=[[None if value is None else 100 * value for value in row] for row in matrix],
            x=setups,
            y=setups,
            zmin=0,
            zmax=100,
            colorscale="RdBu",
            text=text,
            texttemplate="%{text}",
            colorbar={"title": "% won"},
            hovertemplate="%{y} beat %{x} in %{z:.0f}% of their comparisons<extra></extra>",
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        title={"text": "Win rate of the row's setup against the column's", "font": {"size": 14}},
        height=160 + 60 * len(setups),
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
        yaxis={"autorange": "reversed"},
    )
    return fig


def tokens_figure(points: list[dict[str, Any]]) -> go.Figure:
    """One point per setup: its mean visual tokens per answer against its overall win rate."""
    rows = [p for p in points if p.get("win_rate") is not None and p.get("mean_visual_tokens") is not None]
    if not rows:
        return empty_figure("Win rate vs visual tokens appears once setups have votes", "Win rate vs visual tokens")
    fig = go.Figure(
        go.Scatter(
            x=[row["mean_visual_tokens"] for row in rows],
            y=[100 * row["win_rate"] for row in rows],
            mode="markers+text",
            text=[escape_text(row["setup"], 30) for row in rows],
            textposition="top center",
            marker={"size": 14, "color": POINT_COLOR, "line": {"color": "white", "width": 1.5}},
            customdata=[[row["comparisons"]] for row in rows],
            hovertemplate="%{text}<br>%{x:.0f} visual tokens per answer<br>won %{y:.0f}% of "
            "%{customdata[0]:.0f} comparisons<extra></extra>",
        )
    )
    fig.add_hline(y=50, line={"color": "#adb5bd", "dash": "dash"}, annotation_text="even", annotation_position="right")
    fig.update_layout(
        template=TEMPLATE,
        title={"text": "Win rate against visual tokens: which budget do people still accept?", "font": {"size": 14}},
        height=360,
        margin={"l": 10, "r": 20, "t": 50, "b": 40},
        xaxis={"title": "mean visual tokens per answer", "rangemode": "tozero"},
        yaxis={"title": "win rate (%)", "range": [-5, 105]},
    )
    return fig
