"""The shipped data files are what other tests and the app rely on: example clips that decode, last as long as
`assets/examples.json` says, and change scene exactly at its listed cut times; and an ImageNet-1k label list in the
order the classifier's logits use."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
EXAMPLES = json.loads((ASSETS_DIR / "examples.json").read_text(encoding="utf-8"))["clips"]
CLIP_IDS = [clip["file"] for clip in EXAMPLES]

# Mean absolute grey-level change (0-255) between consecutive frames: what "looks like the same shot" means here.
SAME_SHOT_MAX_CHANGE = 20.0
CUT_MIN_CHANGE = 40.0
STILL_CAMERA_MAX_CHANGE = 3.0


def decode_grey_frames(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """(frames (N, H/4, W/4) float32, presentation times (N,), container duration in s)."""
    frames, times = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="gray")[::4, ::4].astype(np.float32))
            times.append(frame.time)
        container_duration_s = container.duration / av.time_base
    return np.stack(frames), np.array(times), container_duration_s


@pytest.fixture(scope="module")
def decoded_clips() -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    return {clip["file"]: decode_grey_frames(ASSETS_DIR / clip["file"]) for clip in EXAMPLES}


def consecutive_changes(frames: np.ndarray) -> np.ndarray:
    """Change from frame i to frame i+1, for each i."""
    return np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))


def first_frame_at(times: np.ndarray, time_s: float, fps: float) -> int:
    return int(np.searchsorted(times, time_s - 0.5 / fps))


@pytest.mark.parametrize("clip", EXAMPLES, ids=CLIP_IDS)
def test_clip_decodes_with_its_stated_duration(clip, decoded_clips):
    frames, times, container_duration_s = decoded_clips[clip["file"]]
    assert frames.shape[1:] == (clip["height"] // 4, clip["width"] // 4)
    assert container_duration_s == pytest.approx(clip["duration_s"], abs=0.2)
    assert times[-1] + 1 / clip["fps"] == pytest.approx(clip["duration_s"], abs=0.2)
    assert 5.0 <= clip["duration_s"] <= 20.0


@pytest.mark.parametrize("clip", EXAMPLES, ids=CLIP_IDS)
def test_scene_changes_exactly_at_the_listed_cuts(clip, decoded_clips):
    frames, times, _ = decoded_clips[clip["file"]]
    changes = consecutive_changes(frames)
    cut_transitions = [first_frame_at(times, cut_s, clip["fps"]) - 1 for cut_s in clip["cut_times_s"]]
    for cut_s, transition in zip(clip["cut_times_s"], cut_transitions, strict=True):
        assert changes[transition] > CUT_MIN_CHANGE, f"no hard cut at {cut_s} s in {clip['file']}"
    within_shots = np.delete(changes, cut_transitions)
    assert within_shots.max() < SAME_SHOT_MAX_CHANGE, (
        f"{clip['file']} changes by {within_shots.max():.1f} at {times[int(within_shots.argmax())]:.2f} s, "
        "which is not a listed cut"
    )


@pytest.mark.parametrize("clip", EXAMPLES, ids=CLIP_IDS)
def test_still_camera_spans_hold_still(clip, decoded_clips):
    frames, times, _ = decoded_clips[clip["file"]]
    for start_s, end_s in clip["still_spans_s"]:
        first = first_frame_at(times, start_s, clip["fps"])
        last = first_frame_at(times, end_s, clip["fps"]) - 1
        assert np.abs(frames[last] - frames[first]).mean() < STILL_CAMERA_MAX_CHANGE


def test_shots_tile_each_clip_and_name_their_photos():
    for clip in EXAMPLES:
        shot_starts = [shot["start_s"] for shot in clip["shots"]]
        shot_ends = [shot["end_s"] for shot in clip["shots"]]
        assert shot_starts == [0.0, *clip["cut_times_s"]]
        assert shot_ends == [*clip["cut_times_s"], clip["duration_s"]]
        assert {shot["photo"] for shot in clip["shots"]} == set(clip["photos"])
        assert 2 <= len(clip["questions"]) <= 3


def test_the_examples_other_tests_need_are_there():
    by_file = {clip["file"]: clip for clip in EXAMPLES}
    assert by_file["cat.mp4"]["photos"] == ["chelsea"] and by_file["cat.mp4"]["cut_times_s"] == []
    assert by_file["coffee.mp4"]["photos"] == ["coffee"] and by_file["coffee.mp4"]["cut_times_s"] == []
    assert by_file["cat_then_coffee.mp4"]["photos"] == ["chelsea", "coffee"]
    assert len(by_file["cat_then_coffee.mp4"]["cut_times_s"]) == 1
    montage, static_cat = by_file["montage.mp4"], by_file["static_cat.mp4"]
    assert len(set(montage["photos"])) >= 4 and len(montage["cut_times_s"]) >= 3
    assert any(end - start > 3.0 for start, end in montage["still_spans_s"])
    # The budget test compares a clip with cuts against one photo held for exactly as long.
    assert static_cat["photos"] == ["chelsea"] and static_cat["cut_times_s"] == []
    assert static_cat["duration_s"] == montage["duration_s"]


def test_example_clips_stay_small():
    total_bytes = sum((ASSETS_DIR / clip["file"]).stat().st_size for clip in EXAMPLES)
    assert total_bytes < 3_000_000


def test_imagenet_labels_are_1000_unique_names_in_classifier_order():
    names = (ASSETS_DIR / "imagenet_labels.txt").read_text(encoding="utf-8").splitlines()
    assert len(names) == 1000
    assert all(name.strip() == name and name for name in names)
    assert len({name.lower() for name in names}) == 1000
    anchors = {
        0: "tench",
        1: "goldfish",
        281: "tabby cat",
        285: "Egyptian cat",
        967: "espresso",
        968: "cup",
        999: "toilet tissue",
    }
    for index, name in anchors.items():
        assert names[index] == name


def test_imagenet_label_table_matches_the_name_list():
    names = (ASSETS_DIR / "imagenet_labels.txt").read_text(encoding="utf-8").splitlines()
    header, *rows = (ASSETS_DIR / "imagenet_labels.tsv").read_text(encoding="utf-8").splitlines()
    assert header.split("\t") == ["index", "synset", "name", "all_names"]
    table = [row.split("\t") for row in rows]
    assert [int(index) for index, *_ in table] == list(range(1000))
    assert [name for _, _, name, _ in table] == names
    synsets = [synset for _, synset, _, _ in table]
    assert len(set(synsets)) == 1000 and all(re.fullmatch(r"n\d{8}", synset) for synset in synsets)
    assert synsets == sorted(synsets)  # ImageNet-1k classes are ordered by WordNet id
    all_names = {int(index): lemmas for index, _, _, lemmas in table}
    assert "cat" in all_names[281] and "tabby" in all_names[281].split(", ")
