"""The studio's handlers do what a person at the UI would see: streamed answers, frames with timestamps, budgets per
clip, clear messages for bad input, votes that land in the store with their video, and blind A/B rounds.

Most tests drive the handlers with a tiny fake model (wiring only, milliseconds per turn); the last ones use the real
embedded default on an example clip.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import BAD_VIDEO_KINDS

from app import running, sidebar
from app import studio as studio_module
from app.access.identity import Identity
from app.session import Session, View
from app.settings import Settings, model_choices
from app.tabs.chat import handlers as chat
from app.tabs.chat import ratings, views
from app.tabs.compare import handlers as compare
from app.tabs.export import handlers as exporting
from models.base import Answer, Attention, ClipBudget, GenerationParams, TokenStats, VisualContext
from models.registry import DEFAULT_MODEL

ASSETS = Path(__file__).resolve().parent.parent / "assets"
OWNER = Identity("owner", "owner", "admin")  # a laptop's one person: what these handler tests run as
ASKER = studio_module.Studio()  # asking touches no store (the owner is never rate-limited)
UNAVAILABLE = "slowfast-mllm-7b-f64-s1t4"  # needs a GPU and hub access, which the test machine has neither of
HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


class FakeVideoLLM:
    """Answers "A small cat (seed N)." word by word; encodes any clip into two clips of equal budget."""

    decode_max_side = 448

    def __init__(self) -> None:
        self.name = f"fake-video-llm-{id(self)}"  # its own entries in the process-wide encode cache
        self.calls: list[dict] = []
        self.encodes = 0
        self.closed_early = 0

    def encode(self, frames, params, video_sha256):
        self.encodes += 1
        count = len(frames)
        half = max(1, count // 2)
        budget = round(96 * params.budget_pct / 100)  # 96 tokens is this fake model's official count
        times = [float(t) for t in frames.timestamps_s]
        clips = [
            ClipBudget(
                0,
                0.0,
                times[half - 1],
                list(range(half)),
                0.8,
                budget * 2 // 3,
                budget // 2,
                budget // 2,
                "[clip 1] a cat",
            ),
            ClipBudget(
                1,
                times[half - 1],
                frames.info.duration_s,
                list(range(half, count)),
                0.4,
                budget // 3,
                budget // 2,
                budget // 3,
                "[clip 2] same",
            ),
        ]
        stats = TokenStats(
            clips=clips,
            global_budget=budget,
            slow_tokens=9,
            fast_tokens=3 * count,
            per_frame_slow=[9] + [0] * (count - 1),
            per_frame_fast=[3] * count,
            native_tokens=100 * count,
            compressor=params.compressor,
            budget_pct=params.budget_pct,
            official_tokens=96,
        )
        return VisualContext(
            self.name, video_sha256, params, [int(i) for i in frames.indices], times, frames.pixels, stats
        )

    def stream(self, context, history, question, params, want_attention=True):
        self.calls.append({"context": context, "history": list(history), "question": question, "params": params})
        words = ["A", " small", " cat", f" (seed {params.seed})."]
        finished = False
        try:
            yield from words
            finished = True
        finally:
            if not finished:
                self.closed_early += 1
        attention = None
        if context is not None:
            count = context.num_frames
            rows = np.full((len(words), count), 1.0 / count)
            attention = Attention(
                frame_weights=np.full(count, 1.0 / count),
                tokens=[w.strip() for w in words],
                token_frame_weights=rows,
                spatial={0: np.eye(7)},
            )
        yield Answer(
            text="".join(words),
            attention=attention,
            stats=context.stats if context else TokenStats(),
            timings_s={"first_token": 0.01, "generate": 0.02},
            new_tokens=len(words),
        )


@pytest.fixture
def fake(monkeypatch) -> FakeVideoLLM:
    model = FakeVideoLLM()
    monkeypatch.setattr(running, "load_model", lambda name: model)
    return model


@pytest.fixture
def studio(tmp_path) -> studio_module.Studio:
    studio = studio_module.Studio(data_dir=tmp_path / "data")
    yield studio
    studio.close()


@pytest.fixture
def clip(make_video) -> Path:
    return make_video("clip.mp4", duration_s=2.0, fps=10)


SETTINGS = Settings(num_frames=8, fps=0, compressor="dynamic", budget_pct=50)


def ask(session, question, settings=SETTINGS) -> list[dict]:
    return list(chat.chat(ASKER, session, OWNER, question, settings))


def wait_for(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def last_message(out: dict) -> dict:
    return out["chatbot"][-1]


# ---------------------------------------------------------------------------------------------------------------
# Chat


def test_text_only_turn_streams_the_answer_word_by_word(fake):
    session = Session()
    outs = ask(session, "Hello there?")
    streamed = [
        last_message(o)["content"] for o in outs if o.get("chatbot") and last_message(o)["role"] == "assistant"
    ]
    assert streamed[-1] == "A small cat (seed 0)."
    assert any(text and text != streamed[-1] and streamed[-1].startswith(text) for text in streamed), streamed
    assert fake.calls[-1]["context"] is None, "without a video the model must get no visual context"
    assert outs[-1]["answer_stats"].count("text-only") == 1


def test_loading_a_video_shows_timestamped_frames_and_per_clip_budgets(studio, fake, clip):
    session = Session()
    out = chat.load_video(studio, session, OWNER, str(clip), SETTINGS)
    assert "warning" not in out
    captions = [caption for _image, caption in out["frames"]]
    assert len(captions) == 8 and all(caption.startswith("t = ") for caption in captions)
    bars = out["budget_plot"].data[0]
    assert len(bars.x) == 2, "one bar per clip"
    assert "Now watching" in out["chatbot"][-1]["metadata"]["title"]
    assert "8 frames sampled" in out["video_status"]


def test_the_first_question_reuses_the_encoding_done_at_load_time(studio, fake, clip):
    session = Session()
    chat.load_video(studio, session, OWNER, str(clip), SETTINGS)
    ask(session, "What animal?")
    ask(session, "And then?")
    assert fake.encodes == 1
    assert fake.calls[-1]["history"] == [
        {"role": "user", "content": "What animal?"},
        {"role": "assistant", "content": "A small cat (seed 0)."},
    ]


def test_switching_videos_mid_chat_uses_the_new_clip_and_says_so(studio, fake, clip, make_video):
    session = Session()
    other = make_video("other.mp4", duration_s=3.0, fps=10, width=64, height=48)
    chat.load_video(studio, session, OWNER, str(clip), SETTINGS)
    ask(session, "What animal?")
    out = chat.load_video(studio, session, OWNER, str(other), SETTINGS)
    assert "fresh conversation" in out["chatbot"][-1]["content"]
    ask(session, "What now?")
    call = fake.calls[-1]
    assert call["context"].video_sha256 == session.video.sha256 != fake.calls[0]["context"].video_sha256
    assert call["history"] == [], "the old clip's turns must not leak into the new clip's conversation"
    assert [t.question for t in session.turns] == ["What animal?", "What now?"], "earlier turns stay on screen"


@pytest.mark.parametrize("kind", BAD_VIDEO_KINDS)
def test_bad_uploads_get_a_clear_message_and_the_chat_keeps_working(studio, fake, bad_videos, kind):
    bad = bad_videos[kind]
    session = Session()
    out = chat.load_video(studio, session, OWNER, str(bad.path), SETTINGS)
    assert bad.message.lower() in out["warning"].lower()
    assert bad.message.lower() in out["chatbot"][-1]["content"].lower()
    assert session.video is None
    outs = ask(session, "Still there?")
    assert last_message(outs[-1])["content"] == "A small cat (seed 0)."


def test_an_empty_question_is_refused_with_a_hint(fake):
    session = Session()
    outs = ask(session, "   ")
    assert len(outs) == 1 and "Type a question" in outs[0]["warning"]
    assert session.entries == [] and fake.calls == []


@pytest.mark.parametrize(
    "settings, phrase",
    [
        (Settings(num_frames=0), "number of frames"),
        (Settings(temperature=9), "temperature"),
        (Settings(max_new_tokens="lots"), "max new tokens"),
        (Settings(model=UNAVAILABLE), "needs"),
        (Settings(model="gpt-17"), "not a known model"),
    ],
)
def test_bad_settings_are_refused_with_a_message_not_a_traceback(studio, fake, clip, settings, phrase):
    session = Session()
    chat.load_video(studio, session, OWNER, str(clip), SETTINGS)
    outs = ask(session, "What animal?", settings)
    assert phrase in outs[-1]["warning"]
    assert session.turns == []


def test_picking_a_model_that_cannot_run_here_says_why_and_keeps_the_current_one():
    session = Session()
    out = sidebar.select_model(session, UNAVAILABLE)
    assert "needs a GPU" in out["warning"] and out["model"]["value"] == DEFAULT_MODEL
    assert session.model == DEFAULT_MODEL
    labels = dict((name, label) for label, name in model_choices())
    assert "unavailable here: needs a GPU and hub access" in labels[UNAVAILABLE]
    assert labels[DEFAULT_MODEL] == DEFAULT_MODEL


def test_stop_keeps_the_partial_answer_and_it_can_still_be_rated(studio, fake):
    session = Session()
    stream = chat.chat(ASKER, session, OWNER, "Tell me", SETTINGS)
    seen = ""
    for out in stream:
        seen = last_message(out)["content"]
        if seen == "A small":
            break
    stream.close()  # what Gradio does when the person presses Stop
    turn = session.turns[-1]
    assert turn.status == "stopped" and turn.answer == "A small"
    assert "(stopped)" in chat.render_chat(session)[-1]["content"]
    assert wait_for(lambda: fake.closed_early == 1), "the model's own stream must be closed, not left running"
    out = ratings.rate_answer(studio, session, 1, "👎 bad", None, "cut short", OWNER)
    assert "Saved" in out["rating_status"]
    assert studio.store.records()[0]["answer"] == "A small"


def test_regenerate_answers_the_last_question_again_with_a_new_seed(fake):
    session = Session()
    ask(session, "Tell me")
    outs = list(chat.regenerate(ASKER, session, OWNER, SETTINGS))
    assert [t.question for t in session.turns] == ["Tell me"]
    assert last_message(outs[-1])["content"] == "A small cat (seed 1)."


def test_undo_removes_the_last_turn_and_gives_its_question_back(fake):
    session = Session()
    ask(session, "First?")
    ask(session, "Second?")
    out = chat.undo(session)
    assert out["question"] == "Second?"
    assert [t.question for t in session.turns] == ["First?"]
    assert "Nothing to undo" in chat.undo(Session())["warning"]


def test_editing_the_last_question_answers_it_again_as_edited(fake):
    session = Session()
    ask(session, "First?")
    ask(session, "Secnod?")
    index = len(chat.render_chat(session)) - 2  # the last user message
    outs = list(chat.edit_message(ASKER, session, OWNER, {"index": index, "value": "Second?"}, SETTINGS))
    assert [t.question for t in session.turns] == ["First?", "Second?"]
    assert fake.calls[-1]["question"] == "Second?"
    assert last_message(outs[-1])["role"] == "assistant"
    refused = list(chat.edit_message(ASKER, session, OWNER, {"index": 0, "value": "Changed"}, SETTINGS))
    assert "Only the last question" in refused[0]["warning"]
    assert [t.question for t in session.turns] == ["First?", "Second?"]


def test_questions_and_answers_with_html_are_shown_as_text(fake):
    session = Session()
    outs = ask(session, HOSTILE)
    user = outs[-1]["chatbot"][-2]["content"]
    assert "<img" not in user and "<script" not in user
    assert "&lt;img" in user
    assert session.turns[-1].question == HOSTILE, "the stored question stays verbatim"


# ---------------------------------------------------------------------------------------------------------------
# Ratings


def test_thumbs_on_an_answer_record_a_rating_with_its_video_frames_and_params(studio, fake, clip):
    session = Session()
    chat.load_video(studio, session, OWNER, str(clip), SETTINGS)
    ask(session, "What animal?")
    answer_index = len(chat.render_chat(session)) - 1
    out = ratings.like(studio, session, {"index": answer_index, "value": "", "liked": True}, OWNER)
    assert "Saved 👍" in out["rating_status"]
    [record] = studio.store.records()
    assert record["thumbs"] == 1 and record["kind"] == "rating"
    assert record["video_sha256"] == session.video.sha256
    assert (studio.data_dir / record["video_path"]).is_file(), "the video is kept in the data dir"
    turn = session.turns[-1]
    assert record["frame_timestamps_s"] == pytest.approx(turn.frame_timestamps_s) and len(turn.frame_timestamps_s) == 8
    assert record["encode_params"]["budget_pct"] == 50
    assert record["extra"]["compression"]["compressor"] == "dynamic"
    assert record["generation_params"]["temperature"] == 0.0
    assert record["annotator"] == "owner" and record["identity_kind"] == "owner"
    # A second vote on the same clip reuses the kept copy instead of copying again.
    ratings.like(studio, session, {"index": answer_index, "value": "", "liked": False}, OWNER)
    assert len(list((studio.data_dir / "videos").iterdir())) == 1


def test_thumbs_on_a_note_or_a_question_are_not_recorded(studio, fake, clip):
    session = Session()
    chat.load_video(studio, session, OWNER, str(clip), SETTINGS)
    ask(session, "What animal?")
    for index in (0, 1, 99, None):
        out = ratings.like(studio, session, {"index": index, "value": "", "liked": True}, OWNER)
        assert "Only the model's answers" in out["warning"]
    assert studio.store.counts()["total"] == 0


def test_a_scored_rating_keeps_hostile_text_verbatim_but_shows_it_inert(studio, fake):
    session = Session()
    ask(session, "Hi?")
    out = ratings.rate_answer(studio, session, 1, "no thumbs", 4, HOSTILE, OWNER)
    [record] = studio.store.records()
    assert record["score"] == 4 and record["thumbs"] is None
    assert record["reason"] == HOSTILE and record["annotator"] == "owner"  # who judged is never typed text
    assert "<img" not in out["rating_status"] and "<script" not in out["rating_status"]
    assert out["score"] is None and out["reason"] == "", "the panel resets for the next rating"


def test_rating_without_an_answer_or_without_a_judgement_is_refused(studio, fake):
    session = Session()
    assert "no answer to rate" in ratings.rate_answer(studio, session, None, "👍 good", None, "", OWNER)["warning"]
    ask(session, "Hi?")
    out = ratings.rate_answer(studio, session, 1, "no thumbs", None, "", OWNER)
    assert "Not saved" in out["warning"]
    assert studio.store.counts()["total"] == 0


# ---------------------------------------------------------------------------------------------------------------
# A/B


def test_an_ab_round_hides_the_setups_until_the_vote_then_reveals_and_records_them(studio, fake, clip):
    session = Session()
    chat.load_video(studio, session, OWNER, str(clip), SETTINGS)
    setups = (
        compare.SideSetup(DEFAULT_MODEL, "dynamic", 50, 0.0, 1.0),
        compare.SideSetup(DEFAULT_MODEL, "uniform", 25, 0.7, 0.9),
    )
    outs = list(compare.ab_run(ASKER, session, OWNER, "What animal?", setups, SETTINGS))
    final = outs[-1]
    assert final["ab_votable"] is True
    shown = json.dumps([o.get("ab_reveal", "") for o in outs]) + json.dumps([final["ab_chat_a"], final["ab_chat_b"]])
    assert "temperature" not in shown and "setup 1" not in shown.lower(), "nothing may hint at which setup is which"
    assert "Which answer is better" in final["ab_reveal"]

    voted = compare.ab_vote(studio, session, OWNER, "b", "B is more precise")
    assert "You judged: **B is better**" in voted["ab_reveal"]
    assert "setup 1" in voted["ab_reveal"] and "setup 2" in voted["ab_reveal"]
    assert voted["ab_votable"] is False
    [record] = studio.store.records()
    assert record["kind"] == "comparison" and record["choice"] == "b"
    side_a, side_b = session.ab.sides
    assert record["generation_params_a"]["temperature"] == side_a.generation_params["temperature"]
    assert record["encode_params_b"]["budget_pct"] == side_b.encode_params["budget_pct"]
    assert {record["encode_params_a"]["budget_pct"], record["encode_params_b"]["budget_pct"]} == {50, 25}
    assert {record["extra"]["compression_a"]["compressor"], record["extra"]["compression_b"]["compressor"]} == {
        "dynamic",
        "uniform",
    }
    assert record["video_sha256"] == session.video.sha256
    assert record["extra"]["setup_a"] == side_a.setup
    assert "already judged" in compare.ab_vote(studio, session, OWNER, "a", "")["warning"]
    assert studio.store.counts()["comparison"] == 1


def test_voting_before_a_round_is_run_is_refused(studio):
    assert "Run a comparison first" in compare.ab_vote(studio, Session(), OWNER, "a", "")["warning"]


def test_an_ab_round_with_a_model_that_cannot_run_here_is_refused(fake):
    setups = (
        compare.SideSetup(DEFAULT_MODEL, "official", 100, 0.0, 1.0),
        compare.SideSetup(UNAVAILABLE, "official", 100, 0.0, 1.0),
    )
    outs = list(compare.ab_run(ASKER, Session(), OWNER, "What?", setups, SETTINGS))
    assert "needs a GPU" in outs[-1]["warning"]


# ---------------------------------------------------------------------------------------------------------------
# Export


def test_export_offers_every_format_and_the_trl_files_hold_the_judgements(studio, fake, clip):
    session = Session()
    chat.load_video(studio, session, OWNER, str(clip), SETTINGS)
    ask(session, "What animal?")
    ratings.rate_answer(studio, session, 1, "👍 good", None, "", OWNER)
    ratings.rate_answer(studio, session, 1, "no thumbs", 3, "meh", OWNER)  # a 3 carries no KTO label
    setups = (
        compare.SideSetup(DEFAULT_MODEL, "dynamic", 50, 0.0, 1.0),
        compare.SideSetup(DEFAULT_MODEL, "uniform", 25, 0.7, 0.9),
    )
    for choice in ("a", "tie"):
        list(compare.ab_run(ASKER, session, OWNER, "What animal?", setups, SETTINGS))
        compare.ab_vote(studio, session, OWNER, choice, "")

    out = exporting.export_data(studio, session, OWNER)
    for name in exporting.DOWNLOADS:
        path = Path(out[name]["value"])
        assert path.is_file() and path.is_relative_to(studio.data_dir), name
    dpo = [json.loads(line) for line in Path(out["dl_dpo"]["value"]).read_text().splitlines()]
    kto = [json.loads(line) for line in Path(out["dl_kto"]["value"]).read_text().splitlines()]
    assert len(dpo) == 1 and dpo[0]["prompt"][-1]["content"] == "What animal?"
    assert len(kto) == 1 and kto[0]["label"] is True and kto[0]["video"].startswith("videos/")
    assert "**4** judgements" in out["export_counts"]
    assert len(out["export_preview"]) == 4


def test_push_without_an_export_says_what_to_do_first(studio):
    assert "Export first" in exporting.push_export(studio, Session(), OWNER, "user/repo")["hub_status"]


# ---------------------------------------------------------------------------------------------------------------
# Attention frame picker


def test_the_frame_picker_shows_an_overlay_where_the_model_has_a_map(studio, fake, clip):
    session = Session()
    chat.load_video(studio, session, OWNER, str(clip), SETTINGS)
    outs = ask(session, "What animal?")
    assert outs[-1]["frame_slider"]["maximum"] == 8
    with_map = views.show_frame(session, 1)
    without = views.show_frame(session, 5)
    assert "overlay" in with_map["overlay_caption"] and "t = " in with_map["overlay_caption"]
    assert "no spatial map" in without["overlay_caption"]
    view = session.view
    plain_frame = views.frame_outputs(View(view.thumbnails, view.timestamps_s, view.stats), 1)["overlay"]
    assert plain_frame.shape == with_map["overlay"].shape
    assert not np.array_equal(plain_frame, with_map["overlay"]), "the map is blended onto the frame"
    picked = views.frame_from_gallery(session, {"index": 4})
    assert picked["frame_slider"]["value"] == 5 and picked["views_tab"] == "attention"


# ---------------------------------------------------------------------------------------------------------------
# The real embedded default


def test_the_embedded_default_answers_about_the_cat_clip_with_views_for_every_frame(studio):
    session = Session()
    settings = Settings(num_frames=16, fps=2.0, max_new_tokens=24)
    out = chat.load_video(studio, session, OWNER, str(ASSETS / "cat.mp4"), settings)
    assert "warning" not in out, out.get("warning")
    outs = ask(session, "What animal is in the video?", settings)
    final = outs[-1]
    assert "warning" not in final, final.get("warning")
    answer = session.turns[-1].answer
    assert "cat" in answer.lower(), answer
    num_frames = len(session.turns[-1].frame_timestamps_s)
    heatmap = final["heatmap"].data[0]
    assert np.asarray(heatmap.z).shape[1] == num_frames, "one heatmap column per sampled frame"
    assert len(final["budget_plot"].data[0].x) == len(session.view.stats.clips)
    assert "frames from cache" in final["answer_stats"], "the clip was encoded once, at load time"
    # A follow-up question sees the first turn.
    ask(session, "What colour are its eyes?", settings)
    assert session.turns[-1].history[0]["content"] == "What animal is in the video?"


def test_stream_answer_runs_the_model_in_one_thread_and_stops_it_when_closed():
    import threading

    threads = set()

    class Recorder(FakeVideoLLM):
        def stream(self, *args, **kwargs):
            for item in super().stream(*args, **kwargs):
                threads.add(threading.get_ident())
                yield item

    model = Recorder()
    stream = running.stream_answer(model, None, [], "Hi", GenerationParams())
    first = next(stream)
    stream.close()
    assert first == "A" and len(threads) == 1
    assert wait_for(lambda: model.closed_early == 1), "the worker stops after the token at hand"


def test_a_file_whose_container_claims_hours_says_so_in_the_chat(studio, fake, tmp_path):
    from test_video_lying import mp4_claiming

    lying = mp4_claiming(tmp_path / "edited.mp4", 10_200.0)
    session = Session()
    out = chat.load_video(studio, session, OWNER, str(lying), SETTINGS)
    assert "warning" not in out
    assert "claims 2 h 50 min" in out["video_status"] and "4.0 s" in out["video_status"]
    assert "claims 2 h 50 min" in out["chatbot"][-1]["content"]
    assert session.video.duration_s < 5
