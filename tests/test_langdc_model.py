"""LangDC in the studio: the tiny release tree registered as a local folder answers through the model interface.

The answers are noise (random weights, a synthetic tokenizer); the plumbing is real: the folder is recognised by
its `model_type` ("VideoQwenVQA"), the answer streams, the official plan has 4 clips whose budgets are their pool
tokens plus their caption's length and carry the decoded captions, the budgets add up to the visual rows the LLM
read, attention covers the sampled frames, a follow-up question reuses the encoded video, and a release whose
config records another machine's absolute paths still finds its parts beside the model folder.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from langdc_tree import MODEL_FOLDER, tiny_langdc_tree

from models import registry
from models.base import Answer, EncodeParams, GenerationParams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def langdc():
    name = registry.register_local_model(tiny_langdc_tree() / MODEL_FOLDER, name="tiny-langdc")
    yield registry.load_model(name)
    registry.MODELS.pop(name, None)
    registry._loaded.pop(name, None)


def test_the_registry_lists_langdc_and_says_why_it_cannot_run_here():
    spec = registry.get_spec("LangDC")
    assert spec.kwargs["repo_id"] == "Wangxc1000/LangDC" and spec.compressors[0] == "official"
    assert spec.defaults.num_frames == 16
    assert registry.availability("LangDC") == (False, "needs a GPU and hub access")


def test_a_local_langdc_folder_answers_with_captioned_clips(langdc, make_video):
    from models.pipeline import ENCODE_CACHE, encode_video

    spec = registry.get_spec("tiny-langdc")
    assert spec.loader == "models.langdc.loader:load" and spec.defaults.num_frames == 16 and "cpu" in spec.needs
    video = make_video("clip.mp4", duration_s=2.0, fps=10.0)
    params = EncodeParams(num_frames=16)
    context = encode_video(langdc, str(video), params)
    plan = context.payload.plan
    assert len(plan.clips) == 4 == len(context.stats.clips)
    counts = context.payload.visual.counts
    for clip, planned, count in zip(context.stats.clips, plan.clips, counts, strict=True):
        assert planned.caption_tokens == count and planned.budget == 208 + count == clip.budget
        assert isinstance(planned.caption, str) and clip.text == planned.caption
    assert sum(c.budget for c in context.stats.clips) == context.stats.global_budget == 832 + sum(counts)
    assert sum(context.stats.per_frame_slow) + sum(context.stats.per_frame_fast) == context.stats.global_budget

    chunks = list(langdc.stream(context, [], "What happens?", GenerationParams(max_new_tokens=6)))
    answer = chunks[-1]
    assert isinstance(answer, Answer) and answer.new_tokens >= 1
    assert "".join(c for c in chunks[:-1] if isinstance(c, str)).strip() == answer.text
    text_rows = answer.prompt_tokens - context.stats.global_budget
    assert 0 < text_rows < 200  # the prompt's text around the visual rows
    attention = answer.attention
    assert attention is not None and attention.frame_weights.shape == (len(context.frame_indices),)
    assert np.isclose(attention.frame_weights.sum(), 1.0)
    assert attention.token_frame_weights.shape == (answer.new_tokens, len(context.frame_indices))
    assert all(m.shape == (6, 6) for m in attention.spatial.values())

    hits = ENCODE_CACHE.hits
    again = encode_video(langdc, str(video), params)
    assert again is context and ENCODE_CACHE.hits == hits + 1  # the follow-up never re-runs the captioner
    history = [{"role": "user", "content": "What happens?"}, {"role": "assistant", "content": answer.text}]
    follow_up = list(langdc.stream(again, history, "And then?", GenerationParams(max_new_tokens=3)))[-1]
    assert follow_up.prompt_tokens > answer.prompt_tokens
    text_only = list(langdc.stream(None, [], "Hello?", GenerationParams(max_new_tokens=2)))[-1]
    assert isinstance(text_only, Answer) and text_only.attention is None and text_only.prompt_tokens < 100


def test_an_unknown_compressor_is_refused_with_the_supported_ones(langdc, make_video):
    from models.pipeline import encode_video

    with pytest.raises(ValueError, match="official"):
        encode_video(langdc, str(make_video("c.mp4")), EncodeParams(num_frames=16, compressor="dynamic"))


def test_recorded_absolute_paths_from_another_machine_fall_back_to_the_parts_beside_the_model(tmp_path):
    from models.langdc.checkpoint import resolve_paths

    source = tiny_langdc_tree()
    for part in source.iterdir():
        if part.name != MODEL_FOLDER:
            (tmp_path / part.name).symlink_to(part, target_is_directory=True)
    model = tmp_path / MODEL_FOLDER
    shutil.copytree(source / MODEL_FOLDER, model)
    for file in ("config.json", "adapter_config.json"):
        text = (model / file).read_text().replace(str(source), "/trainer/home/ckpts")
        (model / file).write_text(text)
    assert "/trainer/home/ckpts" in json.loads((model / "config.json").read_text())["mm_vision_tower"]
    paths = resolve_paths(model)
    found = lambda name: (source / name).resolve()  # the parts beside the model are symlinks to the originals
    assert paths.base == found("qwen2_5_tiny_instruct")
    assert paths.captioner == found("cap_light_llm_tiny")
    assert paths.video_tower == found("InternVideo2-Stage2_1B-224p-f4-tiny/InternVideo2-stage2_1b-224p-f4.pt")
    assert paths.image_tower == found("clip-vit-large-patch14-336-tiny")


@pytest.mark.parametrize("num_frames", [1, 5, 8, 16, 20, 33, 64])
def test_any_number_of_sampled_frames_gives_four_clips_whose_budgets_add_up(num_frames):
    """Fewer frames than 16 are read more than once, more are thinned; either way 4 clips cover every frame."""
    from models.langdc.budgets import official_plan, per_frame_counts
    from models.langdc.preprocessing import frame_positions

    positions = frame_positions(num_frames)
    assert len(positions) == 16 and positions == sorted(positions) and positions[-1] < num_frames
    counts = [3, 0, 255, 40]
    plan = official_plan(counts, ["a", "", "b", "c"], 208, positions, num_frames, [i * 0.5 for i in range(num_frames)])
    assert [c.budget for c in plan.clips] == [208 + n for n in counts] and plan.global_budget == 832 + sum(counts)
    assert sum(c.baseline_budget for c in plan.clips) == plan.global_budget
    assert plan.clips[0].start == 0 and plan.clips[-1].end >= num_frames
    assert all(a.end <= b.start or a.start == b.start for a, b in zip(plan.clips, plan.clips[1:]))
    pool, caption = per_frame_counts(counts, 52, positions, num_frames)
    assert sum(pool) == 832 and sum(caption) == sum(counts) and len(pool) == num_frames


def test_the_release_frame_choice_matches_its_formula():
    from models.langdc.preprocessing import frame_positions

    assert frame_positions(20) == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18]
    assert frame_positions(33) == list(range(0, 32, 2))
    assert frame_positions(16) == list(range(16))
