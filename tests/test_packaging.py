"""`requires-python` tells the truth: no pin in requirements.txt needs a newer Python than pyproject.toml allows, the
lower bound is the one the pins really need, and the Space's `python_version` lies inside it."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOWER_BOUND = re.compile(r">=\s*(\d+)\.(\d+)")


def lower_bound(specifier: str | None) -> tuple[int, int] | None:
    match = LOWER_BOUND.search(specifier or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def pins() -> dict[str, str]:
    """name -> pinned version, from requirements.txt (markers and comments dropped)."""
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        requirement = line.split("#")[0].split(";")[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==")
            found[name.strip()] = version.strip()
    return found


def test_the_parser_reads_lower_bounds():
    assert lower_bound(">=3.11") == (3, 11) and lower_bound(">=3.10.0, <4") == (3, 10) and lower_bound(None) is None


def test_requires_python_matches_what_the_pins_need():
    declared = lower_bound(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    needed: dict[str, tuple[int, int]] = {}
    checked = 0
    for name, version in pins().items():
        try:
            installed = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed.version.split("+")[0] != version:  # another version's metadata says nothing about the pin
            continue
        checked += 1
        bound = lower_bound(installed.metadata.get("Requires-Python"))
        if bound:
            needed[name] = bound
    assert checked >= len(pins()) // 2, "too few pinned packages are installed at their pins to check"
    too_new = {name: bound for name, bound in needed.items() if bound > declared}
    assert too_new == {}, f"pins needing a newer Python than requires-python {declared}: {too_new}"
    assert max(needed.values()) == declared, "requires-python is lower than any pin needs: raise it to match"


def test_the_space_runs_a_python_inside_requires_python():
    declared = lower_bound(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    front_matter = (ROOT / "README.md").read_text().split("---")[1]
    version = re.search(r'python_version:\s*"?(\d+)\.(\d+)', front_matter)
    assert version and (int(version.group(1)), int(version.group(2))) >= declared
    ruff_target = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["target-version"]
    assert ruff_target == f"py{declared[0]}{declared[1]}"
