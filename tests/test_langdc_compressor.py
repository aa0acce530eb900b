"""The `langdc` compressor: a language expert describes each clip and budgets follow description length through the
planner's one exact allocation, on every token model; the experts (`lite`, `smolvlm2`, `self`) and their cost."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from models.base import EncodeParams, ModelUnavailableError
from models.compression import compress, plan_langdc, realize

ROOT = Path(__file__).resolve().parents[1]
MONTAGE = ROOT / "assets" / "montage.mp4"
C = 16


def three_shots(frames_per_shot: int = 4, side: int = 6) -> torch.Tensor:
    """(3 * frames_per_shot, side, side, C): three different shots, each still."""
    generator = torch.Generator().manual_seed(0)
    shots = torch.randn(3, side, side, C, generator=generator)
    frames = [shots[k] + 0.01 * torch.randn(side, side, C, generator=generator) for k in range(3) for _ in range(4)]
    return torch.stack(frames[: 3 * frames_per_shot])


def fixed_captions(lengths: list[int]):
    def describe(ranges):
        assert len(ranges) == len(lengths), ranges
        return [(f"clip {i} " + "word " * n, n) for i, n in enumerate(lengths)]

    return describe


def test_a_clip_described_twice_as_long_gets_about_twice_the_budget():
    grids = three_shots()  # 12 frames of 36 tokens: 432 tokens
    plan = plan_langdc(grids, None, 108, fixed_captions([10, 20, 10]), tokens_per_frame=36)
    assert [(c.start, c.end) for c in plan.clips] == [(0, 4), (4, 8), (8, 12)]
    budgets = plan.budgets
    assert sum(budgets) == 108 == plan.effective_budget
    floor = min(budgets) - (budgets[1] - min(budgets))  # the per-frame floors every clip gets first
    assert budgets[1] - floor == 2 * (budgets[0] - floor), budgets  # the rest exactly in proportion
    assert 1.7 <= budgets[1] / budgets[0] <= 2.3
    assert [c.caption_tokens for c in plan.clips] == [10, 20, 10]
    assert plan.clips[1].caption.startswith("clip 1") and plan.compressor == "langdc"
    assert [c.density for c in plan.clips] == [0.5, 1.0, 0.5]


def test_langdc_merges_each_clip_to_its_budget_and_says_so_without_an_expert():
    grids = three_shots()
    tokens, plan = compress("langdc", grids, None, 25.0, 432, describe=fixed_captions([5, 30, 5]))
    assert tokens.num_tokens == sum(plan.budgets) == 108
    assert tokens.per_clip_counts == plan.budgets and plan.clips[1].budget > 3 * plan.clips[0].budget
    assert json.loads(json.dumps(plan.as_dict()))["clips"][1]["caption_tokens"] == 30
    again = realize(grids, plan)
    assert torch.equal(again.tokens, tokens.tokens)
    with pytest.raises(ValueError, match="language expert"):
        compress("langdc", grids, None, 25.0, 432)


# ---------------------------------------------------------------------------------------------------------------
# On the montage: clips right after a cut get more per frame than still spans


def cut_still_ratio(context) -> float:
    """Budget per frame in the first second after a cut / in the still span (a clip's budget spread evenly)."""
    clip = next(
        c for c in json.loads((ROOT / "assets/examples.json").read_text())["clips"] if c["file"] == "montage.mp4"
    )
    rates: dict[str, list[float]] = {"cut": [], "still": []}
    for budget in context.stats.clips:
        for position in budget.frame_positions:
            t = context.timestamps_s[position]
            if any(0.0 <= t - cut < 1.0 for cut in clip["cut_times_s"]):
                rates["cut"].append(budget.budget / len(budget.frame_positions))
            elif any(a <= t <= b for a, b in clip["still_spans_s"]):
                rates["still"].append(budget.budget / len(budget.frame_positions))
    return float(np.mean(rates["cut"]) / np.mean(rates["still"]))


def check_langdc_context(context) -> None:
    stats = context.stats
    assert stats.compressor == "langdc"
    assert all(c.caption and c.caption_tokens and c.caption_tokens > 0 for c in stats.clips)
    assert sum(c.budget for c in stats.clips) == stats.global_budget
    assert stats.timings_s["language_expert"] > 0
    ratio = cut_still_ratio(context)
    assert ratio > 1.3, (ratio, [(c.start_s, c.budget, c.caption_tokens, c.caption) for c in stats.clips])


def test_the_embedded_default_with_the_lite_expert_spends_more_after_cuts_and_caches_the_expert():
    from models.pipeline import ENCODE_CACHE, encode_video
    from models.registry import load_model

    model = load_model("slowfast-lite")
    params = EncodeParams(num_frames=32, fps=2.0, compressor="langdc", budget_pct=100)
    context = encode_video(model, str(MONTAGE), params)
    check_langdc_context(context)
    assert any(c.caption_tokens <= 4 for c in context.stats.clips), "a clip with nothing new says so in few words"
    hits = ENCODE_CACHE.hits
    assert encode_video(model, str(MONTAGE), params) is context and ENCODE_CACHE.hits == hits + 1


def montage_frames(num_frames: int = 32):
    from models.video import sample_frames

    return sample_frames(MONTAGE, num_frames=num_frames, max_side=640)


def test_the_tiny_slow_fast_with_the_lite_expert_spends_more_after_cuts(tmp_path):
    from models.slowfast.loader import load
    from models.slowfast.testing import random_model, tiny_config, write_checkpoint

    folder = write_checkpoint(random_model(tiny_config(mm_training_video_frames=32)), tmp_path / "tiny-slowfast")
    model = load("slowfast-tiny-langdc", repo_id=str(folder), device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = model.encode(montage_frames(), EncodeParams(num_frames=32, compressor="langdc", budget_pct=25), "m")
    check_langdc_context(context)
    assert context.payload.fast_tokens.shape[0] == context.stats.global_budget


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    import importlib

    from models.hf import FAMILY_MODULES
    from models.hf.testing import FAMILIES, write_tiny_checkpoint

    loaded = {}
    for family in FAMILIES:
        folder = write_tiny_checkpoint(family, tmp_path_factory.mktemp(family))
        loaded[family] = (importlib.import_module(FAMILY_MODULES[family]).load(f"tiny-{family}", str(folder)), folder)
    return loaded


@pytest.mark.parametrize("family", ["smolvlm", "llava_onevision", "qwen2_5_vl"])
def test_tiny_hf_models_with_the_lite_expert_spend_more_after_cuts(tiny_hf, family):
    model, _ = tiny_hf[family]
    context = model.encode(montage_frames(), EncodeParams(num_frames=32, compressor="langdc", budget_pct=25), "m")
    check_langdc_context(context)


# ---------------------------------------------------------------------------------------------------------------
# The other experts


def short_frames():
    from tests.test_hf_models import make_frames

    return make_frames(num_frames=8)


def test_the_smolvlm2_expert_says_clearly_that_it_is_not_here(monkeypatch):
    from models.experts import smolvlm2

    monkeypatch.delenv(smolvlm2.FOLDER_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="SmolVLM2-256M-Video-Instruct.*not available here"):
        smolvlm2.source()


def test_the_smolvlm2_expert_captions_clips_from_a_local_folder(tiny_hf, monkeypatch):
    from models.experts import EXPERTS, load_expert

    model, folder = tiny_hf["smolvlm"]
    monkeypatch.setenv("STUDIO_SMOLVLM2_EXPERT", str(folder))
    expert = load_expert("smolvlm2")
    assert expert.name == "smolvlm2" and "SmolVLM2-256M" in EXPERTS["smolvlm2"].description
    params = EncodeParams(num_frames=8, compressor="langdc", budget_pct=50, expert="smolvlm2")
    context = tiny_hf["llava_onevision"][0].encode(short_frames(), params, "sha")
    assert all(c.caption_tokens and c.caption_tokens > 0 for c in context.stats.clips)
    assert sum(c.budget for c in context.stats.clips) == context.stats.global_budget


def test_the_self_expert_has_the_chosen_model_caption_its_own_clips(tiny_hf):
    model, _ = tiny_hf["qwen2_5_vl"]
    params = EncodeParams(num_frames=8, compressor="langdc", budget_pct=50, expert="self")
    context = model.encode(short_frames(), params, "sha")
    assert context.stats.clips and all(c.caption_tokens > 0 for c in context.stats.clips)
    assert context.stats.timings_s["language_expert"] > 0


def test_an_unknown_expert_is_refused_with_the_known_ones():
    from models.experts import load_expert

    with pytest.raises(ValueError, match="lite, smolvlm2, self"):
        load_expert("gpt")


def test_experts_never_import_gradio():
    assert "gradio" not in " ".join(
        (ROOT / "models" / "experts").joinpath(f).read_text()
        for f in os.listdir(ROOT / "models" / "experts")
        if f.endswith(".py")
    )
