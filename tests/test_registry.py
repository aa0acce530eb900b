"""The model registry: readable entries, lazy loading, clear reasons when a model cannot run here."""

import pytest

from models.base import ModelUnavailableError, VideoLLM
from models.registry import DEFAULT_MODEL, MODELS, availability, get_spec, load_model


def test_unknown_names_fail_with_the_list_of_known_names():
    with pytest.raises(KeyError) as error:
        get_spec("gpt-video-9000")
    for name in MODELS:
        assert name in str(error.value)


def test_every_entry_says_what_it_needs_and_has_a_description():
    for name, spec in MODELS.items():
        assert spec.description and spec.needs <= {"cpu", "gpu", "offline", "hub"}, name
        assert ":" in spec.loader and spec.defaults.num_frames > 0


def test_the_default_runs_here_and_the_7b_models_say_why_they_cannot(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("STUDIO_ASSUME_HUB", raising=False)
    assert availability(DEFAULT_MODEL) == (True, "")
    ok, reason = availability("slowfast-mllm-7b-f64-s1t4")
    assert not ok and reason == "needs a GPU and hub access"
    with pytest.raises(ModelUnavailableError, match="needs a GPU and hub access"):
        load_model("slowfast-mllm-7b-f64-s1t4")


def test_the_default_loads_once_and_speaks_the_video_llm_protocol():
    first = load_model(DEFAULT_MODEL)
    assert isinstance(first, VideoLLM) and load_model(DEFAULT_MODEL) is first


@pytest.mark.parametrize(
    ("hub_value", "transformers_value", "offline"),
    [
        ("", "", False),
        ("0", "off", False),
        ("False", "NO", False),
        ("1", "", True),
        ("", "yes", True),
        ("ON", "0", True),
    ],
)
def test_one_reading_of_the_offline_switches(monkeypatch, hub_value, transformers_value, offline):
    from models.hub import hub_offline
    from models.registry import _hub_reachable

    monkeypatch.setenv("HF_HUB_OFFLINE", hub_value)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", transformers_value)
    monkeypatch.setenv("STUDIO_ASSUME_HUB", "1")
    assert hub_offline() is offline
    assert _hub_reachable() is not offline


def test_a_path_that_is_neither_a_folder_nor_a_hub_id_says_so(tmp_path):
    from models.hub import resolve_folder

    assert resolve_folder(tmp_path) == tmp_path
    for bad in (tmp_path / "missing-folder", "not a repo id"):
        with pytest.raises(ModelUnavailableError, match="neither a model folder nor a hub repo id"):
            resolve_folder(bad)
