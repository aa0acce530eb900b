"""The embedded default (`slowfast-lite`) with its real weights: recognition, budgets, answers, caching, attention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data as photos

from models.base import EncodeParams, GenerationParams, collect
from models.lite.labels import class_groups
from models.pipeline import ENCODE_CACHE, encode_video
from models.registry import load_model
from models.video import sample_frames

ASSETS = Path(__file__).resolve().parents[1] / "assets"
PARAMS = EncodeParams(num_frames=32, fps=2.0)  # official: the dynamic rule at 192 tokens
BUDGET = 192
GREEDY = GenerationParams(max_new_tokens=24)


@pytest.fixture(scope="module")
def model():
    return load_model("slowfast-lite")


def top5(model, clip: str) -> set[int]:
    frames = sample_frames(ASSETS / clip, num_frames=6, max_side=448)
    evidence, _ = model.expert.analyse(frames.pixels, frames.timestamps_s, frames.info.duration_s)
    return {int(i) for i in np.argsort(-evidence.probs.mean(axis=0))[:5]}


def test_efficientnet_recognises_the_cat_and_the_coffee(model):
    assert top5(model, "cat.mp4") & set(range(281, 286)), (
        "a domestic cat class (tabby, tiger, Persian, Siamese, Egyptian)"
    )
    assert top5(model, "coffee.mp4") & {967, 968, 504}, "espresso, cup or coffee mug"


def test_scenes_with_cuts_get_more_tokens_than_a_static_scene_of_the_same_length(model, make_video):
    # 9 s of one still photo, then 9 s cutting between three different photos every 3 s.
    cat = photos.chelsea()
    video = make_video(
        "half_static.mp4",
        fps=8,
        width=192,
        height=144,
        segments=[(cat, 9.0), (photos.coffee(), 3.0), (photos.rocket(), 3.0), (photos.astronaut(), 3.0)],
    )
    stats = encode_video(model, str(video), PARAMS).stats
    static = sum(c.budget for c in stats.clips if c.end_s <= 9.0 + 0.3)
    with_cuts = sum(c.budget for c in stats.clips if c.start_s >= 9.0 - 0.3)
    assert with_cuts > 1.3 * static, [(c.start_s, c.end_s, c.budget) for c in stats.clips]
    assert sum(c.budget for c in stats.clips) == BUDGET
    baseline = [c.baseline_budget for c in stats.clips]
    per_frame = [c.baseline_budget / len(c.frame_positions) for c in stats.clips]  # fixed rate: per frame
    assert sum(baseline) == BUDGET and max(per_frame) - min(per_frame) <= 1
    assert all(c.used_tokens <= c.budget for c in stats.clips)


def test_a_montage_spends_more_of_its_budget_than_a_static_clip(model):
    montage = encode_video(model, str(ASSETS / "montage.mp4"), PARAMS).stats
    static = encode_video(model, str(ASSETS / "static_cat.mp4"), PARAMS).stats
    assert montage.total_visual_tokens > 1.3 * static.total_visual_tokens
    assert montage.native_tokens > 5 * montage.total_visual_tokens  # the compression is real
    for stats in (montage, static):
        assert len(stats.per_frame_fast) == len(stats.per_frame_slow) == 32
        assert sum(stats.per_frame_fast) == stats.fast_tokens and sum(stats.per_frame_slow) == stats.slow_tokens
        assert stats.slow_tokens > 0


def test_the_cat_clip_answer_names_a_cat_and_a_follow_up_does_not_re_encode(model):
    context = encode_video(model, str(ASSETS / "cat.mp4"), PARAMS)
    chunks = list(model.stream(context, [], "What animal is in the video?", GREEDY))
    answer = chunks[-1]
    assert len(chunks) > 2, "the answer is streamed in pieces"
    assert "".join(c for c in chunks[:-1]).strip() == answer.text
    assert "cat" in answer.text.lower(), answer.text

    frames_seen, misses = model.expert.frames_processed, ENCODE_CACHE.misses
    again = encode_video(model, str(ASSETS / "cat.mp4"), PARAMS)
    history = [
        {"role": "user", "content": "What animal is in the video?"},
        {"role": "assistant", "content": answer.text},
    ]
    follow_up = collect(model.stream(again, history, "Is there a cut?", GREEDY))
    assert again is context and model.expert.frames_processed == frames_seen and ENCODE_CACHE.misses == misses
    assert follow_up.text
    # the follow-up's prompt starts with the first turn's prompt and answer: their KV cache is reused, not recomputed
    assert follow_up.timings_s["reused_prompt_tokens"] >= answer.prompt_tokens


@pytest.mark.parametrize(
    "question,expected", [("What animal is in the video?", "cat"), ("What drink is shown?", "espresso")]
)
def test_on_a_five_shot_montage_the_answer_comes_from_the_right_clip(model, question, expected):
    context = encode_video(model, str(ASSETS / "montage.mp4"), PARAMS)
    assert len(context.stats.clips) >= 5
    assert expected in collect(model.stream(context, [], question, GREEDY)).text.lower()


def test_attention_is_a_distribution_over_frames_that_follows_the_named_object(model):
    context = encode_video(model, str(ASSETS / "cat_then_coffee.mp4"), PARAMS)
    cat_frames = np.array(context.timestamps_s) < 5.0  # the cut to the coffee photo is at 5.0 s
    for question, word, part in (
        ("What animal is in the video?", "cat", cat_frames),
        ("What drink is shown?", "espresso", ~cat_frames),
    ):
        answer = collect(model.stream(context, [], question, GREEDY))
        attention = answer.attention
        assert attention.frame_weights.shape == (context.num_frames,)
        assert attention.frame_weights.sum() == pytest.approx(1.0, abs=1e-6)
        assert np.allclose(attention.token_frame_weights.sum(axis=1), 1.0, atol=1e-6)
        rows = [row for token, row in zip(attention.tokens, attention.token_frame_weights) if word in token.lower()]
        assert rows, f"the answer should name the {word}: {answer.text!r}"
        assert all(row[part].sum() > 0.6 for row in rows), (answer.text, [row.round(3) for row in rows])
        overlay = attention.spatial[int(np.argmax(part))]
        assert overlay.shape == (7, 7) and 0.0 <= overlay.min() and overlay.max() <= 1.0


def test_spatial_overlay_of_the_named_object_is_where_the_object_is(model):
    context = encode_video(model, str(ASSETS / "cat.mp4"), PARAMS)
    answer = collect(model.stream(context, [], "What animal is in the video?", GREEDY))
    cams = context.payload.cams[0]
    named = [k for k in cams if class_groups()[k] == "cat"]
    assert named and any(np.allclose(answer.attention.spatial[0], cams[k]) for k in named)


def test_a_text_only_turn_answers_without_a_video(model):
    answer = collect(model.stream(None, [], "What is the capital of France?", GREEDY))
    assert "paris" in answer.text.lower() and answer.attention is None
