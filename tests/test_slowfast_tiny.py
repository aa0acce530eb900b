"""The Slow-Fast model on tiny random checkpoints: fast-token branches, loading rules, text-only chat, the studio
adapter (streaming, attention, token stats, encode-once) and preprocessing against the official image processor."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from models.base import (
    EncodeParams,
    Frames,
    GenerationParams,
    ModelUnavailableError,
    VideoInfo,
    VideoLLM,
    collect,
)
from models.slowfast.checkpoint import CheckpointError
from models.slowfast.modeling import SlowFastForCausalLM
from models.slowfast.preprocessing import normalize, resize_short_side_and_crop
from models.slowfast.prompting import IMAGE_TOKEN_INDEX, render_chatml
from models.slowfast.testing import random_model, tiny_config, write_checkpoint
from models.slowfast.tokens import fast_tokens_per_frame, make_fast_tokens, pool_frame_maps

GREEDY = GenerationParams(temperature=0.0, max_new_tokens=6)


def frame_index_maps(num_frames: int, size: int = 3, channels: int = 2) -> torch.Tensor:
    """(T, C, size, size) maps whose every value is the frame's index: pooled values reveal which frames mixed."""
    return torch.arange(num_frames, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, channels, size, size).clone()


def fast_frame_values(tokens: torch.Tensor, tokens_per_frame: int) -> list[float]:
    return [round(v, 4) for v in tokens[::tokens_per_frame, 0].tolist()]


# ---------------------------------------------------------------------------------------------------------------
# Fast tokens: every branch of the official rule (spec §1.6)


def test_floor_pooling_averages_windows_of_t_and_drops_the_incomplete_tail():
    tokens, plan = make_fast_tokens(frame_index_maps(70), 1, 4, 1, min_fast_frames=16)  # 70 // 4 = 17 >= 16
    assert plan.branch == "floor" and plan.num_fast_frames == 17
    assert fast_frame_values(tokens, 9) == [4 * k + 1.5 for k in range(17)]
    assert 68 not in sum(plan.windows, []) and 69 not in sum(plan.windows, [])


def test_adaptive_pooling_below_min_fast_frames_uses_overlapping_bins():
    tokens, plan = make_fast_tokens(frame_index_maps(10), 1, 4, 1, min_fast_frames=4)  # 10 // 4 = 2 < 4
    assert plan.branch == "adaptive"
    # adaptive bins over 10 frames into 4: [0,3) [2,5) [5,8) [7,10)
    assert fast_frame_values(tokens, 9) == [1.0, 3.0, 6.0, 8.0]


def test_few_frames_are_never_pooled_below_their_own_count():
    tokens, plan = make_fast_tokens(frame_index_maps(8), 2, 4, 1, min_fast_frames=16)  # T < m: all kept
    assert plan.sampled_indices == list(range(8)) and plan.num_fast_frames == 8
    assert fast_frame_values(tokens, 9) == [float(i) for i in range(8)]


def test_sampling_stride_keeps_at_least_min_fast_frames_at_uneven_steps():
    _, plan = make_fast_tokens(frame_index_maps(20), 2, 4, 1, min_fast_frames=16)
    # n = max(20 // 2, 16) = 16 frames at step 20 / 16 = 1.25 (the official int(i * step), not a linspace)
    assert plan.sampled_indices == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18]
    _, plan = make_fast_tokens(frame_index_maps(128), 2, 4, 1, min_fast_frames=16)  # the frame128-s2t4 release
    assert plan.sampled_indices == list(range(0, 128, 2)) and plan.num_fast_tokens == 16 * 9


def test_temporal_stride_one_keeps_every_frame():
    tokens, plan = make_fast_tokens(frame_index_maps(5), 1, 1, 1, min_fast_frames=16)
    assert plan.branch == "none" and fast_frame_values(tokens, 9) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_spatial_stride_pools_each_fast_frame_in_space():
    maps = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4).repeat(4, 1, 1, 1)  # a 4x4 grid, 4 frames
    tokens, plan = make_fast_tokens(maps, 1, 4, 2, min_fast_frames=1)
    assert plan.tokens_per_fast_frame == 4
    assert tokens[:, 0].tolist() == [2.5, 4.5, 10.5, 12.5]  # 2x2 means, row-major


def test_release_settings_give_1296_fast_tokens_and_per_frame_shares_add_up():
    for num_frames, sampling, temporal in [(64, 1, 4), (96, 1, 6), (128, 2, 4)]:
        maps = torch.zeros(num_frames, 1, 9, 9)
        _, plan = make_fast_tokens(maps, sampling, temporal, 1, min_fast_frames=16)
        shares = fast_tokens_per_frame(plan, num_frames)
        assert plan.num_fast_tokens == 1296 and sum(shares) == 1296
        if sampling == 2:
            assert shares[1::2] == [0] * (num_frames // 2)  # skipped frames contribute nothing


def test_a_single_image_is_not_pooled_2x2():
    assert pool_frame_maps(torch.zeros(1, 4, 18, 18), 2).shape == (1, 4, 18, 18)
    assert pool_frame_maps(torch.zeros(2, 4, 18, 18), 2).shape == (2, 4, 9, 9)


# ---------------------------------------------------------------------------------------------------------------
# Loading official-layout folders


@pytest.fixture(scope="module")
def tiny_model() -> SlowFastForCausalLM:
    return random_model(tiny_config(), seed=0)


@pytest.fixture(scope="module")
def tiny_folder(tiny_model, tmp_path_factory) -> Path:
    return write_checkpoint(tiny_model, tmp_path_factory.mktemp("slowfast") / "single")


def prefill_logits(model: SlowFastForCausalLM, pixel_values: torch.Tensor, input_ids: list[int]) -> torch.Tensor:
    video = model.encode_video(pixel_values)
    prompt = model.embed_prompt(input_ids, video.fast_tokens)
    with torch.inference_mode():
        return model(prompt.inputs_embeds, memory=model.memory_for(prompt, video))[0]


PIXELS = torch.randn(4, 3, 128, 128, generator=torch.Generator().manual_seed(1))
PROMPT_IDS = [256, 5, 6, 7, IMAGE_TOKEN_INDEX, 8, 9, 10, 11]


def test_sharded_and_single_file_checkpoints_load_to_the_same_model(tiny_folder, tmp_path, tiny_model):
    sharded = write_checkpoint(tiny_model, tmp_path / "sharded", num_shards=3)
    assert (sharded / "model.safetensors.index.json").is_file()
    single = prefill_logits(SlowFastForCausalLM.from_pretrained(tiny_folder), PIXELS, PROMPT_IDS)
    assert torch.equal(single, prefill_logits(SlowFastForCausalLM.from_pretrained(sharded), PIXELS, PROMPT_IDS))
    assert torch.equal(single, prefill_logits(tiny_model, PIXELS, PROMPT_IDS))


def test_vision_tower_shape_comes_from_the_checkpoint(tiny_folder):
    config = SlowFastForCausalLM.from_pretrained(tiny_folder).config
    assert (config.vision_tower_depths, config.vision_tower_dims) == ([1, 1, 2, 1], [8, 16, 24, 32])


def test_the_unused_tower_head_may_be_present_or_absent(tiny_folder, tiny_model, tmp_path):
    """Released checkpoints differ in whether they carry the vision tower's classifier head; it is never used, so
    a folder without it loads and answers exactly as one with it."""
    headless = write_checkpoint(tiny_model, tmp_path / "no_head", with_head=False)
    with_head = prefill_logits(SlowFastForCausalLM.from_pretrained(tiny_folder), PIXELS, PROMPT_IDS)
    assert torch.equal(prefill_logits(SlowFastForCausalLM.from_pretrained(headless), PIXELS, PROMPT_IDS), with_head)


def test_a_missing_tensor_is_an_error_that_names_it(tiny_model, tmp_path):
    key = "model.layers.2.self_attn.cross_attn_kv_proj.bias"
    folder = write_checkpoint(tiny_model, tmp_path / "missing", drop_keys=(key,))
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        SlowFastForCausalLM.from_pretrained(folder)


def test_an_unexpected_tensor_is_an_error_that_names_it(tiny_model, tmp_path):
    key = "model.layers.1.self_attn.cross_attn_kv_proj.weight"  # layer 1 is not a hybrid layer
    folder = write_checkpoint(tiny_model, tmp_path / "extra", extra_tensors={key: torch.zeros(64, 64)})
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        SlowFastForCausalLM.from_pretrained(folder)


def test_vocabulary_is_cut_to_the_tokenizer_length_without_changing_the_kept_logits(tiny_folder):
    full = prefill_logits(SlowFastForCausalLM.from_pretrained(tiny_folder), PIXELS, PROMPT_IDS)
    sliced = prefill_logits(SlowFastForCausalLM.from_pretrained(tiny_folder, vocab_size=259), PIXELS, PROMPT_IDS)
    assert full.shape[-1] == 272 and sliced.shape[-1] == 259
    assert torch.equal(sliced, full[:, :259])


def test_a_text_only_prompt_is_plain_qwen2(tiny_model):
    """No video -> no cross-attention: the logits are those of transformers' own Qwen2 with the same weights."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = tiny_model.config
    fields = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    qwen = Qwen2ForCausalLM(
        Qwen2Config(
            **{name: getattr(config, name) for name in fields},
            num_key_value_heads=config.num_key_value_heads,
            rope_parameters=config.rope_parameters,
            rms_norm_eps=config.rms_norm_eps,
        )
    )
    llm_state = {k: v for k, v in tiny_model.state_dict().items() if "cross_attn" not in k and "vision" not in k}
    llm_state = {k: v for k, v in llm_state.items() if "mm_projector" not in k}
    qwen.load_state_dict(llm_state, strict=True)
    ids = torch.tensor([[256, 40, 41, 42, 43, 44, 255]])
    prompt = tiny_model.embed_prompt(ids[0])
    with torch.inference_mode():
        ours = tiny_model(prompt.inputs_embeds)
        theirs = qwen.eval()(input_ids=ids).logits
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_the_prompt_must_agree_with_the_video(tiny_model):
    video = tiny_model.encode_video(PIXELS)
    with pytest.raises(ValueError, match="no video"):
        tiny_model.embed_prompt(PROMPT_IDS)
    with pytest.raises(ValueError, match="no <image>"):
        tiny_model.embed_prompt([1, 2, 3], video.fast_tokens)


# ---------------------------------------------------------------------------------------------------------------
# The studio adapter


def synthetic_frames(num_frames: int, height: int = 90, width: int = 160) -> Frames:
    rng = np.random.default_rng(num_frames)
    pixels = rng.integers(0, 256, size=(num_frames, height, width, 3), dtype=np.uint8)
    info = VideoInfo(
        path="synthetic.mp4", duration_s=num_frames / 2, fps=2.0, num_frames=num_frames, width=width, height=height
    )
    return Frames(pixels, np.arange(num_frames), np.arange(num_frames) / 2.0, info)


@pytest.fixture(scope="module")
def adapter(tiny_folder):
    from models.slowfast.loader import load

    return load("slowfast-tiny", repo_id=str(tiny_folder), device="cpu")


@pytest.fixture(scope="module")
def context(adapter):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 8 frames is the tiny checkpoint's training setting: no warning
        return adapter.encode(synthetic_frames(8), EncodeParams(num_frames=8), "sha-8")


def test_the_adapter_is_a_video_llm_with_the_tokenizer_vocabulary(adapter):
    assert isinstance(adapter, VideoLLM)
    assert adapter.model.config.vocab_size == len(adapter.tokenizer) == 259


def test_token_stats_count_81_slow_tokens_per_frame_and_the_fast_tokens(context):
    stats = context.stats
    assert stats.per_frame_slow == [81] * 8 and stats.slow_tokens == 648
    assert stats.fast_tokens == 2 * 81 == sum(stats.per_frame_fast)  # 8 frames, t=4 -> 2 fast frames
    assert stats.native_tokens == 8 * 18 * 18
    assert context.thumbnails.shape == (8, 96, 96, 3) and context.thumbnails.dtype == np.uint8


def test_a_frame_count_other_than_the_training_setting_warns(adapter):
    with pytest.warns(UserWarning, match="trained with 8 frames"):
        adapter.encode(synthetic_frames(4), EncodeParams(num_frames=4), "sha-4")


def test_streamed_chunks_add_up_to_the_answer(adapter, context):
    items = list(adapter.stream(context, [], "What happens?", GREEDY, want_attention=False))
    answer = items[-1]
    assert all(isinstance(item, str) for item in items[:-1])
    assert "".join(items[:-1]).strip() == answer.text
    assert 0 < answer.new_tokens <= GREEDY.max_new_tokens
    assert answer.attention is None and answer.stats.fast_tokens == 162


def test_attention_covers_every_frame_and_the_9x9_grid(adapter, context):
    question = "Where is the cat?"
    answer = collect(adapter.stream(context, [], question, GREEDY, want_attention=True))
    attention = answer.attention
    assert attention.frame_weights.shape == (8,) and attention.frame_weights.sum() == pytest.approx(1.0)
    assert "".join(attention.tokens) == question
    assert np.allclose(attention.token_frame_weights.sum(axis=1), 1.0)
    assert sorted(attention.spatial) == list(range(8))
    for grid in attention.spatial.values():
        assert grid.shape == (9, 9) and grid.min() >= 0 and grid.max() == pytest.approx(1.0)


def test_identical_frames_get_identical_attention(adapter):
    frames = synthetic_frames(8)
    pixels = np.concatenate([frames.pixels[:4], frames.pixels[:4]])  # frames 4-7 repeat frames 0-3
    repeated = Frames(pixels, frames.indices, frames.timestamps_s, frames.info)
    video_context = adapter.encode(repeated, EncodeParams(num_frames=8), "sha-repeat")
    weights = collect(adapter.stream(video_context, [], "Which frame?", GREEDY)).attention.frame_weights
    assert np.allclose(weights[:4], weights[4:], atol=1e-6)
    assert not np.allclose(weights[:4], weights[0])  # different frames do get different weights


def test_follow_up_questions_do_not_run_the_vision_tower_again(adapter, context, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the vision tower ran again")

    monkeypatch.setattr(adapter.model.model.vision_tower, "forward", fail)
    first = collect(adapter.stream(context, [], "What happens?", GREEDY))
    history = [{"role": "user", "content": "What happens?"}, {"role": "assistant", "content": first.text}]
    follow_up = collect(adapter.stream(context, history, "And then?", GREEDY))
    assert follow_up.prompt_tokens > first.prompt_tokens


def test_text_only_turns_work(adapter):
    answer = collect(adapter.stream(None, [], "Hello there", GREEDY))
    assert answer.new_tokens > 0 and answer.attention is None and answer.stats.total_visual_tokens == 0


def test_a_typed_image_tag_does_not_become_a_second_video(adapter, context):
    answer = collect(adapter.stream(context, [], "what is <image> here?", GREEDY))
    assert answer.new_tokens > 0


def test_long_conversations_drop_the_oldest_turns_to_fit_the_cap(tiny_model, tmp_path):
    from models.slowfast.loader import load

    folder = write_checkpoint(random_model(tiny_config(tokenizer_model_max_length=400)), tmp_path / "capped")
    capped = load("slowfast-capped", repo_id=str(folder), device="cpu")
    video_context = capped.encode(synthetic_frames(8), EncodeParams(num_frames=8), "sha")
    history = [{"role": "user", "content": "x" * 150}, {"role": "assistant", "content": "y" * 150}]
    answer = collect(capped.stream(video_context, history, "Who?", GREEDY))
    assert answer.prompt_tokens <= 400
    assert "".join(answer.attention.tokens) == "Who?"  # the question itself survived


def test_one_turn_prompt_is_the_official_chatml():
    text, span = render_chatml([], "What is it?", has_video=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<image>\nWhat is it?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert text[span[0] : span[1]] == "What is it?"


RELEASED = "shi-labs/slowfast-video-mllm-qwen2-7b-convnext-576-frame64-s1t4"


def test_loading_a_released_checkpoint_without_a_gpu_says_why(monkeypatch):
    from models.slowfast.loader import load

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelUnavailableError, match="needs a CUDA GPU"):
        load("slowfast-mllm-7b-f64-s1t4", repo_id=RELEASED)


def test_loading_a_released_checkpoint_without_the_hub_says_why(monkeypatch):
    import huggingface_hub.constants

    from models.slowfast.loader import load

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # get past the GPU check
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailableError, match="could not fetch " + RELEASED):
        load("slowfast-mllm-7b-f64-s1t4", repo_id=RELEASED)


# ---------------------------------------------------------------------------------------------------------------
# Preprocessing


def test_preprocessing_matches_the_official_clip_image_processor():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from models.slowfast.preprocessing import CLIP_MEAN, CLIP_STD

    official = CLIPImageProcessorPil(
        size={"shortest_edge": 576},
        crop_size={"height": 576, "width": 576},
        resample=3,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    for height, width in [(360, 640), (600, 500)]:  # upscaled 16:9, downscaled portrait
        pixels = synthetic_frames(2, height, width).pixels
        expected = official.preprocess(list(pixels), return_tensors="pt")["pixel_values"]
        ours = normalize(resize_short_side_and_crop(pixels))
        assert ours.shape == expected.shape == (2, 3, 576, 576)
        one_grey_level = 1.0 / 255 / min(CLIP_STD) + 1e-6
        assert (ours - expected).abs().max().item() <= one_grey_level
