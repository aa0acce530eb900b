"""The shared planner, realizer and compressor registry on synthetic token grids: exact budgets in every edge case,
realized counts equal to the plan, temporal order, and more tokens where the video changes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.compression import (
    COMPRESSORS,
    CompressedTokens,
    allocate,
    compress,
    plan_clips,
    plan_uniform,
    realize,
    split_by_weights,
)

H = W = 3
C = 16


def scene(seed: int) -> torch.Tensor:
    return torch.randn(H, W, C, generator=torch.Generator().manual_seed(seed))


def video(scenes: list[int], noise: float = 0.02, seed: int = 0) -> torch.Tensor:
    """(T, H, W, C) grids, one frame per entry of `scenes`; equal entries are the same shot with a little noise."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([scene(s) + noise * torch.randn(H, W, C, generator=generator) for s in scenes])


CUT_RICH_THEN_STATIC = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8] + [9] * 16
STATIC = [0] * 12


def timestamps(num_frames: int) -> list[float]:
    return [0.5 * t + 0.25 for t in range(num_frames)]


def halves(plan, tokens: CompressedTokens) -> tuple[int, int]:
    half = plan.num_frames // 2
    return sum(tokens.per_frame_counts[:half]), sum(tokens.per_frame_counts[half:])


# ---------------------------------------------------------------------------------------------------------------
# Integer splits


@pytest.mark.parametrize("total,weights", [(192, [0.7, 0.2, 0.1]), (7, [1, 1, 1]), (0, [1, 2]), (100, [0, 0])])
def test_split_by_weights_sums_exactly_and_earlier_entries_win_ties(total, weights):
    shares = split_by_weights(total, weights)
    assert sum(shares) == total and all(s >= 0 for s in shares)
    assert split_by_weights(10, [1, 1, 1]) == [4, 3, 3]


def test_caps_hand_their_excess_to_open_clips():
    assert allocate(100, [10, 1, 1], [1, 1, 1], [5, None, None]) == [5, 48, 47]
    assert allocate(100, [1, 1], [0, 0], [10, 20]) == [10, 20]  # everything capped: the effective budget is 30


# ---------------------------------------------------------------------------------------------------------------
# Exact sums in every edge case, for every compressor


EDGE_CASES = {
    "one frame": ([0], 5),
    "one frame, budget above its tokens": ([0], 50),
    "static video": (STATIC, 30),
    "budget below the frame count": (CUT_RICH_THEN_STATIC, 5),
    "budget of one token": (CUT_RICH_THEN_STATIC, 1),
    "budget above the uncompressed count": (CUT_RICH_THEN_STATIC, 10_000),
    "cut-rich then static": (CUT_RICH_THEN_STATIC, 100),
    "every frame a cut": (list(range(10)), 40),
}


@pytest.mark.parametrize("case", EDGE_CASES)
@pytest.mark.parametrize("name", ["uniform", "dynamic"])
def test_budgets_sum_exactly_and_the_realized_tokens_equal_the_plan(name, case):
    scenes, budget = EDGE_CASES[case]
    grids = video(scenes)
    official = 9 * len(scenes)
    tokens, plan = compress(name, grids, timestamps(len(scenes)), 100 * budget / official, official)
    uncompressed = len(scenes) * H * W
    assert plan.global_budget == budget
    assert plan.effective_budget == min(budget, uncompressed)
    assert sum(clip.budget for clip in plan.clips) == plan.effective_budget
    assert sum(clip.baseline_budget for clip in plan.clips) == plan.effective_budget
    assert tokens.num_tokens == plan.effective_budget == sum(tokens.per_frame_counts)
    assert tokens.per_clip_counts == [clip.budget for clip in plan.clips]
    assert all(clip.used_tokens == clip.budget for clip in plan.clips)
    assert len(tokens.per_frame_counts) == len(scenes)
    assert all(0 <= n <= H * W for n in tokens.per_frame_counts)
    # clips tile the frames in order, and the tokens come in temporal then raster order
    assert [c.start for c in plan.clips] == [0] + [c.end for c in plan.clips[:-1]]
    assert plan.clips[-1].end == len(scenes)
    order = tokens.positions[:, 0] * H * W + tokens.positions[:, 1] * W + tokens.positions[:, 2]
    assert torch.all(order[1:] > order[:-1])
    assert torch.equal(tokens.frame_of_token, tokens.positions[:, 0])
    assert tokens.tokens.shape == (plan.effective_budget, C)


def test_one_token_per_frame_when_the_budget_allows_it():
    tokens, plan = compress("dynamic", video(CUT_RICH_THEN_STATIC), None, 100 * 64 / 288, 288)
    assert plan.effective_budget == 64 and min(tokens.per_frame_counts) >= 1


def test_the_full_budget_returns_the_grids_unchanged():
    grids = video(CUT_RICH_THEN_STATIC)
    tokens, _ = compress("dynamic", grids, None, 100.0, grids.shape[0] * H * W)
    assert torch.equal(tokens.tokens, grids.reshape(-1, C))


def test_merged_tokens_stay_in_the_span_of_their_frame():
    """A kept token is 0.6 * a real token + 0.4 * a mean of real tokens: close to the grid, never noise."""
    grids = video(STATIC, noise=0.0)
    tokens, _ = compress("uniform", grids, None, 50.0, 12 * 9)
    nearest = torch.cdist(tokens.tokens, grids.reshape(-1, C)).min(dim=1).values
    assert nearest.max() < grids.reshape(-1, C).norm(dim=1).mean()


# ---------------------------------------------------------------------------------------------------------------
# Content decides the budget under `dynamic`, never under `uniform`


def test_dynamic_gives_the_cut_rich_half_more_than_1_3x_the_static_half_and_uniform_does_not():
    grids = video(CUT_RICH_THEN_STATIC)
    official = 32 * 2  # e.g. a model that would feed 2 tokens per frame
    for pct in (25, 50, 100, 200):
        tokens, plan = compress("dynamic", grids, timestamps(32), pct, official)
        cut_rich, static = halves(plan, tokens)
        assert cut_rich > 1.3 * static, (pct, cut_rich, static)
        tokens, plan = compress("uniform", grids, timestamps(32), pct, official)
        cut_rich, static = halves(plan, tokens)
        assert cut_rich <= 1.3 * static, (pct, cut_rich, static)


def test_clips_start_at_the_cuts_and_a_static_video_is_one_clip():
    plan = plan_clips(video([0] * 6 + [1] * 6 + [2] * 6), None, 60)
    assert [c.start for c in plan.clips] == [0, 6, 12]
    assert len(plan_clips(video(STATIC), None, 60).clips) == 1


def test_uniform_clips_are_equal_and_ignore_the_content():
    a = plan_uniform(video(CUT_RICH_THEN_STATIC), None, 64)
    b = plan_uniform(video(STATIC * 2 + STATIC[:8]), None, 64)
    assert [(c.start, c.end, c.budget) for c in a.clips] == [(c.start, c.end, c.budget) for c in b.clips]
    assert {c.num_frames for c in a.clips} == {4} and {c.budget for c in a.clips} == {8}


def test_the_plan_dict_is_json_and_carries_what_an_annotation_needs():
    tokens, plan = compress("dynamic", video(CUT_RICH_THEN_STATIC), timestamps(32), 50.0, 96)
    record = json.loads(json.dumps(plan.as_dict()))
    assert record["compressor"] == "dynamic" and record["budget_pct"] == 50.0
    assert record["global_budget"] == 48 and record["used_tokens"] == tokens.num_tokens == 48
    assert sum(c["budget"] for c in record["clips"]) == 48
    clips = plan.to_clip_budgets(timestamps(32), duration_s=16.0)
    assert clips[0].start_s == 0.0 and clips[-1].end_s == 16.0
    assert all(a.end_s == b.start_s for a, b in zip(clips, clips[1:]))


def test_official_delegates_to_the_models_rule_and_ignores_the_budget():
    grids = video(CUT_RICH_THEN_STATIC)

    def first_frame_only(g: torch.Tensor) -> CompressedTokens:
        counts = [9] + [0] * (g.shape[0] - 1)
        positions = torch.tensor([[0, i // 3, i % 3] for i in range(9)])
        return CompressedTokens(g[0].reshape(9, C), torch.zeros(9, dtype=torch.long), positions, counts, [])

    tokens, plan = compress("official", grids, None, 10.0, 9, official=first_frame_only)
    assert tokens.num_tokens == 9 and plan.budget_pct == 100.0 and plan.effective_budget == 9
    assert sum(c.budget for c in plan.clips) == 9 and tokens.per_clip_counts == [c.budget for c in plan.clips]
    with pytest.raises(ValueError, match="own rule"):
        compress("official", grids, None, 100.0, 9)


def test_unknown_compressors_and_bad_budgets_are_refused_with_a_reason():
    assert set(COMPRESSORS) >= {"official", "uniform", "dynamic"}
    assert all(spec.description for spec in COMPRESSORS.values())
    with pytest.raises(ValueError, match="known compressors"):
        compress("zip", video(STATIC), None, 50.0, 10)
    with pytest.raises(ValueError, match="positive"):
        compress("dynamic", video(STATIC), None, 0.0, 10)


def test_realize_refuses_a_plan_for_another_video():
    plan = plan_clips(video(STATIC), None, 10)
    with pytest.raises(ValueError, match="12 frames"):
        realize(video([0, 1]), plan)


def test_planning_works_on_numpy_per_frame_features():
    features = np.concatenate([np.tile(np.eye(8)[0], (8, 1)), np.eye(8)])  # 8 static frames, then 8 cuts
    plan = plan_clips(features, None, 100, min_tokens_per_clip=4, min_tokens_per_frame=0)
    assert sum(plan.budgets) == 100
    static = sum(c.budget for c in plan.clips if c.end <= 8)
    assert sum(plan.budgets) - static > 1.3 * static
