"""The `images` column of the DPO / KTO exports: the judged answer's frames, decoded again at its timestamps, and a
`datasets` folder that TRL 1.16's vision-language DPO trains a tiny VLM on as it is (real trainer, real processor
with a PIL image processor, a tiny SmolVLM-architecture model; a few steps on the CPU)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from app.access.identity import Identity
from app.campaigns.exports import export_campaign
from app.campaigns.manifest import Item, setup_from_fields
from app.campaigns.store import CampaignStore
from app.data.exports import export_all
from app.data.frame_images import thin
from app.data.store import AnnotationStore
from models.pipeline import video_sha256
from models.video import sample_frames

ANNOTATORS = [Identity("account", f"ann{n}", "annotator") for n in (1, 2)]
IMAGE_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}:"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


@pytest.fixture
def judged_campaign(tmp_path: Path, make_video) -> tuple[CampaignStore, dict]:
    """A pairwise campaign on two clips whose answers were given 6 frames each, judged "a" by two people."""
    store = CampaignStore(tmp_path / "data", rng=random.Random(3))
    clips = [str(make_video(f"clip{n}.mp4", duration_s=2.0 + n)) for n in range(2)]
    items = [Item(f"i{n}", clip, f"What happens in clip {n}?", None, video_sha256(clip), 2.0 + n)
             for n, clip in enumerate(clips)]  # fmt: skip
    setups = [setup_from_fields({"name": name, "model": "slowfast-lite", "compressor": "official", "budget": 100})
              for name in ("x", "y")]  # fmt: skip
    store.create("cats", items, setups, k=2)
    times = {}
    for item in items:
        frames = sample_frames(item.video, num_frames=6)
        times[item.id] = [float(t) for t in frames.timestamps_s]
        store.record_answers("cats", [
            {"item_id": item.id, "setup": s.name, "text": f"{s.name} says {item.id}",
             "frame_indices": [int(i) for i in frames.indices], "frame_timestamps_s": times[item.id]}
            for s in setups
        ])  # fmt: skip
    for who in ANNOTATORS:
        while (handed := store.next_item("cats", who)) is not None:
            store.judge("cats", handed["item_id"], who, choice="a")
    yield store, times
    store.close()


def test_the_images_column_holds_the_frames_the_chosen_answer_saw(judged_campaign, tmp_path: Path):
    store, times = judged_campaign
    path = export_campaign(store, "cats", "dpo", tmp_path / "out", images=4)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        expected = thin(times[row["item_id"]], 4)
        assert len(row["images"]) == 4 and row["images_frame_timestamps_s"] == pytest.approx(expected, abs=1e-3)
        assert all((path.parent / image).is_file() for image in row["images"])
    folder = datasets.load_from_disk(str(tmp_path / "out" / "cats-dpo-images"))
    assert set(folder.column_names) == {"id", "prompt", "chosen", "rejected", "images"}
    assert len(folder) == 2 and len(folder[0]["images"]) == 4 and folder[0]["images"][0].size[0] > 0
    assert "Frames for vision-language training" in (tmp_path / "out" / "README.md").read_text()
    with pytest.raises(ValueError, match="dpo and kto"):
        export_campaign(store, "cats", "jsonl", tmp_path / "other", images=4)


def test_the_studio_export_writes_vision_dpo_files_too(tmp_path: Path, make_video):
    clip = make_video("clip.mp4", duration_s=2.0)
    frames = sample_frames(clip, num_frames=5)
    times, indices = [float(t) for t in frames.timestamps_s], [int(i) for i in frames.indices]
    with AnnotationStore(tmp_path / "data") as store:
        store.record_comparison(
            model_a="slowfast-lite", model_b="slowfast-lite", question="What moves?", answer_a="a ball",
            answer_b="nothing", choice="a", video_path=clip, frame_indices_a=indices, frame_timestamps_s_a=times,
        )  # fmt: skip
        result = export_all(store, name="vision", formats=("dpo",), make_zip=False, images_frames=3)
    rows = [json.loads(line) for line in result.files["dpo_images_jsonl"].read_text().splitlines()]
    assert len(rows) == 1 and len(rows[0]["images"]) == 3
    assert rows[0]["images_frame_timestamps_s"] == pytest.approx(thin(times, 3), abs=1e-3)
    assert len(datasets.load_from_disk(str(result.files["dpo_images"]))[0]["images"]) == 3


def tiny_vlm():
    """A tiny SmolVLM-architecture model and a real Idefics3 processor (PIL image processor: no torchvision)."""
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    from models.hf.testing import byte_level_tokenizer, random_model, tiny_config

    tokenizer = byte_level_tokenizer("smolvlm")
    config = tiny_config("smolvlm", tokenizer)
    side, patch = config.vision_config.image_size, config.vision_config.patch_size
    images = Idefics3ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": side}, max_image_size={"longest_edge": side}
    )
    processor = Idefics3Processor(
        image_processor=images,
        tokenizer=tokenizer,
        image_seq_len=(side // patch) ** 2 // config.scale_factor**2,
        chat_template=IMAGE_TEMPLATE,
    )
    return random_model(config).train(), processor


@pytest.mark.slow
def test_trl_vision_dpo_trains_a_tiny_vlm_on_the_export(judged_campaign, tmp_path: Path):
    from trl import DPOConfig, DPOTrainer

    store, _ = judged_campaign
    export_campaign(store, "cats", "dpo", tmp_path / "out", images=2)
    dataset = datasets.load_from_disk(str(tmp_path / "out" / "cats-dpo-images"))
    model, processor = tiny_vlm()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = DPOConfig(
        output_dir=str(tmp_path / "trl"), max_steps=3, per_device_train_batch_size=2, learning_rate=1e-2,
        report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, gradient_checkpointing=False,
        max_length=None, seed=0,
    )  # fmt: skip
    reference = copy.deepcopy(model).eval()  # the frozen policy DPO measures against
    trainer = DPOTrainer(
        model=model, ref_model=reference, args=args, train_dataset=dataset, processing_class=processor
    )
    outcome = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(np.isfinite(losses)), trainer.state.log_history
    assert np.isfinite(outcome.training_loss)
    vision_moved = any(
        not torch.equal(before[name], p.detach()) for name, p in model.named_parameters() if "vision" in name
    )
    assert vision_moved, "the frames reached the vision tower: its weights were trained"
