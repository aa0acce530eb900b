"""Campaigns as a lab runs them: define one on the bundled example clips with two setups of the embedded default,
generate its answers (surviving a SIGKILL half-way), let two annotators work the queue through `gradio_client`
until every item has exactly k judgements, and read the results as an admin while annotators are refused them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, isolated_environment, launched
from gradio_client import Client

from app.access.identity import AccessConfig
from app.accounts import AccountBook, add_account
from app.campaigns.store import CampaignStore

ASSETS = ROOT / "assets"
CLIPS = ["static_cat.mp4", "cat_then_coffee.mp4", "coffee.mp4", "montage.mp4"]
SETUPS = [
    {"name": "official", "model": "slowfast-lite", "compressor": "official", "budget": 100, "frames": 8,
     "max_new_tokens": 12},
    {"name": "dynamic-25", "model": "slowfast-lite", "compressor": "dynamic", "budget": 25, "frames": 8,
     "max_new_tokens": 12},
]  # fmt: skip
PASSWORDS = {"boss": "boss-password", "ann1": "ann1-password", "ann2": "ann2-password"}


def write_definition(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    clips = [name for name in CLIPS if (ASSETS / name).is_file()]
    manifest = folder / "manifest.jsonl"
    questions = ("What is shown?", "What happens?")
    rows = [{"video": str(ASSETS / clip), "question": q} for clip in clips for q in questions]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    setups = folder / "setups.json"
    setups.write_text(json.dumps(SETUPS))
    return manifest, setups


def campaigns_cli(data_dir: Path, *args: str, **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "app.campaigns", "--data-dir", str(data_dir), *args]
    env = {**isolated_environment(), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


@pytest.mark.slow
def test_generation_killed_half_way_resumes_with_every_answer_exactly_once(tmp_path):
    data_dir = tmp_path / "data"
    manifest, setups = write_definition(tmp_path / "definition")
    created = campaigns_cli(data_dir, "create", "demo", "--manifest", str(manifest), "--setups", str(setups),
                            "--k", "2")  # fmt: skip
    assert created.wait(timeout=120) == 0, created.stdout.read().decode()
    store = CampaignStore(data_dir)
    total = store.status("demo")["generations_total"]
    running = campaigns_cli(data_dir, "run", "demo")
    deadline = time.monotonic() + 240
    while store.status("demo")["generated"] < total // 3 and time.monotonic() < deadline:
        assert running.poll() is None, running.stdout.read().decode()
        time.sleep(0.2)
    os.kill(running.pid, signal.SIGKILL)
    running.wait(timeout=30)
    half = store.status("demo")["generated"]
    assert 0 < half < total, "killed half-way"
    resumed = campaigns_cli(data_dir, "run", "demo")
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read().decode()
    answers = store.answers("demo")
    assert len(answers) == total and store.status("demo")["generated"] == total
    assert len({(a["item_id"], a["setup"]) for a in answers}) == total, "no answer twice"
    assert all(a["text"] is not None and a["error"] is None for a in answers)
    store.close()


@pytest.fixture(scope="module")
def campaign_studio(tmp_path_factory):
    """A signed-in studio (boss: admin; ann1, ann2: annotators) with a k = 2 campaign whose answers are generated
    by the app's own background job."""
    from app.studio import Studio

    folder = tmp_path_factory.mktemp("campaign-app")
    accounts = folder / "accounts.toml"
    for name in PASSWORDS:
        add_account(accounts, name, "admin" if name == "boss" else "annotator", PASSWORDS[name])
    studio = Studio(data_dir=folder / "data", access=AccessConfig(accounts=AccountBook(accounts), local_owner=False))
    manifest, setups = write_definition(folder / "definition")
    from app.campaigns.manifest import load_manifest, load_setups

    items = load_manifest(manifest)[:3]
    studio.campaigns.create("demo", items, load_setups(setups), 2, guidelines="Prefer the *correct* answer.")
    runner = studio.runner("demo")
    assert runner.start()
    runner.join(timeout=600)
    assert studio.campaigns.status("demo")["generated"] == 6, runner.state()
    with launched(studio) as url:
        yield url, studio


def signed_in(url: str, name: str) -> Client:
    return Client(url, auth=(name, PASSWORDS[name]), verbose=False, download_files=False)


@pytest.mark.slow
def test_two_annotators_work_the_queue_until_every_item_has_exactly_k_judgements(campaign_studio):
    url, studio = campaign_studio
    annotators = {name: signed_in(url, name) for name in ("ann1", "ann2")}
    seen: dict[str, set[str]] = {name: set() for name in annotators}
    for turn in range(10):
        for name, client in annotators.items():
            try:
                item = client.predict("demo", api_name="/campaign_next")
            except Exception as error:
                assert "nothing left for you" in str(error)
                continue
            assert item["item_id"] not in seen[name], "never the same item twice for one person"
            assert {a["slot"] for a in item["answers"]} == {"a", "b"} and item["question"]
            seen[name].add(item["item_id"])
            judged = client.predict(item["item_id"], "ab"[turn % 2], "clear", api_name="/campaign_judge")
            assert judged["annotator"] == name and judged["overshoot"] is False
    counts = Counter(j["item_id"] for j in studio.campaigns.judgements("demo") if not j["overshoot"])
    assert sorted(counts.values()) == [2, 2, 2], counts
    assert seen["ann1"] == seen["ann2"] and len(seen["ann1"]) == 3
    with pytest.raises(Exception, match="not handed to you"):
        annotators["ann1"].predict("item-9999", "a", "", api_name="/campaign_judge")

    boss = signed_in(url, "boss")
    summary, ranking, *_ = boss.predict("demo", api_name="/campaign_results")
    assert "Krippendorff" in summary and "official" in summary and "dynamic" in summary
    assert ranking is not None
    refused, *_ = annotators["ann1"].predict("demo", api_name="/campaign_results")
    assert "only admins can see campaign results; you are signed in as ann1" in refused
    status = studio.campaigns.status("demo")
    assert status["completed_items"] == 3 and status["per_annotator"] == {"ann1": 3, "ann2": 3}


def test_the_result_figures_show_one_bar_per_setup_and_one_point_per_setup():
    from app.tabs.campaign.figures import ranking_figure, tokens_figure, win_rate_figure

    ranking = [
        {"rank": 1, "setup": "official", "strength": 0.4, "ci95": [0.1, 0.7], "comparisons": 8},
        {"rank": 2, "setup": "dynamic-25", "strength": -0.4, "ci95": [-0.7, -0.1], "comparisons": 8},
    ]
    (bars,) = ranking_figure(ranking).data
    assert list(bars.y) == ["dynamic-25", "official"] and list(bars.x) == [-0.4, 0.4]  # strongest on top
    assert list(bars.error_x.array) == pytest.approx([0.3, 0.3])
    (heat,) = win_rate_figure({"setups": ["official", "dynamic-25"], "matrix": [[None, 0.75], [0.25, None]]}).data
    assert heat.z[0][1] == 75 and heat.z[1][0] == 25
    points = [
        {"setup": "official", "win_rate": 0.75, "comparisons": 8, "mean_visual_tokens": 192},
        {"setup": "dynamic-25", "win_rate": 0.25, "comparisons": 8, "mean_visual_tokens": 48},
        {"setup": "never compared", "win_rate": None, "comparisons": 0, "mean_visual_tokens": 10},
    ]
    (scatter,) = tokens_figure(points).data
    assert list(scatter.x) == [192, 48] and list(scatter.y) == [75, 25]
    assert "No comparisons" in ranking_figure([]).layout.annotations[0].text
