"""A simulated ZeroGPU Space: `python tests/fake_spaces/simulate.py OUT.json [FAMILY ...]`.

Run with `SPACES_ZERO_GPU` set and tests/fake_spaces first on the path (so `import spaces` finds the stand-in), it
loads a tiny offline checkpoint of each family the way the studio does, encodes a short clip and a longer, larger
one, answers a question with attention and a follow-up, and asks for a long answer. It writes, per family, the GPU
calls the stand-in recorded (function and seconds) during each step, or the error that stopped it. The durations are
those a 7B checkpoint of the family would ask for: the tiny model is registered with that size, so the seconds
follow the work and are not all ZeroGPU's minimum.
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

FAMILIES = ("slowfast", "qwen2_5_vl", "llava_onevision", "smolvlm")


def frames(num_frames: int, height: int = 96, width: int = 128):
    from models.base import Frames, VideoInfo

    rng = np.random.default_rng(num_frames)
    pixels = rng.integers(0, 256, size=(num_frames, height, width, 3), dtype=np.uint8)
    times = np.arange(num_frames) / 2.0
    info = VideoInfo("clip.mp4", num_frames / 2.0, 30.0, num_frames * 15, width, height)
    return Frames(pixels, (times * 30).astype(int), times, info)


def load_tiny(family: str, folder: Path):
    if family == "slowfast":
        from models.slowfast.loader import load
        from models.slowfast.testing import random_model, tiny_config, write_checkpoint

        write_checkpoint(random_model(tiny_config(), seed=0), folder)
        return load("tiny-slowfast", repo_id=str(folder), device="auto")  # CUDA where there is one
    from models.hf import FAMILY_MODULES
    from models.hf.testing import write_tiny_checkpoint

    write_tiny_checkpoint(family, folder)
    return importlib.import_module(FAMILY_MODULES[family]).load(f"tiny-{family}", str(folder))


def run_family(family: str, folder: Path) -> dict:
    import spaces

    from models import zerogpu
    from models.base import Answer, EncodeParams, GenerationParams, collect

    adapter = load_tiny(family, folder)
    zerogpu.register_live(adapter.name, adapter)  # no module: durations as for the 7B reference
    steps: dict[str, list] = {}

    def step(name, work):
        before = len(spaces.CALLS)
        result = work()
        steps[name] = [list(call) for call in spaces.CALLS[before:]]
        return result

    short = step("encode 8 frames", lambda: adapter.encode(frames(8), EncodeParams(num_frames=8), "sha-8"))
    long_clip = frames(32, 360, 640)
    step("encode 32 frames", lambda: adapter.encode(long_clip, EncodeParams(num_frames=32), "sha-32"))
    greedy = GenerationParams(max_new_tokens=4)
    first = step("answer", lambda: collect(adapter.stream(short, [], "Describe the video.", greedy, True)))
    history = [{"role": "user", "content": "Describe the video."}, {"role": "assistant", "content": first.text}]
    follow_up = step("follow-up", lambda: collect(adapter.stream(short, history, "And then?", greedy, False)))
    long = GenerationParams(max_new_tokens=200)
    items = step("long answer", lambda: list(adapter.stream(short, [], "Where is the cat?", long, False)))
    assert isinstance(items[-1], Answer)
    return {
        "steps": steps,
        "answer_tokens": first.new_tokens,
        "attention_frames": None if first.attention is None else len(first.attention.frame_weights),
        "follow_up_tokens": follow_up.new_tokens,
        "visual_tokens": short.stats.total_visual_tokens,
        "payload_devices": sorted(
            {str(v.device) for v in vars(short.payload).values() if hasattr(v, "device")}
            | {str(short.payload.visual.tokens.device)}
            if family != "slowfast"
            else {str(short.payload.fast_tokens.device), str(short.payload.slow_tokens.device)}
        ),
    }


def main(out: str, families: list[str]) -> None:
    import spaces

    from models import zerogpu

    report: dict = {"on_zero_gpu": zerogpu.on_zero_gpu(), "spaces": spaces.__file__, "families": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for family in families:
            try:
                report["families"][family] = run_family(family, Path(scratch) / family)
            except BaseException:  # one family's failure must not hide the others'
                report["families"][family] = {"error": traceback.format_exc()}
    Path(out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or list(FAMILIES))
