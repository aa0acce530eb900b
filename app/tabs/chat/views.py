"""The Frames, Compression and Attention views beside the chat, as outputs built from the session's `View`.

A `View` is what the latest answer (or the freshly loaded video) left to look at: thumbnails with timestamps, the
token statistics and, after an answer, its attention. `view_outputs` turns one into every figure and image of the
three tabs (or their empty state when there is none); `frame_outputs` draws the frame picked in the Attention tab
with its spatial overlay and a caption; `show_frame` and `frame_from_gallery` are the handlers of the frame slider
and of a click on a thumbnail.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from app import charts
from app.session import Session, View
from models.base import Answer, TokenStats, VisualContext
from models.units import plural

OVERLAY_HEIGHT = 288  # thumbnails are ~96 px high; the overlay is shown larger (the map itself is 7x7)


def view_from(context: VisualContext, answer: Answer | None = None, question: str = "", turn_id: str = "") -> View:
    return View(
        thumbnails=context.thumbnails,
        timestamps_s=list(context.timestamps_s),
        stats=answer.stats if answer is not None and answer.stats.clips else context.stats,
        attention=answer.attention if answer is not None else None,
        question=question,
        turn_id=turn_id,
    )


def view_outputs(view: View | None) -> dict[str, Any]:
    """Every figure and image of the Frames, Compression and Attention tabs for one view (or their empty state)."""
    stats = view.stats if view else None
    thumbnails = view.thumbnails if view else None
    times = view.timestamps_s if view else None
    attention = view.attention if view else None
    num_frames = len(times) if times else 0
    picked = _default_frame(view)
    return {
        "frames": gallery_items(thumbnails, times, attention),
        "key_figures": key_figures_html(stats),
        "summary": charts.compression_summary_markdown(stats),
        "strip": charts.clip_strip_image(thumbnails, stats),
        "budget_plot": charts.budget_figure(stats),
        "slow_fast_plot": charts.slow_fast_figure(stats, times),
        "heatmap": charts.attention_heatmap(attention, times, view.question if view else ""),
        "timeline": charts.attention_timeline(attention, times, stats),
        "frame_slider": gr.update(minimum=1, maximum=max(2, num_frames), value=picked, interactive=num_frames > 1),
        **frame_outputs(view, picked),
    }


def gallery_items(thumbnails: np.ndarray | None, times: list[float] | None, attention: Any) -> list[tuple]:
    """The Frames tab's thumbnails. Captions are shortened ("t = 3.5 s · 12%") to fit five tiles per row."""
    items = charts.frame_gallery_items(thumbnails, times, attention, with_overlays=False)
    return [(image, caption.replace("attention ", "").replace(" · peak", " ★")) for image, caption in items]


def key_figures_html(stats: TokenStats | None) -> str:
    """Four headline numbers above the compression charts. Only numbers go in, so no escaping is needed."""
    if stats is None or not stats.clips:
        return ""
    ratio = f"{stats.compression_ratio:.1f}×" if stats.native_tokens else "—"
    of_official = f" · {stats.budget_pct:g}% of {stats.official_tokens:,}" if stats.official_tokens else ""
    cards = [
        (f"{stats.total_visual_tokens:,}", f"visual {stats.unit or 'tokens'} the LLM reads"),
        (ratio, f"fewer than uncompressed ({stats.native_tokens:,})" if stats.native_tokens else "compression"),
        (plural(len(stats.clips), "clip"), f"{stats.compressor}: a budget of {stats.global_budget:,}{of_official}"),
        (f"{stats.slow_tokens:,} / {stats.fast_tokens:,}", "slow / fast pathway tokens"),
    ]
    body = "".join(
        f'<div class="kf-card"><div class="kf-value">{html.escape(value)}</div>'
        f'<div class="kf-label">{html.escape(label)}</div></div>'
        for value, label in cards
    )
    note = f'<div class="kf-note">{html.escape(stats.note)}</div>' if stats.note else ""
    return f'<div class="kf-row">{body}</div>{note}'


def _default_frame(view: View | None) -> int:
    """The frame to show first: the most attended one that has a spatial map, else the most attended, else 1."""
    if view is None or view.attention is None or view.attention.frame_weights is None:
        return 1
    weights = np.nan_to_num(np.asarray(view.attention.frame_weights, dtype=float))
    if weights.size == 0:
        return 1
    with_maps = [p for p in view.attention.spatial if 0 <= p < weights.size]
    best = max(with_maps, key=lambda p: weights[p]) if with_maps else int(np.argmax(weights))
    return best + 1


def frame_outputs(view: View | None, frame_number: Any) -> dict[str, Any]:
    """The picked frame, with its spatial attention overlay where the model has one, and a caption."""
    if view is None or view.thumbnails is None or len(view.timestamps_s) == 0:
        return {"overlay": None, "overlay_caption": "*Load a video and ask a question to see where the model looked.*"}
    count = len(view.timestamps_s)
    try:
        number = int(round(float(frame_number)))
    except (TypeError, ValueError):
        number = 1
    number = min(max(number, 1), count)
    position = number - 1
    frame = view.thumbnails[position]
    height, width = frame.shape[:2]
    scale = OVERLAY_HEIGHT / max(1, height)
    big = np.asarray(Image.fromarray(frame).resize((max(1, round(width * scale)), OVERLAY_HEIGHT), Image.BICUBIC))
    parts = [f"**Frame {number} of {count}** · t = {view.timestamps_s[position]:.1f} s"]
    attention = view.attention
    if attention is not None and attention.frame_weights is not None and position < len(attention.frame_weights):
        parts.append(f"{100 * float(attention.frame_weights[position]):.0f}% of the answer's attention")
    heat = attention.spatial.get(position) if attention is not None else None
    if heat is not None:
        image = charts.overlay_image(big, heat)
        parts.append("overlay: where in the frame (bright = more)")
    else:
        image = big
        if attention is None:
            parts.append("ask a question to see an overlay")
        else:
            with_maps = sorted(p + 1 for p in attention.spatial)
            hint = f"frames with one: {', '.join(map(str, with_maps[:12]))}" if with_maps else "this model gives none"
            parts.append(f"no spatial map for this frame ({hint})")
    return {"overlay": image, "overlay_caption": " · ".join(parts)}


def show_frame(session: Session, frame_number: Any) -> dict[str, Any]:
    return frame_outputs(session.view, frame_number)


def frame_from_gallery(session: Session, event: dict[str, Any] | None) -> dict[str, Any]:
    """A thumbnail in the Frames tab was clicked: pick it in the Attention tab's frame picker."""
    index = (event or {}).get("index")
    if isinstance(index, (list, tuple)):
        index = index[0] if index else None
    if not isinstance(index, int) or session.view is None:
        return {}
    number = index + 1
    return {"frame_slider": gr.update(value=number), **frame_outputs(session.view, number), "views_tab": "attention"}
