"""Signing in through the browser: the annotator's studio has no Export tab (and a call to it is refused anyway),
the admin's has one and exports; each sees who they are signed in as. Debian's Chromium, headless, via Playwright."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import serving_app

from app.accounts import add_account

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PASSWORDS = {"boss": "boss-password", "ann1": "ann1-password"}


@pytest.fixture(scope="module")
def signed_in_studio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser-accounts")
    accounts = folder / "accounts.toml"
    add_account(accounts, "boss", "admin", PASSWORDS["boss"])
    add_account(accounts, "ann1", "annotator", PASSWORDS["ann1"])
    _answered_campaign(folder / "data")
    options = ("--no-preload", "--accounts", str(accounts))
    with serving_app(folder / "data", *options, log_path=folder / "app.log") as url:
        yield url


def _answered_campaign(data_dir: Path) -> None:
    """A two-item pairwise campaign on an example clip whose answers are already in (no generation needed)."""
    import hashlib

    from app.campaigns.manifest import Item, setup_from_fields
    from app.campaigns.store import CampaignStore

    clip = Path(__file__).resolve().parent.parent / "assets" / "static_cat.mp4"
    sha = hashlib.sha256(clip.read_bytes()).hexdigest()
    items = [Item(f"item-{n}", str(clip), f"What is shown ({n})?", None, sha, 4.0) for n in (1, 2)]
    setups = [
        setup_from_fields({"name": "official", "model": "slowfast-lite", "compressor": "official", "budget": 100}),
        setup_from_fields({"name": "dynamic-25", "model": "slowfast-lite", "compressor": "dynamic", "budget": 25}),
    ]
    store = CampaignStore(data_dir)
    store.create("demo", items, setups, 1, guidelines="Prefer the answer that names the animal.")
    store.record_answers("demo", [{"item_id": i.id, "setup": s.name, "text": f"A cat ({s.name})."} for i in items
                                  for s in setups])  # fmt: skip
    store.close()


def sign_in(chromium, url: str, name: str):
    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#chatbot", timeout=60_000)
    page.wait_for_function(
        "document.querySelector('#identity') && document.querySelector('#identity').innerText.includes('You:')",
        timeout=30_000,
    )
    return context, page


def test_the_export_tab_is_there_for_the_admin_only(chromium, signed_in_studio):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context, page = sign_in(chromium, signed_in_studio, "ann1")
    assert "ann1 · annotator" in page.locator("#identity").inner_text()
    assert page.get_by_role("tab", name="Chat").is_visible()
    assert (
        page.get_by_role("tab", name="Export").count() == 0 or not page.get_by_role("tab", name="Export").is_visible()
    )
    assert page.locator("#share-video").is_visible(), "the consent box beside the terms"
    page.screenshot(path=str(ARTIFACTS / "16_signed_in_annotator.png"), full_page=True)
    context.close()

    context, page = sign_in(chromium, signed_in_studio, "boss")
    assert "boss · admin" in page.locator("#identity").inner_text()
    page.get_by_role("tab", name="Export").click()
    page.locator("#export-run").click()
    status = "document.querySelector('#export-status')"
    page.wait_for_function(f"{status} && {status}.innerText.includes('Exported')", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "17_signed_in_admin_export.png"), full_page=True)
    context.close()


def test_an_annotator_works_the_campaign_queue_with_the_keyboard(chromium, signed_in_studio):
    context, page = sign_in(chromium, signed_in_studio, "ann1")
    page.get_by_role("tab", name="Campaign").click()
    page.locator("#campaign-next").click()
    status = "document.querySelector('#campaign-status')"
    page.wait_for_function(f"{status} && {status}.innerText.includes('0 of 2')", timeout=30_000)
    assert "A cat" in page.locator("#campaign-answer-a").inner_text()
    assert "A cat" in page.locator("#campaign-answer-b").inner_text()
    assert not page.locator("#campaign-admin-status").is_visible(), "no campaign administration for annotators"
    page.locator("#campaign-status").click()  # focus away from any text box, then judge with the keyboard
    page.keyboard.press("1")
    page.wait_for_function(f"{status} && {status}.innerText.includes('1 of 2')", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "18_campaign_queue.png"), full_page=True)
    page.keyboard.press("2")
    page.wait_for_function(f"{status} && {status}.innerText.includes('Nothing left for you')", timeout=30_000)
    context.close()
