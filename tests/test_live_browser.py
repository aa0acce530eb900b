"""The Live tab in a real browser: play an example clip in the studio, see a timestamped remark appear while the video
is still playing, rate it with the chat's thumbs, and find the rating in the annotation store with its video time.

Runs the real app in the test process (`served_studio`: built as `python app.py` builds it, on a free port, with a
temporary data directory) and drives the system Chromium through Playwright (`chromium`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import playwright_api

REMARK = re.compile(r"\[\d\d:\d\d\.\d\]")

pytestmark = pytest.mark.browser


def test_live_tab_comments_while_playing_and_a_remark_can_be_rated(chromium, served_studio):
    url, studio = served_studio
    playwright = playwright_api()
    page = chromium.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.get_by_role("tab", name="Live").click()
    page.locator("#live-example input").click()
    page.locator("[role=option]", has_text="Montage").first.click()
    status = page.locator("#live-status")
    playwright.expect(status).to_contain_text("Ready", timeout=180_000)  # first use loads the model
    page.wait_for_function(
        "() => { const v = document.querySelector('#live-video video'); return v && v.readyState >= 2; }",
        timeout=60_000,
    )
    page.evaluate("() => { const v = document.querySelector('#live-video video'); v.muted = true; v.play(); }")

    remark = page.locator("#live-chat .message", has_text=REMARK).first
    remark.wait_for(timeout=60_000)
    playing = page.evaluate(
        "() => { const v = document.querySelector('#live-video video'); return !v.paused && !v.ended; }"
    )
    assert playing, "the first remark should appear while the video is still playing"
    shown = REMARK.search(remark.inner_text())
    assert shown, remark.inner_text()

    remark.hover()
    page.locator("#live-chat button[aria-label='Like']").first.click()
    playwright.expect(status).to_contain_text("Saved your rating", timeout=60_000)

    page.wait_for_timeout(4000)  # let a few more remarks and timeline markers arrive for the screenshot
    artifacts = Path(__file__).parent / "artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "12_live.png"), full_page=True)

    records = studio.store.records()
    assert len(records) == 1
    record = records[0]
    assert record["thumbs"] == 1 and record["extra"]["live"] is True
    minutes, seconds = shown.group(0)[1:-1].split(":")
    assert record["extra"]["video_time_s"] == pytest.approx(int(minutes) * 60 + float(seconds), abs=0.051)
    assert record["model"].endswith("(live)") and record["answer"]
