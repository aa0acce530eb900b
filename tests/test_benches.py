"""Smoke tests of the benchmarks: every `bench/bench_*.py` runs in its `--quick` mode and prints its ratios.

The project rule is that benchmarks print ratios measured side by side in one run and that CI runs each one's
quick mode so none rots (an API it uses changes, a figure it prints disappears). Each bench here runs as a
subprocess from the repository root, in the test run's isolated environment, and must exit 0 and print the
labelled ratio it exists for (`EXPECTED`); a new bench without an entry must at least print a ratio of some kind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, isolated_environment

pytestmark = pytest.mark.slow

TIMEOUT_S = 120
BENCHES = sorted((ROOT / "bench").glob("bench_*.py"))
ENGINE_BENCH = ROOT / "bench" / "bench_engine.py"  # needs the vLLM server: its own test below
# What each bench must print: one pattern per ratio it reports.
EXPECTED = {
    "bench_campaigns.py": [
        r"items/min with the encode cache / without: \d+\.\d+x",
        r"p95 with \d+ annotators / alone: \d+\.\d+x",
    ],
    "bench_compression.py": [
        r"128 +1296 \| +1\.000 +1\.000 \|",  # analytic: tokens and FLOPs ratios to official
        r"dynamic +25% \| +\d+ +0\.250 \| +\d+\.\d +\d\.\d{3} \|",  # tiny config: tokens and prefill ratios
        r"montage\.mp4 +25% \| +\d+\.\d\d +\d+\.\d\d +\d+\.\d\dx \|",  # budget after a cut / in a still span
        # langdc: its cut / still ratio, the expert's share of the encode, tokens and prefill FLOPs vs official
        r"montage\.mp4 +25% \|.*\| +\d+\.\d\d +\d+\.\d\d +\d+\.\d\dx \| +\d+\.\d% +\d\.\d{3} +\d\.\d{3}",
    ],
    "bench_embedded.py": [r"follow-up / first turn \(ratio\) +\d+\.\d{3}"],
    "bench_engine.py": [
        rf"{n:>2} requests \| in-process ttft \d+\.\d{{3}} s .* ratios ttft \d+\.\d\dx tok/s \d+\.\d\dx"
        for n in (1, 4, 16)
    ],
    "bench_hf_models.py": [
        r"smolvlm +dynamic +25% +visual tokens +\d+ \(0\.\d\dx\) +prefill +\d+\.\d ms \(\d+\.\d\dx\)",
        r"follow-up turn: prefill fed \d+ of \d+ tokens, .* \(\d+\.\d\dx\)",
        r"SmolVLM2-256M +25% +visual tokens +\d+ \(0\.25x\) +prefill .* \(\d\.\d\dx\)",
    ],
    "bench_online.py": [
        r"live, decode \+ forward \+ score +\d+\.\d \(\d+\.\d\) +\d+\.\d{3}",  # fraction of the 0.5 s interval
        r"whole remark +\d+\.\d\d \(\d+\.\d\d\) +\d+\.\d\d",
    ],
    "bench_sampling.py": [
        r"PyAV, keyframes within tolerance \(default\) +\d+\.\d{3} s +ratio \d+\.\d{4}",
        r"target ratio <= 0\.05: (met|MISSED) \(\d+\.\d{4}\)",
    ],
    "bench_slowfast_tokens.py": [
        r"baseline needs \d+\.\dx the LLM input tokens, \d+\.\dx the prefill FLOPs .* \d+\.\dx the prefill wall time"
    ],
}
ANY_RATIO = r"\d(\.\d+)?\s*[x×](?![\w])|\bratio\b"


def test_every_bench_has_a_quick_mode() -> None:
    assert BENCHES, "no bench/bench_*.py found"
    missing = [path.name for path in BENCHES if "--quick" not in path.read_text(encoding="utf-8")]
    assert not missing, f"benches without a --quick mode: {missing}"


@pytest.mark.parametrize("bench", [b for b in BENCHES if b != ENGINE_BENCH], ids=lambda path: path.name)
def test_quick_mode_runs_and_prints_its_ratios(bench: Path) -> None:
    run_quick(bench)


@pytest.mark.vllm
def test_the_engine_bench_quick_mode_runs_against_vllm(vllm_url: str) -> None:
    run_quick(ENGINE_BENCH, "--url", vllm_url, timeout_s=300)


def run_quick(bench: Path, *options: str, timeout_s: float = TIMEOUT_S) -> None:
    """Run `bench --quick` in the run's isolated environment; it must exit 0 and print its ratios."""
    env = isolated_environment()
    env["PYTHONUNBUFFERED"] = "1"
    started = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, str(bench.relative_to(ROOT)), "--quick", *options],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as error:
        output = _text(error.stdout) + _text(error.stderr)
        pytest.fail(f"{bench.name} --quick ran past {timeout_s} s; its output so far:\n{output[-4000:]}")
    seconds = time.perf_counter() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{bench.name} --quick exited {result.returncode}:\n{output[-4000:]}"
    for pattern in EXPECTED.get(bench.name, [ANY_RATIO]):
        assert re.search(pattern, result.stdout), (
            f"{bench.name} --quick printed no line matching {pattern!r}:\n{result.stdout[-4000:]}"
        )
    print(f"{bench.name} --quick: {seconds:.1f} s on {os.cpu_count()} core(s)")


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
