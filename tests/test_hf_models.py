"""HF video LLMs on tiny random checkpoints written by the tests: parity with stock transformers, preprocessing
against the PIL image processors, every compressor, and a simulated CPU Space that defaults to SmolVLM2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models.base import EncodeParams, Frames, GenerationParams, VideoInfo, collect
from models.hf import FAMILY_MODULES
from models.hf import preprocessing as P
from models.hf.testing import FAMILIES, write_tiny_checkpoint


def make_frames(num_frames: int = 8, fps: float = 2.0) -> Frames:
    rng = np.random.default_rng(0)
    pixels = (rng.random((num_frames, 60, 80, 3)) * 255).astype(np.uint8)
    pixels[:, :30] //= 3  # structure, so resizing is not averaging pure noise
    times = np.arange(num_frames) / fps
    return Frames(pixels, (times * 30).astype(int), times, VideoInfo("clip.mp4", num_frames / fps, 30.0, 120, 80, 60))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import importlib

    loaded = {}
    for family in FAMILIES:
        folder = write_tiny_checkpoint(family, tmp_path_factory.mktemp(family))
        module = importlib.import_module(FAMILY_MODULES[family])
        loaded[family] = module.load(f"tiny-{family}", str(folder))
    return loaded


@torch.no_grad()
def prompt_logits(adapter, question: str, context) -> torch.Tensor:
    """(L, V) logits of our whole prompt (our ids, positions and spliced embeddings) in one pass, no cache."""
    payload = context.payload
    ids = adapter.prompt_ids([], question, payload)
    position_ids, _ = adapter.positions(ids, payload)
    out = adapter._language_model()(
        inputs_embeds=adapter.embed(ids, payload), position_ids=position_ids.to(adapter.device), use_cache=False
    )
    return adapter.model.lm_head(out.last_hidden_state)[0].float()


def stock_inputs(adapter, context, ids):
    """What transformers' own video path feeds the model for these pixels and this prompt."""
    info = adapter._family_encode(make_frames())[1]
    inputs = {"input_ids": ids[None]}
    if adapter.family == "qwen2_5_vl":
        inputs.update(
            pixel_values_videos=info["pixel_values_videos"],
            video_grid_thw=info["video_grid_thw"],
            mm_token_type_ids=(ids == adapter.model.config.video_token_id).int()[None] * 2,
            second_per_grid_ts=torch.tensor([context.payload.second_per_grid]),
        )
        adapter.model.model.rope_deltas = None
    elif adapter.family == "llava_onevision":
        inputs.update(pixel_values_videos=info["pixel_values_videos"])
    else:
        inputs.update(pixel_values=info["pixel_values"], pixel_attention_mask=info["pixel_attention_mask"])
    return inputs


@pytest.mark.parametrize("family", FAMILIES)
def test_official_path_matches_stock_forward_and_greedy_ids(tiny, family):
    adapter = tiny[family]
    context = adapter.encode(make_frames(), EncodeParams(num_frames=8), "sha")
    question = "What happens in the video?"
    ids = adapter.prompt_ids([], question, context.payload)
    with torch.no_grad():
        stock = adapter.model(**stock_inputs(adapter, context, ids)).logits[0].float()
    ours = prompt_logits(adapter, question, context)
    assert (ours - stock).abs().max().item() <= 1e-5

    answer = collect(adapter.stream(context, [], question, GenerationParams(max_new_tokens=8), want_attention=False))
    with torch.no_grad():
        generated = adapter.model.generate(**stock_inputs(adapter, context, ids), max_new_tokens=8, do_sample=False)
    stock_ids = [int(t) for t in generated[0, ids.shape[0] :] if int(t) not in adapter.stop_token_ids]
    assert adapter.last_answer_ids == stock_ids[: len(adapter.last_answer_ids)]
    assert answer.new_tokens == len(adapter.last_answer_ids) > 0


def test_qwen_parity_needs_3d_positions_and_real_fps(tiny):
    adapter = tiny["qwen2_5_vl"]
    context = adapter.encode(make_frames(), EncodeParams(num_frames=8), "sha")
    question = "When does it change?"
    ids = adapter.prompt_ids([], question, context.payload)
    with torch.no_grad():
        stock = adapter.model(**stock_inputs(adapter, context, ids)).logits[0].float()
    payload = context.payload
    true_interval = payload.second_per_grid
    try:
        payload.second_per_grid = 2 / 24  # what transformers assumes for frames without metadata
        wrong_fps = prompt_logits(adapter, question, context)
    finally:
        payload.second_per_grid = true_interval
    assert (wrong_fps - stock).abs().max().item() > 1e-4

    flat = torch.arange(ids.shape[0]).expand(3, 1, -1)
    with torch.no_grad():
        out = adapter._language_model()(inputs_embeds=adapter.embed(ids, payload), position_ids=flat)
        one_d = adapter.model.lm_head(out.last_hidden_state)[0].float()
    assert (one_d - stock).abs().max().item() > 1e-4


def test_preprocessing_matches_pil_image_processors_frame_by_frame():
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    frames = make_frames(3).pixels
    one_grey_level = 1.01 / 255

    qwen = dict(P.DEFAULT_VIDEO_SETTINGS["qwen2_5_vl"], size={"shortest_edge": 56 * 56, "longest_edge": 84 * 112})
    reference = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=84 * 112)
    for frame in frames:
        expected = reference(images=Image.fromarray(frame), return_tensors="pt")["pixel_values"]
        resized = P.qwen_resized_frames(np.stack([frame, frame]), qwen)  # an image is a 2-frame still video
        ours, grid = P.qwen_patchify(P.normalize(resized, qwen["image_mean"], qwen["image_std"]), qwen)
        assert ours.shape == expected.shape and grid.tolist() == [[1, 4, 6]]
        assert (ours - expected).abs().max().item() <= one_grey_level / min(P.CLIP_STD)

    onevision = {
        "size": {"height": 56, "width": 56},
        "image_mean": [0.5] * 3,
        "image_std": [0.5] * 3,
        "resample": "bicubic",
    }
    reference = LlavaOnevisionImageProcessorPil(
        size={"height": 56, "width": 56}, image_grid_pinpoints=[[56, 56]], image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    ours = P.onevision_preprocess(frames, onevision)[0]
    for position, frame in enumerate(frames):
        base_image = reference(images=Image.fromarray(frame), return_tensors="pt")["pixel_values"][0, 0]
        assert (ours[position] - base_image).abs().max().item() <= one_grey_level / 0.5

    smol = dict(P.DEFAULT_VIDEO_SETTINGS["smolvlm"], size={"longest_edge": 64}, max_image_size={"longest_edge": 64})
    reference = SmolVLMImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": 64}, max_image_size={"longest_edge": 64}
    )
    ours = P.smolvlm_preprocess(frames, smol)[0][0]
    for position, frame in enumerate(frames):
        expected = reference(images=[[Image.fromarray(frame)]], return_tensors="pt")["pixel_values"][0, 0]
        assert (ours[position] - expected).abs().max().item() <= one_grey_level / 0.5


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("compressor", ["official", "uniform", "dynamic", "sf-llava"])
def test_every_compressor_answers_with_budgets_that_add_up(tiny, family, compressor):
    adapter = tiny[family]
    frames = make_frames()
    context = adapter.encode(frames, EncodeParams(num_frames=8, compressor=compressor, budget_pct=50), "sha")
    stats = context.stats
    assert sum(c.budget for c in stats.clips) == stats.global_budget
    assert all(c.used_tokens <= c.budget for c in stats.clips)
    assert sum(c.used_tokens for c in stats.clips) == stats.global_budget
    assert len(stats.per_frame_fast) == len(stats.per_frame_slow) == len(frames)
    assert sum(stats.per_frame_fast) + sum(stats.per_frame_slow) == stats.global_budget
    if compressor == "official":
        assert stats.global_budget == stats.official_tokens - (family == "llava_onevision")
    else:
        assert stats.global_budget == round(stats.official_tokens * 0.5) or family == "llava_onevision"
        assert "training-free" in stats.note
    if compressor == "sf-llava":
        assert sum(stats.per_frame_slow) > 0 and sum(stats.per_frame_fast) > 0
    chunks = list(adapter.stream(context, [], "What happens?", GenerationParams(max_new_tokens=5)))
    answer = chunks[-1]
    assert all(isinstance(c, str) for c in chunks[:-1]) and answer.new_tokens > 0
    assert answer.attention.frame_weights.shape == (len(frames),)
    assert abs(answer.attention.frame_weights.sum() - 1) < 1e-6


def test_follow_up_turn_reuses_the_conversation_cache(tiny):
    adapter = tiny["smolvlm"]
    context = adapter.encode(make_frames(), EncodeParams(num_frames=8), "sha")
    first = collect(adapter.stream(context, [], "What happens?", GenerationParams(max_new_tokens=4)))
    history = [{"role": "user", "content": "What happens?"}, {"role": "assistant", "content": first.text}]
    second = collect(adapter.stream(context, history, "And then?", GenerationParams(max_new_tokens=4)))
    assert adapter.cache_stats["reused_tokens"] >= first.prompt_tokens - 1
    assert adapter.cache_stats["fed_tokens"] < second.prompt_tokens / 2


def test_registry_lists_real_checkpoints_with_needs_and_offline_default(monkeypatch):
    from models import registry

    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in (
        "Qwen/Qwen2.5-VL-3B-Instruct",
        "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
        "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
    ):
        spec = registry.get_spec(name)
        assert "hub" in spec.needs and "sf-llava" in spec.compressors
    assert "cpu" in registry.get_spec("HuggingFaceTB/SmolVLM2-256M-Video-Instruct").needs
    assert "gpu" in registry.get_spec("Qwen/Qwen2.5-VL-7B-Instruct").needs
    ok, reason = registry.availability("Qwen/Qwen2.5-VL-7B-Instruct")
    assert not ok and "hub access" in reason
    assert registry.default_model_name() == "slowfast-lite"


def test_local_folder_of_each_family_registers_and_unknown_type_is_explained(tmp_path):
    import json

    from models import registry

    folder = write_tiny_checkpoint("llava_onevision", tmp_path / "my-ov")
    name = registry.register_local_model(folder)
    assert "sf-llava" in registry.get_spec(name).compressors
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "gemma3"}))
    with pytest.raises(registry.LocalModelError, match="smolvlm"):
        registry.register_local_model(other)


def test_cpu_space_with_hub_access_defaults_to_smolvlm2_and_answers(tmp_path, monkeypatch):
    from models import registry

    repo = registry.SMOLVLM2_CPU
    cache = tmp_path / "hub"
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / "0123456789abcdef"
    write_tiny_checkpoint("smolvlm", snapshot)
    (cache / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (cache / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("0123456789abcdef")
    monkeypatch.setenv("SPACE_ID", "someone/video-llm-studio")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(registry, "_has_gpu", lambda: False)
    monkeypatch.setattr(registry, "_loaded", {})

    name = registry.default_model_name()
    assert name == repo
    model = registry.load_model(name)
    context = model.encode(make_frames(), EncodeParams(num_frames=8), "sha")
    answer = collect(model.stream(context, [], "What is shown?", GenerationParams(max_new_tokens=4)))
    assert answer.new_tokens > 0 and context.stats.official_tokens == 8 * 4


@pytest.mark.parametrize("family", FAMILIES)
def test_answers_get_spatial_overlays_from_the_same_attention(tiny, family):
    adapter = tiny[family]
    context = adapter.encode(make_frames(), EncodeParams(num_frames=8, compressor="dynamic", budget_pct=50), "sha")
    answer = collect(adapter.stream(context, [], "What is shown?", GenerationParams(max_new_tokens=4)))
    spatial = answer.attention.spatial
    assert set(spatial) == set(range(context.num_frames)), "one map per sampled frame"
    height, width = context.payload.grid_hw
    for heat in spatial.values():
        assert heat.shape == (height, width) and 0.0 <= heat.min() and heat.max() <= 1.0 + 1e-6
    assert answer.attention.rows == "answer"


@pytest.mark.parametrize("family", FAMILIES)
def test_official_and_dynamic_at_full_budget_have_one_fingerprint(tiny, family):
    adapter = tiny[family]
    contexts = [
        adapter.encode(make_frames(), EncodeParams(num_frames=8, compressor=name, budget_pct=pct), "sha")
        for name, pct in (("official", 100), ("dynamic", 100), ("dynamic", 50))
    ]
    official, dynamic, half = (context.fingerprint for context in contexts)
    assert official == dynamic, "every grid token, in the same order: the same input"
    assert half != official
