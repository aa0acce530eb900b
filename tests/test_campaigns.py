"""Annotation campaigns (app/campaigns/): manifests and setups with their per-row reports, the judging queue (fewest
first, never twice, exactly k, overshoot), resumable generation with a fake model, the statistics against figures
worked out by hand, and one real run of the command line on two bundled clips with the embedded default model."""

from __future__ import annotations

import itertools
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.access.identity import Identity
from app.campaigns import cli, results
from app.campaigns.exports import export_campaign
from app.campaigns.generate import CampaignRunner, run_campaign
from app.campaigns.manifest import Item, ManifestError, load_manifest, load_setups, setup_from_fields
from app.campaigns.store import CLAIM_SECONDS, CampaignStore
from models.base import Answer, ModelUnavailableError, TokenStats, VisualContext
from models.pipeline import video_sha256

ROOT = Path(__file__).resolve().parent.parent
ANN1 = Identity("account", "ann1", "annotator")
ANN2 = Identity("account", "ann2", "annotator")
ANN3 = Identity("account", "ann3", "annotator")


def lite_setup(name: str, compressor: str = "official", budget: float = 100, **fields):
    return setup_from_fields(
        {"name": name, "model": "slowfast-lite", "compressor": compressor, "budget": budget, **fields}
    )


SETUPS = [lite_setup("full"), lite_setup("quarter", "dynamic", 25)]


def fake_items(count: int) -> list[Item]:
    """Items that never touch a video file (for queue tests): ten videos, `count` questions."""
    return [
        Item(f"q{n:05d}", f"/videos/{n % 10}.mp4", f"question {n}?", None, f"{n % 10:064x}", 4.0) for n in range(count)
    ]


def answered_campaign(store: CampaignStore, name: str, items: int, k: int, setups=SETUPS, kind="pairwise"):
    """A campaign whose every item already has an answer from every setup ("<setup>: <item>")."""
    store.create(name, fake_items(items), setups, k, kind=kind)
    rows = [
        {
            "item_id": item.id,
            "setup": setup.name,
            "text": f"{setup.name}: {item.id}",
            "compression": {"visual_tokens": 10},
        }
        for item in fake_items(items)
        for setup in setups
    ]
    store.record_answers(name, rows)


@pytest.fixture
def store(tmp_path: Path):
    opened = CampaignStore(tmp_path / "data", rng=random.Random(7))
    yield opened
    opened.close()


# ----------------------------------------------------------------------------------------------------------------
# Manifests and setups


@pytest.fixture
def clips(make_video, tmp_path: Path) -> Path:
    """Two small clips under tmp_path/clips/; returns tmp_path."""
    (tmp_path / "clips").mkdir()
    make_video("clips/one.mp4", duration_s=1.0)
    make_video("clips/two.mp4", duration_s=2.0)
    return tmp_path


ROWS = [
    {"video": "clips/one.mp4", "question": "What moves?"},
    {"video": "clips/two.mp4", "question": "How long is it?", "id": "long", "reference": "2 s"},
    {"video": "clips/one.mp4", "question": "What colour?"},
]


def write_manifest(folder: Path, kind: str, rows: list[dict]) -> Path:
    if kind == "csv":
        path = folder / "manifest.csv"
        lines = ["video,question,id,reference"] + [
            ",".join(str(row.get(key, "")) for key in ("video", "question", "id", "reference")) for row in rows
        ]
        path.write_text("\n".join(lines) + "\n")
    elif kind == "jsonl":
        path = folder / "manifest.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif kind == "parquet":
        path = folder / "manifest.parquet"
        columns = {key: [row.get(key) for row in rows] for key in ("video", "question", "id", "reference")}
        pq.write_table(pa.table(columns), path)
    else:
        path = folder / "dataset"
        columns = {key: [row.get(key) for row in rows] for key in ("video", "question", "id", "reference")}
        datasets.Dataset.from_dict(columns).save_to_disk(str(path))
        (path / "clips").symlink_to(folder / "clips")
    return path


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet", "datasets"])
def test_every_manifest_format_gives_the_same_items(clips: Path, kind: str):
    items = load_manifest(write_manifest(clips, kind, ROWS))
    assert [item.id for item in items] == ["item-0001", "long", "item-0003"]
    assert [item.question for item in items] == ["What moves?", "How long is it?", "What colour?"]
    assert [item.reference for item in items] == [None, "2 s", None]
    assert all(Path(item.video).is_absolute() and Path(item.video).is_file() for item in items)
    assert items[0].sha256 == items[2].sha256 != items[1].sha256 and len(items[0].sha256) == 64
    assert items[0].duration_s == pytest.approx(1.0, abs=0.15) and items[1].duration_s == pytest.approx(2.0, abs=0.15)


def test_a_bad_manifest_names_every_bad_row_and_creates_nothing(clips: Path, capsys):
    (clips / "clips" / "notes.mp4").write_text("not a video at all")
    rows = [
        ROWS[0],
        {"video": "clips/two.mp4", "question": "Fine?", "id": "dup"},
        {"video": "clips/x.mp4", "question": "Where?"},
        {"video": "clips/notes.mp4", "question": "Readable?"},
        {"video": "clips/two.mp4", "question": "", "id": "empty"},
        {"video": "clips/one.mp4", "question": "Again?", "id": "dup"},
    ]
    manifest = write_manifest(clips, "jsonl", rows)
    with pytest.raises(ManifestError) as raised:
        load_manifest(manifest)
    problems = raised.value.problems
    assert problems[0] == "row 3: video clips/x.mp4 not found"
    assert problems[1].startswith("row 4: video clips/notes.mp4 cannot be read:") and "not a video" in problems[1]
    assert problems[2:] == ["row 5: no question", "row 6: duplicate id 'dup' (also row 2)"]

    setups = clips / "setups.json"
    setups.write_text(json.dumps([{"name": n, "model": "slowfast-lite", "compressor": "official", "budget": 100}
                                  for n in ("a", "b")]))  # fmt: skip
    data = clips / "data"
    code = cli.main(
        ["create", "c1", "--manifest", str(manifest), "--setups", str(setups), "--k", "2", "--data-dir", str(data)]
    )
    assert code == 2
    assert "row 3: video clips/x.mp4 not found" in capsys.readouterr().err
    assert not data.exists()  # nothing was created, not even the data directory

    no_question = clips / "columns.csv"
    no_question.write_text("video,prompt\nclips/one.mp4,hi\n")
    with pytest.raises(ManifestError, match="missing column"):
        load_manifest(no_question)


def test_setups_read_alike_from_json_and_toml(tmp_path: Path):
    entries = [
        {"name": "full", "model": "slowfast-lite", "compressor": "official", "budget": 100, "frames": 8},
        {
            "name": "fast",
            "model": "slowfast-lite",
            "compressor": "dynamic",
            "budget": 25,
            "temperature": 0.7,
            "seed": 3,
        },
    ]
    (tmp_path / "s.json").write_text(json.dumps(entries))
    toml = "".join(
        "[[setup]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in entry.items()) for entry in entries
    )
    (tmp_path / "s.toml").write_text(toml)
    from_json, from_toml = load_setups(tmp_path / "s.json"), load_setups(tmp_path / "s.toml")
    assert from_json == from_toml
    full, fast = from_json
    assert (full.encode.num_frames, full.encode.fps, full.encode.compressor) == (8, 2.0, "official")
    assert fast.encode.num_frames == 32  # the registry's default for slowfast-lite
    assert (full.generation.temperature, fast.generation.temperature, fast.generation.seed) == (0.0, 0.7, 3)
    assert fast.encode.budget_pct == 25


def test_bad_setups_are_all_reported(tmp_path: Path):
    entries = [
        {"name": "a", "model": "no-such-model", "compressor": "official", "budget": 100},
        {"name": "b", "model": "slowfast-lite", "compressor": "zip", "budget": 100},
        {"name": "c", "model": "slowfast-lite", "compressor": "dynamic", "budget": 1},
        {"name": "c", "model": "slowfast-lite", "compressor": "official", "budget": 100},
        {"name": "c", "model": "slowfast-lite", "compressor": "official", "budget": 100},
        {"name": "d", "model": "slowfast-lite", "budget": 100, "frame": 8},
    ]
    (tmp_path / "s.json").write_text(json.dumps(entries))
    with pytest.raises(ManifestError) as raised:
        load_setups(tmp_path / "s.json")
    problems = raised.value.problems
    assert problems[0].startswith("setup 1 (a): unknown model 'no-such-model'")
    assert problems[1].startswith("setup 2 (b): slowfast-lite supports the compressors")
    assert problems[2].startswith("setup 3 (c): token budget (%) must be between")
    assert problems[3] == "setup 5 (c): the name 'c' is used twice"
    assert problems[4].startswith("setup 6 (d): unknown field(s) frame")
    (tmp_path / "one.toml").write_text(
        '[[setup]]\nname = "x"\nmodel = "slowfast-lite"\ncompressor = "official"\nbudget = 50\n'
    )
    with pytest.raises(ManifestError, match="at least 2 setups"):
        load_setups(tmp_path / "one.toml")


def test_creating_is_all_or_nothing(store: CampaignStore):
    items = fake_items(3)
    with pytest.raises(ValueError, match="unique"):
        store.create("c", [*items, items[0]], SETUPS, 2)
    with pytest.raises(ValueError, match="at least 2 setups"):
        store.create("c", items, SETUPS[:1], 2)
    assert store.names() == []
    store.create("c", items, SETUPS, 2, guidelines="# Prefer the shorter answer")
    with pytest.raises(ValueError, match="already exists"):
        store.create("c", items, SETUPS, 2)
    campaign = store.get("c")
    assert (campaign.items, campaign.k, len(campaign.setups)) == (3, 2, 2)
    assert len(campaign.guidelines_version) == 12 and campaign.setups == tuple(SETUPS)


def test_campaigns_share_the_annotation_stores_database(tmp_path: Path):
    from app.data.store import AnnotationStore

    campaigns = CampaignStore(tmp_path)
    campaigns.create("c", fake_items(2), SETUPS, 1)
    annotations = AnnotationStore(tmp_path)  # the app opening the same data directory afterwards
    annotations.record_rating(model="m", question="What?", answer="A cat.", thumbs=1)
    assert campaigns.db_path == annotations.db_path and annotations.integrity_check() == "ok"
    assert CampaignStore(tmp_path).names() == ["c"] and annotations.counts()["total"] == 1
    with sqlite3.connect(campaigns.db_path) as reader:
        assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # WAL is a property of the file


# ----------------------------------------------------------------------------------------------------------------
# The queue


def judge_everything(store: CampaignStore, name: str, who: Identity, choice: str = "a") -> list[str]:
    served = []
    while (handed := store.next_item(name, who)) is not None:
        served.append(handed["item_id"])
        store.judge(name, handed["item_id"], who, choice=choice)
    return served


def test_the_least_judged_item_comes_first_and_claims_hold_a_slot(store: CampaignStore):
    answered_campaign(store, "c", items=3, k=2)
    first = store.next_item("c", ANN1)
    assert first["item_id"] == "q00000" and [a["slot"] for a in first["answers"]] == ["a", "b"]
    assert store.next_item("c", ANN1)["item_id"] == "q00000"  # the same item again while the claim is live
    assert store.next_item("c", ANN2)["item_id"] == "q00001"  # q00000 has a live claim
    store.judge("c", "q00000", ANN1, choice="a")
    store.judge("c", "q00001", ANN2, choice="tie")
    assert store.next_item("c", ANN3)["item_id"] == "q00002"  # the only one without a judgement
    handed = store.next_item("c", ANN1)
    assert handed["item_id"] == "q00001" and handed["done_by_me"] == 1 and handed["total"] == 3


def test_nobody_gets_an_item_twice_and_every_item_gets_exactly_k(store: CampaignStore):
    answered_campaign(store, "c", items=12, k=2)
    store.record_answers("c", [])  # a no-op
    for who in (ANN1, ANN2):
        served = judge_everything(store, "c", who)
        assert sorted(served) == [item.id for item in fake_items(12)]  # each once, none twice
    assert judge_everything(store, "c", ANN3) == []  # every item has its k: nothing left for a third person
    status = store.status("c")
    assert (status["judgements"], status["completed_items"], status["overshoot"]) == (24, 12, 0)
    assert status["per_annotator"] == {"ann1": 12, "ann2": 12}
    with pytest.raises(ValueError, match="already judged"):
        store.judge("c", "q00000", ANN1, choice="b")


def test_skipped_and_unready_items_are_not_handed_out(store: CampaignStore):
    store.create("c", fake_items(3), SETUPS, 1)
    answers = [{"item_id": f"q0000{n}", "setup": s.name, "text": "x"} for n in (0, 1) for s in SETUPS]
    store.record_answers("c", answers[:3])  # q00001 has one answer of two: not ready
    assert store.record_answer("c", "q00000", "full", text="again") is False  # idempotent
    first = store.next_item("c", ANN1)
    assert first["item_id"] == "q00000"
    store.skip("c", "q00000", ANN1)
    assert store.next_item("c", ANN1) is None
    store.record_failure("c", "q00001", "quarter", "out of memory")  # done generating, but one answer short
    assert store.next_item("c", ANN1) is None
    assert store.next_item("c", ANN2)["item_id"] == "q00000"
    assert store.status("c")["failed"] == 1 and store.status("c")["ready_items"] == 1


def test_judgements_are_checked(store: CampaignStore):
    answered_campaign(store, "c", items=2, k=1)
    with pytest.raises(ValueError, match="not handed to you"):
        store.judge("c", "q00000", ANN1, choice="a")
    store.next_item("c", ANN1)
    for bad in ({"choice": "left"}, {"choice": None, "score": 4}, {"choice": "a", "score": 3}):
        with pytest.raises(ValueError, match="pairwise judgement"):
            store.judge("c", "q00000", ANN1, **bad)
    with pytest.raises(PermissionError):
        store.next_item("c", Identity("visitor", "f00d", "visitor"))
    answered_campaign(store, "r", items=1, k=1, kind="rating")
    store.next_item("r", ANN1)
    for bad in ({"score": 6}, {"score": 2.5}, {"choice": "a"}):
        with pytest.raises(ValueError, match="rating judgement"):
            store.judge("r", "q00000", ANN1, **bad)
    assert store.judge("r", "q00000", ANN1, score=4)["overshoot"] is False


def test_the_judgement_records_the_setups_behind_the_slots(store: CampaignStore):
    answered_campaign(store, "c", items=40, k=1)
    behind_a = set()
    for _ in range(40):
        handed = store.next_item("c", ANN1)
        texts = {answer["slot"]: answer["text"] for answer in handed["answers"]}
        stored = store.judge("c", handed["item_id"], ANN1, choice="b")
        assert texts["a"] == f"{stored['setup_a']}: {handed['item_id']}"
        assert texts["b"] == f"{stored['setup_b']}: {handed['item_id']}"
        behind_a.add(stored["setup_a"])
    assert behind_a == {"full", "quarter"}  # the order is random
    assert {row["setup_b"] for row in store.judgements("c") if row["setup_a"] == "full"} == {"quarter"}


def test_with_three_setups_each_hand_out_shows_the_least_judged_pair(store: CampaignStore):
    three = [*SETUPS, lite_setup("half", "dynamic", 50)]
    answered_campaign(store, "c", items=1, k=3, setups=three)
    pairs = []
    for who in (ANN1, ANN2, ANN3):
        handed = store.next_item("c", who)
        stored = store.judge("c", handed["item_id"], who, choice="a")
        pairs.append(frozenset((stored["setup_a"], stored["setup_b"])))
    assert set(pairs) == {frozenset(("full", "quarter")), frozenset(("full", "half")), frozenset(("quarter", "half"))}


def test_two_takers_of_the_last_slot_give_one_overshoot_that_does_not_count(tmp_path: Path):
    first, second = CampaignStore(tmp_path), CampaignStore(tmp_path)  # two processes on one data directory
    answered_campaign(first, "c", items=1, k=1)
    start = time.time()
    assert first.next_item("c", ANN1, now=start)["item_id"] == "q00000"
    assert second.next_item("c", ANN2, now=start + 1) is None  # ann1's claim holds the only slot
    assert second.next_item("c", ANN2, now=start + CLAIM_SECONDS + 1)["item_id"] == "q00000"  # the claim ran out
    barrier, outcomes = threading.Barrier(2), {}

    def judge(store: CampaignStore, who: Identity) -> None:
        barrier.wait()
        outcomes[who.id] = store.judge("c", "q00000", who, choice="a")["overshoot"]

    threads = [threading.Thread(target=judge, args=pair) for pair in ((first, ANN1), (second, ANN2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == [False, True]
    status = first.status("c")
    assert (status["judgements"], status["overshoot"], status["completed_items"]) == (2, 1, 1)
    assert results.progress(first.judgements("c"), ["q00000"], 1)["items"][0] == {
        "item_id": "q00000", "judgements": 1, "overshoot": 1, "done": True
    }  # fmt: skip
    assert first.next_item("c", ANN3) is None


def test_next_item_is_fast_on_ten_thousand_items(store: CampaignStore):
    answered_campaign(store, "big", items=10_000, k=3)
    people = [Identity("account", f"p{n}", "annotator") for n in range(20)]
    timings = []
    for turn in range(60):
        who = people[turn % len(people)]
        started = time.perf_counter()
        handed = store.next_item("big", who)
        timings.append(time.perf_counter() - started)
        if turn % 3:
            store.judge("big", handed["item_id"], who, choice="a")
    median = sorted(timings)[len(timings) // 2]
    print(f"next_item on 10,000 items: median {median * 1000:.1f} ms, max {max(timings) * 1000:.1f} ms")
    assert median < 0.025


# ----------------------------------------------------------------------------------------------------------------
# Generation


FAKE_NAMES = itertools.count()


class FakeModel:
    """The VideoLLM protocol, instantly: the answer names the question and the budget; a question with "boom" fails,
    and `crash_after` answers raise KeyboardInterrupt (a kill in the middle of the job)."""

    decode_max_side = 64

    def __init__(self, crash_after: int | None = None) -> None:
        self.name = f"fake-{next(FAKE_NAMES)}"  # its own encode-cache entries
        self.encodes = 0
        self.answers = 0
        self.crash_after = crash_after

    def encode(self, frames, params, video_sha256):
        self.encodes += 1
        tokens = int(params.budget_pct)
        stats = TokenStats(
            slow_tokens=tokens, fast_tokens=0, compressor=params.compressor, budget_pct=params.budget_pct
        )
        indices, times = [int(i) for i in frames.indices], [float(t) for t in frames.timestamps_s]
        return VisualContext(self.name, video_sha256, params, indices, times, np.zeros((0, 1, 1, 3), np.uint8), stats)

    def stream(self, context, history, question, params, want_attention=True):
        assert history == [] and want_attention is False and params.temperature == 0.0
        if self.crash_after is not None and self.answers >= self.crash_after:
            raise KeyboardInterrupt
        if "boom" in question:
            raise RuntimeError("the model fell over")
        self.answers += 1
        yield "It is "
        yield Answer(f"{question} at {context.params.budget_pct:g}%", None, context.stats)


@pytest.fixture
def generation_campaign(make_video, store: CampaignStore):
    one, two = str(make_video("one.mp4", duration_s=1.0)), str(make_video("two.mp4", duration_s=1.2))
    items = [
        Item("a", one, "first?", None, video_sha256(one), 1.0),
        Item("b", two, "second?", None, video_sha256(two), 1.2),
        Item("c", one, "third?", None, video_sha256(one), 1.0),
        Item("d", two, "boom?", None, video_sha256(two), 1.2),
    ]
    setups = [lite_setup("full", frames=4, fps=0), lite_setup("quarter", "dynamic", 25, frames=4, fps=0)]
    store.create("g", items, setups, 1)
    return store


def test_generation_resumes_after_a_crash_without_duplicates(generation_campaign: CampaignStore):
    store = generation_campaign
    assert [(item.id, setup.name) for item, setup in store.pending_generations("g")][:4] == [
        ("a", "full"),
        ("c", "full"),
        ("a", "quarter"),
        ("c", "quarter"),
    ]  # fmt: skip  video by video, so the encode cache hits
    crashing = FakeModel(crash_after=3)
    with pytest.raises(KeyboardInterrupt):
        run_campaign(store, "g", load=lambda name: crashing)
    assert store.status("g")["generated"] == 3  # each answer was stored as soon as it was done

    stop, seen = threading.Event(), []

    def progress(done, total, eta_s):
        seen.append((done, total))
        if done == 2:
            stop.set()

    model = FakeModel()
    assert run_campaign(store, "g", load=lambda name: model, progress=progress, stop=stop)["done"] == 2
    assert seen == [(0, 5), (1, 5), (2, 5)]
    outcome = run_campaign(store, "g", load=lambda name: model)
    assert (outcome["done"], outcome["failed"]) == (1, 2)  # the two "boom" answers fail, the job goes on
    again = run_campaign(store, "g", load=lambda name: model)
    assert (again["done"], again["failed"]) == (0, 0)  # failures are kept, not retried
    answers = store.answers("g")
    assert sorted((a["item_id"], a["setup"]) for a in answers) == [
        (item, setup) for item in "abcd" for setup in ("full", "quarter")
    ]
    by_key = {(a["item_id"], a["setup"]): a for a in answers}
    assert by_key[("d", "full")]["error"] == "RuntimeError: the model fell over"
    assert by_key[("a", "quarter")]["text"] == "first? at 25%"
    assert by_key[("a", "quarter")]["compression"]["visual_tokens"] == 25 == by_key[("a", "quarter")]["visual_tokens"]
    assert len(by_key[("b", "full")]["frame_timestamps_s"]) == 4
    status = store.status("g")
    assert (status["generated"], status["failed"], status["generations_total"]) == (6, 2, 8)


def test_one_encode_per_video_and_setup_and_the_runner_reports(generation_campaign: CampaignStore):
    model = FakeModel()
    runner = CampaignRunner(generation_campaign, "g", load=lambda name: model)
    assert runner.start() is True
    runner.join(30)
    state = runner.state()
    assert state == {"running": False, "done": 8, "total": 8, "eta_s": 0.0, "error": None}
    assert model.encodes == 4 and model.answers == 6  # 2 videos x 2 setups; the "boom" item failed twice

    def unavailable(name):
        raise ModelUnavailableError("needs a GPU")

    generation_campaign.create("h", generation_campaign.items("g"), generation_campaign.get("g").setups, 1)
    failing = CampaignRunner(generation_campaign, "h", load=unavailable)
    failing.start()
    failing.join(30)
    assert failing.state()["error"] == "ModelUnavailableError: needs a GPU"
    assert generation_campaign.status("h")["failed"] == 0  # nothing is blamed on the items


# ----------------------------------------------------------------------------------------------------------------
# Statistics, against figures worked out by hand


def vote(item, annotator, choice, setup_a="X", setup_b="Y", overshoot=False):
    return {"item_id": item, "annotator": annotator, "setup_a": setup_a, "setup_b": setup_b, "choice": choice,
            "score": None, "overshoot": overshoot}  # fmt: skip


# Two annotators, four items, setups X and Y. Seen from (X, Y): r1 says a a b b, r2 says a a b a (r2 saw item 4
# the other way round and chose "b", which is X).
AGREEMENT_VOTES = [
    vote("1", "r1", "a"), vote("1", "r2", "a"),
    vote("2", "r1", "a"), vote("2", "r2", "a"),
    vote("3", "r1", "b"), vote("3", "r2", "b"),
    vote("4", "r1", "b"), vote("4", "r2", "b", setup_a="Y", setup_b="X"),
]  # fmt: skip


def test_agreement_matches_the_hand_computation():
    figures = results.agreement(AGREEMENT_VOTES, "pairwise", k=2)
    # Raw: 3 of the 4 pairs of annotators agree.
    assert figures["raw_agreement"] == pytest.approx(3 / 4)
    # Alpha: the coincidences are o(a,a) = 4, o(b,b) = 2, o(a,b) = o(b,a) = 1, so n = 8, n_a = 5, n_b = 3 and
    # alpha = 1 - (n - 1) * (o_ab + o_ba) / (2 * n_a * n_b) = 1 - 7 * 2 / 30 = 8 / 15.
    assert figures["krippendorff_alpha"] == pytest.approx(8 / 15)
    # Fleiss: P-bar = 3/4; p_a = 5/8, p_b = 3/8, P_e = 34/64; kappa = (48/64 - 34/64) / (30/64) = 7 / 15.
    assert figures["fleiss_kappa"] == pytest.approx(7 / 15) and figures["fleiss_units"] == 4
    unanimous = [vote("1", "r1", "a"), vote("1", "r2", "a"), vote("2", "r1", "a")]
    assert results.raw_agreement(results.units(unanimous)) == 1.0
    assert results.krippendorff_alpha(results.units(unanimous)) is None  # one value only: alpha is undefined


def test_bradley_terry_matches_the_closed_form_and_orders_setups():
    # X beat Y 5 times, Y beat X 3 times, one tie (half a win each way), one "both bad" (left out): with two
    # players the maximum-likelihood difference is log(wins_X / wins_Y) = log(5.5 / 3.5).
    votes = [*AGREEMENT_VOTES, vote("5", "r1", "tie"), vote("6", "r1", "both_bad")]
    ranked = results.ranking(votes, ["Y", "X"])
    assert [row["setup"] for row in ranked] == ["X", "Y"]
    strength = {row["setup"]: row["strength"] for row in ranked}
    assert strength["X"] - strength["Y"] == pytest.approx(np.log(5.5 / 3.5), abs=2e-3)
    assert ranked[0]["ci95"][0] <= strength["X"] <= ranked[0]["ci95"][1]
    assert results.ranking(votes, ["Y", "X"]) == ranked  # the bootstrap has a fixed seed
    matrix = results.win_rates(votes, ["X", "Y"])["matrix"]
    assert matrix == [[None, round(5.5 / 9, 4)], [round(3.5 / 9, 4), None]]

    # Three setups, each pair played four times: P beats Q 3-1, Q beats R 3-1, P beats R 4-0.
    games = [("P", "Q", 3), ("Q", "P", 1), ("Q", "R", 3), ("R", "Q", 1), ("P", "R", 4)]
    votes = [vote(f"{a}{b}{n}", "r", "a", a, b) for a, b, times in games for n in range(times)]
    assert [row["setup"] for row in results.ranking(votes, ["R", "Q", "P"], samples=20)] == ["P", "Q", "R"]


def test_win_rate_against_visual_tokens():
    answers = [
        {"setup": "X", "visual_tokens": 100, "error": None},
        {"setup": "X", "visual_tokens": 50, "error": None},
        {"setup": "Y", "visual_tokens": 20, "error": None},
        {"setup": "Y", "visual_tokens": None, "error": "x"},
    ]
    rows = results.tokens_vs_win_rate(AGREEMENT_VOTES, answers, ["X", "Y"])
    assert rows == [
        {"setup": "X", "win_rate": 0.625, "comparisons": 8.0, "mean_visual_tokens": 75.0},
        {"setup": "Y", "win_rate": 0.375, "comparisons": 8.0, "mean_visual_tokens": 20.0},
    ]


# ----------------------------------------------------------------------------------------------------------------
# Exports


def test_dpo_and_kto_come_from_the_majority(store: CampaignStore, tmp_path: Path):
    answered_campaign(store, "c", items=2, k=3)
    for who, wanted in ((ANN1, "full"), (ANN2, "full"), (ANN3, "quarter")):
        for _ in range(2):
            handed = store.next_item("c", who)
            answer_of = {a["slot"]: a["text"] for a in handed["answers"]}
            slot = next(s for s, text in answer_of.items() if text.startswith(wanted))
            store.judge("c", handed["item_id"], who, choice=slot, reason=f"{who.id} likes {wanted}")
    dpo = [json.loads(line) for line in export_campaign(store, "c", "dpo", tmp_path / "out").read_text().splitlines()]
    assert len(dpo) == 2
    row = dpo[0]
    assert (row["chosen_setup"], row["rejected_setup"], row["agreement"], row["votes"]) == (
        "full",
        "quarter",
        0.6667,
        3,
    )
    assert row["prompt"] == [{"role": "user", "content": "question 0?"}]
    assert row["chosen"] == [{"role": "assistant", "content": "full: q00000"}]
    assert row["rejected"] == [{"role": "assistant", "content": "quarter: q00000"}]
    assert row["annotator"] == "ann1, ann2" and "ann3" not in row["reason"]
    assert (
        row["chosen_compression"]["visual_tokens"] == 10
        and row["guidelines_version"] == store.get("c").guidelines_version
    )
    kto = [json.loads(line) for line in export_campaign(store, "c", "kto", tmp_path / "out").read_text().splitlines()]
    assert [(r["setup"], r["label"]) for r in kto] == [("full", True), ("quarter", False)] * 2
    everything = export_campaign(store, "c", "jsonl", tmp_path / "out").read_text().splitlines()
    assert len(everything) == 6 and "Krippendorff" in (tmp_path / "out" / "README.md").read_text()


# ----------------------------------------------------------------------------------------------------------------
# The command line, for real


def test_the_command_line_runs_a_campaign_end_to_end(tmp_path: Path):
    for name in ("static_cat.mp4", "cat_then_coffee.mp4"):
        (tmp_path / name).symlink_to(ROOT / "assets" / name)
    (tmp_path / "manifest.csv").write_text(
        "video,question\nstatic_cat.mp4,What animal is shown?\ncat_then_coffee.mp4,What drink appears?\n"
    )
    setups = [
        {"name": "official", "model": "slowfast-lite", "compressor": "official", "budget": 100, "frames": 8,
         "max_new_tokens": 16},
        {"name": "dynamic", "model": "slowfast-lite", "compressor": "dynamic", "budget": 25, "frames": 8,
         "max_new_tokens": 16},
    ]  # fmt: skip
    (tmp_path / "setups.json").write_text(json.dumps(setups))
    data = tmp_path / "data"

    def campaigns(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "app.campaigns", *args, "--data-dir", str(data)]
        return subprocess.run(command, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300)

    created = campaigns("create", "cats", "--manifest", str(tmp_path / "manifest.csv"), "--setups",
                        str(tmp_path / "setups.json"), "--k", "1")  # fmt: skip
    assert created.returncode == 0, created.stderr
    ran = campaigns("run", "cats")
    assert ran.returncode == 0, ran.stderr
    assert "4/4 answers" in ran.stdout and json.loads(ran.stdout.splitlines()[-1])["done"] == 4
    status = json.loads(campaigns("status", "cats").stdout)
    assert (status["generated"], status["failed"], status["items"]) == (4, 0, 2)
    assert json.loads(campaigns("run", "cats").stdout.splitlines()[-1])["done"] == 0  # nothing left to do

    store = CampaignStore(data)
    assert judge_everything(store, "cats", ANN1) == ["item-0001", "item-0002"]
    exported = campaigns("export", "cats", "--format", "dpo", "--out", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in Path(exported.stdout.strip()).read_text().splitlines()]
    assert len(rows) == 2 and {row["chosen_setup"] for row in rows} <= {"official", "dynamic"}
    for row in rows:
        assert Path(row["video"]).is_file() and row["chosen"][0]["content"].strip()
        assert 1 <= len(row["chosen_frame_timestamps_s"]) <= 8
        assert row["chosen_compression"]["compressor"] in ("official", "dynamic")
    dynamic = [a for a in store.answers("cats") if a["setup"] == "dynamic"]
    official = {a["item_id"]: a["visual_tokens"] for a in store.answers("cats") if a["setup"] == "official"}
    assert all(a["visual_tokens"] <= official[a["item_id"]] for a in dynamic)
    assert (tmp_path / "export" / "README.md").is_file()
    bad = campaigns("status", "dogs")
    assert bad.returncode == 2 and "no campaign named 'dogs'" in bad.stderr


def test_a_rating_campaign_exports_kto_from_the_majority_label(store: CampaignStore, tmp_path: Path):
    answered_campaign(store, "r", items=1, k=3, kind="rating")
    rated = {}
    for who, score in ((ANN1, 5), (ANN2, 4), (ANN3, 1)):
        handed = store.next_item("r", who)
        assert [answer["slot"] for answer in handed["answers"]] == ["a"]
        rated[who.id] = store.judge("r", handed["item_id"], who, score=score)["setup_a"]
    assert set(rated.values()) == {"full", "quarter"}  # the least-rated setup first: both get rated
    rows = [json.loads(line) for line in export_campaign(store, "r", "kto", tmp_path).read_text().splitlines()]
    for row in rows:  # one unit per rated setup; a single vote is its own majority
        expected = [score for who, score in ((ANN1, 5), (ANN2, 4), (ANN3, 1)) if rated[who.id] == row["setup"]]
        assert row["label"] is (sum(s >= 4 for s in expected) * 2 > len(expected))
    with pytest.raises(ValueError, match="pairwise"):
        export_campaign(store, "r", "dpo", tmp_path)
    ranking = results.campaign_results(store, "r")["ranking"]
    assert {row["setup"] for row in ranking} == {"full", "quarter"}


def test_the_help_names_every_command(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("create NAME --manifest FILE --setups FILE --k K", "run NAME", "status NAME", "export NAME",
                   "--format dpo|kto|jsonl", "--data-dir", "STUDIO_DATA_DIR", "Exit status"):  # fmt: skip
        assert phrase in text
