"""Remote engines without a server: `--engine` entries, which frames each compressor sends, the request the backend
builds, an engine that is down or silent (clear messages, retries with backoff, disabled in the menu with the
reason), and the attention view saying it has nothing from a remote engine. The real-vLLM tests are in
test_engine_vllm.py."""

from __future__ import annotations

import json
import re
import socket
import threading

import numpy as np
import pytest
from conftest import ROOT, free_port, write_video

from app import charts
from app.session import Session
from app.settings import model_choices
from app.sidebar import select_model
from models.base import EncodeParams
from models.engine.adapter import EngineVideoLLM, remote_attention, reported_stats
from models.engine.client import EngineClient, EngineError, Usage
from models.engine.config import EngineConfigError, engines_from_env, parse_engine
from models.engine.payload import chat_request, with_frames
from models.engine.register import register_engines
from models.registry import AVAILABILITY_CHECKS, MODELS, availability
from models.video import sample_frames


@pytest.fixture
def forget_engines():
    """Remove the engines a test registers from the process-wide registry afterwards."""
    before = set(MODELS)
    yield
    for name in set(MODELS) - before:
        MODELS.pop(name, None)
        AVAILABILITY_CHECKS.pop(name, None)


def closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


def test_engine_entries_parse_with_their_options():
    config = parse_engine("qwen=http://gpu-box:8000,model=Qwen/Qwen2.5-VL-7B-Instruct,api_key_env=QWEN_KEY,timeout=30")
    assert (config.name, config.base_url, config.model, config.api_key_env) == (
        "qwen",
        "http://gpu-box:8000/v1",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "QWEN_KEY",
    )
    assert config.timeout_s == 30 and config.input == "video"
    assert parse_engine("s=http://127.0.0.1:8000/v1/chat/completions,input=timeline").base_url.endswith(":8000/v1")
    env = {"STUDIO_ENGINES": "a=http://127.0.0.1:1/v1; b=http://127.0.0.1:2,input=images\n"}
    assert [(c.name, c.input) for c in engines_from_env(env)] == [("a", "video"), ("b", "images")]


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("http://127.0.0.1:8000", "expected NAME=URL"),
        ("x=ftp://host", "not an http(s) URL"),
        ("x=http://h:1,input=audio", "input must be one of video, images, timeline"),
        ("x=http://h:1,colour=red", "unknown option 'colour'"),
        ("x=http://h:1,retries=0", "retries must be positive"),
    ],
)
def test_a_bad_engine_entry_says_what_is_wrong(entry, says):
    with pytest.raises(EngineConfigError, match=re.escape(says)):
        parse_engine(entry)


@pytest.fixture(scope="module")
def pooled_frames(tmp_path_factory):
    """24 frames of a synthetic clip whose first half is still and whose second half changes every frame."""
    path = write_video(tmp_path_factory.mktemp("engine") / "clip.mp4", duration_s=4.8, fps=10)
    return sample_frames(path, num_frames=24, max_side=160)


def engine_model() -> EngineVideoLLM:
    return EngineVideoLLM(parse_engine(f"e=http://127.0.0.1:{closed_port()}/v1,model=some-vlm"))


@pytest.mark.parametrize(("compressor", "budget_pct", "sent"), [("official", 100, 24), ("uniform", 50, 12)])
def test_each_compressor_decides_how_many_frames_each_clip_sends(pooled_frames, compressor, budget_pct, sent):
    context = engine_model().encode(pooled_frames, EncodeParams(compressor=compressor, budget_pct=budget_pct), "s")
    assert context.num_frames == sent == len(context.payload.pixels)
    stats = context.stats
    assert stats.unit == "frames" and sum(len(c.frame_positions) for c in stats.clips) == sent
    assert sorted(p for c in stats.clips for p in c.frame_positions) == list(range(sent)), "every sent frame once"
    assert context.frame_indices == sorted(context.frame_indices), "frames go in time order"
    assert all(c.budget == c.used_tokens == len(c.frame_positions) for c in stats.clips)


def test_dynamic_sends_the_share_of_frames_the_plan_gives_each_clip(pooled_frames):
    context = engine_model().encode(pooled_frames, EncodeParams(compressor="dynamic", budget_pct=25), "s")
    assert context.num_frames == 6 and sum(c.budget for c in context.stats.clips) == 6
    figure = charts.budget_figure(context.stats)
    assert figure.layout.yaxis.title.text == "visual frames" and "Frames sent per clip" in figure.layout.title.text


def test_the_request_carries_the_frames_and_their_timing_in_the_first_user_turn(pooled_frames):
    model = engine_model()
    context = model.encode(pooled_frames, EncodeParams(compressor="uniform", budget_pct=50), "s")
    history = [{"role": "user", "content": "What is it?"}, {"role": "assistant", "content": "A pattern."}]
    messages = with_frames([*history, {"role": "user", "content": "And then?"}], context.payload, "video")
    first = messages[0]["content"]
    assert first[0]["type"] == "video_url" and first[0]["video_url"]["url"].startswith("data:video/jpeg;base64,")
    assert first[0]["video_url"]["url"].count(",") == context.num_frames, "one JPEG per sent frame"
    assert first[-1] == {"type": "text", "text": "What is it?"} and messages[2]["content"] == "And then?"
    body = chat_request("some-vlm", messages, {"max_tokens": 8}, context.payload, "video")
    video = body["media_io_kwargs"]["video"]
    assert video["frames_indices"] == context.frame_indices and video["num_frames"] == context.num_frames
    assert video["fps"] == pytest.approx(10.0) and video["total_num_frames"] == pooled_frames.info.num_frames
    assert body["stream"] and body["stream_options"] == {"include_usage": True}
    images = with_frames([{"role": "user", "content": "Q"}], context.payload, "images")[0]["content"]
    assert sum(part["type"] == "image_url" for part in images) == context.num_frames
    json.dumps(body)  # the whole request is plain JSON


def test_reported_visual_tokens_are_credited_to_clips_by_their_frames(pooled_frames):
    context = engine_model().encode(pooled_frames, EncodeParams(compressor="dynamic", budget_pct=50), "s")
    usage = Usage(
        prompt_tokens=1000, completion_tokens=5, details={"multimodal_tokens": {"video": 960}}, reported=True
    )
    stats = reported_stats(context.stats, usage)
    assert stats.unit == "tokens" and sum(c.used_tokens for c in stats.clips) == 960 == stats.total_visual_tokens
    assert all("frames sent" in c.text for c in stats.clips)
    assert "960 visual tokens (80 per frame) of 1000 prompt tokens" in stats.note
    without = reported_stats(context.stats, Usage(prompt_tokens=700, completion_tokens=5, reported=True))
    assert without.unit == "frames" and "700 prompt tokens in all" in without.note


def test_an_engine_that_is_down_fails_after_retries_with_backoff_and_a_clear_message():
    naps: list[float] = []
    client = EngineClient(parse_engine(f"down=http://127.0.0.1:{closed_port()}/v1,model=m"), sleep=naps.append)
    with pytest.raises(EngineError) as raised:
        list(client.stream_chat({"model": "m", "messages": []}))
    assert naps == [0.5, 1.0], "three tries, backing off"
    message = str(raised.value)
    assert "'down'" in message and "did not answer after 3 tries (connection refused)" in message
    assert "Nothing is lost: ask again" in message


def test_a_silent_engine_times_out_instead_of_hanging():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: [accepted.append(listener.accept()[0]) for _ in range(2)], daemon=True).start()
    port = listener.getsockname()[1]
    client = EngineClient(
        parse_engine(f"slow=http://127.0.0.1:{port}/v1,model=m,timeout=0.5,retries=2"), lambda s: None
    )
    try:
        with pytest.raises(EngineError, match=r"did not answer after 2 tries \(timed out"):
            list(client.stream_chat({"model": "m", "messages": []}))
    finally:
        for sock in [*accepted, listener]:
            sock.close()


def test_an_unreachable_engine_stays_in_the_menu_disabled_with_the_reason(forget_engines):
    port = closed_port()
    [(name, problem)] = register_engines([f"far-engine=http://127.0.0.1:{port}/v1,model=m"])
    assert "not reachable (connection refused)" in problem
    label = dict((value, label) for label, value in model_choices())[name]
    assert label.startswith("far-engine — unavailable here: cannot use its engine at http://127.0.0.1:")
    assert availability(name)[0] is False
    session = Session()
    picked = select_model(session, name)
    assert "far-engine cannot run here: it cannot use its engine" in picked["warning"] and session.model != name


def test_the_attention_view_says_a_remote_engine_gives_none():
    for figure in (
        charts.attention_heatmap(remote_attention(), [0.0, 1.0]),
        charts.attention_timeline(remote_attention(), [0.0]),
    ):
        text = " ".join(a.text for a in figure.layout.annotations)
        assert "not available from a remote engine" in text
    assert np.asarray(remote_attention().frame_weights).size == 0
    assert (ROOT / "models" / "engine" / "adapter.py").exists()
