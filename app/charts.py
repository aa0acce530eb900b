"""Figures and images for the studio's compression and attention views.

Every builder here is a pure function from the dataclasses in `models/base.py` (`TokenStats`, `ClipBudget`,
`Attention`) and uint8 thumbnails to a plotly `go.Figure`, a markdown string or a uint8 RGB image, so the UI can
hand them straight to `gr.Plot`, `gr.Markdown`, `gr.Image` and `gr.Gallery`, and tests can check them without a
browser. Nothing here imports gradio or torch. Builders never raise on thin data (no clips, one frame, no
attention, NaNs): they draw an empty figure that says what is missing instead. Text that comes from users or
models (questions, answer tokens, clip text) is HTML-escaped before it reaches a plotly title, tick or hover
label, because plotly renders a subset of HTML in all of them.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from models.base import Attention, ClipBudget, TokenStats
from models.units import plural

# One palette for the whole studio, so a colour means the same thing in every view.
DYNAMIC_COLOR = "#3b5bdb"  # dynamic (density-driven) budget
USED_COLOR = "#1c2f8a"  # tokens a clip actually spent, drawn inside its budget bar
BASELINE_COLOR = "#495057"  # fixed-rate baseline (the same global budget at the same tokens per frame)
SLOW_COLOR = "#e8590c"  # slow pathway: few frames, many tokens each
FAST_COLOR = "#15aabf"  # fast pathway: many frames, few tokens each
ATTENTION_COLOR = "#9c2e7f"  # attention line in the timeline; a mid tone of the heatmap's scale
PEAK_COLOR = "#d9480f"
CLIP_SHADES = ("rgba(59, 91, 219, 0.07)", "rgba(59, 91, 219, 0.0)")
TEMPLATE = "plotly_white"
NOTE_STYLE = "font-size:10px;color:#868e96"  # small print under a chart: where its numbers come from
NOTE_LINE_CHARS = 90  # a line of small print that fits under a chart in the studio's half-width column
NOTE_LINE_PX = 18  # what a line of it adds to the figure's height (lines in an axis title are spaced as the title)

ATTENTION_EMPTY_MESSAGE = "Ask a question to see where the model looked"
BUDGET_EMPTY_MESSAGE = "Load a video to see how its visual tokens were spent"

# Anchor colours of a magma/inferno-like ramp (black -> purple -> orange -> pale yellow), hand-picked so that
# lightness rises monotonically; `_ramp_lut` interpolates them to 256 entries for the spatial overlays.
_HEAT_ANCHORS = np.array(
    [
        [0, 0, 4],
        [31, 12, 72],
        [85, 15, 109],
        [136, 34, 106],
        [186, 54, 85],
        [227, 89, 51],
        [249, 140, 10],
        [249, 201, 50],
        [252, 255, 164],
    ],
    dtype=np.float64,
)
# The same ramp reversed (pale = little attention, dark = much) reads better on a white page for the heatmap.
HEATMAP_COLORSCALE = [
    [i / (len(_HEAT_ANCHORS) - 1), f"rgb({r:.0f},{g:.0f},{b:.0f})"] for i, (r, g, b) in enumerate(_HEAT_ANCHORS[::-1])
]


# ----------------------------------------------------------------------------------------------------------------
# Small helpers


def escape_text(text: object, max_chars: int | None = None) -> str:
    """User or model text made inert for plotly's HTML-ish labels, optionally truncated with an ellipsis.

    Truncation happens before escaping so an entity like `&amp;` is never cut in half.
    """
    plain = " ".join(str(text).split())  # newlines and tabs would break one-line titles and ticks
    if max_chars is not None and len(plain) > max_chars:
        plain = plain[: max(1, max_chars - 1)].rstrip() + "…"
    return html.escape(plain, quote=False)  # plotly decodes &lt; &gt; &amp; but shows &quot; literally


def format_seconds(t: float, clock: bool = False) -> str:
    """`3.5` (seconds, one decimal) or, with `clock`, `1:05` (minutes:seconds); `?` when the time is unknown."""
    if t is None or not math.isfinite(t):
        return "?"
    if not clock:
        return f"{t:.1f}"
    minutes, seconds = divmod(int(round(t)), 60)
    return f"{minutes}:{seconds:02d}"


def format_timestamp(t: float, clock: bool = False) -> str:
    """`3.5 s`, or `1:05` on a clock, as frame timestamps are labelled everywhere."""
    return format_seconds(t, clock=True) if clock else f"{format_seconds(t)} s"


def uses_clock(times: Sequence[float] | np.ndarray) -> bool:
    """Past a minute, minutes:seconds read better than 187.5 s; one choice per chart keeps its labels uniform."""
    finite = _finite(times)
    return bool(finite.size) and float(finite.max()) >= 60.0


def clip_label(clip: ClipBudget, clock: bool | None = None) -> str:
    """`0.0–3.5 s` (or `1:05–1:12` for long videos): how a clip is named on every axis and caption."""
    if clock is None:
        clock = uses_clock([clip.end_s])
    if clock:
        return f"{format_seconds(clip.start_s, True)}–{format_seconds(clip.end_s, True)}"
    return f"{format_seconds(clip.start_s)}–{format_seconds(clip.end_s)} s"


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _base_layout(fig: go.Figure, title: str, height: int) -> None:
    fig.update_layout(
        template=TEMPLATE,
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        height=height,
        margin={"l": 64, "r": 24, "t": 64, "b": 56},
        font={"size": 12},
        hoverlabel={"align": "left"},
    )


def _layout_with_legend(fig: go.Figure, title: str, subtitle: str, height: int, **layout: object) -> None:
    """The compression charts' layout: a subtitle line under the title, and the legend in one row over the plot's
    top-right corner (in the order the traces were added)."""
    _base_layout(fig, f"{title}<br><sup>{subtitle}</sup>", height)
    legend = {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0, "traceorder": "normal"}
    fig.update_layout(legend=legend, margin={"t": 88}, **layout)


def empty_figure(message: str, title: str = "", height: int = 320) -> go.Figure:
    """A blank plot with a centred message (wrapped at 72 characters), for views that have nothing to show."""
    fig = go.Figure()
    _base_layout(fig, escape_text(title), height)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.add_annotation(
        text="<br>".join(escape_text(line) for line in textwrap.wrap(str(message), 72) or [""]),
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font={"size": 15, "color": "#868e96"},
    )
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Compression view


def caption_line(clip: ClipBudget, arrow: str = "→") -> str:
    """'23 caption tokens → 96 visual tokens': why a `langdc` clip got its budget ("" for a clip no expert
    described)."""
    if clip.caption_tokens is None:
        return ""
    return f"{clip.caption_tokens} caption tokens {arrow} {clip.budget} visual tokens"


def _wrapped(text: str, width: int, max_lines: int) -> list[str]:
    """Words into at most `max_lines` lines of about `width` characters, an ellipsis where it was cut."""
    lines = textwrap.wrap(text, width) or [""]
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], textwrap.shorten(" ".join(lines[max_lines - 1 :]), width, placeholder="…")]
    return lines


def _tick_texts(clips: Sequence[ClipBudget], labels: Sequence[str]) -> tuple[list[str], int]:
    """Each clip's axis label, with its description and caption-to-budget line under it where an expert wrote
    one; and how many extra lines that takes."""
    if not any(clip.caption_tokens is not None for clip in clips):
        return list(labels), 0
    width = 34 if len(clips) <= 4 else 22
    texts, extra = [], 0
    for clip, label in zip(clips, labels):
        why = f"{clip.caption_tokens} caption tokens →<br>{clip.budget} visual tokens"  # caption_line, in two lines
        lines = [label, *(f"<sup>{escape_text(part)}</sup>" for part in why.split("<br>"))]
        lines += [f"<sup><i>{escape_text(line)}</i></sup>" for line in _wrapped(clip.caption or "", width, 3)]
        texts.append("<br>".join(lines))
        extra = max(extra, len(lines) - 1)
    return texts, extra


def budget_figure(stats: TokenStats | None, title: str = "Visual tokens per clip") -> go.Figure:
    """Per-clip token budgets: one bar per clip for the dynamic budget, a dashed tick per clip for the baseline.

    The x axis is categorical in spirit (one slot per clip, labelled with its time range) but numeric underneath,
    so that the baseline can be drawn as a short segment across each bar and duplicate labels cannot merge.
    """
    clips = list(stats.clips) if stats is not None else []
    if not clips:
        return empty_figure(BUDGET_EMPTY_MESSAGE, title)
    unit = stats.unit or "tokens"
    if unit != "tokens" and title == "Visual tokens per clip":  # a remote engine before it reports tokens
        title = f"{unit.capitalize()} sent per clip"

    positions = np.arange(len(clips), dtype=np.float64)
    budgets = _finite([c.budget for c in clips])
    baselines = _finite([c.baseline_budget for c in clips])
    used = _finite([c.used_tokens for c in clips])
    clock = uses_clock([clip.end_s for clip in clips])
    labels = [clip_label(clip, clock) for clip in clips]
    hover = {"customdata": _budget_hover_rows(clips, labels), "hovertemplate": BUDGET_HOVER}

    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=positions,
            y=budgets,
            width=0.62,
            name=f"{stats.compressor} budget",
            marker={"color": DYNAMIC_COLOR, "opacity": 0.55 if (used < budgets).any() else 0.9},
            text=[f"{b:.0f}" for b in budgets] if len(clips) <= 12 else None,  # numbers crowd past a dozen
            textposition="outside",
            cliponaxis=False,
            **hover,
        )
    )
    # Language-space compressors may stop writing before a clip's budget runs out; show what was spent inside the
    # budget bar only when that happens, so the common case stays one clean bar per clip.
    if (used < budgets).any():
        fig.add_trace(
            go.Bar(x=positions, y=used, width=0.3, name="used tokens", marker={"color": USED_COLOR}, **hover)
        )
    fig.add_trace(_baseline_ticks(positions, baselines))

    share = f" ({stats.budget_pct:g}% of {stats.official_tokens})" if stats.official_tokens else ""
    subtitle = (
        f"{escape_text(stats.compressor)} · global budget {stats.global_budget}{share} · baseline "
        f"{int(baselines.sum())} · used {int(used.sum())} {unit} over {plural(len(clips), 'clip')}"
    )
    ticks, extra_lines = _tick_texts(clips, labels)
    _layout_with_legend(fig, escape_text(title), subtitle, 380 + 16 * extra_lines, barmode="overlay", bargap=0.3)
    if extra_lines:  # the descriptions under the bars need room
        fig.update_layout(margin={"b": 70 + 16 * extra_lines})
    fig.update_xaxes(
        tickmode="array",
        tickvals=positions.tolist(),
        ticktext=ticks,
        tickangle=-35 if len(clips) > 8 else 0,
        range=[-0.6, len(clips) - 0.4],
        title_text="clip (time range)",
        showgrid=False,
    )
    top = float(max(budgets.max(initial=0), baselines.max(initial=0), used.max(initial=0), 1.0))
    fig.update_yaxes(title_text=f"visual {unit}", range=[0, top * 1.18], rangemode="tozero")
    return fig


BUDGET_HOVER = (
    "<b>%{customdata[0]}</b> · %{customdata[1]}<br>"
    "density %{customdata[2]}<br>"
    "budget %{customdata[3]}<br>"
    "fixed-rate baseline %{customdata[4]}<br>"
    "used %{customdata[5]}<br>"
    "<i>%{customdata[6]}</i>%{customdata[7]}<extra></extra>"
)


def _budget_hover_rows(clips: Sequence[ClipBudget], labels: Sequence[str]) -> list[list[str]]:
    """What hovering a clip's bar says (the fields of `BUDGET_HOVER`, in order)."""
    return [
        [
            f"clip {clip.index + 1}",
            label,
            f"{_finite([clip.density])[0]:.2f}",
            f"{_finite([clip.budget])[0]:.0f}",
            f"{_finite([clip.baseline_budget])[0]:.0f}",
            f"{_finite([clip.used_tokens])[0]:.0f}",
            escape_text(clip.text, 120) if clip.text else "—",
            f"<br>{escape_text(caption_line(clip))}: “{escape_text(clip.caption, 160)}”" if clip.caption else "",
        ]
        for clip, label in zip(clips, labels)
    ]


def _baseline_ticks(positions: np.ndarray, baselines: np.ndarray) -> go.Scatter:
    """The fixed-rate baseline as one dashed segment across each clip's bar (None breaks the line between clips)."""
    segment_x: list[float | None] = []
    segment_y: list[float | None] = []
    for x, base in zip(positions, baselines, strict=True):
        segment_x += [x - 0.42, x + 0.42, None]
        segment_y += [base, base, None]
    return go.Scatter(
        x=segment_x,
        y=segment_y,
        mode="lines",
        name="fixed-rate baseline (same tokens per frame)",
        line={"color": BASELINE_COLOR, "width": 2.5, "dash": "dash"},
        hoverinfo="skip",
    )


def slow_fast_figure(stats: TokenStats | None, timestamps_s: Sequence[float] | None = None) -> go.Figure:
    """Slow vs fast tokens per sampled frame as stacked bars over the frames' timestamps.

    Without per-frame counts (a model that only reports totals) it falls back to one stacked bar of the totals.
    """
    title = "Slow vs fast tokens"
    if stats is None or (stats.slow_tokens + stats.fast_tokens <= 0 and not stats.per_frame_slow):
        return empty_figure(BUDGET_EMPTY_MESSAGE, title)

    num_frames = max(len(stats.per_frame_slow), len(stats.per_frame_fast))
    fig = go.Figure()
    if num_frames == 0:
        for name, value, color in (
            ("slow", stats.slow_tokens, SLOW_COLOR),
            ("fast", stats.fast_tokens, FAST_COLOR),
        ):
            fig.add_trace(
                go.Bar(
                    y=["whole video"],
                    x=[value],
                    orientation="h",
                    name=f"{name} ({value})",
                    marker={"color": color},
                    hovertemplate=f"{name}: %{{x}} tokens<extra></extra>",
                )
            )
        _layout_with_legend(fig, title, f"{stats.slow_tokens + stats.fast_tokens} visual tokens", 240, barmode="stack")
        fig.update_xaxes(title_text="visual tokens")
        return fig

    slow = np.zeros(num_frames)
    fast = np.zeros(num_frames)
    slow[: len(stats.per_frame_slow)] = _finite(stats.per_frame_slow)
    fast[: len(stats.per_frame_fast)] = _finite(stats.per_frame_fast)
    positions = np.arange(num_frames)
    times = _frame_times(timestamps_s, num_frames)
    tick_text = _frame_labels(times)
    hover_rows = [[tick_text[i], i + 1] for i in range(num_frames)]
    for name, values, color in (("slow", slow, SLOW_COLOR), ("fast", fast, FAST_COLOR)):
        fig.add_trace(
            go.Bar(
                x=positions,
                y=values,
                name=f"{name} pathway",
                marker={"color": color},
                customdata=hover_rows,
                hovertemplate=f"frame %{{customdata[1]}} · %{{customdata[0]}}<br>{name}: %{{y:.0f}} tokens"
                "<extra></extra>",
            )
        )
    subtitle = (
        f"slow {int(slow.sum())} tokens on {int((slow > 0).sum())} frames · "
        f"fast {int(fast.sum())} tokens on {int((fast > 0).sum())} frames"
    )
    _layout_with_legend(fig, title, subtitle, 340, barmode="stack", bargap=0.15)
    _frame_axis(fig, tick_text)
    fig.update_yaxes(title_text="visual tokens", rangemode="tozero")
    return fig


def compression_summary_markdown(stats: TokenStats | None) -> str:
    """A small markdown table: totals, slow/fast split, native cost, compression ratio, baseline, timings."""
    if stats is None:
        return f"_{BUDGET_EMPTY_MESSAGE}._"
    total = stats.total_visual_tokens
    rows = [
        ("compressor", f"{escape_text(stats.compressor, 40)} at {stats.budget_pct:g}% budget"),
        ("visual tokens the LLM sees", f"{total:,}"),
        ("the model's own (official) count", f"{stats.official_tokens:,}" if stats.official_tokens else "—"),
        ("slow / fast", f"{stats.slow_tokens:,} / {stats.fast_tokens:,}"),
        ("without compression", f"{stats.native_tokens:,}" if stats.native_tokens else "—"),
        ("compression ratio", f"{stats.compression_ratio:.1f}×" if stats.native_tokens and total else "—"),
        ("global budget", f"{stats.global_budget:,}" if stats.global_budget else "—"),
        ("fixed-rate baseline total", f"{stats.baseline_total:,}" if stats.clips else "—"),
        ("clips", str(len(stats.clips))),
    ]
    for name, seconds in stats.timings_s.items():
        if seconds is not None and math.isfinite(seconds):
            rows.append((f"time: {escape_text(name.replace('_', ' '), 40)}", f"{seconds:.2f} s"))
    lines = ["| | |", "|---|---:|"] + [f"| {name} | {value} |" for name, value in rows]
    if stats.note:
        lines.append(f"\n*{escape_text(stats.note, 400)}*")
    described = [clip for clip in stats.clips if clip.caption_tokens is not None]
    if described:
        lines.append("\n**Why each clip got its tokens** (the language expert's description):")
        lines += [
            f"- {clip_label(clip)}: {caption_line(clip)} — “{escape_text(clip.caption or '', 240)}”"
            for clip in described
        ]
    return "\n".join(lines)


def clip_strip_image(
    thumbnails: np.ndarray | None, stats: TokenStats | None, tile_height: int = 96, max_tiles: int = 16
) -> np.ndarray:
    """A horizontal strip with one tile per clip (its middle sampled frame), captioned with time range and budget.

    A thin bar under each caption is the clip's dynamic budget relative to the largest one, in the budget
    chart's colour, with a grey tick at the baseline, so the strip and the chart read the same way.
    """
    clips = list(stats.clips) if stats is not None else []
    frames = _as_uint8_frames(thumbnails)
    if not clips or frames is None:
        return _message_image("No clips yet" if frames is not None else "No frames yet", height=tile_height + 44)
    clips = clips[:max_tiles]  # a strip wider than the page helps no one; the chart still shows every clip

    aspect = frames.shape[2] / max(1, frames.shape[1])
    tile_w = max(48, int(round(tile_height * aspect)))
    font = _font(12)
    described = [_strip_caption(clip, tile_w, font) for clip in clips]
    caption_h, bar_h, gap = 34 + 14 * max(len(lines) for lines in described), 6, 6
    width = len(clips) * tile_w + (len(clips) + 1) * gap
    height = gap + tile_height + caption_h + bar_h + gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    max_budget = max(1.0, max(_finite([max(c.budget, c.baseline_budget) for c in clips])))

    for slot, clip in enumerate(clips):
        x0 = gap + slot * (tile_w + gap)
        frame = frames[_middle_position(clip, len(frames))]
        tile = Image.fromarray(frame).resize((tile_w, tile_height), Image.Resampling.BILINEAR)
        canvas.paste(tile, (x0, gap))
        text_y = gap + tile_height + 2
        # PIL's bundled font has no en dash, so the strip spells the range with a plain hyphen.
        draw.text((x0 + 2, text_y), clip_label(clip).replace("–", "-"), fill=(33, 37, 41), font=font)
        budget_line = f"{clip.budget} tok · base {clip.baseline_budget}"
        draw.text((x0 + 2, text_y + 15), budget_line, fill=(73, 80, 87), font=font)
        for row, line in enumerate(described[slot]):  # langdc: why this clip got its tokens
            draw.text((x0 + 2, text_y + 30 + 14 * row), line, fill=(73, 80, 87), font=font)
        bar_y = gap + tile_height + caption_h
        draw.rectangle([x0, bar_y, x0 + tile_w - 1, bar_y + bar_h - 1], fill=(233, 236, 239))
        bar_w = int(round((tile_w - 1) * _finite([clip.budget])[0] / max_budget))
        if bar_w > 0:
            draw.rectangle([x0, bar_y, x0 + bar_w, bar_y + bar_h - 1], fill=_hex_rgb(DYNAMIC_COLOR))
        base_x = x0 + int(round((tile_w - 1) * _finite([clip.baseline_budget])[0] / max_budget))
        draw.line([base_x, bar_y - 2, base_x, bar_y + bar_h + 1], fill=_hex_rgb(BASELINE_COLOR), width=2)
    return np.asarray(canvas, dtype=np.uint8)


def _strip_caption(clip: ClipBudget, tile_w: int, font) -> list[str]:
    """The lines under a strip tile for a described clip: '23 caption tokens -> 96 visual tokens' and the
    description, wrapped to the tile (PIL's bundled font has no arrow: the strip writes '->')."""
    if clip.caption_tokens is None:
        return []
    chars = max(8, int(tile_w / max(1.0, font.getlength("abcdefghij") / 10)))
    return _wrapped(caption_line(clip, "->"), chars, 3) + _wrapped(clip.caption or "", chars, 3)


# ----------------------------------------------------------------------------------------------------------------
# Attention view


def attention_heatmap(
    attention: Attention | None,
    timestamps_s: Sequence[float] | None,
    question: str = "",
    max_rows: int = 40,
) -> go.Figure:
    """Answer tokens (rows, top to bottom in answer order; question tokens where the model's attention is read
    at the question, `Attention.rows`) × sampled frames (one column each), in percent.

    Long answers are first merged from sub-word tokens into words; past `max_rows` words only the first rows are
    drawn and the subtitle says how many were left out.
    """
    question_line = f"<br><sup>Q: “{escape_text(question, 90)}”</sup>" if question and question.strip() else ""
    title = "Where each answer token looked"
    if attention is None or _unavailable(attention):
        return empty_figure(_unavailable(attention) or ATTENTION_EMPTY_MESSAGE, title)
    if attention.token_frame_weights is not None:
        weights = _finite(attention.token_frame_weights)
        tokens = [str(t) for t in attention.tokens]
    else:  # a model that only reports per-frame weights still gets a (one-row) heatmap
        weights = _finite(attention.frame_weights if attention.frame_weights is not None else [])
        tokens = ["(whole answer)"]
    if weights.ndim == 1:
        weights = weights[None, :]
    if weights.ndim != 2 or weights.size == 0:
        return empty_figure(ATTENTION_EMPTY_MESSAGE, title)

    tokens = tokens[: weights.shape[0]]
    tokens += [f"token {i + 1}" for i in range(len(tokens), weights.shape[0])]
    weights = weights[: len(tokens)]
    unit = "token"
    if len(tokens) > max_rows:
        tokens, weights = merge_subword_rows(tokens, weights)
        unit = "word"
    total_rows = len(tokens)
    tokens, weights = tokens[:max_rows], weights[:max_rows]

    whose = "question" if attention.rows == "question" else "answer"  # the rows' own tokens, never relabelled
    title = f"Where each {whose} {unit} looked"
    num_rows, num_frames = weights.shape
    percent = 100.0 * weights
    times = _frame_times(timestamps_s, num_frames)
    time_text = _frame_labels(times)
    row_text = [_token_label(t) for t in tokens]
    customdata = [[[row_text[r], time_text[c], c + 1] for c in range(num_frames)] for r in range(num_rows)]

    fig = go.Figure(
        go.Heatmap(
            z=percent,
            x=list(range(num_frames)),
            y=list(range(num_rows)),
            colorscale=HEATMAP_COLORSCALE,
            zmin=0.0,
            zmax=max(float(percent.max(initial=0.0)), 1e-6),
            xgap=1,
            ygap=1,
            colorbar={"title": {"text": "attention<br>share (%)", "side": "top"}, "thickness": 14, "len": 0.9},
            customdata=customdata,
            hovertemplate="<b>%{customdata[0]}</b> → frame %{customdata[2]} at %{customdata[1]}"
            "<br>%{z:.1f}% of this word's attention<extra></extra>",
        )
    )
    shown = f"{num_rows} {whose} {unit}s" if total_rows <= num_rows else f"first {num_rows} of {total_rows} {unit}s"
    subtitle = f"{shown} × {num_frames} frame{'s' if num_frames != 1 else ''}"
    note = _source_note(attention)
    height = int(np.clip(120 + 22 * num_rows, 340, 720)) + NOTE_LINE_PX * len(note)
    _base_layout(fig, f"{title} · {subtitle}{question_line}", height)
    fig.update_layout(margin={"l": 96, "t": 84 if question_line else 64, "b": 64})
    _frame_axis(fig, time_text, note)
    fig.update_yaxes(
        tickmode="array",
        tickvals=list(range(num_rows)),
        ticktext=row_text,
        autorange="reversed",
        title_text=f"{whose} {unit}",
        showgrid=False,
    )
    return fig


def attention_timeline(
    attention: Attention | None,
    timestamps_s: Sequence[float] | None,
    stats: TokenStats | None = None,
) -> go.Figure:
    """Per-frame attention share over time, clips shaded and labelled behind it, the peak frame annotated."""
    title = "Attention over time"
    if attention is None or attention.frame_weights is None or np.asarray(attention.frame_weights).size == 0:
        return empty_figure(_unavailable(attention) or ATTENTION_EMPTY_MESSAGE, title)
    weights = 100.0 * _finite(attention.frame_weights).ravel()
    num_frames = len(weights)
    times = _frame_times(timestamps_s, num_frames)
    if not np.isfinite(times).all():
        times = np.arange(1, num_frames + 1, dtype=np.float64)  # unknown timestamps: fall back to frame order
        x_title = "sampled frame"
    else:
        x_title = "time (s)"
    labels = _frame_labels(times) if x_title == "time (s)" else [f"#{i + 1}" for i in range(num_frames)]

    fig = go.Figure()
    clips = list(stats.clips) if stats is not None else []
    if x_title == "time (s)":
        _shade_clips(fig, clips)

    fig.add_trace(
        go.Scatter(
            x=times,
            y=weights,
            mode="lines+markers",
            name="attention",
            line={"color": ATTENTION_COLOR, "width": 2, "shape": "linear"},
            marker={"size": 6, "color": ATTENTION_COLOR},
            fill="tozeroy",
            fillcolor="rgba(156, 46, 127, 0.12)",
            customdata=[[labels[i], i + 1] for i in range(num_frames)],
            hovertemplate="frame %{customdata[1]} at %{customdata[0]}<br>%{y:.1f}% of the attention<extra></extra>",
            showlegend=False,
        )
    )
    _mark_peak(fig, times, weights, labels)
    note = _source_note(attention)
    _base_layout(fig, title, 340 + NOTE_LINE_PX * len(note))
    fig.update_layout(margin={"t": 72})
    fig.update_xaxes(title_text=_with_note(x_title, note), zeroline=False)
    fig.update_yaxes(title_text="attention share (%)", rangemode="tozero", range=[0, max(weights.max() * 1.3, 1.0)])
    # Span the frames and every clip, with a little room so a lone frame is not pinned to the axis edge.
    spans = [times.min(), times.max()]
    if x_title == "time (s)":
        spans += [t for c in clips for t in (c.start_s, c.end_s) if math.isfinite(t)]
    low, high = min(spans), max(spans)
    pad = 0.5 if x_title == "sampled frame" or high == low else 0.02 * (high - low)
    fig.update_xaxes(range=[low - pad, high + pad])
    if x_title == "sampled frame":
        fig.update_xaxes(dtick=max(1, _tick_step(num_frames)))
    return fig


def _shade_clips(fig: go.Figure, clips: Sequence[ClipBudget]) -> None:
    """Each clip's time span shaded behind the timeline (alternate shades), its start dotted and its name on top."""
    for k, clip in enumerate(clips):
        if not (math.isfinite(clip.start_s) and math.isfinite(clip.end_s)):
            continue
        fig.add_vrect(x0=clip.start_s, x1=clip.end_s, fillcolor=CLIP_SHADES[k % 2], line_width=0, layer="below")
        if k > 0:
            fig.add_vline(x=clip.start_s, line={"color": "#ced4da", "width": 1, "dash": "dot"}, layer="below")
        fig.add_annotation(
            x=(clip.start_s + clip.end_s) / 2,
            y=1.0,
            yref="paper",
            yanchor="bottom",
            text=f"clip {clip.index + 1}",
            showarrow=False,
            font={"size": 10, "color": "#868e96"},
        )


def _mark_peak(fig: go.Figure, times: np.ndarray, weights: np.ndarray, labels: Sequence[str]) -> None:
    """The most attended frame, named with its share and time (nothing when no frame got any attention)."""
    peak = int(np.argmax(weights))
    if weights[peak] <= 0:
        return
    fig.add_annotation(
        x=times[peak],
        y=weights[peak],
        text=f"peak {weights[peak]:.0f}% at {labels[peak]}",
        showarrow=True,
        arrowhead=2,
        arrowcolor=PEAK_COLOR,
        ax=0,
        ay=-30,
        font={"color": PEAK_COLOR, "size": 12},
        bgcolor="rgba(255,255,255,0.85)",
    )
    fig.add_trace(
        go.Scatter(
            x=[times[peak]],
            y=[weights[peak]],
            mode="markers",
            marker={"size": 11, "color": PEAK_COLOR, "line": {"color": "white", "width": 1.5}},
            hoverinfo="skip",
            showlegend=False,
        )
    )


def overlay_image(frame: np.ndarray, heat: np.ndarray | None, alpha: float = 0.45) -> np.ndarray:
    """Blend a spatial attention map onto a frame: the map is upsampled bilinearly and coloured magma-like.

    frame: (H, W, 3) uint8; heat: (h, w) in [0, 1] (NaNs count as 0, values are clipped). Returns (H, W, 3) uint8.
    """
    pixels = np.asarray(frame)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    pixels = np.ascontiguousarray(pixels[:, :, :3]).astype(np.uint8, copy=False)
    if heat is None or np.asarray(heat).size == 0:
        return pixels.copy()
    height, width = pixels.shape[:2]
    small = np.clip(_finite(heat), 0.0, 1.0).astype(np.float32)
    if small.ndim != 2:
        small = small.reshape(small.shape[0], -1)
    upsampled = np.asarray(Image.fromarray(small, mode="F").resize((width, height), Image.Resampling.BILINEAR))
    colours = _ramp_lut()[np.clip(np.rint(upsampled * 255), 0, 255).astype(np.intp)]  # (H, W, 3)
    weight = float(np.clip(alpha, 0.0, 1.0))
    blended = (1.0 - weight) * pixels.astype(np.float32) + weight * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def frame_gallery_items(
    thumbnails: np.ndarray | None,
    timestamps_s: Sequence[float] | None,
    attention: Attention | None = None,
    with_overlays: bool = True,
) -> list[tuple[np.ndarray, str]]:
    """(image, caption) pairs for a `gr.Gallery`: "t = 3.5 s · attention 12%", overlays where a map exists."""
    frames = _as_uint8_frames(thumbnails)
    if frames is None:
        return []
    times = _frame_times(timestamps_s, len(frames))
    weights = None
    if attention is not None and attention.frame_weights is not None:
        weights = 100.0 * _finite(attention.frame_weights).ravel()
    peak = int(np.argmax(weights)) if weights is not None and weights.size and weights.max() > 0 else -1
    items = []
    for i, frame in enumerate(frames):
        caption = f"t = {format_seconds(times[i])} s"
        if weights is not None and i < len(weights):
            caption += f" · attention {weights[i]:.0f}%" + (" · peak" if i == peak else "")
        image = frame
        spatial = attention.spatial.get(i) if attention is not None and with_overlays else None
        if spatial is not None:
            image = overlay_image(frame, spatial)
            caption += " · overlay"
        items.append((image, caption))
    return items


def merge_subword_rows(tokens: Sequence[str], weights: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Join sub-word tokens into words (a new word starts at leading whitespace, `▁` or `Ġ`); rows are averaged.

    Averaging keeps each merged row a distribution over frames, so colours stay comparable across rows.
    """
    words: list[str] = []
    groups: list[list[int]] = []
    for i, token in enumerate(tokens):
        starts_word = not groups or token[:1] in (" ", "\n", "\t", "▁", "Ġ", "Ċ")
        if starts_word:
            words.append(token)
            groups.append([i])
        else:
            words[-1] += token
            groups[-1].append(i)
    merged = np.stack([weights[g].mean(axis=0) for g in groups]) if groups else weights[:0]
    return words, merged


# ----------------------------------------------------------------------------------------------------------------
# Internals


def _frame_times(timestamps_s: Sequence[float] | None, num_frames: int) -> np.ndarray:
    """Timestamps padded with NaN (unknown) to `num_frames`; NaN entries are labelled by frame number instead."""
    times = np.full(num_frames, np.nan)
    if timestamps_s is not None:
        given = np.asarray(list(timestamps_s)[:num_frames], dtype=np.float64)
        times[: len(given)] = given
    times[~np.isfinite(times)] = np.nan
    return times


def _frame_labels(times: np.ndarray) -> list[str]:
    clock = uses_clock(times)
    return [format_timestamp(t, clock) if math.isfinite(t) else f"#{i + 1}" for i, t in enumerate(times)]


def _tick_step(num_ticks: int, max_ticks: int = 24) -> int:
    return max(1, math.ceil(num_ticks / max_ticks))


def _token_label(token: str) -> str:
    """A token as a readable tick: sub-word markers dropped, blanks made visible, HTML made inert."""
    text = token.replace("▁", " ").replace("Ġ", " ").replace("Ċ", "\n")
    if text.strip() == "":
        return "⏎" if "\n" in text else "␣"
    return escape_text(text.strip(), 18)


def _frame_axis(fig: go.Figure, labels: list[str], note: Sequence[str] = ()) -> None:
    """An x axis with one slot per sampled frame, labelled by timestamp (thinned to at most ~24 labels)."""
    step = _tick_step(len(labels))
    fig.update_xaxes(
        tickmode="array",
        tickvals=list(range(0, len(labels), step)),
        ticktext=labels[::step],
        title_text=_with_note("sampled frame (timestamp)", note),
        showgrid=False,
    )


def _unavailable(attention: Attention | None) -> str:
    """Why a model gives no attention at all (an empty one whose source says why, e.g. a remote engine), or ""."""
    if attention is None or np.asarray(attention.frame_weights).size:
        return ""
    return " ".join(str(attention.source or "").split())


def _source_note(attention: Attention) -> list[str]:
    """Where the attention comes from (`Attention.source`), as escaped lines of small print that fit under a chart."""
    text = " ".join(str(attention.source or "").split())
    return [html.escape(line, quote=False) for line in textwrap.wrap(text, NOTE_LINE_CHARS, max_lines=6)]


def _with_note(axis_title: str, note: Sequence[str]) -> str:
    """An x-axis title with small print under it. The note rides in the title rather than in a free annotation so
    that plotly makes room for it below the tick labels (the template's automargin), however tall those are."""
    if not note:
        return axis_title
    return f'{axis_title}<br><span style="{NOTE_STYLE}">{"<br>".join(note)}</span>'


def _middle_position(clip: ClipBudget, num_frames: int) -> int:
    positions = [p for p in clip.frame_positions if 0 <= p < num_frames]
    if positions:
        return sorted(positions)[len(positions) // 2]
    return min(num_frames - 1, max(0, clip.index))  # no positions recorded: the clip's own index is a fair guess


def _as_uint8_frames(thumbnails: np.ndarray | None) -> np.ndarray | None:
    """(T, h, w, 3) uint8, or None when there is nothing to draw. Float frames in [0, 1] are scaled."""
    if thumbnails is None:
        return None
    frames = np.asarray(thumbnails)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        return None
    if frames.shape[3] == 1:
        frames = np.repeat(frames, 3, axis=3)
    frames = frames[..., :3]
    if frames.dtype != np.uint8:
        scale = 255.0 if np.nanmax(frames) <= 1.0 else 1.0
        frames = np.clip(np.nan_to_num(frames.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    return frames


def _message_image(message: str, height: int = 140, width: int = 420) -> np.ndarray:
    canvas = Image.new("RGB", (width, height), (248, 249, 250))
    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    box = draw.textbbox((0, 0), message, font=font)
    draw.text(((width - box[2]) / 2, (height - box[3]) / 2), message, fill=(134, 142, 150), font=font)
    return np.asarray(canvas, dtype=np.uint8)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType only has the fixed bitmap font
        return ImageFont.load_default()


def _hex_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _ramp_lut() -> np.ndarray:
    """(256, 3) float32 colours interpolated from the magma-like anchors."""
    stops = np.linspace(0.0, 1.0, len(_HEAT_ANCHORS))
    levels = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(levels, stops, _HEAT_ANCHORS[:, c]) for c in range(3)], axis=1).astype(np.float32)
