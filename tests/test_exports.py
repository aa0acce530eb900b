"""Exports give back every judgement in each format, the TRL layouts follow their documented rules, files never land
outside the data directory, and the Hub helpers answer with a message instead of hanging when offline."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
import zipfile
from pathlib import Path

import datasets
import pandas as pd
import pyarrow.parquet as pq
import pytest

from app.data.exports import (
    KTO_DESIRABLE_MIN_SCORE,
    KTO_UNDESIRABLE_MAX_SCORE,
    export_all,
    preview_dataframe,
    resolve_export_dir,
    sanitize_name,
    summary_counts,
)
from app.data.hub_sync import push_to_hub, start_hub_sync, sync_off_message
from app.data.store import AnnotationStore

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
HISTORY = [{"role": "user", "content": "What is this?"}, {"role": "assistant", "content": "A kitchen."}]


@pytest.fixture
def store(tmp_path: Path):
    with AnnotationStore(tmp_path / "data") as opened:
        yield opened


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "upload.mp4"
    path.write_bytes(os.urandom(2048))
    return path


def add_comparison(store: AnnotationStore, video: Path | None, choice: str, tag: str = "") -> str:
    return store.record_comparison(
        model_a="model-one",
        model_b="model-two",
        question=f"Who enters first? {tag}",
        answer_a=f"the dog {tag}",
        answer_b=f"the cat {tag}",
        choice=choice,
        conversation=HISTORY,
        video_path=video,
        video_duration_s=8.0,
        frame_indices_a=[0, 12],
        frame_timestamps_s_a=[0.0, 0.5],
        frame_indices_b=[0, 6, 12],
        frame_timestamps_s_b=[0.0, 0.25, 0.5],
        reason=HOSTILE,
    )


def add_rating(store: AnnotationStore, video: Path | None, thumbs=None, score=None, tag: str = "") -> str:
    return store.record_rating(
        model="model-one",
        question=f"Describe the scene {tag}",
        answer=f"answer {tag}",
        conversation=HISTORY,
        video_path=video,
        frame_indices=[0, 24],
        frame_timestamps_s=[0.0, 1.0],
        encode_params={"num_frames": 2, "token_budget": 32},
        thumbs=thumbs,
        score=score,
        reason="" if thumbs is not None or score is not None else "only a reason",
        annotator=HOSTILE,
    )


@pytest.fixture
def filled(store, video):
    add_comparison(store, video, "a", "1")
    add_comparison(store, video, "b", "2")
    add_comparison(store, video, "tie", "3")
    add_comparison(store, None, "both_bad", "4")
    add_rating(store, video, thumbs=1, tag="5")
    add_rating(store, video, score=2, tag="6")
    add_rating(store, None, score=3, tag="7")
    return store


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_parquet_and_jsonl_give_back_every_record(filled):
    result = export_all(filled)
    originals = {r["id"]: r for r in filled.records()}

    rows = pq.read_table(result.files["parquet"]).to_pylist()
    assert sorted(row["id"] for row in rows) == sorted(originals)
    for row in rows:
        original = originals[row["id"]]
        assert row["kind"] == original["kind"]
        assert row["question"] == original["question"]
        assert row["reason"] == original["reason"]
        assert row["video"] == original["video_path"]
        assert row["conversation"] == original["conversation"]
        side = "" if row["kind"] == "rating" else "_b"
        assert row[f"frame_timestamps_s{side}"] == original[f"frame_timestamps_s{side}"]
        assert row[f"answer{side}"] == original[f"answer{side}"]
        if row["kind"] == "rating":
            assert json.loads(row["encode_params"]) == original["encode_params"]

    lines = read_jsonl(result.files["jsonl"])
    assert {line["id"] for line in lines} == set(originals)
    for line in lines:
        assert line["conversation"] == HISTORY
        assert line["annotator"] == originals[line["id"]]["annotator"]


def test_csv_keeps_hostile_text_verbatim_and_nested_fields_as_json(filled):
    result = export_all(filled, formats=("csv",))
    with open(result.files["csv"], encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == filled.counts()["total"]
    comparisons = [row for row in rows if row["kind"] == "comparison"]
    assert all(row["reason"] == HOSTILE for row in comparisons)
    assert json.loads(comparisons[0]["conversation"]) == HISTORY
    assert json.loads(comparisons[0]["frame_indices_b"]) == [0, 6, 12]


def test_datasets_folder_round_trips_with_a_video_column_and_a_card(filled, video):
    result = export_all(filled)
    folder = result.files["datasets"]
    loaded = datasets.load_from_disk(str(folder))
    assert sorted(loaded["id"]) == sorted(r["id"] for r in filled.records())
    assert "video" in loaded.column_names
    with_video = [row for row in loaded if row["video"]]
    assert with_video
    expected_sha = hashlib.sha256(video.read_bytes()).hexdigest()
    for row in with_video:
        # the path resolves inside the export folder, to the same bytes that were judged
        kept = result.directory / row["video"]
        assert hashlib.sha256(kept.read_bytes()).hexdigest() == row["video_sha256"] == expected_sha

    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "\n---\n" in card
    assert "video" in card and "KTO" in card
    assert f"score ≥ {KTO_DESIRABLE_MIN_SCORE}" in card and f"score ≤ {KTO_UNDESIRABLE_MAX_SCORE}" in card
    assert f"| comparisons | {filled.counts()['comparison']} |" in card


def test_dpo_rows_come_only_from_decided_comparisons(filled):
    result = export_all(filled, formats=("dpo",))
    rows = read_jsonl(result.files["dpo_jsonl"])
    assert len(rows) == 2  # the "a" and the "b" vote; tie and both_bad give nothing, ratings give nothing
    by_tag = {row["prompt"][-1]["content"][-1]: row for row in rows}
    assert by_tag["1"]["chosen"] == [{"role": "assistant", "content": "the dog 1"}]
    assert by_tag["1"]["rejected"] == [{"role": "assistant", "content": "the cat 1"}]
    assert by_tag["2"]["chosen"] == [{"role": "assistant", "content": "the cat 2"}]
    assert by_tag["2"]["chosen_model"] == "model-two"
    assert by_tag["2"]["chosen_frame_timestamps_s"] == [0.0, 0.25, 0.5]
    for row in rows:
        # TRL conversational format: the prompt is the conversation so far plus the judged question
        assert row["prompt"][:2] == HISTORY
        assert row["prompt"][2]["role"] == "user"
        assert row["video"].startswith("videos/") and len(row["video_sha256"]) == 64
    parquet = pd.read_parquet(result.files["dpo_parquet"])
    assert sorted(parquet["id"]) == sorted(row["id"] for row in rows)


@pytest.mark.parametrize(
    "thumbs, score, label",
    [
        (1, None, True),
        (-1, None, False),
        (None, 5, True),
        (None, 4, True),
        (None, 3, None),
        (None, 2, False),
        (None, 1, False),
        (1, 3, True),
        (-1, 3, False),
        (1, 5, True),
        (-1, 1, False),
        (1, 1, None),  # thumbs up contradicted by its own score
        (-1, 5, None),
        (None, None, None),  # a reason alone says neither
    ],
)
def test_kto_labels_follow_the_documented_threshold(store, thumbs, score, label):
    record_id = add_rating(store, None, thumbs=thumbs, score=score)
    add_comparison(store, None, "a")  # comparisons never become KTO rows
    rows = read_jsonl(export_all(store, formats=("kto",), make_zip=False).files["kto_jsonl"])
    if label is None:
        assert rows == []
    else:
        (row,) = rows
        assert row["id"] == record_id
        assert row["label"] is label
        assert row["completion"] == [{"role": "assistant", "content": "answer "}]
        assert row["prompt"][-1] == {"role": "user", "content": "Describe the scene "}
        assert row["frame_timestamps_s"] == [0.0, 1.0]


def test_counts_and_preview_match_the_store(filled):
    counts = summary_counts(filled)
    assert (counts["total"], counts["ratings"], counts["comparisons"]) == (7, 3, 4)
    assert (counts["dpo_pairs"], counts["kto_rows"], counts["kto_excluded"]) == (2, 2, 1)
    assert (counts["kto_desirable"], counts["kto_undesirable"], counts["ties"]) == (1, 1, 1)
    assert counts["videos"] == 1
    # what the tab shows before exporting is what the export then holds
    assert export_all(filled, formats=("jsonl",), make_zip=False).counts == counts

    preview = preview_dataframe(filled, limit=5)
    assert len(preview) == 5
    assert preview.iloc[0]["question"] == "Describe the scene 7"  # newest first
    assert HOSTILE in set(preview["reason"])  # verbatim: escaping is the UI's job
    assert set(preview["judgement"]) >= {"3/5", "2/5", "👍", "both bad"}


def test_zip_holds_every_file_and_the_videos(filled):
    result = export_all(filled)
    with zipfile.ZipFile(result.files["zip"]) as archive:
        names = set(archive.namelist())
    assert {"records.jsonl", "records.csv", "records.parquet", "README.md", "trl/dpo.jsonl", "trl/kto.jsonl"} <= names
    assert any(name.startswith("dataset/") for name in names)
    video_path = filled.records()[0]["video_path"]
    assert video_path in names
    assert str(result.files["zip"]) == result.download_paths()[0]


def test_empty_store_exports_empty_files(store):
    result = export_all(store)
    assert pd.read_parquet(result.files["parquet"]).empty
    assert len(datasets.load_from_disk(str(result.files["datasets"]))) == 0
    assert result.files["dpo_jsonl"].read_text() == ""
    assert result.counts["total"] == 0


@pytest.mark.parametrize("escape", ["../outside", "../../outside", "sub/../../../outside"])
def test_exports_cannot_climb_out_of_the_data_dir(filled, tmp_path, escape):
    with pytest.raises(ValueError, match=r"\.\."):
        export_all(filled, escape)
    assert not (tmp_path / "outside").exists()


def test_absolute_and_symlinked_export_paths_outside_are_refused(filled, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(ValueError, match="outside the data directory"):
        export_all(filled, outside)
    with pytest.raises(ValueError, match="outside the data directory"):
        export_all(filled, "/etc")
    link = filled.data_dir / "exports" / "sneaky"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside the data directory"):
        export_all(filled, "sneaky")
    with pytest.raises(ValueError, match="outside the data directory"):
        export_all(filled, "sneaky/deeper")
    with pytest.raises(ValueError, match="videos"):
        export_all(filled, filled.data_dir / "videos" / "x")
    assert list(outside.iterdir()) == []


def test_user_typed_export_names_stay_one_folder_inside_exports(filled):
    result = export_all(filled, name="../../etc/passwd <script>", formats=("jsonl",), make_zip=False)
    exports_root = filled.data_dir / "exports"
    assert result.directory.parent == exports_root
    assert result.directory.name.startswith("etc_passwd_script-")
    assert sanitize_name("...") == "export"
    assert sanitize_name("/abs/path\\win") == "abs_path_win"
    inside = resolve_export_dir(filled.data_dir, "team-a/run1")
    assert inside == exports_root / "team-a" / "run1"


def test_push_without_a_token_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    status = push_to_hub(tmp_path, "someone/annotations", token=None)
    assert not status.ok and "token" in status.message


def test_push_and_sync_report_offline_quickly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    status = push_to_hub(tmp_path, "someone/annotations", token="hf_dummy")
    sync = start_hub_sync(tmp_path, "someone/annotations", token="hf_dummy")
    assert not status.ok and status.message.startswith("offline: cannot reach the Hub")
    assert sync.scheduler is None and "offline" in sync.state.message  # paused: nothing is pushed
    sync.stop()

    # an unreachable endpoint (nothing listens on the discard port) is reported, not waited on
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    status = push_to_hub(tmp_path, "someone/annotations", token="hf_dummy")
    assert not status.ok and "offline" in status.message
    assert time.monotonic() - started < 10


def test_sync_stays_off_without_a_repo(tmp_path, monkeypatch):
    monkeypatch.delenv("STUDIO_HUB_DATASET_REPO", raising=False)
    assert start_hub_sync(tmp_path, token="hf_dummy") is None
    assert "STUDIO_HUB_DATASET_REPO" in sync_off_message()
    status = push_to_hub(tmp_path, "not a repo id", token="hf_dummy")
    assert not status.ok and "user/name" in status.message


def test_dpo_rows_keep_both_plans_with_each_clips_caption(store, video):
    clip = {"index": 0, "start_s": 0.0, "end_s": 4.0, "frames": 4, "budget": 96, "used_tokens": 96}
    langdc = {"compressor": "langdc", "budget_pct": 25.0, "global_budget": 96, "visual_tokens": 96,
              "clips": [{**clip, "caption": "A rocket lifts off at dusk.", "caption_tokens": 23}]}  # fmt: skip
    plain = {**clip, "budget": 384, "used_tokens": 384, "caption": None, "caption_tokens": None}
    official = {"compressor": "official", "budget_pct": 100.0, "global_budget": 384, "visual_tokens": 384,
                "clips": [plain]}  # fmt: skip
    store.record_comparison(
        model_a="m", model_b="m", question="What lifts off?", answer_a="a rocket", answer_b="a plane", choice="a",
        conversation=[], video_path=video, video_duration_s=8.0, frame_indices_a=[0], frame_timestamps_s_a=[0.0],
        frame_indices_b=[0], frame_timestamps_s_b=[0.0], extra={"compression_a": langdc, "compression_b": official},
    )  # fmt: skip
    result = export_all(store, formats=("dpo",))
    [row] = read_jsonl(result.files["dpo_jsonl"])
    assert row["chosen_compression"]["clips"][0]["caption"] == "A rocket lifts off at dusk."
    assert row["chosen_compression"]["clips"][0]["caption_tokens"] == 23
    assert row["rejected_compression"]["clips"][0]["caption"] is None
    parquet = pd.read_parquet(result.files["dpo_parquet"])
    assert parquet["chosen_compression"][0]["clips"][0]["caption_tokens"] == 23
