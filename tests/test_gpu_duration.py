"""ZeroGPU durations are sized from the work of each call (frames to encode, tokens to read and write), not a constant:
too short and ZeroGPU kills an answer mid-stream, too long and visitors wait longer in its queue. `spaces` is not
installed here, so a stand-in module records what `spaces.GPU` is given."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from types import SimpleNamespace

import torch

from models.base import GenerationParams
from models.slowfast import adapter
from models.slowfast.adapter import GPU_MAX_S, GPU_MIN_S, _encode_seconds, _generate_seconds, gpu_seconds


def test_more_work_asks_for_more_gpu_time_within_zero_gpus_range():
    assert gpu_seconds(frames=8) < gpu_seconds(frames=64) < gpu_seconds(frames=256)
    assert gpu_seconds(prompt_tokens=500, new_tokens=64) < gpu_seconds(prompt_tokens=500, new_tokens=1024)
    answer = {"prompt_tokens": 2000, "new_tokens": 512}
    assert gpu_seconds(**answer) < gpu_seconds(**answer, attention=True)
    assert gpu_seconds() == GPU_MIN_S  # a trivial call still asks for the minimum
    assert gpu_seconds(frames=10_000) == GPU_MAX_S


def test_durations_read_the_arguments_the_gpu_functions_get():
    few, many = torch.zeros(8, 3, 16, 16), torch.zeros(128, 3, 16, 16)
    assert _encode_seconds("m", few) < _encode_seconds("m", many)

    prompt = SimpleNamespace(input_ids=list(range(40)))
    video = SimpleNamespace(fast_tokens=torch.zeros(1500, 4), slow_tokens=torch.zeros(2600, 4))
    short, long = GenerationParams(max_new_tokens=32), GenerationParams(max_new_tokens=1024)
    assert _generate_seconds("m", prompt, video, short, False) < _generate_seconds("m", prompt, video, long, False)
    assert _generate_seconds("m", prompt, None, long, False) < _generate_seconds("m", prompt, video, long, False)
    assert _generate_seconds("m", prompt, video, long, False) < _generate_seconds("m", prompt, video, long, True)


def test_on_zero_gpu_each_call_gets_its_own_duration(monkeypatch):
    given: list[object] = []

    def gpu(duration=60):
        given.append(duration)
        return lambda function: function

    stand_in = types.ModuleType("spaces")
    stand_in.__spec__ = importlib.machinery.ModuleSpec("spaces", None)
    stand_in.GPU = gpu
    monkeypatch.setitem(sys.modules, "spaces", stand_in)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert adapter.on_zero_gpu()

    def encode(model_name, pixel_values):
        return pixel_values.shape[0]

    adapter._gpu_task(duration=adapter._encode_seconds)(encode)
    (duration,) = given
    assert callable(duration)  # ZeroGPU calls it with the task's arguments, per call
    assert duration("m", torch.zeros(8, 3, 4, 4)) < duration("m", torch.zeros(200, 3, 4, 4))
