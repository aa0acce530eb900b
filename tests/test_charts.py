"""The compression and attention views' figures say what a user needs to read off them, and survive thin data."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from app import charts
from models.base import Attention, ClipBudget, TokenStats

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & <b>bold</b>'


def make_stats(num_clips: int = 6, num_frames: int = 32, duration_s: float = 20.0, global_budget: int = 256):
    """Clips over [0, duration) with uneven densities, a fixed-rate equal split, and slow/fast counts per frame."""
    rng = np.random.default_rng(num_clips)
    timestamps = np.linspace(0.25, duration_s - 0.25, num_frames)
    bounds = np.linspace(0.0, duration_s, num_clips + 1)
    densities = rng.uniform(0.05, 1.0, num_clips)
    budgets = np.floor(densities / densities.sum() * global_budget).astype(int)
    clips = [
        ClipBudget(
            index=k,
            start_s=float(bounds[k]),
            end_s=float(bounds[k + 1]),
            frame_positions=[i for i, t in enumerate(timestamps) if bounds[k] <= t < bounds[k + 1]],
            density=float(densities[k]),
            budget=int(budgets[k]),
            baseline_budget=global_budget // num_clips,
            used_tokens=int(budgets[k]),
            text=f"clip {k} text",
        )
        for k in range(num_clips)
    ]
    per_frame_slow = [144 if i % 8 == 0 else 0 for i in range(num_frames)]
    per_frame_fast = [9] * num_frames
    stats = TokenStats(
        clips=clips,
        global_budget=global_budget,
        slow_tokens=sum(per_frame_slow),
        fast_tokens=sum(per_frame_fast),
        per_frame_slow=per_frame_slow,
        per_frame_fast=per_frame_fast,
        native_tokens=num_frames * 576,
        timings_s={"encode": 1.25},
    )
    return stats, timestamps


def make_attention(num_tokens: int = 12, num_frames: int = 32, tokens: list[str] | None = None) -> Attention:
    rng = np.random.default_rng(num_tokens * 100 + num_frames)
    weights = rng.random((num_tokens, num_frames))
    weights /= weights.sum(axis=1, keepdims=True)
    return Attention(
        frame_weights=weights.mean(axis=0),
        tokens=tokens if tokens is not None else [f" word{i}" for i in range(num_tokens)],
        token_frame_weights=weights,
        source="mean over heads, last layer",
    )


def trace_named(fig: go.Figure, prefix: str):
    matches = [t for t in fig.data if (t.name or "").startswith(prefix)]
    assert len(matches) == 1, [t.name for t in fig.data]
    return matches[0]


def shown_text(fig: go.Figure) -> str:
    """Title plus every annotation: what a user reads besides the axes."""
    return " ".join([fig.layout.title.text or ""] + [a.text or "" for a in fig.layout.annotations])


def is_empty_state(fig: go.Figure, message: str) -> bool:
    return len(fig.data) == 0 and any(a.text == message for a in fig.layout.annotations)


# ----------------------------------------------------------------------------------------------------------------
# Compression view


@pytest.mark.parametrize("num_clips", [1, 6, 20])
def test_budget_chart_has_one_dynamic_bar_per_clip_labelled_by_time_range(num_clips):
    stats, _ = make_stats(num_clips=num_clips, duration_s=20.0)
    fig = charts.budget_figure(stats)

    dynamic = trace_named(fig, "official budget")
    assert list(dynamic.y) == [c.budget for c in stats.clips]
    # every bar sits under a tick naming its clip's time range
    ticks = dict(zip(fig.layout.xaxis.tickvals, fig.layout.xaxis.ticktext, strict=True))
    for x, clip in zip(dynamic.x, stats.clips, strict=True):
        assert ticks[x] == f"{clip.start_s:.1f}–{clip.end_s:.1f} s"
    assert fig.layout.yaxis.title.text == "visual tokens"
    assert str(stats.global_budget) in shown_text(fig)


def test_budget_chart_shows_the_equal_split_baseline_for_every_clip():
    stats, _ = make_stats(num_clips=6, global_budget=240)
    fig = charts.budget_figure(stats)
    baseline = trace_named(fig, "fixed-rate")
    levels = [y for y in baseline.y if y is not None]
    # one horizontal segment per clip, each at the equal split of the global budget
    assert len(levels) == 2 * len(stats.clips)
    assert set(levels) == {240 / 6}
    # a segment is centred on its clip's bar
    dynamic = trace_named(fig, "official budget")
    xs = [x for x in baseline.x if x is not None]
    centres = [(xs[2 * k] + xs[2 * k + 1]) / 2 for k in range(len(stats.clips))]
    assert centres == pytest.approx(list(dynamic.x))


def test_budget_chart_shows_used_tokens_only_when_a_clip_stopped_short():
    stats, _ = make_stats()
    assert not [t for t in charts.budget_figure(stats).data if t.name == "used tokens"]
    stats.clips[2].used_tokens = stats.clips[2].budget // 2
    used = trace_named(charts.budget_figure(stats), "used")
    assert used.y[2] == stats.clips[2].budget // 2


def test_clip_text_in_hover_is_escaped():
    stats, _ = make_stats(num_clips=2)
    stats.clips[0].text = HOSTILE
    dynamic = trace_named(charts.budget_figure(stats), "official budget")
    hover_text = " ".join(str(v) for row in dynamic.customdata for v in row)
    assert "<script" not in hover_text and "<img" not in hover_text
    assert "&lt;script&gt;" in hover_text


def test_clip_labels_switch_to_minutes_for_long_videos():
    stats, _ = make_stats(num_clips=3, duration_s=180.0)
    ticks = list(charts.budget_figure(stats).layout.xaxis.ticktext)
    assert ticks[-1] == "2:00–3:00"


def test_slow_and_fast_tokens_are_stacked_per_frame_over_timestamps():
    stats, timestamps = make_stats(num_frames=16)
    fig = charts.slow_fast_figure(stats, timestamps)
    slow, fast = trace_named(fig, "slow"), trace_named(fig, "fast")
    assert fig.layout.barmode == "stack"
    assert list(slow.y) == stats.per_frame_slow and list(fast.y) == stats.per_frame_fast
    assert slow.marker.color != fast.marker.color
    assert list(fig.layout.xaxis.ticktext) == [f"{t:.1f} s" for t in timestamps]


def test_slow_fast_falls_back_to_totals_without_per_frame_counts():
    fig = charts.slow_fast_figure(TokenStats(slow_tokens=100, fast_tokens=50))
    assert [t.x[0] for t in fig.data] == [100, 50]


def test_compression_summary_reports_totals_ratio_and_baseline():
    stats, _ = make_stats()
    table = charts.compression_summary_markdown(stats)
    assert table.startswith("|")
    assert f"{stats.total_visual_tokens:,}" in table
    assert f"{stats.slow_tokens:,} / {stats.fast_tokens:,}" in table
    assert f"{stats.native_tokens:,}" in table
    assert f"{stats.compression_ratio:.1f}×" in table
    assert f"{stats.baseline_total:,}" in table
    assert "1.25 s" in table


def test_clip_strip_has_one_tile_per_clip():
    stats, timestamps = make_stats(num_clips=5, num_frames=20)
    thumbnails = np.full((20, 36, 64, 3), 200, np.uint8)
    one = charts.clip_strip_image(thumbnails, make_stats(num_clips=1, num_frames=20)[0])
    five = charts.clip_strip_image(thumbnails, stats)
    assert five.dtype == np.uint8 and five.ndim == 3 and five.shape[2] == 3
    assert five.shape[0] == one.shape[0]
    tile_and_gap = (five.shape[1] - one.shape[1]) / 4
    assert tile_and_gap > 64  # each extra clip adds a full-width tile, captions included


def test_clip_strip_tiles_show_each_clips_middle_frame():
    stats, _ = make_stats(num_clips=2, num_frames=8)
    thumbnails = np.zeros((8, 30, 40, 3), np.uint8)
    for clip, colour in zip(stats.clips, [(255, 0, 0), (0, 0, 255)], strict=True):
        middle = sorted(clip.frame_positions)[len(clip.frame_positions) // 2]
        thumbnails[middle] = colour
    strip = charts.clip_strip_image(thumbnails, stats, tile_height=30)
    top_row = strip[15]
    red = (top_row[:, 0] > 200) & (top_row[:, 2] < 50)
    blue = (top_row[:, 2] > 200) & (top_row[:, 0] < 50)
    assert red.any() and blue.any()
    assert np.flatnonzero(red).max() < np.flatnonzero(blue).min()  # in clip order, left to right


# ----------------------------------------------------------------------------------------------------------------
# Attention view


def test_heatmap_has_one_row_per_token_and_one_column_per_frame():
    attention = make_attention(num_tokens=12, num_frames=16)
    timestamps = np.arange(16) * 1.5
    fig = charts.attention_heatmap(attention, timestamps, "What happens?")
    heatmap = fig.data[0]
    assert np.asarray(heatmap.z).shape == (12, 16)
    assert list(fig.layout.yaxis.ticktext) == [t.strip() for t in attention.tokens]
    assert fig.layout.yaxis.autorange == "reversed"  # first answer token on top
    assert list(fig.layout.xaxis.ticktext) == [f"{t:.1f} s" for t in timestamps]
    assert heatmap.colorbar.title.text  # the colour scale says what it measures
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert "What happens?" in fig.layout.title.text


def test_heatmap_keeps_repeated_tokens_as_separate_rows_and_labels_sparse_ticks_correctly():
    attention = make_attention(num_tokens=4, num_frames=64, tokens=["the", " cat", " the", " dog"])
    timestamps = np.linspace(0, 31.5, 64)
    fig = charts.attention_heatmap(attention, timestamps)
    assert np.asarray(fig.data[0].z).shape == (4, 64)
    assert list(fig.layout.yaxis.ticktext) == ["the", "cat", "the", "dog"]
    for column, label in zip(fig.layout.xaxis.tickvals, fig.layout.xaxis.ticktext, strict=True):
        assert label == f"{timestamps[column]:.1f} s"


def test_question_in_heatmap_title_is_escaped():
    fig = charts.attention_heatmap(make_attention(), np.arange(32.0), HOSTILE)
    title = fig.layout.title.text
    assert "<script" not in title and "<img" not in title and "<b>bold" not in title
    assert "&lt;script&gt;" in title and "&amp;" in title


def test_hostile_answer_tokens_are_escaped_in_tick_labels():
    attention = make_attention(num_tokens=2, num_frames=4, tokens=["<b>hi</b>", "<a href=x>"])
    ticks = " ".join(charts.attention_heatmap(attention, [0, 1, 2, 3]).layout.yaxis.ticktext)
    assert "<" not in ticks


def test_long_answers_are_merged_into_words_and_capped():
    tokens = [(" " if i % 3 == 0 else "") + f"p{i}" for i in range(150)]  # 50 words of three pieces each
    fig = charts.attention_heatmap(make_attention(150, 8, tokens), np.arange(8.0), max_rows=40)
    rows = list(fig.layout.yaxis.ticktext)
    assert len(rows) == 40 and np.asarray(fig.data[0].z).shape == (40, 8)
    assert rows[0] == "p0p1p2"
    assert "40 of 50 words" in fig.layout.title.text


def test_timeline_has_a_point_per_frame_and_annotates_the_peak():
    stats, timestamps = make_stats(num_frames=32)
    attention = make_attention(num_frames=32)
    attention.frame_weights = np.full(32, 0.5 / 31)
    attention.frame_weights[20] = 0.5
    fig = charts.attention_timeline(attention, timestamps, stats)
    line = fig.data[0]
    assert list(line.x) == pytest.approx(list(timestamps))
    assert "peak 50%" in shown_text(fig)
    assert f"{timestamps[20]:.1f} s" in shown_text(fig)
    assert len([s for s in fig.layout.shapes if s.type == "rect"]) == len(stats.clips)  # clips shaded


def test_gallery_captions_give_time_and_attention_and_overlay_spatial_maps():
    thumbnails = np.full((4, 18, 32, 3), 120, np.uint8)
    attention = Attention(frame_weights=np.array([0.1, 0.6, 0.2, 0.1]), spatial={1: np.eye(3)})
    items = charts.frame_gallery_items(thumbnails, [0.0, 3.5, 7.0, 10.5], attention)
    assert len(items) == 4
    assert items[1][1].startswith("t = 3.5 s · attention 60%")
    assert not np.array_equal(items[1][0], thumbnails[1])  # the frame with a spatial map is shown blended
    assert np.array_equal(items[0][0], thumbnails[0])
    assert charts.frame_gallery_items(thumbnails, [0.0, 3.5, 7.0, 10.5])[2][1] == "t = 7.0 s"


def test_overlay_keeps_frame_shape_and_marks_the_hot_region():
    frame = np.full((90, 160, 3), 128, np.uint8)
    heat = np.zeros((9, 9))
    heat[0, 0] = 1.0
    out = charts.overlay_image(frame, heat)
    assert out.shape == frame.shape and out.dtype == np.uint8
    hot, cold = out[2, 2].astype(int), out[-3, -3].astype(int)
    assert hot.sum() > cold.sum() + 100  # the attended corner is much brighter than the ignored one
    assert np.array_equal(charts.overlay_image(frame, heat, alpha=0.0), frame)


def test_overlay_shows_nans_as_no_attention_and_clips_out_of_range_values():
    """A NaN cell looks like an unattended one (not a glitch colour); values past 0..1 look like 0 and 1."""
    frame = np.full((20, 30, 3), 90, np.uint8)
    out = charts.overlay_image(frame, np.array([[np.nan, 2.0], [-1.0, 0.5]]))
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert np.array_equal(out, charts.overlay_image(frame, np.array([[0.0, 1.0], [0.0, 0.5]])))
    nan_corner, hot_corner = out[0, 0].astype(int), out[0, -1].astype(int)
    assert hot_corner.sum() > nan_corner.sum() + 100, "the attended corner stands out, the NaN corner does not"


# ----------------------------------------------------------------------------------------------------------------
# Empty and degenerate inputs


def test_views_without_data_show_a_message_instead_of_an_empty_axis():
    assert is_empty_state(charts.attention_heatmap(None, [], "q"), charts.ATTENTION_EMPTY_MESSAGE)
    assert is_empty_state(charts.attention_timeline(None, []), charts.ATTENTION_EMPTY_MESSAGE)
    assert is_empty_state(charts.budget_figure(TokenStats()), charts.BUDGET_EMPTY_MESSAGE)
    assert is_empty_state(charts.budget_figure(None), charts.BUDGET_EMPTY_MESSAGE)
    assert is_empty_state(charts.slow_fast_figure(TokenStats()), charts.BUDGET_EMPTY_MESSAGE)
    assert charts.frame_gallery_items(None, None) == []
    assert "|" not in charts.compression_summary_markdown(None)


def test_thin_and_broken_data_still_draw():
    single_clip = TokenStats([ClipBudget(0, 0.0, 2.0, [0], 0.5, 64, 64, 64)], 64, 0, 64, [], [64], 640)
    one_frame = Attention(frame_weights=np.array([1.0]), tokens=["yes"], token_frame_weights=np.array([[1.0]]))
    with_nans = Attention(
        frame_weights=np.array([np.nan, 0.5, 0.5]),
        tokens=["a", "b"],
        token_frame_weights=np.array([[np.nan, 1.0, 0.0], [0.5, 0.5, np.inf]]),
    )
    figures = [
        charts.budget_figure(single_clip),
        charts.attention_heatmap(one_frame, [0.0], "q"),
        charts.attention_timeline(one_frame, [0.0], single_clip),
        charts.attention_heatmap(with_nans, None, ""),
        charts.attention_timeline(with_nans, [0.0, np.nan, 2.0]),
        charts.attention_heatmap(Attention(frame_weights=np.array([0.2, 0.8])), [0.0, 1.0]),
    ]
    for fig in figures:
        assert fig.data, "a figure with data to show drew nothing"
        fig.to_json()  # what gr.Plot sends to the browser; NaN/inf must not break it
    assert np.isfinite(np.asarray(figures[3].data[0].z, dtype=float)).all()
    assert charts.clip_strip_image(None, single_clip).dtype == np.uint8
    assert charts.clip_strip_image(np.zeros((1, 8, 8, 3), np.uint8), TokenStats()).ndim == 3


def test_langdc_clips_show_their_description_and_why_they_got_their_tokens():
    stats, _ = make_stats(num_clips=3, global_budget=192)
    thumbnails = np.full((32, 36, 64, 3), 200, np.uint8)
    plain_strip = charts.clip_strip_image(thumbnails, stats)
    for clip, (words, tokens) in zip(
        stats.clips, [("A rocket lifts off at dusk", 23), ("Nothing new.", 3), (HOSTILE, 9)]
    ):
        clip.caption, clip.caption_tokens = words, tokens
    stats.clips[0].budget = 96
    fig = charts.budget_figure(stats)
    ticks = list(fig.layout.xaxis.ticktext)
    assert "23 caption tokens →<br>96 visual tokens" in ticks[0].replace("</sup><br><sup>", "<br>")
    assert "A rocket lifts off" in ticks[0]
    assert "<script>" not in "".join(ticks), "descriptions are shown as text"
    summary = charts.compression_summary_markdown(stats)
    assert "23 caption tokens → 96 visual tokens" in summary and "Nothing new." in summary
    strip = charts.clip_strip_image(thumbnails, stats)
    assert strip.shape[0] > plain_strip.shape[0], "the strip makes room for each clip's description"
