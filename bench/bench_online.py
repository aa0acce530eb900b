"""Live-mode benchmark: what one frame of the fast path costs and how long a remark (the slow path) takes, on 2 cores.

The fast path has to keep up with the stream: at 2 fps a frame arrives every 0.5 s, so its cost is reported as the
fraction of that interval it uses (it must stay well under 1.0). Measured on assets/montage.mp4 (512x384, 24 fps):

- live: one frame per call, as the Live tab feeds it while playing (decode of the next grid frame + one
  EfficientNet-Lite0 forward + the novelty score), and the same without decoding;
- replay: frames in batches of 16, as the server-side replay runs them.

Slow path: the five remarks on the montage's keyframes written by SmolLM2-135M (text cache cleared each time), as
time to first text and time to the whole remark, and one question answered from the stream's memory. Also printed:
the same remark as a fraction of the interval, i.e. how many frames of backlog one remark creates.

    python bench/bench_online.py               # ~1 min on 2 cores
    python bench/bench_online.py --repeats 1   # quicker
    python bench/bench_online.py --quick       # one repeat (CI)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INTERVAL_S = 0.5  # 2 fps


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", default=str(ROOT / "assets" / "montage.mp4"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repeat (CI)")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1

    from models.online.base import FrameDecision, OnlineParams, Remark
    from models.online.frames import StreamReader
    from models.online.lite import load_online

    started = time.perf_counter()
    online = load_online()
    load = os.getloadavg()[0]
    print(f"torch threads: {torch.get_num_threads()}; model load: {time.perf_counter() - started:.1f} s")
    if load > os.cpu_count():
        print(f"warning: load average {load:.1f} on {os.cpu_count()} cores: other work shares the CPU, times are high")

    # -- fast path, live: one frame per call
    live_total, live_model = [], []
    for _ in range(args.repeats):
        session = online.start_session(OnlineParams(remark_text="template"))
        with StreamReader(args.video, fps=2.0, max_side=online.settings.input_max_side) as reader:
            for t in reader.grid_s:
                tick = time.perf_counter()
                pixels, times = reader.read([t])
                for _event in session.feed_many(pixels, times):
                    pass  # template remarks only: this loop times the fast path
                done = time.perf_counter()
                live_total.append(done - tick)
                live_model.append(session.fast_path_s[-1])
    # -- fast path, replay: batches of 16
    replay_per_frame = []
    for _ in range(args.repeats):
        session = online.start_session(OnlineParams(remark_text="template"))
        with StreamReader(args.video, fps=2.0, max_side=online.settings.input_max_side) as reader:
            count, tick = 0, time.perf_counter()
            for pixels, times in reader.batches(16):
                for _event in session.feed_many(pixels, times):
                    pass
                count += len(times)
            replay_per_frame.append((time.perf_counter() - tick) / count)

    print("\nfast path per frame                  median ms (best)   fraction of the 0.5 s interval (median)")
    for label, values in (
        ("live, decode + forward + score", live_total),
        ("live, forward + score (no decode)", live_model),
        ("replay, batches of 16, all included", replay_per_frame),
    ):
        median = median_ms(values)
        print(f"  {label:36s} {median:6.1f} ({min(values) * 1000:.1f})   {median / 1000 / INTERVAL_S:.3f}")

    # -- slow path: the remarks of a replay, LLM text, cache cleared
    first_text, whole, texts = [], [], []
    for _ in range(args.repeats):
        online._text_cache.clear()
        session = online.start_session(OnlineParams())
        with StreamReader(args.video, fps=2.0, max_side=online.settings.input_max_side) as reader:
            for pixels, times in reader.batches(16):
                decided = None
                for event in session.feed_many(pixels, times):
                    now = time.perf_counter()
                    if isinstance(event, FrameDecision) and event.respond:
                        decided, first = now, None
                    elif isinstance(event, str) and decided is not None and first is None:
                        first = now - decided
                    elif isinstance(event, Remark) and decided is not None:
                        whole.append(now - decided)
                        first_text.append(first if first is not None else now - decided)
                        texts.append(f"{event.time_s:5.2f} s  {event.text}")
                        decided = None
    online._text_cache.clear()
    session.ask("What is on screen now?", session.position_s or 0.0)
    ask_started = time.perf_counter()
    answer = [e for e in session.answer_due(session.position_s or 0.0) if isinstance(e, Remark)][0]
    answer_s = time.perf_counter() - ask_started

    print(f"\nslow path: {len(whole)} remarks           median s (best)   fraction of the interval (median)")
    for label, values in (("time to first text", first_text), ("whole remark", whole)):
        value = statistics.median(values)
        print(f"  {label:36s} {value:6.2f} ({min(values):.2f})   {value / INTERVAL_S:.2f}")
    print(f"  worst remark                         {max(whole):6.2f}")
    print(f"  one question answered                {answer_s:6.2f}   ({answer.text!r})")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print("\nremarks:")
    for text in dict.fromkeys(texts):
        print("  " + text)


if __name__ == "__main__":
    main()
