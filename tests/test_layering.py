"""The layers stay apart: `models/` and the data package `app/data/` never import gradio, so a researcher can open
the store and export from a notebook, and a model runs without the UI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["models", "app/data"])
def test_no_gradio_below_the_ui(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    offenders = [str(f.relative_to(ROOT)) for f in files if {"gradio", "gradio_client"} & imported_modules(f)]
    assert offenders == []


def test_ui_module_only_composes_and_every_tab_wires_itself():
    assert len((ROOT / "app" / "ui.py").read_text().splitlines()) < 200
    for tab in ("chat", "compare", "export", "live"):
        package = ROOT / "app" / "tabs" / tab
        layout, handlers = (package / "layout.py").read_text(), (package / "handlers.py").read_text()
        assert "api_name=" in layout and "def build(" in layout, tab
        assert "def build(" not in handlers, tab  # handlers stay plain functions


def test_the_store_exports_from_a_notebook_without_the_ui(tmp_path):
    from app.data import AnnotationStore, export_all

    store = AnnotationStore(tmp_path)
    store.record_rating(model="m", question="What?", answer="A cat.", thumbs=1)
    result = export_all(store)
    assert result.files["jsonl"].read_text().count("A cat.") == 1
