"""ZeroGPU for every GPU model: `gpu_task(duration)` wraps the functions that touch the GPU, for all families.

On a ZeroGPU Space (`SPACES_ZERO_GPU` set and the `spaces` package installed) `gpu_task` hands the function to
`spaces.GPU(duration=...)` at import time, as ZeroGPU requires. ZeroGPU then attaches a GPU for each call and runs it
in a forked worker, pickling the arguments in and the result (each yielded item, for a generator) out: a task takes
plain data and CPU tensors, finds its model by name (its first argument; adapters `register_live` themselves, since
the model object stays in the main process), and `gpu_task` moves whatever it returns or yields to the CPU before
it crosses; each model gets its own `spaces.GPU` function, hence a worker forked after the model was loaded.
Anything the task leaves on the adapter (a KV cache, counters) stays in the worker: what the caller needs must be
returned. Elsewhere `gpu_task` returns the function untouched and everything runs in-process.

ZeroGPU queues a visitor by the seconds a call asks for and kills the call when they run out (mid-answer), so a
task's `duration` is a function of the task's own arguments (ZeroGPU calls it with them) built on `gpu_seconds`:
attaching the GPU and moving the weights in, plus the tower's pixels, the prompt to read and the tokens to write,
all but the attach scaled by the model's size.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.util
import inspect
import math
import os
import threading
from collections.abc import Callable
from typing import Any

# Reference costs for a 7B model in bf16 on one ZeroGPU slice, on the generous side: attaching the GPU, moving the
# weights in (per billion parameters), tower time per frame of 576x576 pixels, prefill throughput and one decode step;
# all but the attach scale with the model's size.
GPU_ATTACH_S = 5.0
GPU_S_PER_BILLION_MOVED = 1.5  # weights onto the GPU at the start of a call (7B: ~10 s)
REFERENCE_BILLIONS = 7.0
REFERENCE_FRAME_PIXELS = 576 * 576
GPU_S_PER_FRAME = 0.4  # the vision tower on one REFERENCE_FRAME_PIXELS frame
GPU_PREFILL_TOKENS_PER_S = 4000.0  # prompt + visual tokens read before the first answer token
GPU_S_PER_NEW_TOKEN = 0.06  # one decode step
GPU_ATTENTION_FACTOR = 1.3  # recording or scoring the attention maps
MIN_SIZE_FACTOR = 0.1  # a tiny model still pays for kernel launches and transfers
GPU_MIN_S, GPU_MAX_S = 10, 300  # shorter waits less in ZeroGPU's queue; past 300 s a visitor's quota rarely lasts

_LIVE: dict[str, tuple[Any, float]] = {}  # name -> (adapter, parameters in billions), for the tasks


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space: `SPACES_ZERO_GPU` is set and the `spaces` package is importable."""
    return bool(os.environ.get("SPACES_ZERO_GPU")) and importlib.util.find_spec("spaces") is not None


def register_live(name: str, adapter: Any, module: Any = None) -> None:
    """Make `adapter` findable by its registry name inside GPU tasks; `module` (a torch module) sizes durations."""
    billions = REFERENCE_BILLIONS
    if module is not None:
        billions = sum(parameter.numel() for parameter in module.parameters()) / 1e9
    _LIVE[name] = (adapter, billions)


def live_model(name: str) -> Any:
    """The adapter registered under `name` (a task's way back to its model)."""
    if name not in _LIVE:
        raise KeyError(f"no model named {name!r} is loaded in this process")
    return _LIVE[name][0]


def model_billions(name: str) -> float:
    """Parameters of the live model `name`, in billions (the 7B reference when it is not registered)."""
    return _LIVE[name][1] if name in _LIVE else REFERENCE_BILLIONS


def gpu_seconds(
    *,
    frames: int = 0,
    frame_pixels: int = REFERENCE_FRAME_PIXELS,
    prompt_tokens: int = 0,
    new_tokens: int = 0,
    attention: bool = False,
    billions: float = REFERENCE_BILLIONS,
) -> int:
    """Seconds to ask ZeroGPU for: encoding `frames` frames of `frame_pixels` pixels, or reading `prompt_tokens`
    and writing up to `new_tokens` (with the attention maps when `attention`), on a model of `billions` parameters;
    clamped to [GPU_MIN_S, GPU_MAX_S]."""
    size = max(MIN_SIZE_FACTOR, billions / REFERENCE_BILLIONS)
    tower = frames * GPU_S_PER_FRAME * frame_pixels / REFERENCE_FRAME_PIXELS
    work = size * (tower + prompt_tokens / GPU_PREFILL_TOKENS_PER_S + new_tokens * GPU_S_PER_NEW_TOKEN)
    if attention:
        work *= GPU_ATTENTION_FACTOR
    fixed = GPU_ATTACH_S + GPU_S_PER_BILLION_MOVED * billions
    return int(min(GPU_MAX_S, max(GPU_MIN_S, math.ceil(fixed + work))))


def to_cpu(value: Any) -> Any:
    """`value` with every tensor in it (through tuples, lists, dicts and dataclasses) moved to the CPU; the
    containers are copied only where something inside moved."""
    return _to_cpu(value, {})


def _to_cpu(value: Any, seen: dict[int, Any]) -> Any:
    if id(value) in seen:
        return seen[id(value)]
    device = getattr(getattr(value, "device", None), "type", None)
    if isinstance(device, str) and callable(getattr(value, "cpu", None)):
        return value if device == "cpu" else value.cpu()
    if isinstance(value, (tuple, list)):
        items = [_to_cpu(item, seen) for item in value]
        if all(new is old for new, old in zip(items, value)):
            return value
        return type(value)(items) if not hasattr(value, "_fields") else type(value)(*items)
    if isinstance(value, dict):
        moved = {key: _to_cpu(item, seen) for key, item in value.items()}
        return value if all(moved[key] is value[key] for key in value) else type(value)(moved)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        seen[id(value)] = value  # a cycle back to it keeps the original
        moved = {f.name: _to_cpu(getattr(value, f.name), seen) for f in dataclasses.fields(value)}
        if all(moved[name] is getattr(value, name) for name in moved):
            return value
        result = copy.copy(value)
        for name, item in moved.items():
            object.__setattr__(result, name, item)  # frozen dataclasses too
        seen[id(value)] = result
        return result
    return value


def _cpu_outputs(function: Callable) -> Callable:
    """`function` with what it returns (or each item it yields) moved to the CPU; generator functions stay ones."""
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def stream(*args, **kwargs):
            for item in function(*args, **kwargs):
                yield to_cpu(item)

        return stream

    @functools.wraps(function)
    def call(*args, **kwargs):
        return to_cpu(function(*args, **kwargs))

    return call


def gpu_task(duration: int | Callable[..., int]) -> Callable[[Callable], Callable]:
    """Decorate a function of (model_name, ...) that runs on the GPU: on ZeroGPU, `spaces.GPU(duration=duration)`
    with its outputs moved to the CPU before they leave the worker; the function itself elsewhere. A callable
    `duration` gets the call's arguments and returns its seconds.

    Each model gets its own `spaces.GPU` function, so its own ZeroGPU worker: ZeroGPU forks a worker at a function's
    first call and reuses it, and a worker forked before a model was loaded does not hold that model. The first
    one is made at import (ZeroGPU wants its GPU functions declared at start-up) and serves the first model."""

    def decorate(function: Callable) -> Callable:
        if not on_zero_gpu():
            return function
        import spaces

        def declare() -> Callable:
            return spaces.GPU(duration=duration)(_cpu_outputs(function))

        per_model: dict[str, Callable] = {}
        first = declare()
        lock = threading.Lock()

        @functools.wraps(function)
        def task(model_name: str, *args, **kwargs):
            with lock:
                if model_name not in per_model:
                    per_model[model_name] = declare() if per_model else first
            return per_model[model_name](model_name, *args, **kwargs)

        return task

    return decorate
