"""The studio's API for programs: named endpoints with plain JSON-like inputs and outputs, next to the UI's events.

- `ask(video, question, model, compressor, budget, frames, fps, temperature, top_p, max_new_tokens, seed)` streams
  partial answers and ends with `{answer, answer_id, model, video, frames, token_plan, attention, timings}`;
- `rate(answer_id, thumbs, score, reason)` records the caller's judgement of an answer `ask` gave them → `{record_id}`;
- `compare(...)` answers one question with two setups → `{comparison_id, a, b}`; `vote(comparison_id, choice, ...)`
  records the judgement → `{record_id}`;
- `campaign_next(campaign)` → the caller's next campaign item; `campaign_judge(item_id, choice, reason)` records it;
- `export(format)` → a file (admins); `records(limit, kind)` → the newest records as JSON (the caller's own; an
  admin's: everyone's).

Every call runs as the identity of its request (`app/access/identity.py`): a record's annotator is who is signed in,
never a name the caller passes, and an answer or comparison can only be judged by the client that asked for it.

Answers and comparisons wait for their judgement in a bounded in-memory table (the newest `PENDING_LIMIT`), held
as the chat's own `Turn` and the A/B tab's `ABRound`, and are stored through the same `app/judgements.py`: a record
holds what the UI stores for the same judgement (video kept by hash, frames, parameters, the compression plan), so
exports do not care where a judgement came from. Bad input raises `gr.Error` with a message.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from app.access.identity import Identity
from app.access.limits import RateLimited
from app.access.policies import may
from app.data.exports import export_all
from app.data.store import KINDS
from app.judgements import Judge, record_comparison, record_rating
from app.running import (
    EXPECTED_ERRORS,
    compression_dict,
    encode_clip,
    load_named_model,
    no_progress,
    note_frames,
    stream_answer,
)
from app.session import ABRound, Side, Turn, VideoRef
from app.settings import Settings, check_runnable, question_problem
from app.studio import Studio
from app.wiring import EXPORT_GROUP, LIGHT, MODEL_GROUP, identity_of
from models.base import Answer, Attention, VisualContext
from models.pipeline import video_sha256
from models.registry import MODELS, default_model_name, get_spec
from models.video import probe_video

PENDING_LIMIT = 256
SERVED_LIMIT = 100_000  # campaign items handed out and not yet judged, remembered to find their campaign
EXPORT_FORMATS = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet", "dpo": "dpo_jsonl", "kto": "kto_jsonl"}
THUMBS = {"up": 1, "down": -1, "": None}


class ProgramAPI:
    """The endpoints' logic, plain Python over a `Studio` (tests call it directly too)."""

    def __init__(self, studio: Studio):
        self.studio = studio
        self._pending: OrderedDict[str, Pending] = OrderedDict()
        self._kept_videos: dict[str, str] = {}  # sha256 -> path in the data dir, as a session keeps them
        # (identity, item id) -> the campaign the item came from, so /campaign_judge needs only the item id
        self._served: OrderedDict[tuple[tuple[str, str], str], str] = OrderedDict()
        self._lock = threading.Lock()

    # -- asking

    def ask(
        self, video: str | None, question: str, settings: Settings, who: Identity, share_video: bool = False
    ) -> Iterator[dict[str, Any]]:
        question = _checked_question(question)
        self._admit(who, "chat")
        ref = self._video_ref(video, who)
        model = _loaded(settings)
        context = _encoded(model, ref, settings)
        turn = _turn(question, ref, settings)
        started = time.perf_counter()
        answer = None
        for item in stream_answer(model, context, [], question, settings.generation_params()):
            if isinstance(item, Answer):
                answer = item
            else:
                turn.answer += item
                yield {"answer": turn.answer, "done": False}
        if answer is None:
            raise gr.Error("the model's stream ended without an answer")
        _finish(turn, context, answer)
        result = _answer_json(settings.model, ref, context, answer, turn.answer)
        result["timings"]["total_s"] = round(time.perf_counter() - started, 4)
        result["answer_id"] = self._remember(Pending(turn, who.key, share_video))
        yield {**result, "done": True}

    def compare(
        self,
        video: str | None,
        question: str,
        sides: tuple[Settings, Settings],
        who: Identity,
        share_video: bool = False,
    ) -> dict[str, Any]:
        question = _checked_question(question)
        self._admit(who, "chat")
        ref = self._video_ref(video, who)
        round_ = ABRound(question=question, video=ref, sides=[], mode="api")
        out = []
        for number, settings in enumerate(sides, start=1):
            model = _loaded(settings)
            context = _encoded(model, ref, settings)
            turn = _turn(question, ref, settings)
            answer = None
            for item in stream_answer(model, context, [], question, settings.generation_params(), False):
                answer = item if isinstance(item, Answer) else answer
            if answer is None:
                raise gr.Error("the model's stream ended without an answer")
            turn.answer = answer.text
            _finish(turn, context, answer)
            round_.sides.append(_side(number, turn))
            out.append(_answer_json(settings.model, ref, context, answer, turn.answer, attention=False))
        comparison_id = self._remember(Pending(round_, who.key, share_video))
        return {"comparison_id": comparison_id, "a": out[0], "b": out[1]}

    # -- judging

    def rate(
        self, answer_id: str, thumbs: str, score: int | None, reason: str, annotator: str, who: Identity
    ) -> dict[str, Any]:
        _check_annotator(annotator, who)
        pending = self._pending_entry(answer_id, Turn, who)
        if thumbs not in THUMBS:
            raise gr.Error(f"thumbs must be 'up', 'down' or '' (got {thumbs!r})")
        self._admit(who, "vote")
        judge = Judge(who, pending.share_video, self._kept_videos)
        extra = {"source": "api", "answer_id": answer_id}
        record_id = self._saved(
            lambda: record_rating(self.studio.store, pending.entry, judge, thumbs=THUMBS[thumbs], score=score or None,
                                  reason=reason, extra=extra)
        )  # fmt: skip
        return {"record_id": record_id, "annotator": who.label}

    def vote(self, comparison_id: str, choice: str, reason: str, annotator: str, who: Identity) -> dict[str, Any]:
        _check_annotator(annotator, who)
        pending = self._pending_entry(comparison_id, ABRound, who)
        self._admit(who, "vote")
        judge = Judge(who, pending.share_video, self._kept_videos)
        extra = {"source": "api", "comparison_id": comparison_id, "blind": False}
        record_id = self._saved(
            lambda: record_comparison(self.studio.store, pending.entry, judge, choice=choice, reason=reason,
                                      extra=extra)
        )  # fmt: skip
        with self._lock:
            self._pending.pop(comparison_id, None)  # a comparison takes one vote
        return {"record_id": record_id, "annotator": who.label}

    # -- reading

    def export(self, format: str, who: Identity) -> str:
        self._admit(who, "export")
        if format not in EXPORT_FORMATS:
            raise gr.Error(f"format must be one of {', '.join(EXPORT_FORMATS)} (got {format!r})")
        result = export_all(self.studio.store)
        self.studio.store.audit(who.key, "export", {"format": format, "records": result.counts["total"]})
        return str(result.files[EXPORT_FORMATS[format]])

    def records(self, limit: int, kind: str, who: Identity) -> list[dict[str, Any]]:
        """The newest records: everyone's for an admin, the caller's own for anyone else."""
        if kind not in ("", *KINDS):
            raise gr.Error(f"kind must be one of {', '.join(KINDS)} or empty (got {kind!r})")
        limit = max(1, min(int(limit or 20), 1000))
        mine = None if may(who, "read_all", self.studio.access) else who.key
        rows = self.studio.store.records(kind or None, newest_first=True, limit=limit, identity=mine)
        return json.loads(json.dumps(rows, default=str))

    # -- campaigns

    def campaign_next(self, campaign: str, who: Identity) -> dict[str, Any]:
        try:
            item = self.studio.campaigns.next_item(campaign, who)
        except (ValueError, PermissionError) as error:
            raise gr.Error(str(error)) from None
        if item is None:
            raise gr.Error(f"nothing left for you in campaign {campaign!r}: every item is done or judged by you")
        with self._lock:
            self._served[(who.key, item["item_id"])] = campaign
            while len(self._served) > SERVED_LIMIT:
                self._served.popitem(last=False)
        return {key: item[key] for key in ("item_id", "video", "question", "answers", "done_by_me", "total")}

    def campaign_judge(self, item_id: str, choice: str, reason: str, who: Identity) -> dict[str, Any]:
        with self._lock:
            campaign = self._served.get((who.key, item_id))
        if campaign is None:
            raise gr.Error(f"item {str(item_id)[:60]!r} was not handed to you: call /campaign_next first")
        self._admit(who, "vote")
        kind = self.studio.campaigns.campaign(campaign).kind
        score = None
        if kind == "rating":
            if not str(choice).isdigit():
                raise gr.Error(f"this is a rating campaign: choice is a score from 1 to 5 (got {choice!r})")
            choice, score = None, int(choice)
        try:
            judged = self.studio.campaigns.judge(campaign, item_id, who, choice=choice, score=score, reason=reason)
        except (ValueError, PermissionError) as error:
            raise gr.Error(f"not saved: {error}") from None
        return {"judgement_id": judged["id"], "overshoot": judged["overshoot"], "annotator": who.label}

    # -- internals

    def _admit(self, who: Identity, action: str) -> None:
        try:
            self.studio.admit(who, action)
        except (PermissionError, RateLimited) as error:
            raise gr.Error(str(error)) from None

    def _video_ref(self, path: str | None, who: Identity) -> VideoRef | None:
        ref = _video_ref(path, self.studio)
        if ref is not None and not ref.example:
            self.studio.uploads.claim(ref.path, who)
        return ref

    def _remember(self, entry: Pending) -> str:
        key = uuid.uuid4().hex[:16]
        with self._lock:
            self._pending[key] = entry
            while len(self._pending) > PENDING_LIMIT:
                self._pending.popitem(last=False)
        return key

    def _pending_entry(self, key: str, kind: type, who: Identity) -> Pending:
        """The answer or comparison `who` asked for under `key`; someone else's id reads as unknown."""
        with self._lock:
            entry = self._pending.get(key or "")
        if entry is None or not isinstance(entry.entry, kind) or entry.asker != who.key:
            what = "answer_id from ask" if kind is Turn else "comparison_id from compare"
            raise gr.Error(f"unknown or expired {what}: {str(key)[:40]!r} (the newest {PENDING_LIMIT} are kept)")
        return entry

    @staticmethod
    def _saved(record: Callable[[], str]) -> str:
        try:
            return record()
        except (ValueError, OSError) as error:
            raise gr.Error(f"not saved: {error}") from None


@dataclass
class Pending:
    """An answer or comparison waiting for its judgement: who asked for it (only they may judge it) and whether
    they agreed to share their uploaded video with the record."""

    entry: Turn | ABRound
    asker: tuple[str, str]
    share_video: bool


def _check_annotator(annotator: str, who: Identity) -> None:
    """`annotator` is kept for old scripts: empty, or the caller's own label. Anything else would be a forgery."""
    if annotator and annotator != who.label:
        raise gr.Error(
            f"annotator is set by sign-in, not by the caller: you are {who.describe()} (recorded as "
            f"{who.label!r}); leave annotator empty"
        )


def _turn(question: str, ref: VideoRef | None, settings: Settings) -> Turn:
    """The turn an API answer is, as the chat would hold it (no conversation before it)."""
    return Turn(
        question=question,
        model=settings.model,
        generation_params=settings.generation_params().as_dict(),
        video=ref,
        encode_params=settings.encode_params().as_dict() if ref is not None else None,
        status="streaming",
    )


def _finish(turn: Turn, context: VisualContext | None, answer: Answer) -> None:
    turn.answer = (answer.text or turn.answer).strip()
    turn.status = "done"
    turn.timings_s.update(answer.timings_s)
    turn.prompt_tokens, turn.new_tokens = answer.prompt_tokens, answer.new_tokens
    if context is not None:
        note_frames(turn, context)


def _side(number: int, turn: Turn) -> Side:
    return Side(
        setup=number,
        model=turn.model,
        encode_params=turn.encode_params,
        generation_params=turn.generation_params,
        answer=turn.answer,
        frame_indices=turn.frame_indices,
        frame_timestamps_s=turn.frame_timestamps_s,
        compression=turn.compression,
        done=True,
    )


def _checked_question(question: str) -> str:
    question = (question or "").strip()
    problem = question_problem(question, "the question is empty")
    if problem:
        raise gr.Error(problem)
    return question


def _video_ref(path: str | None, studio: Studio) -> VideoRef | None:
    if not path:
        return None
    try:
        info = probe_video(path)
        sha = video_sha256(path)
        return VideoRef(
            path=str(path),
            name=Path(path).name,
            sha256=sha,
            duration_s=float(info.duration_s),
            width=int(info.width),
            height=int(info.height),
            fps=float(info.fps),
            example=studio.example_for(sha) is not None,
        )
    except (*EXPECTED_ERRORS, OSError) as error:
        raise gr.Error(str(error)) from None


def _loaded(settings: Settings):
    try:
        check_runnable(settings.model)
        settings.generation_params()
        return load_named_model(settings.model, no_progress)
    except EXPECTED_ERRORS as error:
        raise gr.Error(str(error)) from None


def _encoded(model, ref: VideoRef | None, settings: Settings) -> VisualContext | None:
    if ref is None:
        return None
    try:
        return encode_clip(model, ref, settings.encode_params(), no_progress)[0]
    except EXPECTED_ERRORS as error:
        raise gr.Error(str(error)) from None


def _answer_json(
    model: str, ref: VideoRef | None, context: VisualContext | None, answer: Answer, text: str, attention: bool = True
) -> dict[str, Any]:
    frames = [] if context is None else [
        {"index": int(i), "time_s": round(float(t), 3)} for i, t in zip(context.frame_indices, context.timestamps_s)
    ]  # fmt: skip
    plan = compression_dict(context.stats) if context is not None else None
    return {
        "answer": text,
        "model": model,
        "video": None if ref is None else {"name": ref.name, "sha256": ref.sha256, "duration_s": ref.duration_s},
        "frames": frames,
        "token_plan": _token_plan(plan),
        "attention": _attention_json(answer.attention) if attention else None,
        "timings": {name: round(float(value), 4) for name, value in answer.timings_s.items()},
    }


def _token_plan(plan: dict[str, Any] | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    totals = {key: value for key, value in plan.items() if key not in ("clips", "compressor", "budget_pct")}
    return {
        "compressor": plan["compressor"],
        "budget_pct": plan["budget_pct"],
        "clips": plan["clips"],
        "totals": totals,
    }


def _attention_json(attention: Attention | None) -> dict[str, Any] | None:
    if attention is None:
        return None
    rows = attention.token_frame_weights
    per_word = []
    if rows is not None:
        per_word = [
            {"word": word, "frame_weights": [round(float(w), 5) for w in row]}
            for word, row in zip(attention.tokens, rows)
        ]
    return {
        "per_frame": [round(float(w), 5) for w in attention.frame_weights],
        "per_word": per_word,
        "source": attention.source,
    }


# ----------------------------------------------------------------------------------------------------------------
# Endpoints (hidden components carry the file inputs and outputs; the docstrings are what "Use via API" shows)


class Endpoints:
    """The endpoints as Gradio sees them: their signatures and docstrings are what "Use via API" lists. An empty
    model means the studio's default model; frames 0 means the model's default frame count."""

    def __init__(self, program: ProgramAPI):
        self.program = program

    def ask(
        self,
        video: str | None,
        question: str,
        model: str = "",
        compressor: str = "official",
        budget: float = 100.0,
        frames: int = 0,
        fps: float = 0.0,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 64,
        seed: int = 0,
        share_video: bool = False,
        request: gr.Request = None,
    ) -> Iterator[dict]:
        """Ask a video LLM about a video; streams {"answer": partial, "done": false}, then the full result.

        Args:
            video: the video file (gradio_client: handle_file(path)); None for a text-only question.
            question: what to ask.
            model: a registry name from the model menu, e.g. "slowfast-lite" ("" for the studio's default).
            compressor: "official", "uniform", "dynamic" (and "sf-llava" for Hugging Face models).
            budget: the global visual-token budget in % of the model's own (official) token count.
            frames: frames to sample (0: the model's default).
            fps: sample at this rate, capped at `frames` (0: spread the frames evenly).
            temperature: 0 for greedy decoding.
            top_p: nucleus sampling mass.
            max_new_tokens: answer length cap.
            seed: sampling seed.
            share_video: true if the uploaded video may go into the dataset with a rating of this answer (else
                only its sha256, duration and sampled times are kept).
        Returns:
            {answer, answer_id, model, video, frames: [{index, time_s}], token_plan: {compressor, budget_pct, clips,
            totals}, attention: {per_frame, per_word, source}, timings, done: true}; each of token_plan's clips has
            its time span, budget, used tokens, baseline and density, and under `langdc` the language expert's
            `caption` and `caption_tokens` (null otherwise).
        """
        settings = _settings(model, frames, fps, compressor, budget, temperature, top_p, max_new_tokens, seed)
        yield from self.program.ask(video, question, settings, self._who(request), bool(share_video))

    def rate(self, answer_id: str, thumbs: str = "", score: int | None = None, reason: str = "", annotator: str = "",
             request: gr.Request = None) -> dict:  # fmt: skip
        """Record your judgement of an answer you got from `ask`; returns {"record_id", "annotator"}.

        Args:
            answer_id: the answer_id that ask returned.
            thumbs: "up", "down" or "" (none).
            score: a 1-5 score, or None.
            reason: free text.
            annotator: leave empty: the record's annotator is who you are signed in as (any other name is refused).
        """
        return self.program.rate(answer_id, thumbs, score, reason, annotator, self._who(request))

    def compare(
        self,
        video: str | None,
        question: str,
        model_a: str = "",
        compressor_a: str = "official",
        budget_a: float = 100.0,
        model_b: str = "",
        compressor_b: str = "dynamic",
        budget_b: float = 50.0,
        frames: int = 0,
        fps: float = 0.0,
        max_new_tokens: int = 64,
        seed: int = 0,
        share_video: bool = False,
        request: gr.Request = None,
    ) -> dict:
        """Answer one question with two setups (greedy); returns {comparison_id, a, b}, each side as `ask` returns it.

        Args:
            video: the video file, or None for a text-only question.
            question: what both setups answer.
            model_a: setup A's model ("" for the studio's default).
            compressor_a: setup A's compressor.
            budget_a: setup A's budget in % of the official token count.
            model_b: setup B's model ("" for the studio's default).
            compressor_b: setup B's compressor.
            budget_b: setup B's budget in %.
            frames: frames to sample (0: the model's default).
            fps: sampling rate (0: spread evenly).
            max_new_tokens: answer length cap.
            seed: seed.
            share_video: true if the uploaded video may go into the dataset with the vote.
        """
        side_a = _settings(model_a, frames, fps, compressor_a, budget_a, 0.0, 1.0, max_new_tokens, seed)
        side_b = _settings(model_b, frames, fps, compressor_b, budget_b, 0.0, 1.0, max_new_tokens, seed)
        return self.program.compare(video, question, (side_a, side_b), self._who(request), bool(share_video))

    def vote(
        self, comparison_id: str, choice: str, reason: str = "", annotator: str = "", request: gr.Request = None
    ) -> dict:
        """Record which side of your `compare` result is better; returns {"record_id", "annotator"}.

        Args:
            comparison_id: the comparison_id that compare returned.
            choice: "a", "b", "tie" or "both_bad".
            reason: free text.
            annotator: leave empty: the record's annotator is who you are signed in as (any other name is refused).
        """
        return self.program.vote(comparison_id, choice, reason, annotator, self._who(request))

    def export(self, format: str = "dpo", request: gr.Request = None) -> str:
        """Export every record in one format and return the file (admins only).

        Args:
            format: "jsonl", "csv", "parquet", "dpo" (TRL DPO pairs) or "kto" (TRL KTO rows).
        """
        return self.program.export(format, self._who(request))

    def records(self, limit: int = 20, kind: str = "", request: gr.Request = None) -> list:
        """The newest records as JSON, newest first: your own (everyone's for admins).

        Args:
            limit: how many (1-1000).
            kind: "rating", "comparison" or "" for both.
        """
        return self.program.records(limit, kind, self._who(request))

    def campaign_next(self, campaign: str, request: gr.Request = None) -> dict:
        """The next item of a campaign for you to judge: {item_id, video, question, answers: [{slot, text}],
        done_by_me, total}; an error says when nothing is left for you.

        Args:
            campaign: the campaign's name.
        """
        return self.program.campaign_next(campaign, self._who(request))

    def campaign_judge(self, item_id: str, choice: str, reason: str = "", request: gr.Request = None) -> dict:
        """Record your judgement of the item /campaign_next handed you; returns {judgement_id, overshoot, annotator}.

        Args:
            item_id: the item_id from campaign_next.
            choice: "a", "b", "tie" or "both_bad" (a rating campaign: the score "1" to "5").
            reason: free text.
        """
        return self.program.campaign_judge(item_id, choice, reason, self._who(request))

    def _who(self, request: gr.Request | None) -> Identity:
        return identity_of(self.program.studio, request)


def _settings(model: str, frames: int, fps: float, compressor: str, budget: float, temperature: float, top_p: float,
              max_new_tokens: int, seed: int) -> Settings:  # fmt: skip
    model = model or default_model_name()
    num_frames = frames or (get_spec(model).defaults.num_frames if model in MODELS else 1)
    return Settings(model, num_frames, fps, compressor, budget, temperature, top_p, max_new_tokens, seed)


def register(studio: Studio) -> ProgramAPI:
    """Add the program endpoints to the current Blocks."""
    program = ProgramAPI(studio)
    endpoints = Endpoints(program)
    with gr.Group(visible=False):
        for fn, output, group in ((endpoints.ask, gr.JSON(), MODEL_GROUP), (endpoints.compare, gr.JSON(), MODEL_GROUP),
                                  (endpoints.export, gr.File(), EXPORT_GROUP)):  # fmt: skip
            gr.Button(visible=False).click(
                fn, _inputs_for(fn), output, api_name=fn.__name__, api_description=_described(fn), **group
            )
    for fn in (endpoints.rate, endpoints.vote, endpoints.records, endpoints.campaign_next, endpoints.campaign_judge):
        gr.api(fn, api_name=fn.__name__, api_description=_described(fn), **LIGHT)
    return program


def _described(fn) -> str:
    """The whole docstring (summary, then one line per parameter), so "Use via API" says what each one means."""
    return inspect.getdoc(fn) or ""


def _inputs_for(fn) -> list[Any]:
    """One hidden component per parameter of `fn`, holding its default (what a client gets when it leaves it out)."""
    components: list[Any] = []
    for name, parameter in inspect.signature(fn).parameters.items():
        default = None if parameter.default is inspect.Parameter.empty else parameter.default
        if name == "request":
            continue  # Gradio hands the request itself to the function
        if isinstance(default, bool):
            components.append(gr.Checkbox(value=default, label=name))
        elif name == "video":
            components.append(gr.File(type="filepath", label=name, file_types=["video"]))
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            components.append(gr.Number(value=default, label=name))
        else:
            components.append(gr.Textbox(value=default or "", label=name))
    return components
