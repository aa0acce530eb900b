"""What the compressors buy: LLM input tokens, prefill FLOPs and prefill time as ratios to `official`, the planner's
cost next to encoding, and where `dynamic` puts the budget on the example clips.

* Release shapes (Slow-Fast 7B at 64 / 96 / 128 frames; Qwen2-7B dimensions): analytic. The fast tokens the LLM
  reads are the budget (plus the prompt's text); the 4 hybrid layers still cross-attend to all T x 81 slow tokens,
  which the compressors leave alone.
* Tiny config (random weights, CPU, measured): 64 frames, t=4 (1296 official fast tokens), the same prefill.
* Planner + realizer cost as a fraction of `encode_video` (tower + projector + compressor) on the tiny config; the
  7B tower costs ~2 TFLOPs per frame, so on the real model the fraction is far smaller still.
* Example clips (assets/examples.json, those with both cuts and a still span): budget per frame in the first second
  after a cut vs in the still span, under `dynamic`, `uniform` and `langdc` (the `lite` language expert), for the
  embedded default (real weights) and the tiny Slow-Fast (random weights: its clips are a random tower's, its
  captions the real `lite` expert's); for `langdc` the expert's share of the encode time, and the LLM input
  tokens and prefill FLOPs against `official` (SmolLM2-135M's shape for the default, Qwen2-7B's for Slow-Fast);
  full runs add a tiny random SmolVLM2 (SmolVLM2-256M's LLM is SmolLM2-135M-shaped).

Run: `python bench/bench_compression.py [--repeats 3]`; `--quick` (CI): 1 repeat, budgets 100 % and 25 % only, 16
frames for the example clips.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_slowfast_tokens import LLMShape, prefill_flops, time_prefill  # noqa: E402
from models.base import EncodeParams  # noqa: E402
from models.compression import compress  # noqa: E402
from models.experts import forget_captions  # noqa: E402
from models.slowfast.testing import random_model, tiny_config  # noqa: E402
from models.slowfast.tokens import plan_fast_tokens  # noqa: E402

PCTS = (100, 50, 25, 10)
RELEASES = {64: (1, 4), 96: (1, 6), 128: (2, 4)}  # frames -> (sampling stride s, temporal stride t)
TEXT_TOKENS = 40
PER_FRAME = 81


def analytic() -> None:
    shape = LLMShape()
    print("## Release shapes (7B, analytic): ratios to official at each budget")
    print(f"{'frames':>6} {'official':>8} | " + " | ".join(f"{p:>3}%: tokens  FLOPs" for p in PCTS))
    for frames, (s, t) in RELEASES.items():
        official = plan_fast_tokens(frames, 9, 9, s, t, 1, 16).num_fast_tokens
        base_flops = prefill_flops(shape, official + TEXT_TOKENS, frames * PER_FRAME, TEXT_TOKENS)
        cells = []
        for pct in PCTS:
            budget = round(official * pct / 100)
            flops = prefill_flops(shape, budget + TEXT_TOKENS, frames * PER_FRAME, TEXT_TOKENS)
            cells.append(f"{(budget + TEXT_TOKENS) / (official + TEXT_TOKENS):>11.3f} {flops / base_flops:>6.3f}")
        print(f"{frames:>6} {official:>8} | " + " | ".join(cells))
    print(f"(LLM input = fast tokens + {TEXT_TOKENS} text tokens; FLOPs include the hybrid layers' cross-attention)\n")


def tiny_measured(repeats: int, pcts: tuple[int, ...] = PCTS) -> None:
    config = tiny_config(
        fast_token_temporal_stride=4,
        min_fast_frames=16,
        mm_training_video_frames=64,
        hidden_size=128,
        intermediate_size=256,
    )
    model = random_model(config)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(64, 3, 576, 576, generator=generator)
    text = torch.randn(TEXT_TOKENS, config.hidden_size, generator=generator) * 0.02
    encode_s = min(_timed(lambda: model.encode_video(pixels)) for _ in range(max(1, repeats - 1)))
    video = model.encode_video(pixels)
    grids = video.slow_tokens.reshape(64, 9, 9, -1)
    official = video.fast_plan.num_fast_tokens
    print(f"## Tiny config (measured, CPU, {torch.get_num_threads()} thread(s)): 64 frames, official {official} fast")
    base_wall, _ = time_prefill(
        model, torch.cat([video.fast_tokens, text])[None], video.slow_tokens, TEXT_TOKENS, repeats
    )
    print(
        f"{'compressor':>10} {'budget':>6} | {'tokens':>6} {'ratio':>6} | {'prefill ms':>10} {'ratio':>6} | "
        f"{'plan+realize ms':>15} {'of encode':>9}"
    )
    for name in ("uniform", "dynamic"):
        for pct in pcts:
            plan_s = min(_timed(lambda n=name, p=pct: compress(n, grids, None, p, official)) for _ in range(repeats))
            tokens, _ = compress(name, grids, None, pct, official)
            wall, _ = time_prefill(
                model, torch.cat([tokens.tokens, text])[None], video.slow_tokens, TEXT_TOKENS, repeats
            )
            print(
                f"{name:>10} {pct:>5}% | {tokens.num_tokens:>6} {tokens.num_tokens / official:>6.3f} | "
                f"{wall * 1e3:>10.1f} {wall / base_wall:>6.3f} | {plan_s * 1e3:>15.1f} {plan_s / encode_s:>8.1%}"
            )
    print(
        f"(official prefill {base_wall * 1e3:.1f} ms; encode_video of 64 frames at 576 px {encode_s * 1e3:.0f} ms)\n"
    )
    return model


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def frame_kind(t: float, clip: dict) -> str | None:
    """'cut' for a frame in the first second of a new shot, 'still' for one in a still span (and not just after a
    cut), else None."""
    if any(0.0 <= t - cut < 1.0 for cut in clip["cut_times_s"]):
        return "cut"
    if any(a <= t <= b for a, b in clip["still_spans_s"]):
        return "still"
    return None


NAMES = ("dynamic", "uniform", "langdc")
QWEN2_7B = LLMShape()
SMOLLM2_135M = LLMShape(hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, head_dim=64, vocab=49152)


def _rates(context, clip: dict) -> tuple[float, float]:
    """Mean per-frame budget (x the video's mean) of the frames just after a cut, and of those in a still span."""
    stats = context.stats
    mean = stats.global_budget / context.num_frames
    rates = {"cut": [], "still": []}
    for c in stats.clips:
        for position in c.frame_positions:
            kind = frame_kind(context.timestamps_s[position], clip)
            if kind:
                rates[kind].append(c.budget / len(c.frame_positions) / mean)
    return _mean(rates["cut"]), _mean(rates["still"])


def _encode(model, path: Path, params: EncodeParams, fresh_captions: bool = True):
    from models.pipeline import ENCODE_CACHE, encode_video

    ENCODE_CACHE.clear()  # every row is a fresh encode, so the expert's cost is real
    if fresh_captions:
        forget_captions(getattr(model, "_language_expert", None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return encode_video(model, str(path), params)


def _prefill_ratio(shape: LLMShape, context, official) -> float:
    """Prefill FLOPs of the LLM input (visual tokens + the prompt's text) against `official`'s."""

    def flops(stats) -> float:
        slow = stats.slow_tokens if shape is not SMOLLM2_135M else 0  # Slow-Fast: slow tokens are cross-attended
        fast = stats.fast_tokens if slow else stats.total_visual_tokens
        return prefill_flops(shape, fast + TEXT_TOKENS, slow, TEXT_TOKENS if slow else 0)

    return flops(context.stats) / flops(official.stats)


def budget_shares(
    model, label: str, params_for, pcts: tuple[int, ...] = PCTS, shape: LLMShape = QWEN2_7B, quick: bool = False
) -> None:
    """Budget per frame just after a cut vs in a still span (x the video's mean per-frame budget; a clip's budget
    spread evenly over its frames) under `dynamic`, `uniform` and `langdc`; for `langdc` also the language
    expert's share of the encode time, and LLM input tokens and prefill FLOPs as ratios to `official`. `quick`:
    later budgets reuse the first budget's captions (the expert's cost is then the first row's)."""
    examples = json.loads((ROOT / "assets/examples.json").read_text())["clips"]
    print(f"## {label}: budget per frame after a cut vs in a still span (x the video's mean per frame)")
    print(
        f"{'clip':>12} {'budget':>6} | {'dynamic cut':>11} {'still':>6} {'ratio':>6} | {'uniform cut':>11} "
        f"{'still':>6} {'ratio':>6} | {'langdc cut':>10} {'still':>6} {'ratio':>6} | {'expert':>6} {'tokens':>6} "
        f"{'FLOPs':>6}"
    )
    for clip in examples:
        if not clip["cut_times_s"] or not clip["still_spans_s"]:
            continue
        path = ROOT / "assets" / clip["file"]
        official = _encode(model, path, params_for("official", 100))
        for row, pct in enumerate(pcts):
            fresh = not quick or row == 0
            contexts = {name: _encode(model, path, params_for(name, pct), fresh) for name in NAMES}
            cells = " | ".join(
                "{:>11.2f} {:>6.2f} {:>5.2f}x".format(*_rates(contexts[name], clip), _ratio(contexts[name], clip))
                for name in NAMES
            )
            langdc = contexts["langdc"]
            timings = langdc.stats.timings_s
            share = timings["language_expert"] / sum(v for k, v in timings.items() if k != "sample_frames")
            tokens = _input_tokens(shape, langdc) / max(1, _input_tokens(shape, official))
            flops = _prefill_ratio(shape, langdc, official)
            print(f"{clip['file']:>12} {pct:>5}% | {cells} | {share:>6.1%} {tokens:>6.3f} {flops:>6.3f}")
    print(
        "(expert: the language expert's share of langdc's encode time; tokens: visual tokens in the LLM's input "
        "sequence, FLOPs: its prefill FLOPs with the prompt's text, both as ratios to official)\n"
    )


def _input_tokens(shape: LLMShape, context) -> int:
    """Visual tokens in the LLM's input sequence: Slow-Fast's fast tokens (its slow ones are cross-attended)."""
    return context.stats.total_visual_tokens if shape is SMOLLM2_135M else context.stats.fast_tokens


def _ratio(context, clip: dict) -> float:
    cut, still = _rates(context, clip)
    return cut / still


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1 repeat, budgets 100 and 25 %%, 16 frames (CI)")
    args = parser.parse_args()
    repeats, pcts, frames = (1, (100, 25), 16) if args.quick else (args.repeats, PCTS, 32)
    torch.set_num_threads(args.threads)
    analytic()
    tiny_measured(repeats, pcts)

    from models.registry import load_model

    lite = load_model("slowfast-lite")
    budget_shares(
        lite,
        "Embedded default (slowfast-lite, 192 official language tokens, lite expert)",
        lambda name, pct: EncodeParams(num_frames=frames, fps=2.0, compressor=name, budget_pct=pct),
        pcts,
        SMOLLM2_135M,
        args.quick,
    )

    import tempfile

    from models.slowfast.loader import load
    from models.slowfast.testing import write_checkpoint

    with tempfile.TemporaryDirectory() as folder:
        model = random_model(tiny_config(mm_training_video_frames=frames, min_fast_frames=4))
        tiny = load("bench-tiny", repo_id=str(write_checkpoint(model, Path(folder) / "tiny")), device="cpu")
        budget_shares(
            tiny,
            f"Tiny Slow-Fast (random weights, {frames} frames; prefill FLOPs at the 7B shape)",
            lambda name, pct: EncodeParams(num_frames=frames, compressor=name, budget_pct=pct),
            pcts,
            quick=args.quick,
        )
        if not args.quick:  # a tiny SmolVLM2 too (full runs only: --quick stays within CI's time)
            tiny_hf_shares(Path(folder), frames, pcts)


def tiny_hf_shares(folder: Path, frames: int, pcts: tuple[int, ...]) -> None:
    """The same table for a tiny random SmolVLM2 (its LLM shaped like SmolVLM2-256M's, SmolLM2-135M)."""
    from models.hf.smolvlm2 import load as load_smolvlm
    from models.hf.testing import write_tiny_checkpoint

    model = load_smolvlm("bench-tiny-smolvlm", str(write_tiny_checkpoint("smolvlm", folder / "smolvlm")))
    budget_shares(
        model,
        f"Tiny SmolVLM2 (random weights, {frames} frames; prefill FLOPs at SmolVLM2-256M's LLM shape)",
        lambda name, pct: EncodeParams(num_frames=frames, compressor=name, budget_pct=pct),
        pcts,
        SMOLLM2_135M,
    )


if __name__ == "__main__":
    main()
