"""`langdc` end to end on a tiny checkpoint served by the studio: through `gradio_client` (/ask's token plan carries
each clip's caption; a compression A/B of `official` vs `langdc` at 25%; the DPO row keeps both plans with their
captions) and in Chromium (the Compression view's bars sum to the budget and each clip's description is shown)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import serving_app
from gradio_client import Client, handle_file
from test_local_model_e2e import ARTIFACTS, TIMEOUT_MS, _file, bar_heights, named, pick, set_number

from models.slowfast.testing import random_model, tiny_config, write_checkpoint

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "assets" / "cat_then_coffee.mp4"
NAME = "tiny-slowfast"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    folder = write_checkpoint(random_model(tiny_config(), seed=0), tmp_path_factory.mktemp("ckpt") / "tiny")
    log_path = tmp_path_factory.mktemp("logs") / "app.log"
    with serving_app(
        tmp_path_factory.mktemp("data"), "--model", f"{NAME}={folder}", "--no-preload", log_path=log_path
    ) as url:
        yield url


def test_langdc_through_the_api_then_a_compression_ab_whose_dpo_row_keeps_both_plans(app_url):
    from app.tabs.chat import layout as chat_tab
    from app.tabs.compare import layout as compare_tab
    from app.tabs.export import layout as export_tab

    client = Client(app_url, verbose=False, download_files=False)
    asked = client.predict(handle_file(str(CLIP)), "What happens?", NAME, "langdc", 50, 8, api_name="/ask")
    plan = asked["token_plan"]
    assert plan["compressor"] == "langdc" and len(plan["clips"]) >= 2
    assert sum(clip["budget"] for clip in plan["clips"]) == plan["totals"]["global_budget"]
    assert abs(plan["totals"]["global_budget"] - plan["totals"]["official_tokens"] / 2) <= 1
    assert all(clip["caption"] and clip["caption_tokens"] > 0 for clip in plan["clips"]), plan["clips"]
    assert client.predict(asked["answer_id"], "up", 5, "", api_name="/rate")["record_id"]

    settings = (NAME, 8, 0, "langdc", 25, 0.0, 1.0, 6, 0)
    loaded = named(client.predict(handle_file(str(CLIP)), *settings, api_name="/load_video"), chat_tab.VIDEO_OUTPUTS)
    assert "frames sampled" in loaded["video_status"]
    setups = ("compression", NAME, "official", 100, 0.0, 1.0, NAME, "langdc", 25, 0.0, 1.0)
    ran = named(client.predict("What happens?", *setups, *settings, api_name="/ab_run"), compare_tab.AB_OUTPUTS)
    assert "Which answer is better" in ran["ab_reveal"]
    voted = named(client.predict("", "tester", api_name="/ab_vote_b"), compare_tab.VOTE_OUTPUTS)
    assert "You judged" in voted["ab_reveal"]
    exported = named(client.predict(api_name="/export_all"), export_tab.EXPORT_OUTPUTS)
    [pair] = [json.loads(line) for line in Path(_file(exported["dl_dpo"])).read_text().splitlines()]
    plans = {pair[key]["compressor"]: pair[key] for key in ("chosen_compression", "rejected_compression")}
    assert set(plans) == {"official", "langdc"}
    assert all(clip["caption"] and clip["caption_tokens"] > 0 for clip in plans["langdc"]["clips"])
    assert all(clip["caption"] is None for clip in plans["official"]["clips"])
    kto = [json.loads(line) for line in Path(_file(exported["dl_kto"])).read_text().splitlines()]
    assert any(
        row["compression"]
        and row["compression"]["compressor"] == "langdc"
        and row["compression"]["clips"][0]["caption"]
        for row in kto
    )


@pytest.mark.browser
def test_in_the_browser_langdc_bars_sum_to_the_budget_and_each_clip_shows_its_caption(chromium, app_url):
    page = chromium.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(app_url)
    page.wait_for_selector("#chatbot", timeout=60_000)
    pick(page, "#model-dropdown", NAME)
    page.wait_for_function(f"document.querySelector('#model-dropdown input').value.includes('{NAME}')")
    page.wait_for_function("document.querySelector('#budget-slider input[type=number]').disabled")  # official
    pick(page, "#compressor-dropdown", "langdc")
    page.wait_for_function("!document.querySelector('#budget-slider input[type=number]').disabled")
    set_number(page, "#budget-slider", 50)
    page.locator("#example-clips").get_by_text("The cat, then a hard cut to a cup of coffee", exact=True).first.click()
    page.wait_for_selector("#suggestions", state="visible", timeout=TIMEOUT_MS)
    page.locator("#question textarea").fill("What happens in the video?")
    page.locator("#send").click()
    page.wait_for_function(
        "document.querySelector('#answer-stats').innerText.includes('Answer #1')", timeout=TIMEOUT_MS
    )
    page.get_by_role("tab", name="Compression").click()
    bars = bar_heights(page, "budget-plot")
    label = page.locator("#key-figures").inner_text()
    budget, official = (
        int(n.replace(",", "")) for n in re.search(r"budget of ([\d,]+) · 50% of ([\d,]+)", label).groups()
    )
    assert len(bars) >= 2 and sum(bars) == budget and abs(budget - official / 2) <= 1
    ticks = page.locator("#budget-plot .xtick").all_text_contents()  # SVG text: no innerText
    ticks = [tick.replace("\u200b", " ") for tick in ticks]  # plotly joins a tick's lines with zero-width spaces
    lines = [re.search(r"(\d+) caption tokens →\s*(\d+) visual tokens", tick) for tick in ticks]
    assert len(lines) == len(bars) and all(lines), ticks
    assert [int(line.group(2)) for line in lines] == [round(b) for b in bars]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "15_langdc_compression.png"), full_page=True)
    page.close()
