"""The annotation store keeps every acknowledged judgement, with its video, exactly as the person gave it: under
concurrent voting, after the process is killed, and whatever text they typed."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from app.data.exports import export_all, summary_counts
from app.data.store import DB_FILENAME, AnnotationStore, default_data_dir
from models.base import EncodeParams, GenerationParams

REPO_ROOT = Path(__file__).resolve().parents[1]
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> \' OR 1=1; DROP TABLE judgements; --'


@pytest.fixture
def store(tmp_path: Path):
    with AnnotationStore(tmp_path / "data") as opened:
        yield opened


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    """A file standing in for a video in Gradio's temp folder."""
    folder = tmp_path / "gradio-tmp" / "a1b2"
    folder.mkdir(parents=True)
    path = folder / "my clip.MP4"
    path.write_bytes(os.urandom(4096))
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rating_keeps_what_was_shown_and_survives_the_upload_being_deleted(store, upload):
    expected_sha = sha256_of(upload)
    record_id = store.record_rating(
        model="slowfast-lite",
        question="What happens after the cat jumps?",
        answer="It lands on the sofa.",
        conversation=[
            {"role": "user", "content": "What animal is this?"},
            {"role": "assistant", "content": "A cat."},
        ],
        video_path=upload,
        video_duration_s=12.5,
        frame_indices=[0, 30, 60],
        frame_timestamps_s=[0.0, 1.0, 2.0],
        encode_params=EncodeParams(num_frames=3, fps=None, compressor="dynamic", budget_pct=50.0),
        generation_params=GenerationParams(temperature=0.7, top_p=0.9, max_new_tokens=32),
        thumbs=True,
        score=4,
        reason="correct and short",
        annotator="Ada",
        extra={"remark_time_s": 3.5},
    )
    upload.unlink()  # Gradio's delete_cache removes the upload; the record must still point at a real file

    (record,) = store.records()
    assert record["id"] == record_id
    assert record["kind"] == "rating"
    assert record["video_sha256"] == expected_sha
    kept = store.video_file(record["video_path"])
    assert kept.is_file() and sha256_of(kept) == expected_sha
    assert kept.parent == store.data_dir / "videos"
    assert record["frame_indices"] == [0, 30, 60]
    assert record["frame_timestamps_s"] == [0.0, 1.0, 2.0]
    assert record["encode_params"] == {"num_frames": 3, "fps": None, "compressor": "dynamic", "budget_pct": 50.0}
    assert record["generation_params"]["temperature"] == 0.7
    assert record["conversation"][1] == {"role": "assistant", "content": "A cat."}
    assert (record["thumbs"], record["score"], record["reason"], record["annotator"]) == (
        1,
        4,
        "correct and short",
        "Ada",
    )
    assert record["extra"] == {"remark_time_s": 3.5}
    assert record["created_at"].endswith("+00:00")


def test_comparison_records_both_sides_and_the_choice(store, upload):
    stored_path, sha = store.keep_video(upload)
    store.record_comparison(
        model_a="slowfast-lite",
        model_b="slowfast-lite",
        question="Count the people.",
        answer_a="Two.",
        answer_b="Three.",
        choice="b",
        video_path=stored_path,
        video_sha256=sha,
        frame_indices_a=[0, 10],
        frame_timestamps_s_a=[0.0, 0.4],
        frame_indices_b=[0, 5, 10],
        frame_timestamps_s_b=[0.0, 0.2, 0.4],
        generation_params_a={"temperature": 0.0},
        generation_params_b={"temperature": 1.0},
    )
    (record,) = store.records("comparison")
    assert record["choice"] == "b"
    assert (record["answer_a"], record["answer_b"]) == ("Two.", "Three.")
    assert record["frame_timestamps_s_b"] == [0.0, 0.2, 0.4]
    assert record["generation_params_b"] == {"temperature": 1.0}
    assert record["thumbs"] is None and record["score"] is None
    assert store.records("rating") == []
    assert store.counts() == {"rating": 0, "comparison": 1, "total": 1}
    table = store.to_dataframe()
    assert list(table["choice"]) == ["b"] and list(table["model_b"]) == ["slowfast-lite"]


def test_same_video_uploaded_twice_is_kept_once(store, upload, tmp_path):
    again = tmp_path / "other name.mp4"
    again.write_bytes(upload.read_bytes())
    different = tmp_path / "different.mp4"
    different.write_bytes(b"another video")
    first = store.keep_video(upload)
    assert store.keep_video(again) == first
    assert store.keep_video(different) != first
    kept = sorted(p.name for p in (store.data_dir / "videos").iterdir())
    assert len(kept) == 2
    assert not any(name.startswith(".incoming") for name in kept)


def test_hostile_text_is_stored_verbatim(store):
    store.record_rating(
        model="slowfast-lite", question=HOSTILE, answer=HOSTILE, thumbs=-1, reason=HOSTILE, annotator=HOSTILE[:90]
    )
    (record,) = store.records()
    assert record["question"] == HOSTILE
    assert record["answer"] == HOSTILE
    assert record["reason"] == HOSTILE
    assert record["annotator"] == HOSTILE[:90]
    assert store.integrity_check() == "ok"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"score": 0}, "score"),
        ({"score": 6}, "score"),
        ({"score": 3.5}, "score"),
        ({"thumbs": 2}, "thumbs"),
        ({"thumbs": None, "score": None, "reason": "  "}, "rating needs"),
        ({"reason": "x" * 10_001}, "reason is too long"),
        ({"question": "q" * 10_001}, "question is too long"),
        ({"question": "   "}, "question is empty"),
        ({"annotator": "n" * 101}, "annotator"),
        ({"frame_indices": [1, 2], "frame_timestamps_s": [0.1]}, "frame_timestamps_s"),
        ({"conversation": [{"role": "hacker", "content": "hi"}]}, "role"),
        ({"conversation": [{"role": "user", "content": {"path": "/tmp/x.mp4"}}]}, "content must be text"),
        ({"encode_params": {"budget": float("nan")}}, "encode_params"),
        ({"video_path": "/nonexistent/clip.mp4"}, "does not exist"),
    ],
)
def test_bad_ratings_are_refused_with_a_message_naming_the_problem(store, change, field):
    arguments = {"model": "m", "question": "q?", "answer": "a", "thumbs": 1, **change}
    with pytest.raises(ValueError, match=field):
        store.record_rating(**arguments)
    assert store.counts()["total"] == 0


def test_bad_comparisons_are_refused(store):
    with pytest.raises(ValueError, match="choice must be one of"):
        store.record_comparison(model_a="x", model_b="y", question="q", answer_a="1", answer_b="2", choice="left")
    with pytest.raises(ValueError, match="answer_b is too long"):
        store.record_comparison(
            model_a="x", model_b="y", question="q", answer_a="1", answer_b="2" * 10_001, choice="tie"
        )
    assert store.counts()["total"] == 0


def test_a_video_that_changed_since_encoding_is_refused(store, upload):
    with pytest.raises(ValueError, match="does not match"):
        store.record_rating(model="m", question="q", answer="a", thumbs=1, video_path=upload, video_sha256="0" * 64)


def test_gradio_history_ending_with_the_question_is_not_doubled(store):
    history = [
        {"role": "user", "content": "first?"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "second?"},
    ]
    store.record_rating(model="m", question="second?", answer="two", thumbs=1, conversation=history)
    assert store.records()[0]["conversation"] == history[:2]


def test_judgements_cannot_be_rewritten(store):
    store.record_rating(model="m", question="q", answer="a", thumbs=1)
    with sqlite3.connect(store.db_path) as raw:
        with pytest.raises(sqlite3.DatabaseError, match="write-once"):
            raw.execute("UPDATE judgements SET thumbs = -1")
    assert store.records()[0]["thumbs"] == 1


def test_the_annotator_is_stored_trimmed_and_anonymous_when_empty(tmp_path):
    with AnnotationStore(tmp_path) as store:
        named = store.record_rating(model="m", question="q", answer="a", thumbs=1, annotator="  Ada ")
        unnamed = store.record_rating(model="m", question="q", answer="a", thumbs=1)
        assert store.get(named)["annotator"] == "Ada" and store.get(unnamed)["annotator"] == "anonymous"
        with pytest.raises(ValueError, match="annotator"):
            store.record_rating(model="m", question="q", answer="a", thumbs=1, annotator="x" * 101)


def test_data_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "elsewhere"))
    assert default_data_dir() == (tmp_path / "elsewhere").resolve()
    with AnnotationStore() as store:
        assert store.db_path == (tmp_path / "elsewhere" / DB_FILENAME).resolve()
    monkeypatch.delenv("STUDIO_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    assert default_data_dir() == (tmp_path / "data").resolve()


def test_eight_threads_voting_at_once_lose_no_vote(tmp_path):
    """Half the threads share the app's store, half open their own (another worker process on the same folder)."""
    data_dir = tmp_path / "data"
    shared = AnnotationStore(data_dir)
    threads_count, votes_per_thread = 8, 40
    start = threading.Barrier(threads_count)
    acknowledged: list[list[str]] = [[] for _ in range(threads_count)]
    errors: list[BaseException] = []

    def vote(worker: int) -> None:
        store = shared if worker % 2 == 0 else AnnotationStore(data_dir)
        try:
            start.wait()
            for n in range(votes_per_thread):
                if n % 2 == 0:
                    record_id = store.record_rating(
                        model="m", question=f"w{worker} q{n}", answer="a", thumbs=1 if n % 4 == 0 else -1
                    )
                else:
                    record_id = store.record_comparison(
                        model_a="x",
                        model_b="y",
                        question=f"w{worker} q{n}",
                        answer_a="1",
                        answer_b="2",
                        choice="a" if n % 4 == 1 else "tie",
                    )
                acknowledged[worker].append(record_id)
        except BaseException as error:
            errors.append(error)
        finally:
            if store is not shared:
                store.close()

    workers = [threading.Thread(target=vote, args=(i,)) for i in range(threads_count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    total = threads_count * votes_per_thread
    all_ids = [record_id for ids in acknowledged for record_id in ids]
    assert len(set(all_ids)) == total
    assert {r["id"] for r in shared.records()} == set(all_ids)
    assert shared.counts() == {"rating": total // 2, "comparison": total // 2, "total": total}
    assert summary_counts(shared)["dpo_pairs"] == total // 4

    result = export_all(shared, formats=("jsonl", "dpo", "kto"), make_zip=False)
    assert sum(1 for _ in open(result.files["jsonl"], encoding="utf-8")) == total
    assert sum(1 for _ in open(result.files["dpo_jsonl"], encoding="utf-8")) == total // 4  # the "a" votes
    assert sum(1 for _ in open(result.files["kto_jsonl"], encoding="utf-8")) == total // 2  # every thumbs
    shared.close()


RECORDER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from app.data.store import AnnotationStore

    store = AnnotationStore(sys.argv[1])
    print("ready", flush=True)
    n = 0
    while True:
        if n % 3 == 2:
            record_id = store.record_comparison(
                model_a="x", model_b="y", question=f"q{n}", answer_a="A" * 500, answer_b="B" * 500, choice="a"
            )
        else:
            record_id = store.record_rating(model="m", question=f"q{n}", answer="x" * 500, score=1 + n % 5)
        print(record_id, flush=True)  # printed only once record_* has returned: this is the acknowledgement
        n += 1
    """
)


def test_votes_acknowledged_before_a_sigkill_survive_it(tmp_path):
    data_dir = tmp_path / "data"
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    process = subprocess.Popen(
        [sys.executable, str(script), str(data_dir), str(REPO_ROOT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged: list[str] = []
    try:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            acknowledged.append(process.stdout.readline().strip())
        os.kill(process.pid, signal.SIGKILL)  # in the middle of the burst: the recorder never pauses
        process.wait(timeout=10)
        # Acknowledgements still in the pipe were printed before the kill, so they count too (a cut-off last line
        # was never fully acknowledged).
        rest = process.stdout.read()
        acknowledged += [line for line in rest.split("\n")[:-1] if line]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 300

    with sqlite3.connect(data_dir / DB_FILENAME) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with AnnotationStore(data_dir) as reopened:
        stored_ids = {record["id"] for record in reopened.records()}
        assert set(acknowledged) <= stored_ids
        assert reopened.integrity_check() == "ok"
        # and the reopened store takes new votes
        reopened.record_rating(model="m", question="after restart", answer="a", thumbs=1)
        assert reopened.counts()["total"] == len(stored_ids) + 1
