"""Frame-sampling benchmark: 64 frames from a 10-minute 720p clip versus decoding every frame.

Generates (once, cached in bench/out/) a 10-minute and a 2.5-minute 1280x720 H.264 clip at 25 fps with a keyframe
every 8 s: a panning noisy texture with a moving box, and each frame's number written as 16 black/white blocks so
returned pictures can be checked against the frame numbers they are reported as. Every measurement runs in its own
subprocess, so peak RSS figures are independent. Prints, per clip and method: median time, time as a fraction of
a full decode, the worst timestamp error relative to half the sampling interval (must be <= 1), whether every
returned picture shows the frame its index claims, and peak RSS.

    python bench/bench_sampling.py                 # full run (a few minutes on 2 cores; clips ~1.5 min once)
    python bench/bench_sampling.py --repeats 1 --no-decord-exact   # quicker
    python bench/bench_sampling.py --quick         # 1 / 0.25 min clips, 4 frames, once (CI: runs the code; the
                                                   # target is for the full run)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT, FPS, KEYFRAME_S = 1280, 720, 25, 8
CODE_BITS = 16
TARGET_RATIO = 0.05


# ----------------------------------------------------------------------------------------------------------------
# Test clips


def write_clip(path: Path, seconds: float) -> None:
    """Encode straight from YUV planes with x264 ultrafast: the clip is made in about a tenth of its duration."""
    import av

    rng = np.random.default_rng(0)
    pan = 4 * FPS * 10  # 4 px per frame, wrapping every 10 s
    coarse = rng.integers(16, 236, (HEIGHT // 16 + 1, (WIDTH + pan) // 16 + 1), dtype=np.uint8)
    texture = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)[:HEIGHT]
    # Grain that changes every frame keeps P-frames from being nearly free to decode, as in real footage.
    grain = [rng.integers(0, 8, (HEIGHT, WIDTH), dtype=np.uint8) for _ in range(7)]
    chroma = np.full((HEIGHT // 2 * 2, WIDTH // 2), 128, dtype=np.uint8).reshape(-1, WIDTH)
    block = WIDTH // CODE_BITS

    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        gop = KEYFRAME_S * FPS
        stream.options = {"preset": "ultrafast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for number in range(int(seconds * FPS)):
            x = (number * 4) % pan
            luma = texture[:, x : x + WIDTH] + grain[number % 7]
            box_x = (number * 8) % (WIDTH - 100)
            luma[300:400, box_x : box_x + 100] = 235
            for bit in range(CODE_BITS):
                on = (number >> (CODE_BITS - 1 - bit)) & 1
                luma[:80, bit * block : (bit + 1) * block] = 235 if on else 16
            frame = av.VideoFrame.from_ndarray(np.concatenate([luma, chroma]), format="yuv420p")
            frame.pts = number
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    tmp.rename(path)


def read_code(picture: np.ndarray) -> int:
    height, width = picture.shape[:2]
    band = picture[: max(1, height * 60 // HEIGHT)].mean(axis=(0, 2))
    edges = np.linspace(0, width, CODE_BITS + 1)
    number = 0
    for bit in range(CODE_BITS):
        lo, hi = edges[bit], edges[bit + 1]
        number = number * 2 + int(band[int(lo + (hi - lo) / 3) : int(hi - (hi - lo) / 3)].mean() > 128)
    return number


def ensure_clip(out: Path, seconds: float) -> Path:
    path = out / f"sampling_{WIDTH}x{HEIGHT}_{FPS}fps_kf{KEYFRAME_S}s_{int(seconds)}s.mp4"
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        print(f"encoding {path.name} ...", flush=True)
        write_clip(path, seconds)
        print(f"  {time.perf_counter() - started:.1f} s, {path.stat().st_size / 1e6:.0f} MB", flush=True)
    return path


# ----------------------------------------------------------------------------------------------------------------
# One measurement (runs in a subprocess)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def full_decode(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # the fastest full decode, so the ratio is not flattered
        count = sum(1 for _ in container.decode(stream))
    return {"frames": count}


def sample(path: Path, backend: str, exact: bool, num_frames: int, max_side: int | None) -> dict:
    from models.video import sample_frames, target_tolerances, uniform_timestamps

    frames = sample_frames(path, num_frames=num_frames, backend=backend, exact=exact, max_side=max_side)
    targets = uniform_timestamps(frames.info.duration_s, num_frames)
    tolerances = target_tolerances(targets, frames.info.duration_s)
    errors = np.abs(frames.timestamps_s - targets)
    codes = [read_code(picture) for picture in frames.pixels]
    return {
        "frames": len(frames),
        "max_error_s": float(errors.max()),
        "max_error_over_tolerance": float((errors / tolerances).max()),
        "pictures_match_indices": codes == frames.indices.tolist(),
        "shape": list(frames.pixels.shape),
    }


def worker(args: argparse.Namespace) -> None:
    baseline_mb = peak_rss_mb()
    if args.task != "full":
        import models.video  # noqa: F401  (import cost is not sampling cost)
    times = []
    result: dict = {}
    for _ in range(args.repeats):
        started = time.perf_counter()
        if args.task == "full":
            result = full_decode(Path(args.clip))
        else:
            backend, mode = args.task.split(":")
            result = sample(Path(args.clip), backend, mode == "exact", args.frames, args.max_side)
        times.append(time.perf_counter() - started)
    result.update(times_s=times, peak_rss_mb=peak_rss_mb(), start_rss_mb=baseline_mb)
    print(json.dumps(result))


# ----------------------------------------------------------------------------------------------------------------
# Driver


def run_task(task: str, clip: Path, args: argparse.Namespace, max_side: int | None = None) -> dict:
    command = [sys.executable, __file__, "--worker", task, "--clip", str(clip), "--repeats", str(args.repeats)]
    command += ["--frames", str(args.frames)]
    if max_side:
        command += ["--max-side", str(max_side)]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if completed.returncode != 0:
        raise RuntimeError(f"{task} on {clip.name} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--short-minutes", type=float, default=2.5)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-decord", action="store_true", help="skip decord entirely")
    parser.add_argument("--no-decord-exact", action="store_true", help="skip decord's exact sampling (slowest)")
    parser.add_argument("--worker", dest="task", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--max-side", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="1 and 0.25 minute clips, 4 frames, one repeat")
    args = parser.parse_args()
    if args.task:
        worker(args)
        return
    if args.quick:
        args.minutes, args.short_minutes, args.frames, args.repeats = 1.0, 0.25, 4, 1

    long_clip = ensure_clip(args.out, args.minutes * 60)
    short_clip = ensure_clip(args.out, args.short_minutes * 60)
    methods = [
        ("pyav:auto", "PyAV, keyframes within tolerance (default)", None),
        ("pyav:auto", "PyAV, same, max_side=336", 336),
        ("pyav:exact", "PyAV, nearest frame (exact=True)", None),
    ]
    if not args.no_decord:
        methods.append(("decord:auto", "decord, keyframes within tolerance", None))
        if not args.no_decord_exact:
            methods.append(("decord:exact", "decord get_batch, nearest frame", None))

    rows = []
    for label, clip in ((f"{args.minutes:g} min", long_clip), (f"{args.short_minutes:g} min", short_clip)):
        full = run_task("full", clip, args)
        full_s = statistics.median(full["times_s"])
        rows.append((label, f"full decode, {full['frames']} frames (PyAV, threads)", full_s, 1.0, "", "", full))
        tasks = methods if clip == long_clip else methods[:2] + [m for m in methods if m[0].startswith("decord:a")]
        for task, name, max_side in tasks:
            result = run_task(task, clip, args, max_side)
            seconds = statistics.median(result["times_s"])
            within = f"{result['max_error_over_tolerance']:.2f}"
            match = "yes" if result["pictures_match_indices"] else "NO"
            rows.append((label, name, seconds, seconds / full_s, within, match, result))
            print(f"  {label:>7}  {name:<46} {seconds:7.3f} s  ratio {seconds / full_s:.4f}", flush=True)

    print()
    print(
        f"{args.frames} frames, uniform; clip {WIDTH}x{HEIGHT} {FPS} fps, keyframe every {KEYFRAME_S} s; median of "
        f"{args.repeats}; each row in its own process."
    )
    print(
        "err/tol: worst |timestamp - target| / (half the sampling interval), must be <= 1; frames ok: every "
        "returned picture shows the frame number it is reported as."
    )
    header = (
        f"{'clip':>8}  {'method':<48} {'time s':>8} {'ratio':>7} {'err/tol':>7} {'frames ok':>9} {'peak RSS MB':>11}"
    )
    print(header)
    print("-" * len(header))
    for label, name, seconds, ratio, within, match, result in rows:
        print(
            f"{label:>8}  {name:<48} {seconds:8.3f} {ratio:7.4f} {within:>7} {match:>9} {result['peak_rss_mb']:11.0f}"
        )

    default = [r for r in rows if r[1].startswith("PyAV, keyframes")]
    long_row, short_row = default[0], default[1]
    short_interval = args.short_minutes * 60 / args.frames
    print()
    print(
        f"On the {args.short_minutes:g}-minute clip the targets are {short_interval:.1f} s apart, closer than the "
        f"{KEYFRAME_S} s keyframe interval, so most frames must be decoded forward from their keyframe and sampling "
        "costs about one full decode: that clip is there for the RSS comparison."
    )
    print(
        f"target ratio <= {TARGET_RATIO}: {'met' if long_row[3] <= TARGET_RATIO else 'MISSED'} "
        f"({long_row[3]:.4f}); timestamps within tolerance: "
        f"{'yes' if float(long_row[4]) <= 1 + 1e-9 else 'NO'}; peak RSS {short_row[6]['peak_rss_mb']:.0f} MB "
        f"({args.short_minutes:g} min) vs {long_row[6]['peak_rss_mb']:.0f} MB ({args.minutes:g} min)"
    )


if __name__ == "__main__":
    main()
