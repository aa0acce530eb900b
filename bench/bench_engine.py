"""Benchmark: the embedded default's language model in-process vs on vLLM, at 1, 4 and 16 concurrent requests.

Both sides are the same `VideoLLM` interface over the same timeline of a bundled clip (perception in the studio):
`slowfast-lite` answers with SmolLM2 in this process (one generation at a time: concurrent requests queue on its
lock), the engine entry answers with the same SmolLM2 served by vLLM (which batches). Each request asks a different
question; per concurrency level it prints the mean first-token latency, the aggregate generated tokens per second
and the ratios vLLM / in-process (a TTFT ratio below 1 and a tokens/s ratio above 1 favour vLLM).

    python bench/bench_engine.py --url http://127.0.0.1:8000/v1   # a running vLLM serving the folder as smollm2
    python bench/bench_engine.py                                  # starts one from .venv-vllm/ (ENGINE_TEST_PYTHON)
    python bench/bench_engine.py --quick                          # 8 new tokens per answer (CI)

Without a server and without a vLLM environment it says so and exits 0 (skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from models.base import Answer, EncodeParams, GenerationParams  # noqa: E402
from models.pipeline import encode_video  # noqa: E402
from models.registry import DEFAULT_MODEL, load_model  # noqa: E402

CLIP = ROOT / "assets" / "cat_then_coffee.mp4"
ENGINE = "smollm2-bench-engine"
LEVELS = (1, 4, 16)
QUESTIONS = [
    "What animal is in the video?", "What happens first?", "What comes after the cat?", "Is there a cup?",
    "Describe the video.", "Is there a person?", "What food or drink is shown?", "How long is the video?",
]  # fmt: skip


def one_request(model, context, question: str, params: GenerationParams) -> tuple[float, int]:
    """(first-token latency in s, generated tokens) of one streamed answer."""
    started = time.perf_counter()
    first = None
    answer = None
    for item in model.stream(context, [], question, params, want_attention=False):
        if isinstance(item, Answer):
            answer = item
        elif first is None:
            first = time.perf_counter() - started
    tokens = answer.new_tokens if answer is not None else 0
    return (first if first is not None else time.perf_counter() - started), tokens


def level(model, context, concurrency: int, params: GenerationParams) -> tuple[float, float]:
    """(mean TTFT, generated tokens per second over the wall time) for `concurrency` simultaneous requests."""
    questions = [f"{QUESTIONS[i % len(QUESTIONS)]} ({i + 1})" for i in range(concurrency)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda q: one_request(model, context, q, params), questions))
    wall = time.perf_counter() - started
    ttft = sum(r[0] for r in results) / len(results)
    return ttft, sum(r[1] for r in results) / wall


@contextlib.contextmanager
def server(url: str | None):
    """The engine's base URL: the one given, else a vLLM started from the vLLM environment, else None."""
    if url:
        yield url
        return
    from vllm_engine import smollm2_folder, vllm_python, vllm_server

    python = vllm_python()
    if python is None:
        yield None
        return
    with vllm_server(python, smollm2_folder(), ROOT / "bench" / "out" / "vllm-server.log") as started:
        yield started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 new tokens per answer (CI smoke run)")
    parser.add_argument("--url", default=os.environ.get("ENGINE_URL"), help="a running vLLM serving smollm2")
    args = parser.parse_args()
    new_tokens = 8 if args.quick else 48
    with server(args.url) as url:
        if url is None:
            print("bench_engine: skipped: no vLLM server (pass --url or set ENGINE_URL, or build .venv-vllm/)")
            return
        run(url, new_tokens)


def run(url: str, new_tokens: int) -> None:
    from models.engine.register import register_engines

    register_engines([f"{ENGINE}={url},model=smollm2,input=timeline"])
    params = GenerationParams(max_new_tokens=new_tokens)
    encode = EncodeParams(num_frames=16, fps=2.0, compressor="dynamic")
    sides = {}
    for label, name in (("in-process", DEFAULT_MODEL), ("vLLM", ENGINE)):
        model = load_model(name)
        context = encode_video(model, str(CLIP), encode)
        one_request(model, context, "Warm up.", GenerationParams(max_new_tokens=2))
        sides[label] = (model, context)
    print(f"{CLIP.name}, {new_tokens} new tokens per answer, {os.cpu_count()} cores, same timeline on both sides")
    print("requests | in-process ttft  tok/s | vLLM ttft  tok/s | ratios vLLM / in-process")
    for concurrency in LEVELS:
        local_ttft, local_tps = level(*sides["in-process"], concurrency, params)
        engine_ttft, engine_tps = level(*sides["vLLM"], concurrency, params)
        print(
            f"{concurrency:>2} requests | in-process ttft {local_ttft:.3f} s {local_tps:6.1f} tok/s | "
            f"vLLM ttft {engine_ttft:.3f} s {engine_tps:6.1f} tok/s | "
            f"ratios ttft {engine_ttft / max(local_ttft, 1e-9):.2f}x tok/s {engine_tps / max(local_tps, 1e-9):.2f}x"
        )


if __name__ == "__main__":
    main()
