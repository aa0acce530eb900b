"""Who is who and who may see what, as strangers would meet it: two accounts (an admin and an annotator) on one
running studio through `gradio_client`, the OAuth path of a Space with an injected profile, visitors, uploads fetched
by URL, consent for videos, rate limits, and a store made before identities existed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from conftest import launched, serving_app
from gradio_client import Client, handle_file

from app.access.identity import AccessConfig, Identity
from app.access.limits import Limits, Rate
from app.access.policies import AccessDenied, authorize, may
from app.accounts import AccountBook, add_account
from app.data.exports import export_all
from app.data.store import AnnotationStore
from app.judgements import Judge, video_fields
from app.session import Session, VideoRef

ROOT = Path(__file__).resolve().parent.parent
CAT = ROOT / "assets" / "static_cat.mp4"
PASSWORDS = {"boss": "boss-password", "ann1": "ann1-password", "ann2": "ann2-password"}
ASK = ("slowfast-lite", "uniform", 50, 8)  # model, compressor, budget, frames: a quick answer


# ---------------------------------------------------------------------------------------------------------------
# Roles, identities and the store, without a server


def test_each_role_may_do_what_the_policy_table_says():
    config = AccessConfig(local_owner=False, admins=frozenset({"alice"}), annotators=frozenset({"bob"}))
    owner = Identity("owner", "owner", "admin")
    alice = config.identify(oauth_username="alice")
    config.oauth = True
    alice, bob, carol = (config.identify(oauth_username=name) for name in ("alice", "bob", "carol"))
    visitor = config.identify(visitor="browser-1")
    assert (alice.role, bob.role, carol.role, visitor.role) == ("admin", "annotator", "visitor", "visitor")
    for who in (owner, alice):
        assert all(may(who, action, config) for action in ("chat", "vote", "export", "push", "read_all"))
    assert may(bob, "vote", config) and not may(bob, "export", config)
    with pytest.raises(AccessDenied, match="only admins can export; you are signed in as bob"):
        authorize(bob, "export", config)
    with pytest.raises(AccessDenied, match="not on this studio's annotator list"):
        authorize(carol, "vote", config)
    with pytest.raises(AccessDenied, match="sign in to vote"):
        authorize(visitor, "vote", config)
    assert may(visitor, "chat", config)
    config.anonymous_votes = True
    assert may(visitor, "vote", config) and not may(visitor, "read_all", config)


def test_visitors_are_a_keyed_hash_of_their_browser_and_only_a_loopback_laptop_has_an_owner(tmp_path):
    config = AccessConfig.from_env(host="0.0.0.0", data_dir=tmp_path, environ={})
    assert config.open_to_strangers and not config.local_owner
    one, again = config.identify(visitor="raw-browser-id"), config.identify(visitor="raw-browser-id")
    other = config.identify(visitor="another-browser")
    assert one == again and one.id != other.id and "raw-browser-id" not in one.id + one.label
    assert one.label.startswith("visitor-")
    restarted = AccessConfig.from_env(host="0.0.0.0", data_dir=tmp_path, environ={})
    assert restarted.identify(visitor="raw-browser-id").id == one.id, "the same pseudonym after a restart"
    assert (tmp_path / ".identity-secret").stat().st_mode & 0o077 == 0
    laptop = AccessConfig.from_env(host="127.0.0.1", data_dir=tmp_path, environ={})
    assert laptop.identify().key == ("owner", "owner")


def test_a_store_from_before_identities_opens_with_every_record_and_logs_admin_actions(tmp_path):
    with AnnotationStore(tmp_path) as store:
        store.record_rating(model="m", question="What?", answer="A cat.", thumbs=1)
    # Turn it back into a schema-1 store: the table without the identity columns, no audit table.
    connection = sqlite3.connect(tmp_path / "annotations.sqlite3")
    rows = connection.execute("SELECT * FROM judgements").fetchall()
    columns = [c[1] for c in connection.execute("PRAGMA table_info(judgements)").fetchall()]
    keep = [c for c in columns if not c.startswith("identity_")]
    connection.executescript(
        f"""DROP TRIGGER judgements_are_write_once; DROP INDEX judgements_identity; DROP TABLE audit;
        CREATE TABLE old AS SELECT {", ".join(keep)} FROM judgements; DROP TABLE judgements;
        ALTER TABLE old RENAME TO judgements; PRAGMA user_version = 1;"""
    )
    connection.close()
    assert len(rows) == 1

    with AnnotationStore(tmp_path) as store:
        (record,) = store.records()
        assert record["answer"] == "A cat." and record["identity_kind"] is None
        store.record_rating(
            model="m", question="Q", answer="A", score=5, annotator="ann1", identity=("account", "ann1")
        )
        assert [r["answer"] for r in store.records(identity=("account", "ann1"))] == ["A"]
        store.audit(("account", "boss"), "export", {"records": 2})
        (entry,) = store.audit_log()
        assert entry["actor_id"] == "boss" and entry["action"] == "export" and entry["detail"] == {"records": 2}


def test_a_video_without_its_uploaders_consent_never_lands_in_an_export(tmp_path, tiny_video):
    clip = tiny_video
    store = AnnotationStore(tmp_path / "data")
    sha = hashlib.sha256(clip.read_bytes()).hexdigest()
    ref = VideoRef(str(clip), "mine.mp4", sha, 1.0, 64, 48, 8.0)
    visitor = Identity("visitor", "v" * 24, "visitor")
    refused = video_fields(store, ref, Judge(visitor, share_video=False, kept_videos={}))
    assert refused == {"video_path": None, "video_sha256": sha, "video_duration_s": 1.0}
    store.record_rating(model="m", question="What?", answer="A.", thumbs=1, frame_timestamps_s=[0.5],
                        frame_indices=[4], **refused)  # fmt: skip
    result = export_all(store)
    (row,) = [json.loads(line) for line in result.files["jsonl"].read_text().splitlines()]
    assert row["video"] is None and row["video_sha256"] == sha and row["frame_timestamps_s"] == [0.5]
    assert not [p for p in result.directory.rglob("*") if p.suffix in (".mp4", ".webm")], "no video file exported"
    agreed = video_fields(store, ref, Judge(visitor, share_video=True, kept_videos={}))
    assert agreed["video_path"].startswith("videos/") and agreed["video_sha256"] == sha
    store.close()


def test_the_call_after_the_limit_is_refused_with_the_wait_and_nothing_is_lost(tmp_path):
    from app.settings import Settings
    from app.studio import Studio
    from app.tabs.chat import handlers as chat

    # One call per ten minutes: a first answer that takes long on a busy machine cannot refill the bucket.
    studio = Studio(data_dir=tmp_path, limits=Limits({"model": Rate(per_minute=0.1, burst=1), "vote": Rate(60, 5)}))
    first, second = Identity("account", "ann1", "annotator"), Identity("account", "ann2", "annotator")
    session = Session()
    settings = Settings(num_frames=4, max_new_tokens=4)
    list(chat.chat(studio, session, first, "Hello?", settings))
    assert len(session.turns) == 1
    refused = list(chat.chat(studio, session, first, "Again?", settings))
    assert "try again in" in refused[0]["warning"] and len(session.turns) == 1, "a refused question adds no turn"
    regenerated = list(chat.regenerate(studio, session, first, settings))
    assert "try again in" in regenerated[0]["warning"] and session.turns[0].question == "Hello?", "nothing lost"
    other = Session()
    assert "warning" not in list(chat.chat(studio, other, second, "Hello?", settings))[-1], "others unaffected"


# ---------------------------------------------------------------------------------------------------------------
# Two accounts on one running studio


@pytest.fixture(scope="module")
def accounts_studio(tmp_path_factory):
    """The studio served with sign-in from an accounts file: boss (admin), ann1 and ann2 (annotators)."""
    from app.studio import Studio

    folder = tmp_path_factory.mktemp("accounts")
    accounts = folder / "accounts.toml"
    add_account(accounts, "boss", "admin", PASSWORDS["boss"])
    for name in ("ann1", "ann2"):
        add_account(accounts, name, "annotator", PASSWORDS[name])
    access = AccessConfig(accounts=AccountBook(accounts), local_owner=False)
    studio = Studio(data_dir=folder / "data", access=access)
    with launched(studio) as url:
        yield url, studio


def signed_in(url: str, name: str) -> Client:
    return Client(url, auth=(name, PASSWORDS[name]), verbose=False, download_files=False)


def test_an_annotator_judges_but_cannot_export_push_or_read_others_and_the_admin_sees_everyone(accounts_studio):
    url, studio = accounts_studio
    with pytest.raises(ValueError, match="login"):
        Client(url, auth=("ann1", "wrong-password"), verbose=False)
    ann1, ann2, boss = signed_in(url, "ann1"), signed_in(url, "ann2"), signed_in(url, "boss")

    asked = ann1.predict(handle_file(str(CAT)), "What animal is it?", *ASK, api_name="/ask")
    rated = ann1.predict(asked["answer_id"], "up", 4, "<b>names</b> the ../cat", api_name="/rate")
    assert rated["annotator"] == "ann1"
    with pytest.raises(Exception, match="annotator is set by sign-in"):
        ann1.predict(asked["answer_id"], "down", None, "", "boss", api_name="/rate")  # forging the admin
    with pytest.raises(Exception, match="unknown or expired"):
        ann2.predict(asked["answer_id"], "down", None, "", api_name="/rate")  # someone else's answer
    compared = ann1.predict(handle_file(str(CAT)), "What animal?", "slowfast-lite", "official", 100,
                            "slowfast-lite", "dynamic", 25, 8, api_name="/compare")  # fmt: skip
    voted = ann1.predict(compared["comparison_id"], "a", "", api_name="/vote")
    boss_asked = boss.predict(None, "Say hello.", *ASK, api_name="/ask")
    boss.predict(boss_asked["answer_id"], "up", None, "", api_name="/rate")

    with pytest.raises(Exception, match="only admins can export; you are signed in as ann1"):
        ann1.predict("dpo", api_name="/export")
    assert "only admins can push" in ann1.predict("user/repo", api_name="/push_to_hub")
    assert "only admins can export" in ann1.predict(api_name="/export_all")[0]
    mine = ann1.predict(100, "", api_name="/records")
    assert {r["id"] for r in mine} == {rated["record_id"], voted["record_id"]}
    assert {r["annotator"] for r in mine} == {"ann1"} and all(r["identity_kind"] == "account" for r in mine)
    assert ann2.predict(100, "", api_name="/records") == []
    everyone = boss.predict(100, "", api_name="/records")
    assert {r["annotator"] for r in everyone} == {"ann1", "boss"}
    assert next(r for r in everyone if r["id"] == rated["record_id"])["reason"] == "<b>names</b> the ../cat"

    exported = boss.predict("jsonl", api_name="/export")
    lines = Path(exported["path"] if isinstance(exported, dict) else exported).read_text().splitlines()
    assert {json.loads(line)["annotator"] for line in lines} == {"ann1", "boss"}
    assert [entry["action"] for entry in studio.store.audit_log()][:1] == ["export"]
    assert studio.store.audit_log()[0]["actor_id"] == "boss"


def test_an_upload_is_fetched_only_by_its_uploader_and_admins(accounts_studio):
    url, _studio = accounts_studio
    ann1, ann2, boss = signed_in(url, "ann1"), signed_in(url, "ann2"), signed_in(url, "boss")
    with CAT.open("rb") as handle:
        uploaded = httpx.post(f"{url}gradio_api/upload", files={"files": ("mine.mp4", handle)}, cookies=ann1.cookies)
    (path,) = uploaded.json()
    fetch = lambda client: httpx.get(f"{url}gradio_api/file={path}", cookies=client.cookies if client else None)  # noqa: E731
    assert fetch(ann1).status_code == 200 and fetch(boss).status_code == 200
    refused = fetch(ann2)
    assert refused.status_code == 403 and "uploaded by another person; you are signed in as ann2" in refused.text
    assert fetch(None).status_code in (401, 403)


def test_a_rate_limit_refuses_with_the_wait_and_leaves_other_people_alone(accounts_studio):
    url, studio = accounts_studio
    saved = studio.limits
    studio.limits = Limits({"model": Rate(per_minute=1, burst=2), "vote": Rate(per_minute=1, burst=1)})
    try:
        ann1, ann2 = signed_in(url, "ann1"), signed_in(url, "ann2")
        for _ in range(2):
            ann1.predict(None, "Hi?", *ASK, api_name="/ask")
        with pytest.raises(Exception, match=r"try again in \d+ s"):
            ann1.predict(None, "Hi again?", *ASK, api_name="/ask")
        assert ann2.predict(None, "Hi?", *ASK, api_name="/ask")["answer"] is not None
    finally:
        studio.limits = saved


def test_hostile_input_gets_clear_errors_and_stores_nothing_wrong(accounts_studio):
    url, studio = accounts_studio
    ann1 = signed_in(url, "ann1")
    before = studio.store.counts()["total"]
    asked = ann1.predict(None, "Hello?", *ASK, api_name="/ask")
    with pytest.raises(Exception, match="reason"):
        ann1.predict(asked["answer_id"], "up", None, "x" * 20_000, api_name="/rate")  # oversized
    with pytest.raises(Exception, match="unknown or expired"):
        ann1.predict("../../etc/passwd", "up", None, "", api_name="/rate")
    with pytest.raises(Exception, match="annotator"):
        ann1.predict(asked["answer_id"], "up", None, "", "<img src=x onerror=alert(1)>", api_name="/rate")
    assert studio.store.counts()["total"] == before


# ---------------------------------------------------------------------------------------------------------------
# A Space with `hf_oauth: true`, offline: the profile is injected as Gradio's signed session cookie


OAUTH_ENV = {
    "SYSTEM": "spaces",
    "SPACE_ID": "lab/video-llm-studio",
    "OAUTH_CLIENT_ID": "test-client",
    "OAUTH_CLIENT_SECRET": "test-secret",
    "OAUTH_SCOPES": "openid profile",
    "OPENID_PROVIDER_URL": "http://127.0.0.1:9",  # never contacted: nobody goes through the login redirect here
    "STUDIO_ADMINS": "alice",
}


def oauth_cookie(username: str) -> str:
    """The `session` cookie Gradio's OAuth callback would set for `username` (Starlette's signed session)."""
    from itsdangerous import TimestampSigner

    secret = hashlib.sha256((OAUTH_ENV["OAUTH_CLIENT_SECRET"] + "-v4").encode()).hexdigest()
    session = {"oauth_info": {"userinfo": {"preferred_username": username, "name": username},
                              "access_token": "token", "expires_at": int(time.time()) + 3600}}  # fmt: skip
    data = base64.b64encode(json.dumps(session).encode())
    return TimestampSigner(secret).sign(data).decode()


@pytest.fixture(scope="module")
def oauth_space(tmp_path_factory):
    log = tmp_path_factory.mktemp("oauth-log") / "app.log"
    with serving_app(tmp_path_factory.mktemp("oauth-data"), "--no-preload", log_path=log, env=OAUTH_ENV) as url:
        yield url


def as_profile(url: str, username: str | None) -> Client:
    headers = {"Cookie": f"session={oauth_cookie(username)}"} if username else None
    return Client(url, headers=headers, verbose=False, download_files=False)


@pytest.mark.e2e
def test_on_a_space_the_oauth_profile_is_who_judges_and_admins_come_from_studio_admins(oauth_space):
    url = oauth_space
    page = httpx.get(url).text
    assert "/login/huggingface" in page or "LoginButton" in page or "login" in page.lower()
    bob, alice, visitor = as_profile(url, "bob"), as_profile(url, "alice"), as_profile(url, None)

    asked = bob.predict(None, "Say hello.", *ASK, api_name="/ask")
    assert bob.predict(asked["answer_id"], "up", None, "", api_name="/rate")["annotator"] == "bob"
    with pytest.raises(Exception, match="only admins can export; you are signed in as bob"):
        bob.predict("jsonl", api_name="/export")
    assert [r["annotator"] for r in bob.predict(10, "", api_name="/records")] == ["bob"]

    seen = visitor.predict(None, "Say hello.", *ASK, api_name="/ask")  # visitors may chat
    with pytest.raises(Exception, match="sign in to vote"):
        visitor.predict(seen["answer_id"], "up", None, "", api_name="/rate")
    assert visitor.predict(10, "", api_name="/records") == []

    assert [r["annotator"] for r in alice.predict(10, "", api_name="/records")] == ["bob"]  # an admin sees all
    assert alice.predict("jsonl", api_name="/export")


@pytest.mark.e2e
def test_serving_strangers_with_nobody_signing_in_warns_at_start_and_nobody_can_export(tmp_path):
    log = tmp_path / "app.log"
    with serving_app(tmp_path / "data", "--no-preload", "--host", "0.0.0.0", log_path=log) as url:
        visitor = Client(url, verbose=False, download_files=False)
        with pytest.raises(Exception, match="only admins can export; you are not signed in"):
            visitor.predict("jsonl", api_name="/export")
        assert "warning" not in visitor.predict(None, "Hi?", *ASK, api_name="/ask")  # visitors may still chat
    text = log.read_text()
    assert "with no accounts and no OAuth" in text and "bind to 127.0.0.1" in text
