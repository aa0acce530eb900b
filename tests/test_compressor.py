"""The LangDC-style compressor on synthetic evidence: clips, densities, budgets and writing within a budget."""

from __future__ import annotations

import numpy as np
import pytest

from models.lite.compressor import (
    CompressorSettings,
    FrameEvidence,
    allocate_budgets,
    compress,
    fixed_rate_budgets,
    segment_clips,
    split_by_weights,
)


def words(text: str) -> int:  # a stand-in tokenizer: one token per word
    return len(text.split())


def evidence_for(scenes: list[int], frames_per_scene: int = 4, seed: int = 0) -> FrameEvidence:
    """Frames grouped into scenes; each scene has its own embedding direction and confident class."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(10, 64))
    embeddings, probs = [], []
    for scene in scenes:
        for _ in range(frames_per_scene):
            vector = directions[scene] + 0.05 * rng.normal(size=64)
            embeddings.append(vector / np.linalg.norm(vector))
            p = np.full(1000, 0.2 / 999)
            p[281 + scene * 50] = 0.8
            probs.append(p)
    count = len(embeddings)
    return FrameEvidence(
        timestamps_s=np.arange(count) * 0.5 + 0.25,
        probs=np.array(probs),
        embeddings=np.array(embeddings),
        region_labels=np.array([[int(np.argmax(p))] * 9 for p in probs]),
        region_probs=np.full((count, 9), 0.9),
        duration_s=count * 0.5,
    )


@pytest.mark.parametrize("total,weights", [(192, [0.7, 0.2, 0.1]), (7, [1, 1, 1]), (0, [1, 2]), (100, [0, 0])])
def test_split_by_weights_sums_exactly(total, weights):
    shares = split_by_weights(total, weights)
    assert sum(shares) == total and all(s >= 0 for s in shares)


def test_budgets_follow_density_and_the_baseline_is_an_equal_split():
    budgets = allocate_budgets(np.array([0.9, 0.1, 0.5]), 120, min_tokens=10)
    assert sum(budgets) == 120 and budgets[0] > budgets[2] > budgets[1] >= 10
    assert fixed_rate_budgets(3, 100) == [34, 33, 33]


def test_clips_are_cut_at_scene_changes_and_bounded_in_length():
    evidence = evidence_for([0, 0, 1, 2], frames_per_scene=4)
    assert segment_clips(evidence.embeddings, CompressorSettings(max_clip_frames=100)) == [(0, 8), (8, 12), (12, 16)]
    assert segment_clips(evidence.embeddings, CompressorSettings(max_clip_frames=3))[:3] == [(0, 3), (3, 6), (6, 8)]


def test_new_scenes_get_more_tokens_than_repeats_and_every_clip_stays_within_budget():
    evidence = evidence_for([0, 1, 1, 2], frames_per_scene=4)
    clips, fast, slow = compress(evidence, 80, words, CompressorSettings(max_clip_frames=4, min_tokens_per_clip=4))
    assert [c.frame_positions[0] for c in clips] == [0, 4, 8, 12]
    assert clips[2].budget < min(clips[1].budget, clips[3].budget), "the repeated scene is the least dense"
    assert "same scene" in clips[2].text
    assert sum(c.budget for c in clips) == 80
    assert all(words(c.text) <= c.budget and c.used_tokens <= c.budget for c in clips)
    assert sum(fast) + sum(slow) == sum(c.used_tokens for c in clips)
    assert clips[0].start_s == 0.0 and clips[-1].end_s == evidence.duration_s


def test_a_tiny_budget_still_writes_within_it():
    evidence = evidence_for([0, 1, 2], frames_per_scene=2)
    clips, _, _ = compress(evidence, 9, words, CompressorSettings(max_clip_frames=2, min_tokens_per_clip=3))
    assert sum(c.budget for c in clips) == 9
    assert all(words(c.text) <= c.budget for c in clips)
