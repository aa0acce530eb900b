"""Benchmark (b): the embedded default on a 60 s clip, 2 cores.

Measures, in one run: model start from the local weights cache (in a fresh subprocess, so imports count), a cold
encode + first token for the first question, and the first token of a follow-up question on the same video
(which must reuse the cached encoding). Prints the figures against the targets: start <= 5 s, cold encode +
first token <= 6 s, follow-up first token <= 0.3 of the first turn's.

    python bench/bench_embedded.py           # 60 s clip, 32 frames, median of 3
    python bench/bench_embedded.py --quick   # 12 s clip, 16 frames, once, one start (CI; targets not meaningful)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

from models.base import EncodeParams, GenerationParams, collect  # noqa: E402
from models.pipeline import ENCODE_CACHE, encode_video  # noqa: E402

GREEDY = GenerationParams(max_new_tokens=24)


def make_minute_clip(path: Path, seconds: int = 60) -> Path:
    """60 s (or `seconds`), 512x384, 24 fps: six scientific-photo shots of a sixth of that each, with slow pans
    (scikit-image's sample photos)."""
    if path.exists():
        return path
    from skimage import data

    images = [data.chelsea(), data.coffee(), data.rocket(), data.astronaut(), data.stereo_motorcycle()[0], data.cat()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24, options={"preset": "ultrafast", "g": "48"})
        stream.width, stream.height, stream.pix_fmt = 512, 384, "yuv420p"
        stream.time_base = Fraction(1, 24)
        shot = seconds * 24 // len(images)  # frames per shot
        for image in images:
            h, w = image.shape[:2]
            for i in range(shot):  # a slow pan across the photo
                scale = 0.75
                ch, cw = int(h * scale), int(w * scale)
                top = int((h - ch) * i / (shot - 1))
                left = int((w - cw) * (shot - 1 - i) / (shot - 1))
                crop = image[top : top + ch, left : left + cw]
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(crop), format="rgb24").reformat(512, 384)
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


STARTUP = """
import time, json
started = time.perf_counter()
from models.registry import load_model
model = load_model("slowfast-lite")
print(json.dumps({"start_s": time.perf_counter() - started, "source": model.weights_source}))
"""


def measure_start(runs: int = 2) -> dict:
    """Start the model twice in fresh processes: the first may fill the weights cache, the second is measured
    (`runs=1`: once, which counts filling the cache when it is empty)."""
    for _ in range(runs):
        result = subprocess.run([sys.executable, "-c", STARTUP], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def first_token_s(model, context, history, question) -> float:
    started = time.perf_counter()
    stream = model.stream(context, history, question, GREEDY)
    try:
        for item in stream:
            if isinstance(item, str) and item.strip():
                break
        return time.perf_counter() - started
    finally:
        stream.close()  # stops generation at the next token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 s clip, 16 frames, one repeat, one model start")
    args = parser.parse_args()
    from models.registry import load_model

    clip = make_minute_clip(OUT / "clip_12s.mp4", 12) if args.quick else make_minute_clip(OUT / "minute.mp4")
    start = measure_start(1 if args.quick else 2)
    model = load_model("slowfast-lite")
    params = EncodeParams(num_frames=16 if args.quick else 32, fps=2.0)  # official: 192 language tokens
    first_turn = []
    follow_up = []
    for _ in range(1 if args.quick else 3):
        ENCODE_CACHE.clear()  # cold: neither the encoding nor any prompt's KV cache is reused
        model.llm.prefix_cache.clear()
        started = time.perf_counter()
        context = encode_video(model, str(clip), params)
        encode_s = time.perf_counter() - started
        first = first_token_s(model, context, [], "What animal is in the video?")
        first_turn.append((encode_s, first))
        answer = collect(model.stream(context, [], "What animal is in the video?", GREEDY))
        history = [
            {"role": "user", "content": "What animal is in the video?"},
            {"role": "assistant", "content": answer.text},
        ]
        started = time.perf_counter()
        again = encode_video(model, str(clip), params)
        follow_up.append(
            time.perf_counter() - started + first_token_s(model, again, history, "What happens at the end?")
        )
    encode_s, first_s = (float(np.median(values)) for values in zip(*first_turn))
    cold = encode_s + first_s
    follow = float(np.median(follow_up))
    print(f"weights: {start['source']}")
    print(f"{'measure':44s} {'value':>9s} {'target':>9s}")
    print(f"{'model start from the local cache (s)':44s} {start['start_s']:9.2f} {'<= 5':>9s}")
    print(f"{'cold encode (s)':44s} {encode_s:9.2f}")
    print(f"{'first token after encode (s)':44s} {first_s:9.2f}")
    print(f"{'cold encode + first token (s)':44s} {cold:9.2f} {'<= 6':>9s}")
    print(f"{'follow-up first token (s)':44s} {follow:9.2f}")
    print(f"{'follow-up / first turn (ratio)':44s} {follow / cold:9.3f} {'<= 0.3':>9s}")


if __name__ == "__main__":
    main()
