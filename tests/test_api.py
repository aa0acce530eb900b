"""The API for programs, driven through `gradio_client` against the running studio (real embedded default):
`ask` returns plain JSON with frames, the per-clip token plan and attention; `rate`, `compare` + `vote` record
judgements whose ids come back from `records` and from the exported files; the API page lists the program
endpoints with their parameters and hides the UI's gestures."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from gradio_client import Client, handle_file

from app.data.store import AnnotationStore

ROOT = Path(__file__).resolve().parent.parent
CAT = ROOT / "assets" / "static_cat.mp4"


@pytest.fixture(scope="module")
def client(served_studio) -> Client:
    return Client(served_studio[0], verbose=False, download_files=False)


def test_the_api_page_lists_the_program_endpoints_with_their_parameters(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    parameters = {name: [p["parameter_name"] for p in info["parameters"]] for name, info in api.items()}
    assert parameters["/ask"] == [
        "video", "question", "model", "compressor", "budget", "frames", "fps", "temperature", "top_p",
        "max_new_tokens", "seed", "share_video",
    ]  # fmt: skip
    assert parameters["/rate"] == ["answer_id", "thumbs", "score", "reason", "annotator"]
    assert parameters["/vote"] == ["comparison_id", "choice", "reason", "annotator"]
    assert parameters["/export"] == ["format"]
    assert parameters["/records"] == ["limit", "kind"]
    assert "budget: the global visual-token budget in % of the model's own" in api["/ask"]["description"]
    assert 'thumbs: "up", "down"' in api["/rate"]["description"]
    hidden = {"/live_tick", "/pick_frame", "/like_message", "/live_play", "/use_suggestion", "/ab_mode"}
    assert not hidden & set(api), hidden & set(api)


def test_ask_returns_json_with_frames_token_plan_and_attention(client):
    job = client.submit(handle_file(str(CAT)), "What animal is in the video?", "slowfast-lite", "dynamic", 50,
                        12, 2.0, 0.0, 1.0, 8, 0, api_name="/ask")  # fmt: skip
    outputs = list(job)
    result = job.result()
    assert result["done"] is True and any(out.get("done") is False for out in outputs), "partial answers stream"
    assert "cat" in result["answer"].lower()
    assert result["model"] == "slowfast-lite"
    frames = result["frames"]
    assert len(frames) == 12 and all(set(f) == {"index", "time_s"} for f in frames)
    assert [f["time_s"] for f in frames] == sorted(f["time_s"] for f in frames)
    plan = result["token_plan"]
    assert plan["compressor"] == "dynamic" and plan["budget_pct"] == 50
    assert sum(clip["budget"] for clip in plan["clips"]) == plan["totals"]["global_budget"]
    assert plan["totals"]["global_budget"] == round(plan["totals"]["official_tokens"] * 0.5)
    assert all(clip["used_tokens"] <= clip["budget"] for clip in plan["clips"])
    attention = result["attention"]
    assert len(attention["per_frame"]) == 12 and abs(sum(attention["per_frame"]) - 1) < 1e-3
    assert attention["per_word"] and all(len(w["frame_weights"]) == 12 for w in attention["per_word"])
    assert result["timings"]["total_s"] > 0


def test_bad_input_gets_a_clear_error(client, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    with pytest.raises(Exception, match="not a video"):
        client.predict(handle_file(str(text)), "What is it?", api_name="/ask")
    with pytest.raises(Exception, match="empty"):
        client.predict(None, "   ", api_name="/ask")
    with pytest.raises(Exception, match="compressors"):
        client.predict(handle_file(str(CAT)), "What?", "slowfast-lite", "sf-llava", api_name="/ask")
    with pytest.raises(Exception, match="unknown or expired"):
        client.predict("no-such-answer", "up", api_name="/rate")


def test_rate_compare_vote_come_back_from_records_and_exports(client, served_studio):
    studio = served_studio[1]
    asked = client.predict(handle_file(str(CAT)), "What animal is it?", "slowfast-lite", "uniform", 50, 8,
                           api_name="/ask")  # fmt: skip
    with pytest.raises(Exception, match="annotator is set by sign-in"):
        client.predict(asked["answer_id"], "up", 4, "names the cat", "api-tester", api_name="/rate")  # a forgery
    rated = client.predict(asked["answer_id"], "up", 4, "names the cat", api_name="/rate")
    assert rated["annotator"] == "owner"  # served on 127.0.0.1 with nothing configured: the local owner
    compared = client.predict(handle_file(str(CAT)), "What animal is it?", "slowfast-lite", "official", 100,
                              "slowfast-lite", "dynamic", 25, 8, api_name="/compare")  # fmt: skip
    assert compared["a"]["token_plan"]["compressor"] == "official"
    assert (
        compared["b"]["token_plan"]["totals"]["global_budget"] < compared["a"]["token_plan"]["totals"]["global_budget"]
    )
    voted = client.predict(compared["comparison_id"], "a", "more detail", api_name="/vote")
    with pytest.raises(Exception, match="unknown or expired"):
        client.predict(compared["comparison_id"], "b", api_name="/vote")  # one vote per comparison

    records = client.predict(10, "", api_name="/records")
    by_id = {record["id"]: record for record in records}
    assert rated["record_id"] in by_id and voted["record_id"] in by_id
    assert by_id[rated["record_id"]]["score"] == 4 and by_id[rated["record_id"]]["annotator"] == "owner"
    comparison = by_id[voted["record_id"]]
    assert comparison["extra"]["compression_b"]["compressor"] == "dynamic"
    assert client.predict(10, "rating", api_name="/records")[0]["kind"] == "rating"

    dpo = Path(_path(client.predict("dpo", api_name="/export")))
    rows = [json.loads(line) for line in dpo.read_text().splitlines()]
    row = next(r for r in rows if r["id"] == voted["record_id"])
    assert row["chosen_compression"]["compressor"] == "official"
    assert row["rejected_compression"]["compressor"] == "dynamic"
    # API records keep the same plan as the UI's, totals included (they used to lose them)
    assert row["rejected_compression"]["global_budget"] < row["chosen_compression"]["global_budget"]
    table = pd.read_csv(_path(client.predict("csv", api_name="/export")))
    assert {rated["record_id"], voted["record_id"]} <= set(table["id"])
    assert AnnotationStore(studio.data_dir).get(rated["record_id"])["video_sha256"]


def _path(value) -> str:
    return value["path"] if isinstance(value, dict) else value
