"""The studio driven through its public API with `gradio_client`, as a script or another app would use it.

One app is launched in-process for the module (real embedded default model, data in a temporary folder); every
named endpoint is called, bad uploads must come back as a clear message while the app keeps serving, eight clients
chatting and voting at once must lose no vote, and a separate app process killed with SIGKILL in the middle of a
burst of votes must keep every vote it acknowledged.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT, free_port, start_app_process, wait_until_serving
from gradio_client import Client, handle_file

from app import sidebar
from app.accounts import add_account
from app.data.store import AnnotationStore
from app.tabs.chat import layout as chat_tab
from app.tabs.compare import layout as compare_tab
from app.tabs.export import layout as export_tab
from models.registry import DEFAULT_MODEL

pytestmark = pytest.mark.e2e

CAT = ROOT / "assets" / "cat.mp4"
UNAVAILABLE = "slowfast-mllm-7b-f64-s1t4"
RECORD_ID = re.compile(r"record `([0-9a-f]{8})`")

# Settings inputs in the order the endpoints take them: model, max frames, fps, token budget, temperature, top-p,
# max new tokens, seed. Short answers keep the CPU time of a turn low.
QUICK = (DEFAULT_MODEL, 12, 2.0, "official", 100, 0.0, 1.0, 6, 0)


def named(result, names: list[str]) -> dict:
    """An endpoint's result tuple as {output name: value}, in the order the UI declares its outputs."""
    flat: list[str] = []
    for name in names:
        if name == "session":
            continue  # state never travels through the API, nor do buttons' updates (ab_votable)
        flat += [] if name == "ab_votable" else [name]
    values = result if isinstance(result, (tuple, list)) and len(flat) > 1 else (result,)
    assert len(values) == len(flat), (flat, values)
    return dict(zip(flat, values, strict=True))


def chat_text(chatbot: list[dict]) -> str:
    """All text of a chat as the client receives it (content blocks joined)."""
    parts = []
    for message in chatbot:
        content = message.get("content")
        blocks = content if isinstance(content, list) else [content]
        parts += [b.get("text", "") if isinstance(b, dict) else str(b or "") for b in blocks]
        parts.append((message.get("metadata") or {}).get("title", "") or "")
    return "\n".join(parts)


def last_answer(chatbot: list[dict]) -> str:
    message = chatbot[-1]
    assert message["role"] == "assistant"
    content = message["content"]
    return "".join(b.get("text", "") for b in content) if isinstance(content, list) else content


def array_shape(value) -> tuple[int, ...]:
    """Shape of an array in plotly's JSON: a nested list, or a typed array {"dtype", "bdata", "shape"}."""
    if isinstance(value, dict):
        if "shape" in value:
            return tuple(int(n) for n in str(value["shape"]).split(","))
        itemsize = int(value["dtype"][-1]) if value["dtype"][-1].isdigit() else 8
        return (len(base64.b64decode(value["bdata"])) // itemsize,)
    if value and isinstance(value[0], list):
        return (len(value), len(value[0]))
    return (len(value),)


def file_path(value) -> Path:
    """A file output as the client hands it over: a path, a FileData dict, or an update carrying either."""
    if isinstance(value, dict):
        return file_path(value["value"] if "value" in value else value["path"])
    return Path(value)


@pytest.fixture
def client(served_studio) -> Client:
    return Client(served_studio[0], verbose=False, download_files=False)


def load(client: Client, path: Path, settings=QUICK) -> dict:
    return named(
        client.predict(handle_file(str(path)), *settings, api_name="/load_video"),
        [*chat_tab.CHAT_OUTPUTS, "suggestions", "video_status"],
    )


def ask(client: Client, question: str, settings=QUICK) -> dict:
    return named(client.predict(question, *settings, api_name="/chat"), chat_tab.CHAT_OUTPUTS)


def rate(client: Client, turn, thumbs="👍 good", score=None, reason="") -> dict:
    result = client.predict(turn, thumbs, score, reason, api_name="/rate_answer")
    return named(result, chat_tab.RATING_OUTPUTS)


def ab_run(client: Client, question: str, settings=QUICK) -> dict:
    setups = ("setups", DEFAULT_MODEL, "official", 100, 0.0, 1.0, DEFAULT_MODEL, "dynamic", 50, 0.8, 0.9)
    return named(client.predict(question, *setups, *settings, api_name="/ab_run"), compare_tab.AB_OUTPUTS)


def vote(client: Client, choice: str, reason: str = "") -> dict:
    return named(client.predict(reason, api_name=f"/ab_vote_{choice}"), compare_tab.VOTE_OUTPUTS)


def finishes(job, timeout_s: float) -> bool:
    """Whether a submitted job ends (done, cancelled or failed) within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    return job.done()


def shows_something(value) -> bool:
    """Whether an output value puts something on screen (a value, or an update that carries one)."""
    if isinstance(value, dict) and value.get("__type__") == "update":
        return value.get("value") not in (None, "", [])
    return value not in (None, "", [])


def test_the_public_api_names_every_action(client):
    endpoints = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    expected = {
        "/load_video", "/chat", "/regenerate", "/undo", "/clear_chat", "/select_model", "/show_frame",
        "/rate_answer", "/ab_run", "/ab_vote_a", "/ab_vote_b", "/ab_vote_tie", "/ab_vote_both_bad",
        "/ab_last_question", "/export_all", "/refresh_export", "/push_to_hub",
    }  # fmt: skip
    assert expected <= endpoints, expected - endpoints


def test_a_chat_about_an_example_clip_through_every_chat_endpoint(served_studio, client):
    studio = served_studio[1]
    loaded = load(client, CAT)
    assert "Now watching" in chat_text(loaded["chatbot"])
    assert "frames sampled" in loaded["video_status"]
    assert all(item["caption"].startswith("t = ") for item in loaded["frames"])

    job = client.submit("What animal is in the video?", *QUICK, api_name="/chat")
    partials = [named(out, chat_tab.CHAT_OUTPUTS)["chatbot"] for out in job]
    first = named(job.result(), chat_tab.CHAT_OUTPUTS)
    answer = last_answer(first["chatbot"])
    assert answer and len(partials) >= 2, "the answer streams"
    assert "Answer #1" in first["answer_stats"]
    heatmap = json.loads(first["heatmap"]["plot"])["data"][0]
    assert array_shape(heatmap["z"])[1] == len(loaded["frames"]), "one heatmap column per sampled frame"
    bars = json.loads(first["budget_plot"]["plot"])["data"][0]
    clips = int(re.search(r"(\d+) clips", loaded["video_status"]).group(1))
    assert array_shape(bars["x"]) == (clips,), "one bar per clip"

    second = ask(client, "What colour are its eyes?")
    assert "Answer #2" in second["answer_stats"] and "frames from cache" in second["answer_stats"]

    frame = named(client.predict(3, api_name="/show_frame"), ["overlay", "overlay_caption"])
    assert frame["overlay_caption"].startswith("**Frame 3 of ")

    regenerated = named(client.predict(*QUICK, api_name="/regenerate"), chat_tab.CHAT_OUTPUTS)
    assert "Answer #2" in regenerated["answer_stats"], "regenerating replaces the last answer, it does not add one"

    undone = named(client.predict(api_name="/undo"), ["chatbot", "question", "session", "rate_target"])
    assert undone["question"] == "What colour are its eyes?"
    assert "What colour" not in chat_text(undone["chatbot"])

    cleared = named(
        client.predict(api_name="/clear_chat"),
        ["chatbot", "session", *chat_tab.VIEW_OUTPUTS, "rate_target", "answer_stats"],
    )
    assert cleared["chatbot"] == []

    # Stop, as an API user does it: cancel the running job. The partial answer stays and the app keeps serving.
    job = client.submit("Tell me a very long story about a dragon.", *QUICK[:7], 300, 0, api_name="/chat")
    deadline = time.monotonic() + 120
    while not job.outputs() or not last_answer(named(job.outputs()[-1], chat_tab.CHAT_OUTPUTS)["chatbot"]):
        assert time.monotonic() < deadline and not job.done(), "the long answer never started"
        time.sleep(0.05)
    job.cancel()
    assert finishes(job, 20), "a cancelled answer stops"
    stopping = time.monotonic()
    assert client.predict(api_name="/stop") in ((), None, [])
    assert time.monotonic() - stopping < 10, "Stop answers at once, it does not wait for the answer"
    time.sleep(0.5)
    saved = rate(client, None, "👎 bad", None, "stopped early")
    record = studio.store.get(next(r["id"] for r in studio.store.records() if r["reason"] == "stopped early"))
    assert record["extra"]["status"] == "stopped" and 0 < len(record["answer"]) and "Saved" in saved["rating_status"]
    undone = named(client.predict(api_name="/undo"), ["chatbot", "question", "session", "rate_target"])
    assert undone["question"] == "Tell me a very long story about a dragon."

    refused = named(
        client.predict(UNAVAILABLE, api_name="/select_model"),
        sidebar.MODEL_OUTPUTS,
    )
    assert refused["model"]["value"] == DEFAULT_MODEL, "a model that cannot run here is not selected"
    accepted = named(
        client.predict(DEFAULT_MODEL, api_name="/select_model"),
        sidebar.MODEL_OUTPUTS,
    )
    assert "runs here" in accepted["model_info"]


def test_the_browser_gesture_endpoints_answer_politely_when_called_from_the_api(served_studio, client):
    """Likes, edits and gallery clicks carry the browser's event data; without it they change nothing."""
    studio = served_studio[1]
    example = client.predict(0, api_name="/load_example")
    assert file_path(example).name == CAT.name
    load(client, CAT)
    chatted = named(client.predict(0, api_name="/use_suggestion"), ["question"])
    assert chatted["question"] == "What animal is in the video?"
    asked = named(client.predict(chatted["question"], *QUICK, api_name="/ask_suggestion"), chat_tab.CHAT_OUTPUTS)
    assert "Answer #1" in asked["answer_stats"]
    before = studio.store.counts()["total"]

    edited = named(client.predict(*QUICK, api_name="/edit_message"), chat_tab.CHAT_OUTPUTS)
    assert chat_text(edited["chatbot"]) == chat_text(asked["chatbot"])
    client.predict("", api_name="/like_message")
    assert studio.store.counts()["total"] == before
    picked = client.predict(api_name="/pick_frame")
    assert not [value for value in picked if shows_something(value)], f"a bare gallery pick changed {picked}"

    retried = named(client.predict(*QUICK, api_name="/chatbot_retry"), chat_tab.CHAT_OUTPUTS)
    assert "Answer #1" in retried["answer_stats"]
    undone = named(client.predict(api_name="/chatbot_undo"), ["chatbot", "question", "session", "rate_target"])
    assert undone["question"] == "What animal is in the video?"
    cleared = named(
        client.predict(api_name="/chatbot_clear"),
        ["chatbot", "session", *chat_tab.VIEW_OUTPUTS, "rate_target", "answer_stats"],
    )
    assert cleared["chatbot"] == []
    assert "10.0 s · 512×384" in client.predict(api_name="/open_ab_tab")[0], "the A/B tab names the chat's video"
    assert "judgements" in client.predict(api_name="/open_export_tab")[0]


@pytest.mark.parametrize("kind", ["empty", "not_a_video", "truncated", "truncated_data", "audio_only"])
def test_bad_uploads_come_back_as_a_clear_message_and_the_app_keeps_serving(client, bad_videos, kind):
    bad = bad_videos[kind]
    loaded = load(client, bad.path)
    assert bad.message.lower() in loaded["video_status"].lower()
    assert bad.message.lower() in chat_text(loaded["chatbot"]).lower()
    after = ask(client, "Are you still there?")
    assert last_answer(after["chatbot"]), "a text-only turn still works after the bad upload"
    assert "text-only" in after["answer_stats"]


def test_ratings_ab_votes_exports_and_hub_push_through_the_api(served_studio, monkeypatch, tmp_path):
    url, studio = served_studio
    monkeypatch.delenv("HF_TOKEN", raising=False)
    client = Client(url, verbose=False)  # downloads files, as a person's browser would
    load(client, CAT)
    ask(client, "What animal is in the video?")
    before = studio.store.counts()

    saved = rate(client, 1, "👍 good", 5, "<b>right</b>")
    assert RECORD_ID.search(saved["rating_status"])
    assert saved["score"] is None and saved["reason"] == ""

    # The gesture endpoints need the browser's event data; called bare they say so and record nothing.
    client.predict(api_name="/like_message")
    assert studio.store.counts()["rating"] == before["rating"] + 1

    last = client.predict(api_name="/ab_last_question")
    assert last == "What animal is in the video?"
    compared = ab_run(client, last)
    assert "revealed after your vote" in compared["ab_reveal"]
    voted = vote(client, "a", "A names the cat")
    assert "You judged: **A is better**" in voted["ab_reveal"] and RECORD_ID.search(voted["ab_reveal"])
    again = vote(client, "b")
    assert studio.store.counts()["comparison"] == before["comparison"] + 1, "one round takes one vote"
    assert again["ab_reveal"] == voted["ab_reveal"].split("  \n✅")[0]
    for choice in ("tie", "both_bad"):
        ab_run(client, last)
        assert RECORD_ID.search(vote(client, choice)["ab_reveal"])
    assert client.predict(api_name="/ab_stop") in ((), None, [])

    counts = client.predict(api_name="/refresh_export")
    assert f"**{studio.store.counts()['total']}** judgements" in counts[0]

    exported = named(client.predict(api_name="/export_all"), export_tab.EXPORT_OUTPUTS)
    assert "Exported" in exported["export_status"]
    dpo = [json.loads(line) for line in file_path(exported["dl_dpo"]).read_text().splitlines()]
    kto = [json.loads(line) for line in file_path(exported["dl_kto"]).read_text().splitlines()]
    decided = [r for r in studio.store.records("comparison") if r["choice"] in ("a", "b")]
    assert {row["id"] for row in dpo} == {r["id"] for r in decided}
    assert all(row["video"].startswith("videos/") for row in dpo + kto)
    assert any(row["label"] is True and row["score"] == 5 for row in kto)

    pushed = client.predict("someone/studio-votes", api_name="/push_to_hub")
    assert "token" in pushed.lower()


def test_eight_clients_chatting_and_voting_at_once_lose_no_vote(served_studio):
    url, studio = served_studio
    before = studio.store.counts()

    def user(number: int) -> list[str]:
        """One person's session; returns the ids of the votes the app acknowledged. A failure here fails the test
        (the future re-raises it below)."""
        client = Client(url, verbose=False, download_files=False)
        if number % 2 == 0:
            load(client, CAT)
        ask(client, f"Question {number}: what is shown?")
        ids = []
        for k, (thumbs, score) in enumerate((("👍 good", None), ("👎 bad", 2), ("no thumbs", 4))):
            status = rate(client, 1, thumbs, score, f"client {number} rating {k}")["rating_status"]
            ids.append(RECORD_ID.search(status).group(1))
        ab_run(client, f"Question {number}: what is shown?")
        reveal = vote(client, ("a", "b", "tie", "both_bad")[number % 4])["ab_reveal"]
        ids.append(RECORD_ID.search(reveal).group(1))
        return ids

    with ThreadPoolExecutor(max_workers=8) as pool:
        sessions = [pool.submit(user, n) for n in range(8)]
        acknowledged = [record_id for session in sessions for record_id in session.result(timeout=600)]
    assert len(set(acknowledged)) == 8 * 4, "every rating and vote got its own record"

    after = studio.store.counts()
    assert after["rating"] - before["rating"] == 24
    assert after["comparison"] - before["comparison"] == 8
    stored = {r["id"][:8] for r in studio.store.records()}
    assert set(acknowledged) <= stored

    exported = named(
        Client(url, verbose=False, download_files=False).predict(api_name="/export_all"), export_tab.EXPORT_OUTPUTS
    )
    records = [json.loads(line) for line in file_path(exported["dl_jsonl"]).read_text().splitlines()]
    assert len(records) == after["total"]
    assert set(acknowledged) <= {r["id"][:8] for r in records}


# ---------------------------------------------------------------------------------------------------------------
# A separate app process, killed mid-burst


@pytest.mark.slow
@pytest.mark.parametrize("with_accounts", [False, True], ids=["laptop", "accounts"])
def test_sigkill_during_a_burst_of_votes_loses_no_acknowledged_vote(tmp_path, with_accounts):
    data_dir = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    options, auth = ["--no-preload"], {}
    if with_accounts:  # each client signs in as its own annotator; the admin reads the counts after the restart
        accounts = tmp_path / "accounts.toml"
        for name, role in (("boss", "admin"), ("ann0", "annotator"), ("ann1", "annotator"), ("ann2", "annotator")):
            add_account(accounts, name, role, f"{name}-password")
        options += ["--accounts", str(accounts)]
        auth = {n: (name, f"{name}-password") for n, name in enumerate(("ann0", "ann1", "ann2"))} | {
            "admin": ("boss", "boss-password")
        }
    process = start_app_process(data_dir, port, *options)
    acknowledged: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()
    killing = threading.Event()  # set just before the SIGKILL: calls failing after it are expected
    early_failures: list[Exception] = []
    try:
        wait_until_serving(url, process)
        clients = [Client(url, auth=auth.get(n), verbose=False, download_files=False) for n in range(3)]
        for client in clients:
            ask(client, "Hello?")

        def burst(client: Client, number: int) -> None:
            k = 0
            while not killed.is_set():
                try:
                    status = rate(client, 1, ("👍 good", "👎 bad")[k % 2], None, f"burst {number}.{k}")
                except Exception as error:  # only the kill may end a burst: anything earlier fails the test
                    if not killing.is_set():
                        early_failures.append(error)
                    return
                match = RECORD_ID.search(status["rating_status"])
                if match:
                    with lock:
                        acknowledged.append(match.group(1))
                k += 1

        threads = [threading.Thread(target=burst, args=(c, n), daemon=True) for n, c in enumerate(clients)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while len(acknowledged) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        killing.set()
        os.kill(process.pid, signal.SIGKILL)
        killed.set()
        process.wait(timeout=30)
        for thread in threads:
            thread.join(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not early_failures, early_failures
    assert len(acknowledged) >= 30

    with AnnotationStore(data_dir) as store:
        assert store.integrity_check() == "ok"
        stored = {r["id"][:8] for r in store.records()}
        total = store.counts()["total"]
    assert set(acknowledged) <= stored, "every vote the app acknowledged survived the kill"

    restarted = start_app_process(data_dir, port, *options)
    try:
        wait_until_serving(url, restarted)
        client = Client(url, auth=auth.get("admin"), verbose=False, download_files=False)
        counts = client.predict(api_name="/refresh_export")
        assert f"**{total}** judgements" in counts[0]
    finally:
        restarted.kill()
        restarted.wait()
