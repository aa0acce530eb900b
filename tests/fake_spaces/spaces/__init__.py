"""A stand-in for Hugging Face's `spaces` package, for simulating a ZeroGPU Space on a CPU.

`GPU(duration=...)` decorates like the real one (bare, or with a fixed or callable duration), noting each function
it is given in `DECORATED`. Each call is recorded in `CALLS` (the function's name and the seconds it asked for, a
callable duration evaluated on the call's own arguments), and it behaves like ZeroGPU's process boundary: arguments
and results (each item, for a generator) are pickled and unpickled, and any tensor on a device other than the CPU in
them raises `BoundaryError`. On ZeroGPU a CUDA tensor that leaves the worker cannot be unpickled in the main
process; here none can be made, so a tensor on "meta" (or any object whose `.device.type` is not "cpu") stands in
for one.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import pickle
from typing import Any, NamedTuple


class Call(NamedTuple):
    function: str
    duration: int | float


class BoundaryError(AssertionError):
    """A value crossing the (simulated) ZeroGPU process boundary holds a tensor that is not on the CPU."""


CALLS: list[Call] = []
DECORATED: list[str] = []  # the name of each function `GPU` was given, once per decoration
DEFAULT_DURATION = 60


def device_tensors(value: Any, path: str = "value", seen: set[int] | None = None) -> list[str]:
    """Where in `value` (through tuples, lists, sets, dicts, dataclasses and plain objects) a tensor sits on a
    device other than the CPU: "path (device)" for each."""
    seen = set() if seen is None else seen
    if id(value) in seen or isinstance(value, (str, bytes, int, float, bool, type(None), type)):
        return []
    seen.add(id(value))
    device_type = getattr(getattr(value, "device", None), "type", None)
    if isinstance(device_type, str):
        return [] if device_type == "cpu" else [f"{path} ({device_type})"]
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += device_tensors(item, f"{path}[{key!r}]", seen)
    elif isinstance(value, (tuple, list, set, frozenset)):
        for index, item in enumerate(value):
            found += device_tensors(item, f"{path}[{index}]", seen)
    elif dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            found += device_tensors(getattr(value, field.name), f"{path}.{field.name}", seen)
    elif hasattr(value, "__dict__") and not inspect.ismodule(value) and not callable(value):
        for name, item in vars(value).items():
            found += device_tensors(item, f"{path}.{name}", seen)
    return found


def cross(value: Any, what: str) -> Any:
    """`value` as the other side of the boundary gets it: checked for device tensors, then pickled and back."""
    found = device_tensors(value, what)
    if found:
        raise BoundaryError("a tensor off the CPU crosses the ZeroGPU boundary: " + ", ".join(found))
    return pickle.loads(pickle.dumps(value))


def _seconds(duration: Any, args: tuple, kwargs: dict) -> int | float:
    seconds = duration(*args, **kwargs) if callable(duration) else duration
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        raise AssertionError(f"duration must be a positive number of seconds, got {seconds!r}")
    return seconds


def GPU(task=None, *, duration: Any = DEFAULT_DURATION, size: str | None = None):  # noqa: N802 (the real name)
    """Decorate `task` as a ZeroGPU function (usable bare or as `GPU(duration=...)`)."""
    if task is None:
        return functools.partial(GPU, duration=duration, size=size)
    name = f"{task.__module__}.{task.__qualname__}"
    DECORATED.append(name)

    if inspect.isgeneratorfunction(task):

        @functools.wraps(task)
        def generator(*args, **kwargs):
            CALLS.append(Call(name, _seconds(duration, args, kwargs)))
            args, kwargs = cross((args, kwargs), f"{name} arguments")
            for index, item in enumerate(task(*args, **kwargs)):
                yield cross(item, f"{name} item {index}")

        return generator

    @functools.wraps(task)
    def function(*args, **kwargs):
        CALLS.append(Call(name, _seconds(duration, args, kwargs)))
        args, kwargs = cross((args, kwargs), f"{name} arguments")
        return cross(task(*args, **kwargs), f"{name} result")

    return function
