"""Campaign benchmark: generation throughput with and without the encode cache, and queue latency under load.

(a) Generation: a pairwise campaign of the example clips (assets/*.mp4) x 2 questions each, answered by two setups
of the embedded default (`slowfast-lite`: `official` at 100 % and `dynamic` at 25 %, 8 frames, 8 new tokens) with
`app.campaigns.generate.run_campaign`, once as the app runs it (the process-wide encode cache on: one encode per
video and setup) and once with the cache defeated (every answer encodes its video again). Prints items per minute
(an item is done when both setups have answered it) for both and their ratio. The model is loaded and warmed up
before either run, and the LLM's prompt cache is cleared before each, so the two differ only in the encode cache.

(b) Queue: a 10,000-item campaign whose answers are recorded up front (fake texts, no model), judged by 10
annotators at once, each in its own thread asking `CampaignStore.next_item` (what `/campaign_next` calls) and
then judging what it got. Prints next_item latency p50 / p95 (goal: p95 < 50 ms) next to one annotator alone.

    python bench/bench_campaigns.py            # full (~45 s on 2 cores); output in bench/results/campaigns.txt
    python bench/bench_campaigns.py --quick    # 2 clips, 1,000 items, fewer calls (CI)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.access.identity import Identity  # noqa: E402
from app.campaigns.generate import answer_one, run_campaign  # noqa: E402
from app.campaigns.manifest import Item, load_manifest, setup_from_fields  # noqa: E402
from app.campaigns.store import CampaignStore  # noqa: E402
from models.pipeline import ENCODE_CACHE, video_sha256  # noqa: E402
from models.video import probe_video  # noqa: E402

QUESTIONS = ("What is shown in the video?", "What happens at the end of the video?")
SETUPS = (
    {"name": "official-100", "compressor": "official", "budget": 100},
    {"name": "dynamic-25", "compressor": "dynamic", "budget": 25},
)
MODEL = "slowfast-lite"
GOAL_P95_MS = 50.0


def campaign_setups() -> list:
    return [setup_from_fields({**fields, "model": MODEL, "frames": 8, "max_new_tokens": 8}) for fields in SETUPS]


def write_manifest(folder: Path, clips: list[Path]) -> Path:
    path = folder / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "video", "question"])
        for clip in clips:
            for n, question in enumerate(QUESTIONS):
                writer.writerow([f"{clip.stem}-q{n}", str(clip), question])
    return path


@contextlib.contextmanager
def encode_cache_off():
    """Nothing stays in the process-wide encode cache while inside: every `encode_video` computes afresh."""
    kept = ENCODE_CACHE.max_entries
    ENCODE_CACHE.clear()
    ENCODE_CACHE.max_entries = 0
    try:
        yield
    finally:
        ENCODE_CACHE.max_entries = kept


def generation(clips: list[Path]) -> None:
    from models.registry import load_model

    setups = campaign_setups()
    started = time.perf_counter()
    model = load_model(MODEL)
    load_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="bench-campaigns-") as folder:
        items = load_manifest(write_manifest(Path(folder), clips))
        store = CampaignStore(Path(folder) / "data", rng=random.Random(0))
        answer_one(model, items[0], setups[0])  # warm-up (first forward passes), outside both runs
        results = {}
        for label, cache in (("encode cache on", contextlib.nullcontext), ("encode cache off", encode_cache_off)):
            name = "cached" if cache is contextlib.nullcontext else "uncached"
            store.create(name, items, setups, k=1)
            ENCODE_CACHE.clear()
            model.llm.prefix_cache.clear()
            misses = ENCODE_CACHE.misses
            with cache():
                summary = run_campaign(store, name, load=lambda _name: model)
            if summary["failed"]:
                raise RuntimeError(f"{name}: {summary['failed']} answer(s) failed: {store.answers(name)}")
            encodes = ENCODE_CACHE.misses - misses
            seconds = summary["seconds"]
            results[label] = (summary["done"], encodes, seconds, len(items) / seconds * 60)
        store.close()
    print(
        f"## (a) generation: {len(items)} items ({len(clips)} clips x {len(QUESTIONS)} questions) x {len(setups)} "
        f"setups of {MODEL} ({', '.join(s.name for s in setups)}; 8 frames, 8 new tokens); model load {load_s:.1f} s"
    )
    print(f"{'run':>18} | {'answers':>7} {'encodes':>7} {'seconds':>8} | {'items/min':>9}")
    for label, (done, encodes, seconds, per_minute) in results.items():
        print(f"{label:>18} | {done:>7} {encodes:>7} {seconds:>8.1f} | {per_minute:>9.1f}")
    on, off = results["encode cache on"][3], results["encode cache off"][3]
    print(f"items/min with the encode cache / without: {on / off:.2f}x\n")


def fake_items(count: int, clip: Path) -> list[Item]:
    """`count` items on one clip, as a manifest of that many rows would give (the clip is probed once)."""
    digest, duration_s = video_sha256(str(clip)), float(probe_video(clip).duration_s)
    return [
        Item(f"item-{n:05d}", str(clip), f"Question {n} about the clip?", None, digest, duration_s)
        for n in range(count)
    ]


def annotate(store: CampaignStore, name: str, who: Identity, calls: int, rng: random.Random) -> list[float]:
    """`calls` rounds of next_item then judge; the seconds each next_item took."""
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        handed = store.next_item(name, who)
        latencies.append(time.perf_counter() - started)
        if handed is None:
            break
        store.judge(name, handed["item_id"], who, choice=rng.choice(("a", "b", "tie", "both_bad")))
    return latencies


def percentile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000


def queue(count: int, annotators: int, calls: int, clip: Path) -> None:
    setups = campaign_setups()
    with tempfile.TemporaryDirectory(prefix="bench-campaigns-") as folder:
        store = CampaignStore(Path(folder) / "data", rng=random.Random(0))
        started = time.perf_counter()
        items = fake_items(count, clip)
        store.create("queue", items, setups, k=3)
        answers = [
            {"item_id": item.id, "setup": setup.name, "text": f"{setup.name} says something about item {n}."}
            for n, item in enumerate(items)
            for setup in setups
        ]
        store.record_answers("queue", answers)
        setup_s = time.perf_counter() - started

        solo = annotate(store, "queue", Identity("account", "solo", "annotator"), calls, random.Random(1))
        results: dict[int, list[float]] = {}
        start = threading.Barrier(annotators)

        def work(n: int) -> None:
            start.wait()
            who = Identity("account", f"ann{n}", "annotator")
            results[n] = annotate(store, "queue", who, calls, random.Random(100 + n))

        started = time.perf_counter()
        threads = [threading.Thread(target=work, args=(n,)) for n in range(annotators)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall_s = time.perf_counter() - started
        crowd = [value for values in results.values() for value in values]
        judged = store.status("queue")["judgements"]
        store.close()
    print(
        f"## (b) /campaign_next: {count:,} items with recorded answers (created in {setup_s:.1f} s), k=3; "
        f"{annotators} annotators x {calls} rounds of next_item + judge, one thread each"
    )
    print(f"{'annotators':>10} | {'calls':>5} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} | {'p95 / goal':>10}")
    rows = (("1 (alone)", solo), (str(annotators), crowd))
    for label, values in rows:
        p50, p95 = percentile_ms(values, 50), percentile_ms(values, 95)
        print(
            f"{label:>10} | {len(values):>5} {p50:>7.1f} {p95:>7.1f} {max(values) * 1000:>7.1f} | "
            f"{p95 / GOAL_P95_MS:>9.2f}x"
        )
    crowd_p95 = percentile_ms(crowd, 95)
    print(
        f"p95 with {annotators} annotators / alone: {crowd_p95 / percentile_ms(solo, 95):.2f}x; goal p95 < "
        f"{GOAL_P95_MS:g} ms: {'met' if crowd_p95 < GOAL_P95_MS else 'MISSED'}; {judged} judgements, "
        f"{len(crowd) / wall_s:.0f} next_item calls/s with {annotators} annotators (median "
        f"{statistics.median(crowd) * 1000:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 clips, 1,000 items, 20 rounds per annotator")
    parser.add_argument("--items", type=int, help="items in the queue campaign (default 10,000; quick 1,000)")
    parser.add_argument("--annotators", type=int, default=10)
    parser.add_argument("--calls", type=int, help="rounds per annotator (default 100; quick 20)")
    args = parser.parse_args()
    clips = sorted((ROOT / "assets").glob("*.mp4"))
    if args.quick:
        clips = clips[:2]
    print(f"{os.cpu_count()} CPU core(s); load average {os.getloadavg()[0]:.1f}\n")
    generation(clips)
    queue(
        args.items or (1_000 if args.quick else 10_000),
        args.annotators,
        args.calls or (20 if args.quick else 100),
        clips[0],
    )


if __name__ == "__main__":
    main()
