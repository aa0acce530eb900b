"""The README tells it all: its models table lists every registry entry with the registry's own family, size, needs,
default frames and compressors, and names every compressor.

The table is checked in README.md; while a new version of the section waits in docs_pending/README_models.md for the
README to take it in, that file is the one checked. `python tests/test_readme_models.py` prints the table the
registry implies, to paste.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from models.compression import COMPRESSORS  # noqa: E402
from models.registry import BUILTIN_MODELS, DEFAULT_MODEL, MODELS, SMOLVLM2_CPU, ModelSpec  # noqa: E402

PENDING = ROOT / "docs_pending" / "README_models.md"
HEADER = ["registry name", "family", "size", "needs", "default frames", "compressors"]
NEEDS_ORDER = {"cpu": "CPU", "gpu": "GPU", "hub": "hub", "offline": "offline"}
DEFAULT_NOTES = {DEFAULT_MODEL: "default offline", SMOLVLM2_CPU: "CPU default where the hub answers"}


def needs_text(spec: ModelSpec) -> str:
    return " + ".join(label for key, label in NEEDS_ORDER.items() if key in spec.needs)


def frames_text(spec: ModelSpec) -> str:
    frames = spec.defaults.num_frames
    return f"≤ {frames} at {spec.defaults.fps:g} fps" if spec.defaults.fps else str(frames)


def name_cell(name: str) -> str:
    note = DEFAULT_NOTES.get(name)
    return f"`{name}`" + (f" ({note})" if note else "")


def expected_rows() -> list[list[str]]:
    rows = []
    for name in BUILTIN_MODELS:
        spec = MODELS[name]
        compressors = ", ".join(f"`{c}`" for c in spec.compressors)
        rows.append([name_cell(name), spec.family, spec.size, needs_text(spec), frames_text(spec), compressors])
    return rows


def render_table() -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in expected_rows()])


def models_section(text: str) -> str:
    match = re.search(r"^## Models\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, "no '## Models' section"
    return match.group(1)


def table_rows(section: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the first Markdown table in `section`."""
    lines: list[str] = []
    for line in section.splitlines():
        if line.strip().startswith("|"):
            lines.append(line.strip())
        elif lines:  # the first table ended
            break
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return cells[0], cells[2:]


def checked_text() -> str:
    return (PENDING if PENDING.exists() else ROOT / "README.md").read_text(encoding="utf-8")


def test_every_builtin_entry_says_its_family_and_size():
    for name in BUILTIN_MODELS:
        assert MODELS[name].family and MODELS[name].size, name


def test_the_models_table_is_the_registry():
    header, rows = table_rows(models_section(checked_text()))
    assert header == HEADER
    assert rows == expected_rows(), "the table differs from the registry; paste `python tests/test_readme_models.py`"


def test_the_models_section_names_every_compressor_and_what_the_budget_means():
    section = " ".join(models_section(checked_text()).split())
    for name in COMPRESSORS:
        assert f"`{name}`" in section, name
    assert "% of the model's own count" in section


if __name__ == "__main__":
    print(render_table())
