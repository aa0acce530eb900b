"""The embedded default's compressor on synthetic evidence: shared-planner clips and exact budgets for every
compressor, and clip lines written within budget out of whole phrases."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.lite.compressor import (
    LITE_PLANNER,
    OFFICIAL_BUDGET,
    PHRASE_SEPARATOR,
    CompressorSettings,
    FrameEvidence,
    compress,
    fit_phrases,
    line_text,
)
from models.lite.labels import describe_class


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


def test_clips_are_cut_at_scene_changes_and_bounded_in_length():
    evidence = evidence_for([0, 0, 1, 2], frames_per_scene=4)
    plan, clips, _, _ = compress(
        evidence, words, CompressorSettings(planner=replace(LITE_PLANNER, max_clip_frames=100))
    )
    assert [(c.start, c.end) for c in plan.clips] == [(0, 8), (8, 12), (12, 16)]
    plan, _, _, _ = compress(evidence, words, CompressorSettings(planner=replace(LITE_PLANNER, max_clip_frames=3)))
    assert max(c.num_frames for c in plan.clips) <= 3 and {8, 12} <= {c.start for c in plan.clips}


def test_new_scenes_get_more_tokens_than_repeats_and_every_clip_stays_within_budget():
    evidence = evidence_for([0, 1, 1, 2], frames_per_scene=4)
    settings = CompressorSettings(planner=replace(LITE_PLANNER, max_clip_frames=4, min_tokens_per_clip=4))
    plan, clips, fast, slow = compress(evidence, words, settings, "dynamic", 100 * 80 / OFFICIAL_BUDGET)
    assert [c.frame_positions[0] for c in clips] == [0, 4, 8, 12]
    assert clips[2].budget < min(clips[1].budget, clips[3].budget), "the repeated scene is the least dense"
    assert "same scene" in clips[2].text
    assert sum(c.budget for c in clips) == 80 == plan.global_budget
    assert all(words(c.text) <= c.budget and c.used_tokens <= c.budget for c in clips)
    assert sum(fast) + sum(slow) == sum(c.used_tokens for c in clips)
    assert clips[0].start_s == 0.0 and clips[-1].end_s == evidence.duration_s


@pytest.mark.parametrize("pct", [5, 10, 25, 50, 100, 150])
@pytest.mark.parametrize("compressor", ["official", "uniform", "dynamic"])
def test_budgets_sum_exactly_and_lines_fit_at_every_budget(compressor, pct):
    evidence = evidence_for([0, 1, 2, 3, 3, 3], frames_per_scene=3)
    plan, clips, _, _ = compress(evidence, words, CompressorSettings(), compressor, pct)
    expected = OFFICIAL_BUDGET if compressor == "official" else round(OFFICIAL_BUDGET * pct / 100)
    assert sum(c.budget for c in clips) == expected == plan.global_budget
    assert all(words(c.text) <= c.budget for c in clips)
    if compressor == "uniform":
        lengths = {c.num_frames for c in plan.clips}
        assert max(lengths) - min(lengths) <= 1  # equal-length clips, the same rate per frame:
        for length in lengths:
            same = [c.budget for c in plan.clips if c.num_frames == length]
            assert max(same) - min(same) <= 1


def test_official_is_the_dynamic_rule_at_192_tokens():
    evidence = evidence_for([0, 1, 1, 2], frames_per_scene=4)
    official = compress(evidence, words, CompressorSettings(), "official", 30.0)[1]
    dynamic = compress(evidence, words, CompressorSettings(), "dynamic", 100.0)[1]
    assert [(c.budget, c.text) for c in official] == [(c.budget, c.text) for c in dynamic]


def test_a_tiny_budget_still_writes_within_it():
    evidence = evidence_for([0, 1, 2], frames_per_scene=2)
    settings = CompressorSettings(planner=replace(LITE_PLANNER, max_clip_frames=2, min_tokens_per_clip=3))
    _, clips, _, _ = compress(evidence, words, settings, "dynamic", 100 * 9 / OFFICIAL_BUDGET)
    assert sum(c.budget for c in clips) == 9
    assert all(words(c.text) <= c.budget for c in clips)


# ---------------------------------------------------------------------------------------------------------------
# Lines are made of whole phrases


def phrases_of(text: str) -> list[str]:
    """The phrases of a clip line, after its "[a-b s]" header."""
    body = text.split("] ", 1)[1] if text.startswith("[") and "] " in text else text
    return body.split(PHRASE_SEPARATOR) if body else []


def test_a_phrase_that_does_not_fit_is_shortened_to_a_whole_form_never_cut_in_half():
    """Once a line could end in "minibus (a truck or": the label was cut word by word to fit the budget."""
    minibus = 654  # "minibus", whose hint is "(a truck or bus)"
    assert describe_class(minibus) == "minibus (a truck or bus)"
    for budget in range(3, 12):
        chosen = fit_phrases(
            "[0.0-2.0 s]", [["minibus (a truck or bus), cab", "minibus (a truck or bus)", "minibus"]], budget, words
        )
        line = line_text("[0.0-2.0 s]", chosen)
        assert words(line) <= budget
        assert chosen in ([], ["minibus"], ["minibus (a truck or bus)"], ["minibus (a truck or bus), cab"]), line
        assert line.count("(") == line.count(")") and not line.endswith(" or")


def test_every_written_line_has_balanced_hints_and_separated_phrases():
    """Once two phrases ran together: "the camera moves car mirror" (motion words, then a label, one space)."""
    evidence = evidence_for([0, 1, 2, 3, 4], frames_per_scene=4, seed=3)
    evidence.embeddings[4:8] += np.linspace(0, 0.8, 4)[:, None] * np.eye(64)[5]  # a moving camera in clip 2
    evidence.embeddings /= np.linalg.norm(evidence.embeddings, axis=1, keepdims=True)
    for index in range(len(evidence.probs)):  # several confident labels, so a line has many phrases
        evidence.probs[index, [407, 817, 654, 511]] = [0.2, 0.15, 0.12, 0.1]
        evidence.probs[index] /= evidence.probs[index].sum()
    seen_motion = False
    for pct in (10, 25, 50, 100):
        _, clips, _, _ = compress(evidence, words, CompressorSettings(), "dynamic", pct)
        for clip in clips:
            assert clip.text.count("(") == clip.text.count(")"), clip.text
            for phrase in phrases_of(clip.text):
                assert phrase.strip() == phrase and phrase, clip.text
                if "the camera moves" in phrase:
                    seen_motion = True
                    assert phrase == "the camera moves", clip.text
    assert seen_motion
