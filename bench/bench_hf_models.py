"""Visual tokens and prefill cost per compressor for the three HF families, as ratios to `official`.

Tiny random checkpoints (written on the fly) are measured: visual tokens, prefill seconds (median of 3) at
100/50/25/10 % budgets, and a follow-up turn (prefix cache reused) against the first turn. Real checkpoint shapes
are analytic: visual tokens from each family's rule for 32 frames of a 640x360 video, and prefill FLOPs
(2 * params * tokens + attention 4 * layers * hidden * tokens^2) with a 40-token text prompt.

    python bench/bench_hf_models.py           # full
    python bench/bench_hf_models.py --quick   # one prefill per row, budgets 100 and 25 % only (CI)
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.base import EncodeParams, Frames, GenerationParams, VideoInfo, collect  # noqa: E402
from models.compression import GRID_COMPRESSORS  # noqa: E402
from models.hf import FAMILY_MODULES  # noqa: E402
from models.hf.testing import FAMILIES, write_tiny_checkpoint  # noqa: E402

BUDGETS = (100, 50, 25, 10)
# (official tokens per frame at 640x360 / 32 frames, params, layers, hidden) for the real checkpoints
REAL = {
    "Qwen2.5-VL-7B": (lambda t: (t // 2) * (252 // 28) * (448 // 28) / t, 7.6e9, 28, 3584),
    "LLaVA-OV-0.5B": (lambda t: 196, 0.9e9, 24, 896),
    "SmolVLM2-256M": (lambda t: 64, 0.26e9, 30, 576),
}


def frames(num_frames: int = 16) -> Frames:
    rng = np.random.default_rng(0)
    pixels = (rng.random((num_frames, 120, 160, 3)) * 255).astype(np.uint8)
    pixels[num_frames // 2 :] //= 2  # a scene change half-way
    times = np.arange(num_frames) / 2.0
    return Frames(pixels, (times * 30).astype(int), times, VideoInfo("b.mp4", num_frames / 2, 30.0, 240, 160, 120))


def measured(repeats: int = 3, budgets: tuple[int, ...] = BUDGETS) -> list[str]:
    lines = ["## tiny checkpoints (measured, CPU): visual tokens and prefill time as ratios to official"]
    clip = frames()
    for family in FAMILIES:
        folder = write_tiny_checkpoint(family, Path(tempfile.mkdtemp()) / family)
        model = importlib.import_module(FAMILY_MODULES[family]).load(f"tiny-{family}", str(folder))
        base_tokens = base_time = None
        for compressor in GRID_COMPRESSORS:
            for pct in budgets if compressor != "official" else (100,):
                context = model.encode(clip, EncodeParams(num_frames=16, compressor=compressor, budget_pct=pct), "b")
                times = []
                for _ in range(repeats):
                    model._session = None
                    start = time.perf_counter()
                    collect(model.stream(context, [], "What happens?", GenerationParams(max_new_tokens=1), False))
                    times.append(time.perf_counter() - start)
                tokens, seconds = len(context.payload.visual), statistics.median(times)
                base_tokens, base_time = (tokens, seconds) if compressor == "official" else (base_tokens, base_time)
                lines.append(
                    f"{family:16s} {compressor:9s} {pct:4d}%  visual tokens {tokens:4d} ({tokens / base_tokens:.2f}x)"
                    f"  prefill {seconds * 1000:6.1f} ms ({seconds / base_time:.2f}x)"
                )
        context = model.encode(clip, EncodeParams(num_frames=16), "b")
        model._session = None
        first = collect(model.stream(context, [], "What happens?", GenerationParams(max_new_tokens=4), False))
        history = [{"role": "user", "content": "What happens?"}, {"role": "assistant", "content": first.text}]
        second = collect(model.stream(context, history, "And then?", GenerationParams(max_new_tokens=4), False))
        lines.append(
            f"{family:16s} follow-up turn: prefill fed {model.cache_stats['fed_tokens']} of {second.prompt_tokens} "
            f"tokens, {second.timings_s['prefill'] * 1000:.1f} ms vs first turn "
            f"{first.timings_s['prefill'] * 1000:.1f} ms "
            f"({second.timings_s['prefill'] / first.timings_s['prefill']:.2f}x)"
        )
    return lines


def analytic() -> list[str]:
    lines = ["## real shapes (analytic): 32 frames of 640x360, 40 text tokens; prefill FLOPs ratio to official"]
    for name, (per_frame, params, layers, hidden) in REAL.items():
        official = int(per_frame(32) * 32)

        def flops(tokens: int, params=params, layers=layers, hidden=hidden) -> float:
            total = tokens + 40
            return 2 * params * total + 4 * layers * hidden * total**2

        for pct in BUDGETS:
            tokens = max(1, round(official * pct / 100))
            lines.append(
                f"{name:14s} {pct:4d}%  visual tokens {tokens:6d} ({tokens / official:.2f}x)  prefill "
                f"{flops(tokens) / 1e12:7.2f} TFLOPs ({flops(tokens) / flops(official):.2f}x)"
            )
        lines.append(
            f"{name:14s} follow-up turn (cache reused, ~30 new tokens): "
            f"{2 * params * 30 / 1e12:.3f} TFLOPs vs first turn "
            f"{flops(official) / 1e12:.2f} TFLOPs"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one prefill per row, budgets 100 and 25 %% (CI)")
    args = parser.parse_args()
    lines = measured(1, (100, 25)) if args.quick else measured()
    print("\n".join(lines + [""] + analytic()))


if __name__ == "__main__":
    main()
