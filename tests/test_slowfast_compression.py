"""The Slow-Fast model through the compressors, on a tiny random checkpoint: exact fast-token counts at every
budget, more tokens where the video changes, honest stats; and local checkpoint folders registered by path."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

from models import registry
from models.base import EncodeParams, Frames, GenerationParams, VideoInfo, collect
from models.slowfast.testing import random_model, tiny_config, write_checkpoint

GREEDY = GenerationParams(temperature=0.0, max_new_tokens=5)
NUM_FRAMES = 16


def scene_image(seed: int, size: int = 96) -> np.ndarray:
    """A smooth colour pattern: different seeds look different to any tower, random or not."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [np.sin(2 * np.pi * (rng.uniform(0.5, 3) * x + rng.uniform(0.5, 3) * y + rng.uniform())) for _ in "rgb"]
    return ((np.stack(channels, -1) * 0.5 + 0.5) * 255).astype(np.uint8)


def frames_of(images: list[np.ndarray]) -> Frames:
    pixels = np.stack(images)
    count = len(images)
    info = VideoInfo(path="synthetic.mp4", duration_s=count / 2, fps=2.0, num_frames=count, width=96, height=96)
    return Frames(pixels, np.arange(count), np.arange(count) / 2.0 + 0.25, info)


CUT_RICH_THEN_STATIC = frames_of([scene_image(1 + k // 2) for k in range(NUM_FRAMES // 2)] + [scene_image(99)] * 8)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    model = random_model(tiny_config(mm_training_video_frames=NUM_FRAMES), seed=0)
    return write_checkpoint(model, tmp_path_factory.mktemp("local") / "tiny-slowfast")


@pytest.fixture(scope="module")
def adapter(tiny_folder):
    from models.slowfast.loader import load

    return load("slowfast-tiny-compression", repo_id=str(tiny_folder), device="cpu")


def encode(adapter, compressor: str, budget_pct: float = 100.0, frames: Frames = CUT_RICH_THEN_STATIC):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params = EncodeParams(num_frames=len(frames), compressor=compressor, budget_pct=budget_pct)
        return adapter.encode(frames, params, f"sha-{compressor}-{budget_pct}")


def test_official_is_the_checkpoints_rule_whatever_the_budget(adapter):
    stats = encode(adapter, "official", 25.0).stats
    # 16 frames, t=4: 4 fast frames of 81 tokens
    assert stats.fast_tokens == stats.official_tokens == 4 * 81 == stats.global_budget
    assert stats.compressor == "official" and stats.budget_pct == 100.0
    assert sum(c.budget for c in stats.clips) == stats.global_budget == sum(stats.per_frame_fast)
    assert "trained with" in stats.note


@pytest.mark.parametrize("pct", [10, 25, 50, 100, 250, 400, 1000])
@pytest.mark.parametrize("compressor", ["uniform", "dynamic"])
def test_the_llm_reads_exactly_the_planned_fast_tokens(adapter, compressor, pct):
    context = encode(adapter, compressor, pct)
    stats, video = context.stats, context.payload
    uncompressed = NUM_FRAMES * 81
    expected = min(round(4 * 81 * pct / 100), uncompressed)
    assert stats.global_budget == expected == video.fast_tokens.shape[0] == stats.fast_tokens
    assert sum(c.budget for c in stats.clips) == expected
    assert [c.used_tokens for c in stats.clips] == [c.budget for c in stats.clips]
    assert len(stats.per_frame_fast) == len(stats.per_frame_slow) == NUM_FRAMES
    assert sum(stats.per_frame_fast) == expected and stats.slow_tokens == NUM_FRAMES * 81  # slow: untouched
    assert stats.official_tokens == 4 * 81 and stats.compressor == compressor and stats.budget_pct == pct
    assert "training-free" in stats.note
    if pct == 1000:
        assert "exceeds" in stats.note  # 3240 asked, 1296 held


def test_dynamic_at_half_budget_still_answers(adapter):
    context = encode(adapter, "dynamic", 50.0)
    assert context.payload.fast_tokens.shape[0] == 162
    answer = collect(adapter.stream(context, [], "What happens?", GREEDY))
    assert answer.new_tokens > 0 and answer.stats.fast_tokens == 162
    assert answer.attention is not None and answer.attention.frame_weights.shape == (NUM_FRAMES,)


def test_dynamic_gives_the_cut_rich_half_more_than_1_3x_the_static_half(adapter):
    for pct in (25, 50, 100):
        dynamic = encode(adapter, "dynamic", pct).stats.per_frame_fast
        uniform = encode(adapter, "uniform", pct).stats.per_frame_fast
        half = NUM_FRAMES // 2
        assert sum(dynamic[:half]) > 1.3 * sum(dynamic[half:]), (pct, dynamic)
        assert sum(uniform[:half]) <= 1.3 * sum(uniform[half:]), (pct, uniform)


def test_an_unsupported_compressor_is_refused_with_the_supported_ones(adapter):
    with pytest.raises(ValueError, match="official, uniform, dynamic"):
        encode(adapter, "zip")


# ---------------------------------------------------------------------------------------------------------------
# Local checkpoints


def test_a_local_folder_registers_runs_offline_and_answers_with_dynamic_at_half(tiny_folder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = registry.register_local_model(tiny_folder)
    try:
        assert name == "tiny-slowfast" and registry.register_local_model(tiny_folder) == name
        spec = registry.get_spec(name)
        assert spec.needs == {"cpu", "offline"} and spec.compressors == ("official", "uniform", "dynamic", "langdc")
        assert spec.defaults.num_frames == NUM_FRAMES
        assert registry.availability(name) == (True, "")
        model = registry.load_model(name)
        context = encode(model, "dynamic", 50.0)
        assert context.stats.fast_tokens == 162 == sum(c.budget for c in context.stats.clips)
        assert collect(model.stream(context, [], "What is shown?", GREEDY)).new_tokens > 0
    finally:
        registry.MODELS.pop(name, None)
        registry._loaded.pop(name, None)


def test_an_unknown_family_names_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt_video"}))
    with pytest.raises(registry.LocalModelError, match="llava_qwen_slow_fast"):
        registry.register_local_model(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(registry.LocalModelError, match="no config.json"):
        registry.register_local_model(tmp_path / "empty")
    with pytest.raises(registry.LocalModelError, match="no model folder"):
        registry.register_local_model(tmp_path / "missing")


def test_env_and_config_file_register_folders_by_name(tiny_folder, tmp_path):
    listed = tmp_path / "models.json"
    listed.write_text(json.dumps({"models": [{"name": "from-file", "path": str(tiny_folder)}]}))
    toml = tmp_path / "models.toml"
    toml.write_text(f'[[models]]\nname = "from-toml"\npath = "{tiny_folder}"\n')
    environ = {
        "STUDIO_LOCAL_MODELS": os.pathsep.join([f"from-env={tiny_folder}", ""]),
        "STUDIO_MODELS_FILE": str(listed),
    }
    try:
        assert registry.load_local_models_from_env(environ) == ["from-env", "from-file"]
        assert registry.load_local_models_from_env({"STUDIO_MODELS_FILE": str(toml)}) == ["from-toml"]
        assert registry.get_spec("from-file").kwargs["repo_id"] == str(tiny_folder.resolve())
        other = tmp_path / "other"
        other.mkdir()
        (other / "config.json").write_text((tiny_folder / "config.json").read_text())
        with pytest.raises(registry.LocalModelError, match="taken"):
            registry.register_local_model(other, name="from-env")
    finally:
        for name in ("from-env", "from-file", "from-toml"):
            registry.MODELS.pop(name, None)


def test_the_heatmap_rows_are_labelled_as_the_question_tokens_they_are(adapter):
    from app.charts import attention_heatmap

    context = encode(adapter, "official")
    answer = collect(adapter.stream(context, [], "What happens?", GREEDY))
    assert answer.attention.rows == "question"
    figure = attention_heatmap(answer.attention, context.timestamps_s, "What happens?")
    assert "question token" in figure.layout.yaxis.title.text
    assert "answer" not in figure.layout.yaxis.title.text and "answer" not in figure.layout.title.text
