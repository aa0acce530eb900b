"""ZeroGPU for every GPU model: one wrapper (`models.zerogpu.gpu_task`), durations sized from the work of each call,
and a simulated ZeroGPU Space per family (Slow-Fast, Qwen2.5-VL, LLaVA-OneVision, SmolVLM2) where a stand-in `spaces`
module records each call's seconds and fails when a tensor off the CPU crosses the process boundary.

`spaces` is not installed here: tests/fake_spaces/spaces is the stand-in, and the simulation runs in a fresh process
(the wrapper decorates at import time, as ZeroGPU requires) started with `SPACES_ZERO_GPU` set."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models import zerogpu
from models.base import Frames, GenerationParams, VideoInfo
from models.zerogpu import GPU_MAX_S, GPU_MIN_S, gpu_seconds, to_cpu

FAKE_SPACES = Path(__file__).parent / "fake_spaces"
ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("slowfast", "qwen2_5_vl", "llava_onevision", "smolvlm")


@pytest.fixture
def spaces(monkeypatch):
    """The stand-in `spaces` module, importable, with an empty call record (and gone again afterwards)."""
    monkeypatch.syspath_prepend(str(FAKE_SPACES))
    module = importlib.import_module("spaces")
    monkeypatch.setattr(module, "CALLS", [])
    yield module
    sys.modules.pop("spaces", None)


class OffCpu:
    """Quacks like a tensor on another device: what a CUDA tensor looks like to the checks."""

    def __init__(self, kind: str = "cuda"):
        self.device = SimpleNamespace(type=kind)

    def cpu(self):
        return "moved"


@dataclass
class Holder:
    name: str
    tensors: dict


# ----------------------------------------------------------------------------------------------------------------
# Durations


def test_more_work_asks_for_more_gpu_time_within_range():
    assert gpu_seconds(frames=8) < gpu_seconds(frames=64) < gpu_seconds(frames=256)
    assert gpu_seconds(frames=32, frame_pixels=224 * 224) < gpu_seconds(frames=32, frame_pixels=768 * 768)
    assert gpu_seconds(prompt_tokens=500, new_tokens=64) < gpu_seconds(prompt_tokens=500, new_tokens=1024)
    assert gpu_seconds(prompt_tokens=1000) < gpu_seconds(prompt_tokens=100_000)
    answer = {"prompt_tokens": 2000, "new_tokens": 512}
    assert gpu_seconds(**answer) < gpu_seconds(**answer, attention=True)
    assert gpu_seconds(**answer, billions=0.256) < gpu_seconds(**answer, billions=2.2) < gpu_seconds(**answer)
    assert gpu_seconds(billions=0.256) == GPU_MIN_S  # a trivial call on a small model asks for the minimum
    assert gpu_seconds(frames=10_000) == GPU_MAX_S


def test_slowfast_durations_read_the_arguments_its_tasks_get():
    from models.slowfast.adapter import _encode_seconds, _generate_seconds

    assert _encode_seconds("m", torch.zeros(8, 3, 576, 576)) < _encode_seconds("m", torch.zeros(128, 3, 576, 576))
    assert _encode_seconds("m", torch.zeros(64, 3, 224, 224)) < _encode_seconds("m", torch.zeros(64, 3, 576, 576))
    prompt = SimpleNamespace(input_ids=list(range(40)))
    video = SimpleNamespace(fast_tokens=torch.zeros(1500, 4), slow_tokens=torch.zeros(2600, 4))
    short, long = GenerationParams(max_new_tokens=32), GenerationParams(max_new_tokens=1024)
    assert _generate_seconds("m", prompt, video, short, False) < _generate_seconds("m", prompt, video, long, False)
    assert _generate_seconds("m", prompt, None, long, False) < _generate_seconds("m", prompt, video, long, False)
    assert _generate_seconds("m", prompt, video, long, False) < _generate_seconds("m", prompt, video, long, True)


def frames_of(num_frames: int, height: int, width: int) -> Frames:
    pixels = np.zeros((num_frames, height, width, 3), np.uint8)
    times = np.arange(num_frames) / 2.0
    info = VideoInfo("v.mp4", num_frames / 2, 2.0, num_frames, width, height)
    return Frames(pixels, np.arange(num_frames), times, info)


def test_hf_durations_read_the_arguments_their_tasks_get():
    from models.hf.common import _encode_seconds, _generate_seconds

    assert _encode_seconds("m", frames_of(8, 360, 640)) < _encode_seconds("m", frames_of(64, 360, 640))
    assert _encode_seconds("m", frames_of(16, 120, 160)) < _encode_seconds("m", frames_of(16, 720, 1280))
    payload = SimpleNamespace(visual=[0] * 6000)
    short, long = GenerationParams(max_new_tokens=16), GenerationParams(max_new_tokens=1024)
    args = ("m", payload, [], "What happens?")
    assert _generate_seconds(*args, short, False) < _generate_seconds(*args, long, False)
    assert _generate_seconds(*args, long, False) < _generate_seconds(*args, long, True)
    assert _generate_seconds("m", None, [], "Hi", long, True) < _generate_seconds(*args, long, True)


def test_durations_follow_the_live_models_size():
    small = torch.nn.Linear(100, 100)  # 10k parameters
    zerogpu.register_live("tiny-for-durations", object(), small)
    try:
        assert zerogpu.model_billions("tiny-for-durations") == pytest.approx(10_100 / 1e9)
        work = {"prompt_tokens": 4000, "new_tokens": 1000}
        tiny = gpu_seconds(**work, billions=zerogpu.model_billions("tiny-for-durations"))
        assert tiny < gpu_seconds(**work, billions=zerogpu.model_billions("not-loaded"))  # the 7B reference
    finally:
        zerogpu._LIVE.pop("tiny-for-durations")


# ----------------------------------------------------------------------------------------------------------------
# The wrapper and the stand-in's boundary check


def test_the_boundary_check_finds_tensors_off_the_cpu_wherever_they_sit(spaces):
    meta = torch.zeros(2, 3, device="meta")
    assert spaces.device_tensors(torch.zeros(3)) == []
    assert spaces.device_tensors(np.zeros(3)) == []
    assert spaces.device_tensors(meta, "x") == ["x (meta)"]
    nested = ("name", [1, {"a": Holder("h", {"deep": OffCpu()})}], SimpleNamespace(t=meta))
    assert spaces.device_tensors(nested, "args") == ["args[1][1]['a'].tensors['deep'] (cuda)", "args[2].t (meta)"]
    with pytest.raises(spaces.BoundaryError, match=r"cuda"):
        spaces.cross({"out": OffCpu()}, "result")
    assert spaces.cross({"fine": [torch.ones(2)]}, "result")["fine"][0].tolist() == [1.0, 1.0]


def test_the_stand_in_fails_a_task_that_returns_or_yields_a_device_tensor(spaces):
    @spaces.GPU(duration=lambda n: 10 + n)
    def leaks(n):
        return {"tokens": torch.zeros(n, device="meta")}

    @spaces.GPU(duration=20)
    def streams(n):
        yield torch.zeros(n)
        yield torch.zeros(n, device="meta")

    with pytest.raises(spaces.BoundaryError, match="leaks result"):
        leaks(3)
    items = streams(2)
    assert next(items).tolist() == [0.0, 0.0]
    with pytest.raises(spaces.BoundaryError, match="streams item 1"):
        next(items)
    assert [seconds for _, seconds in spaces.CALLS] == [13, 20]
    with pytest.raises(spaces.BoundaryError, match="streams arguments"):
        next(streams(OffCpu()))


def test_to_cpu_moves_every_tensor_and_keeps_the_rest(spaces):
    @dataclass(frozen=True)
    class Frozen:
        tensor: object
        label: str

    value = {"a": [OffCpu(), 3], "b": Frozen(OffCpu(), "x"), "c": (torch.ones(1), "s"), "d": Holder("h", {})}
    moved = to_cpu(value)
    assert moved["a"] == ["moved", 3] and moved["b"] == Frozen("moved", "x")
    assert value["b"].tensor != "moved"  # the original is left as it was
    assert moved["c"] is value["c"] and moved["d"] is value["d"]  # nothing to move: the same objects


def test_off_zero_gpu_the_wrapper_leaves_the_function_alone(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)

    def work(x):
        return x

    assert zerogpu.gpu_task(duration=30)(work) is work


def test_on_zero_gpu_the_wrapper_moves_outputs_to_the_cpu_and_sizes_each_call(spaces, monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(spaces, "DECORATED", [])
    assert zerogpu.on_zero_gpu()

    @zerogpu.gpu_task(duration=lambda model_name, frames: gpu_seconds(frames=frames))
    def encode(model_name, frames):
        return {"tokens": OffCpu(), "frames": frames}  # a CUDA result, as the worker would make it

    @zerogpu.gpu_task(duration=lambda model_name, n: gpu_seconds(new_tokens=n))
    def decode(model_name, n):
        for _ in range(n):
            yield "token", OffCpu()

    assert len(spaces.DECORATED) == 2  # declared at import, as ZeroGPU wants
    assert encode("m", 8) == {"tokens": "moved", "frames": 8}
    assert list(decode("m", 2)) == [("token", "moved"), ("token", "moved")]
    encode("m", 128)
    (first, streamed, second) = spaces.CALLS
    assert first.function.endswith("encode") and streamed.function.endswith("decode")
    assert first.duration < second.duration
    assert len(spaces.DECORATED) == 2  # the first model uses the functions declared at import


def test_each_model_gets_its_own_zero_gpu_function_so_its_own_worker(spaces, monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(spaces, "DECORATED", [])

    @zerogpu.gpu_task(duration=30)
    def encode(model_name):
        return model_name

    assert [encode("a"), encode("a"), encode("b"), encode("a"), encode("b")] == ["a", "a", "b", "a", "b"]
    assert len(spaces.DECORATED) == 2  # one at import (serving "a"), one when "b" first called


# ----------------------------------------------------------------------------------------------------------------
# A simulated ZeroGPU Space, one family at a time


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """The report of tests/fake_spaces/simulate.py run as a ZeroGPU Space would start: a fresh process."""
    out = tmp_path_factory.mktemp("zerogpu") / "report.json"
    env = dict(os.environ, SPACES_ZERO_GPU="true", PYTHONPATH=os.pathsep.join([str(FAKE_SPACES), str(ROOT)]))
    done = subprocess.run(
        [sys.executable, str(FAKE_SPACES / "simulate.py"), str(out), *FAMILIES],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["on_zero_gpu"] and Path(report["spaces"]).is_relative_to(FAKE_SPACES)
    return report["families"]


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_on_simulated_zero_gpu_every_family_answers_through_gpu_tasks_sized_from_the_work(simulated, family):
    result = simulated[family]
    assert "error" not in result, result.get("error")
    steps = {name: calls for name, calls in result["steps"].items()}
    module = "models.slowfast.adapter" if family == "slowfast" else "models.hf.common"
    for name, calls in steps.items():
        expected = "_encode_on_device" if name.startswith("encode") else "_generate_on_device"
        assert [function for function, _ in calls] == [f"{module}.{expected}"], name  # one GPU call per step
        assert all(GPU_MIN_S <= seconds <= GPU_MAX_S for _, seconds in calls)
    seconds = {name: calls[0][1] for name, calls in steps.items()}
    assert seconds["encode 8 frames"] < seconds["encode 32 frames"]
    assert seconds["follow-up"] < seconds["answer"] < seconds["long answer"]  # attention, then 200 tokens
    assert result["answer_tokens"] > 0 and result["follow_up_tokens"] > 0
    assert result["attention_frames"] == 8  # the attention view came back across the boundary
    assert result["payload_devices"] == ["cpu"]  # what the studio caches per video is on the CPU
