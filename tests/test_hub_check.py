"""A real small VLM where the hub answers: the studio asks once at start (2 s at most) whether the hub answers; where
it does, SmolVLM2-256M is the CPU default and the GPU checkpoints are enabled on a GPU; offline, the embedded
default. No test touches the network: the probe is injected, or the "hub" is a local server that answers HEAD
(and 404 to everything else, so checkpoints come from a pre-filled HF cache)."""

from __future__ import annotations

import http.server
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import serving_app

from models import hub, registry
from models.base import Frames, VideoInfo
from models.hf.testing import write_tiny_checkpoint

SMOL = registry.SMOLVLM2_CPU


@pytest.fixture
def online(monkeypatch):
    """Offline switches off, no assumption either way, no Space, no GPU, and no cached probe answer."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "0")
    for name in ("STUDIO_ASSUME_HUB", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub, "_checked", None)
    monkeypatch.setattr(registry, "_has_gpu", lambda: False)
    return monkeypatch


def answering(endpoint: str, timeout_s: float) -> str:
    return "HTTP 200"


def refusing(endpoint: str, timeout_s: float) -> str:
    raise ConnectionRefusedError("connection refused")


class FakeHub(http.server.BaseHTTPRequestHandler):
    """Answers HEAD / like the hub's front page; every other request gets a 404."""

    def do_HEAD(self):  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/" else 404)
        self.end_headers()

    def do_GET(self):  # noqa: N802
        body = b'{"error": "Repository not found"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def prefill_cache(cache: Path, repo_id: str = SMOL, family: str = "smolvlm") -> Path:
    """An HF cache holding a tiny checkpoint under `repo_id`, as a finished download leaves it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    write_tiny_checkpoint(family, repo / "snapshots" / "0123456789abcdef")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    return cache


def eight_frames() -> Frames:
    pixels = (np.random.default_rng(0).random((8, 60, 80, 3)) * 255).astype(np.uint8)
    times = np.arange(8) / 2.0
    return Frames(pixels, (times * 30).astype(int), times, VideoInfo("clip.mp4", 4.0, 30.0, 120, 80, 60))


# ----------------------------------------------------------------------------------------------------------------
# The probe


def test_the_hub_is_asked_once_and_the_answer_kept(online):
    asked = []

    def probe(endpoint, timeout_s):
        asked.append((endpoint, timeout_s))
        return "HTTP 200"

    online.setenv("HF_ENDPOINT", "https://hub.example/")
    first = hub.check_hub(probe)
    assert first.answered and asked == [("https://hub.example", hub.HUB_PROBE_TIMEOUT_S)]
    assert "https://hub.example answered" in first.line() and "hub models are enabled" in first.line()
    assert hub.check_hub(refusing) is first and hub.hub_answers() and len(asked) == 1  # cached
    assert not hub.check_hub(refusing, refresh=True).answered


def test_a_hub_that_does_not_answer_in_time_or_fails_is_not_used(online):
    def hangs(endpoint, timeout_s):
        time.sleep(5)
        return "HTTP 200"

    start = time.perf_counter()
    slow = hub.check_hub(hangs, timeout_s=0.2)
    assert not slow.answered and time.perf_counter() - start < 2 and "no answer within 0.2 s" in slow.reason
    refused = hub.check_hub(refusing, refresh=True)
    assert not refused.answered and "ConnectionRefusedError" in refused.reason
    assert "only the embedded model" in refused.line()


def test_offline_switches_win_without_asking(online):
    online.setenv("HF_HUB_OFFLINE", "1")

    def must_not_run(endpoint, timeout_s):
        raise AssertionError("the hub was asked while offline")

    check = hub.check_hub(must_not_run)
    assert not check.answered and check.reason == "offline: HF_HUB_OFFLINE is set"


def test_the_real_probe_heads_the_endpoint(online, fake_hub):
    assert hub.probe_endpoint(fake_hub, 2.0) == "HTTP 200"
    online.setenv("HF_ENDPOINT", fake_hub)
    assert hub.check_hub(refresh=True).answered
    online.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    assert not hub.check_hub(refresh=True).answered


# ----------------------------------------------------------------------------------------------------------------
# What the answer enables


def test_where_the_hub_answers_smolvlm2_is_the_cpu_default_and_gpu_models_wait_for_a_gpu(online):
    hub.check_hub(answering)
    assert registry.default_model_name() == SMOL
    assert registry.availability(SMOL) == (True, "")
    assert registry.availability("Qwen/Qwen2.5-VL-7B-Instruct") == (False, "needs a GPU")
    online.setattr(registry, "_has_gpu", lambda: True)
    for name in ("Qwen/Qwen2.5-VL-3B-Instruct", "llava-hf/llava-onevision-qwen2-7b-ov-hf"):
        assert registry.availability(name) == (True, "")
    assert registry.default_model_name() == registry.DEFAULT_MODEL  # a GPU machine picks in the menu


def test_where_the_hub_does_not_answer_the_embedded_default_stays(online):
    hub.check_hub(refusing)
    assert registry.default_model_name() == registry.DEFAULT_MODEL
    assert registry.availability(SMOL) == (False, "needs hub access")
    online.setenv("HF_HUB_OFFLINE", "1")
    assert registry.default_model_name() == registry.DEFAULT_MODEL


def test_studio_assume_hub_still_decides_without_asking(online):
    def must_not_run(endpoint, timeout_s):
        raise AssertionError("the hub was asked although STUDIO_ASSUME_HUB decides")

    online.setattr(hub, "probe_endpoint", must_not_run)
    online.setenv("STUDIO_ASSUME_HUB", "1")
    assert registry._hub_reachable() and registry.default_model_name() == SMOL
    online.setenv("STUDIO_ASSUME_HUB", "0")
    assert not registry._hub_reachable() and registry.default_model_name() == registry.DEFAULT_MODEL


def test_where_the_hub_answers_the_default_loads_from_a_prefilled_cache_and_answers(online, fake_hub, tmp_path):
    from models.base import EncodeParams, GenerationParams, collect

    online.setenv("HF_ENDPOINT", fake_hub)
    online.setenv("HF_HUB_CACHE", str(prefill_cache(tmp_path / "hub")))
    online.setattr(registry, "_loaded", {})
    assert hub.check_hub().answered
    name = registry.default_model_name()
    assert name == SMOL
    model = registry.load_model(name)
    context = model.encode(eight_frames(), EncodeParams(num_frames=8), "sha")
    answer = collect(model.stream(context, [], "What is shown?", GenerationParams(max_new_tokens=4)))
    assert answer.new_tokens > 0


# ----------------------------------------------------------------------------------------------------------------
# Download progress: the log and the UI's status line


def test_download_progress_reaches_the_log_and_the_status_line(caplog, monkeypatch):
    monkeypatch.setattr(hub, "DOWNLOAD_LOG_EVERY_S", 0.0)
    download = hub.Download("owner/model")
    bar = hub._progress_class(download)(total=4_000_000, unit="B", unit_scale=True, desc="Downloading bytes")
    files = hub._progress_class(download)(total=3, desc="Fetching 3 files")  # counts files, not bytes
    with caplog.at_level(logging.INFO, logger="models.hub"):
        bar.update(1_000_000)
        bar.refresh()
        files.update(1)
    assert download.done_bytes == 1_000_000 and download.total_bytes == 4_000_000
    assert download.line() == "Downloading owner/model: 1 of 4 MB (25%)" and download.fraction == 0.25
    assert "Downloading owner/model: 1 of 4 MB (25%)" in caplog.text
    bar.close()
    files.close()


def test_while_a_checkpoint_downloads_the_progress_bar_says_how_far(monkeypatch):
    from app import running, settings

    download = hub.Download(SMOL, done_bytes=0, total_bytes=500_000_000)
    monkeypatch.setitem(hub.DOWNLOADS, SMOL, download)
    monkeypatch.setattr(registry, "_loaded", {})
    monkeypatch.setattr(running, "DOWNLOAD_POLL_S", 0.01)

    def slow_load(name):
        for done in (100_000_000, 300_000_000):
            download.done_bytes = done
            time.sleep(0.1)
        download.finished = True
        return "the model"

    monkeypatch.setattr(running, "load_model", slow_load)
    shown = []
    assert running.load_named_model(SMOL, lambda fraction, desc: shown.append(desc)) == "the model"
    assert f"Downloading {SMOL}: 300 of 500 MB (60%)" in shown
    download.finished = False
    assert f"Downloading {SMOL}: 300 of 500 MB (60%)" in settings.model_info_markdown(SMOL)


# ----------------------------------------------------------------------------------------------------------------
# `python app.py`


@pytest.mark.e2e
def test_python_app_starts_with_smolvlm2_where_the_hub_answers_and_the_embedded_default_offline(fake_hub, tmp_path):
    cache = prefill_cache(tmp_path / "hf" / "hub")
    online_env = {
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_ENDPOINT": fake_hub,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(cache),
    }
    log = tmp_path / "online.log"
    with serving_app(tmp_path / "data", log_path=log, env=online_env):
        deadline = time.monotonic() + 120
        while f"{SMOL} loaded" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
    text = log.read_text()
    assert f"hub: {fake_hub} answered" in text and f"default model: {SMOL}" in text
    assert f"{SMOL} loaded" in text  # preloaded at start from the cache the hub's answer allows

    log = tmp_path / "offline.log"
    with serving_app(tmp_path / "data-offline", "--no-preload", log_path=log, env={"HF_ENDPOINT": fake_hub}):
        pass
    text = log.read_text()
    assert "hub: not used (offline: HF_HUB_OFFLINE is set)" in text
    assert f"default model: {registry.DEFAULT_MODEL}" in text


def test_the_model_note_follows_a_download_and_stops_refreshing_when_it_ends(monkeypatch):
    from app.session import Session
    from app.sidebar import model_note

    download = hub.Download(SMOL, done_bytes=50_000_000, total_bytes=200_000_000)
    monkeypatch.setitem(hub.DOWNLOADS, SMOL, download)
    note, refreshing = model_note(Session(model=SMOL))
    assert f"Downloading {SMOL}: 50 of 200 MB (25%)" in note and refreshing
    monkeypatch.setattr(registry, "_loading", {SMOL})
    download.finished = True
    note, refreshing = model_note(Session(model=SMOL))
    assert "loading…" in note and refreshing  # downloaded, now being read into memory
    monkeypatch.setattr(registry, "_loading", set())
    note, refreshing = model_note(Session(model=SMOL))
    assert "loading" not in note and "Downloading" not in note and not refreshing
