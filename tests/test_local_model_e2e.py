"""Downloaded checkpoints added by path run in the studio end to end, through the compressor axis.

`python app.py --model tiny-slowfast=<folder> --model tiny-qwen2_5_vl=<folder> ...` serves a tiny random Slow-Fast
checkpoint (`models/slowfast/testing.py`) and a tiny checkpoint of each Hugging Face family (`models/hf/testing.py`):
the answers are noise; the token plumbing is real. Through `gradio_client` and in Chromium: pick a model, pick a
compressor and a budget, ask, see the answer stream, one budget bar per clip summing to the budget and slow/fast
counts per frame; then a "same model, two compressions" A/B round, a vote, an export, and both compressions read
back from the DPO file.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from conftest import serving_app
from gradio_client import Client, handle_file

from models.hf.testing import FAMILIES, write_tiny_checkpoint
from models.slowfast.testing import random_model, tiny_config, write_checkpoint

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "assets" / "cat_then_coffee.mp4"
NAME = "tiny-slowfast"
TIMEOUT_MS = 180_000
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    folders = tmp_path_factory.mktemp("ckpt")
    models = ["--model", f"{NAME}={write_checkpoint(random_model(tiny_config(), seed=0), folders / 'tiny')}"]
    for family in FAMILIES:
        models += ["--model", f"tiny-{family}={write_tiny_checkpoint(family, folders / family)}"]
    log_path = tmp_path_factory.mktemp("logs") / "app.log"
    with serving_app(tmp_path_factory.mktemp("data"), *models, "--no-preload", log_path=log_path) as url:
        yield url


def named(values, names):
    """An endpoint's outputs by name; state and the vote buttons' updates never travel through the API."""
    return dict(zip([n for n in names if n not in ("session", "ab_votable")], values, strict=True))


def test_the_local_checkpoint_runs_with_dynamic_budgets_and_a_compression_ab(app_url, tmp_path):
    from app.tabs.chat import layout as chat_tab
    from app.tabs.compare import layout as compare_tab
    from app.tabs.export import layout as export_tab

    client = Client(app_url, verbose=False, download_files=False)
    settings = (NAME, 8, 0, "dynamic", 50, 0.0, 1.0, 6, 0)
    loaded = named(client.predict(handle_file(str(CLIP)), *settings, api_name="/load_video"), chat_tab.VIDEO_OUTPUTS)
    assert "frames sampled" in loaded["video_status"]
    job = client.submit("What happens?", *settings, api_name="/chat")
    partials = [named(out, chat_tab.CHAT_OUTPUTS) for out in job]
    final = named(job.result(), chat_tab.CHAT_OUTPUTS)
    assert len(partials) >= 3, "the answer streams"
    assert "Answer #1" in final["answer_stats"]

    asked = client.predict(handle_file(str(CLIP)), "What happens?", NAME, "dynamic", 50, 8, api_name="/ask")
    plan = asked["token_plan"]
    assert plan["compressor"] == "dynamic" and len(plan["clips"]) >= 2
    assert sum(clip["budget"] for clip in plan["clips"]) == plan["totals"]["global_budget"]
    assert plan["totals"]["fast_tokens"] == plan["totals"]["global_budget"], "the LLM reads exactly the budget"
    assert abs(plan["totals"]["global_budget"] - plan["totals"]["official_tokens"] / 2) <= 1

    setups = ("compression", NAME, "official", 100, 0.0, 1.0, NAME, "dynamic", 50, 0.0, 1.0)
    ran = named(client.predict("What happens?", *setups, *settings, api_name="/ab_run"), compare_tab.AB_OUTPUTS)
    assert "Which answer is better" in ran["ab_reveal"]
    voted = named(client.predict("", "tester", api_name="/ab_vote_a"), compare_tab.VOTE_OUTPUTS)
    assert "You judged" in voted["ab_reveal"]
    assert "official" in voted["ab_summary"] and "dynamic" in voted["ab_summary"]
    exported = named(client.predict(api_name="/export_all"), export_tab.EXPORT_OUTPUTS)
    dpo = _file(exported["dl_dpo"])
    [pair] = [json.loads(line) for line in Path(dpo).read_text().splitlines()]
    assert {pair["chosen_compression"]["compressor"], pair["rejected_compression"]["compressor"]} == {
        "official",
        "dynamic",
    }
    assert pair["chosen_model"] == pair["rejected_model"] == NAME


@pytest.mark.browser
def test_in_the_browser_dynamic_budget_bars_then_a_compression_ab(chromium, app_url, tmp_path):
    context = chromium.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.goto(app_url)
    page.wait_for_selector("#chatbot", timeout=60_000)
    pick(page, "#model-dropdown", NAME)
    page.wait_for_function(f"document.querySelector('#model-dropdown input').value.includes('{NAME}')")
    pick(page, "#compressor-dropdown", "dynamic")
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
    clips = int(page.locator("#key-figures .kf-value").nth(2).inner_text().split()[0])
    assert len(bars) == clips >= 2 and sum(bars) == budget and abs(budget - official / 2) <= 1
    assert "training-free" in page.locator("#key-figures").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "13_tiny_slowfast_compression.png"), full_page=True)

    page.get_by_role("tab", name="A/B compare").click()
    pick(page, "#ab-model-1", NAME)
    page.locator("#ab-mode").get_by_text("Same model, two compressions").click()
    page.wait_for_function(f"document.querySelector('#ab-model-2 input').value.includes('{NAME}')")
    page.locator("#ab-question textarea").fill("What happens in the video?")
    page.locator("#ab-run").click()
    page.wait_for_function("!document.querySelector('#vote-a').disabled", timeout=2 * TIMEOUT_MS)
    page.locator("#vote-b").click()
    page.wait_for_function("document.querySelector('#ab-reveal').innerText.includes('You judged')")
    page.screenshot(path=str(ARTIFACTS / "14_compression_ab.png"), full_page=True)

    page.get_by_role("tab", name="Export").click()
    page.locator("#export-run").click()
    page.wait_for_function("!document.querySelector('#dl-dpo').disabled", timeout=120_000)
    with page.expect_download() as download:
        page.locator("#dl-dpo").click()
    path = tmp_path / "dpo.jsonl"
    download.value.save_as(path)
    pair = [json.loads(line) for line in path.read_text().splitlines()][-1]  # the newest vote is this round's
    assert pair["chosen_model"] == NAME
    compressions = {pair["chosen_compression"]["compressor"], pair["rejected_compression"]["compressor"]}
    assert compressions == {"official", "dynamic"}
    context.close()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("compressor", ["official", "dynamic", "sf-llava"])
def test_each_hugging_face_family_answers_through_each_compressor(app_url, family, compressor):
    client = Client(app_url, verbose=False, download_files=False)
    job = client.submit(handle_file(str(CLIP)), "What happens?", f"tiny-{family}", compressor, 50, 8, api_name="/ask")
    partials = list(job)
    result = job.result()
    assert partials[-1]["done"] and result["done"]  # random weights may stop at once: streaming is shown above
    plan = result["token_plan"]
    assert plan["compressor"] == compressor and plan["clips"]
    assert sum(clip["budget"] for clip in plan["clips"]) == plan["totals"]["global_budget"]
    if compressor != "official":
        assert abs(plan["totals"]["global_budget"] - plan["totals"]["official_tokens"] / 2) <= 1
    assert len(result["frames"]) == 8
    if result["answer"]:  # attention is from answer tokens; a random model can answer with EOS alone
        assert len(result["attention"]["per_frame"]) == 8
    else:
        assert family == "qwen2_5_vl", "only the tiny Qwen stops at once with these weights"


@pytest.mark.browser
def test_in_the_browser_a_family_model_with_sf_llava_shows_slow_and_fast_per_frame(chromium, app_url):
    page = chromium.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(app_url)
    page.wait_for_selector("#chatbot", timeout=60_000)
    pick(page, "#model-dropdown", "tiny-smolvlm")
    page.wait_for_function("document.querySelector('#model-dropdown input').value.includes('tiny-smolvlm')")
    pick(page, "#compressor-dropdown", "sf-llava")
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
    clips = int(page.locator("#key-figures .kf-value").nth(2).inner_text().split()[0])
    assert len(bars) == clips >= 1
    slow, fast = (bar_heights(page, "slow-fast-plot", trace) for trace in (0, 1))
    frames = int(re.search(r"(\d+) frames? sampled", page.locator("#video-status").inner_text()).group(1))
    assert len(slow) == len(fast) == frames and sum(slow) > 0 and sum(fast) > 0
    page.screenshot(path=str(ARTIFACTS / "15_smolvlm_sf_llava.png"), full_page=True)
    page.close()


def pick(page, elem: str, option: str) -> None:
    """Choose `option` in a Gradio dropdown."""
    page.locator(f"{elem} input").click()
    page.locator("[data-testid=dropdown-option]", has_text=option).first.click()


def set_number(page, elem: str, value: float) -> None:
    box = page.locator(f"{elem} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    time.sleep(0.3)


def bar_heights(page, elem_id: str, trace: int = 0) -> list[float]:
    selector = f"#{elem_id} .js-plotly-plot"
    page.wait_for_function(
        f"document.querySelector('{selector}') && (document.querySelector('{selector}')._fullData || []).length > 0",
        timeout=30_000,
    )
    return page.evaluate(f"() => Array.from(document.querySelector('{selector}')._fullData[{trace}].y)")


def _file(value) -> str:
    if isinstance(value, dict):
        return _file(value.get("value") or value.get("path"))
    return value
