"""LLM input tokens and prefill cost vs frame count: slow-fast vs a self-attention-only baseline.

The baseline feeds all 81 tokens of every frame (the 2x2-pooled 9x9 grid) into the LLM sequence. Slow-fast feeds
only the fast tokens (16 fast frames x 81 with the release-style strides below) and lets 4 hybrid layers
cross-attend from the text tokens to all T x 81 slow tokens. Two views:

* analytic, on the real 7B shapes (Qwen2-7B: 28 layers, d 3584, 28/4 heads, MLP 18944): prefill FLOPs of the LLM
  (projections, causal attention, MLP, the hybrid layers' visual K/V projection and cross-attention, lm_head for
  the last row). The ConvNeXt tower (~2 TFLOPs per 576 px frame) and the projector cost the same in both designs
  and are left out;
* measured wall time of one prefill on a tiny config (our implementation, CPU, random weights), fast/slow tokens
  made by our own token code from random 9x9 frame maps.

Run: `python bench/bench_slowfast_tokens.py [--repeats 3] [--text-tokens 40]`; `--quick` (CI): 16 and 64 frames,
one prefill each.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.slowfast.modeling import SlowTokenMemory  # noqa: E402
from models.slowfast.testing import random_model, tiny_config  # noqa: E402
from models.slowfast.tokens import make_fast_tokens, plan_fast_tokens  # noqa: E402

FRAME_COUNTS = (16, 32, 64, 96, 128)
TOKENS_PER_FRAME = 81  # 9x9 after the 2x2 pool of ConvNeXt's 18x18 grid at 576 px
MIN_FAST_FRAMES = 16
# (sampling stride s, temporal stride t) per frame count: 16 fast frames each, as the released checkpoints do
STRIDES = {16: (1, 1), 32: (1, 2), 64: (1, 4), 96: (1, 6), 128: (2, 4)}


@dataclass(frozen=True)
class LLMShape:
    hidden: int = 3584
    intermediate: int = 18944
    layers: int = 28
    heads: int = 28
    kv_heads: int = 4
    head_dim: int = 128
    vocab: int = 152064
    hybrid_layers: int = 4


def fast_token_count(num_frames: int) -> int:
    sampling, temporal = STRIDES[num_frames]
    return plan_fast_tokens(num_frames, 9, 9, sampling, temporal, 1, MIN_FAST_FRAMES).num_fast_tokens


def prefill_flops(shape: LLMShape, seq_len: int, num_slow: int = 0, num_queries: int = 0) -> float:
    """FLOPs (2 per multiply-add) of one prefill over `seq_len` rows, plus cross-attention when num_slow > 0."""
    s = shape
    projections = s.hidden * (s.heads * s.head_dim) * 2 + s.hidden * (s.kv_heads * s.head_dim) * 2  # q, o, k, v
    per_layer = 2 * seq_len * (projections + 3 * s.hidden * s.intermediate)
    per_layer += 4 * s.heads * s.head_dim * seq_len * (seq_len + 1) / 2  # causal QK^T and AV
    total = s.layers * per_layer + 2 * s.hidden * s.vocab  # logits for the last row only
    if num_slow:
        visual_kv = 2 * num_slow * s.hidden * 2 * s.kv_heads * s.head_dim
        cross = 4 * num_queries * num_slow * s.heads * s.head_dim + 2 * num_queries * s.heads * s.head_dim  # + gate
        total += s.hybrid_layers * (visual_kv + cross)
    return total


def time_prefill(
    model, inputs_embeds: torch.Tensor, slow_tokens: torch.Tensor | None, text_rows: int, repeats: int
) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `repeats` prefills: the least disturbed by other processes. CPU time
    is the steadier figure on a shared machine. The last `text_rows` rows query the slow tokens when given."""
    seq_len = inputs_embeds.shape[1]
    wall, cpu = [], []
    for _ in range(repeats):
        memory = None
        if slow_tokens is not None:
            memory = SlowTokenMemory(slow_tokens.unsqueeze(0), torch.arange(seq_len - text_rows, seq_len))
        start, start_cpu = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            model(inputs_embeds, memory=memory, logits_to_keep=1)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--text-tokens", type=int, default=40, help="prompt text tokens (system + question)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="16 and 64 frames, one prefill each (CI)")
    args = parser.parse_args()
    frame_counts = (16, 64) if args.quick else FRAME_COUNTS
    if args.quick:
        args.repeats = 1
    torch.set_num_threads(args.threads)
    text_rows = args.text_tokens

    shape = LLMShape()
    tiny = random_model(
        tiny_config(hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2)
    )
    hidden = tiny.config.hidden_size
    generator = torch.Generator().manual_seed(0)
    time_prefill(tiny, torch.randn(1, 512, hidden), torch.randn(256, hidden), 8, repeats=2)  # warm-up

    print(f"text tokens per prompt: {text_rows}; 81 visual tokens per frame; slow-fast uses 16 fast frames")
    header = (
        f"{'frames':>6} {'s,t':>5} | {'LLM tokens SF':>13} {'base':>6} {'ratio':>6} | "
        f"{'TFLOPs SF':>9} {'base':>7} {'ratio':>6} | {'tiny ms SF':>10} {'base':>8} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    rows = {}
    for num_frames in frame_counts:
        num_slow = num_frames * TOKENS_PER_FRAME
        num_fast = fast_token_count(num_frames)
        slowfast_len, baseline_len = num_fast + text_rows, num_slow + text_rows
        slowfast_flops = prefill_flops(shape, slowfast_len, num_slow, text_rows)
        baseline_flops = prefill_flops(shape, baseline_len)

        frame_maps = torch.randn(num_frames, hidden, 9, 9, generator=generator) * 0.02
        sampling, temporal = STRIDES[num_frames]
        fast, _ = make_fast_tokens(frame_maps, sampling, temporal, 1, MIN_FAST_FRAMES)
        slow = frame_maps.permute(0, 2, 3, 1).flatten(0, 2)
        text = torch.randn(text_rows, hidden, generator=generator) * 0.02
        slowfast_time = time_prefill(tiny, torch.cat([fast, text]).unsqueeze(0), slow, text_rows, args.repeats)
        baseline_time = time_prefill(tiny, torch.cat([slow, text]).unsqueeze(0), None, text_rows, args.repeats)
        assert fast.shape[0] == num_fast

        (slowfast_s, slowfast_cpu), (baseline_s, baseline_cpu) = slowfast_time, baseline_time
        rows[num_frames] = (
            baseline_len / slowfast_len,
            baseline_flops / slowfast_flops,
            baseline_s / slowfast_s,
            baseline_cpu / slowfast_cpu,
        )
        token_ratio, flop_ratio, time_ratio, _ = rows[num_frames]
        print(
            f"{num_frames:>6} {sampling},{temporal:<3} | {slowfast_len:>13} {baseline_len:>6} {token_ratio:>5.1f}x | "
            f"{slowfast_flops / 1e12:>9.1f} {baseline_flops / 1e12:>7.1f} {flop_ratio:>5.1f}x | "
            f"{slowfast_s * 1e3:>10.1f} {baseline_s * 1e3:>8.1f} {time_ratio:>5.1f}x"
        )

    largest = max(rows)
    tokens, flops, wall, cpu = rows[largest]
    print(
        f"\nat {largest} frames the self-attention-only baseline needs {tokens:.1f}x the LLM input tokens, "
        f"{flops:.1f}x the prefill FLOPs (7B, analytic) and {wall:.1f}x the prefill wall time ({cpu:.1f}x the CPU "
        f"time; tiny config, {args.threads} thread(s)) of slow-fast"
    )
    extra = prefill_flops(shape, fast_token_count(128) + text_rows, 128 * 81, text_rows)
    base16 = prefill_flops(shape, 16 * TOKENS_PER_FRAME + text_rows)
    print(f"slow-fast at 128 frames vs the baseline at 16 frames: {100 * (extra / base16 - 1):+.1f}% prefill FLOPs")


if __name__ == "__main__":
    main()
