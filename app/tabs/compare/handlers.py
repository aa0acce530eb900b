"""Handlers of the A/B compare tab: one question answered by two setups, shown blind as A and B, then one vote and a
reveal.

A setup is a model with its own sampling and token budget; the frame sampling and answer length are the chat's.
`ab_run` answers with both setups in a random order (a coin flip decides which is A) and streams both answers;
`ab_vote` records the judgement in the annotation store (`app/judgements.py`) and only then names the setups. A
round that was stopped half-way is dropped, because a round with a missing answer cannot be judged.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from app.access.identity import Identity
from app.data.preferences import compression_preferences
from app.judgements import judge_for, record_comparison
from app.running import (
    Progress,
    encode_clip,
    failure_message,
    load_named_model,
    no_progress,
    note_frames,
    relay_answer,
    stream_answer,
)
from app.session import ABRound, Session, Side
from app.settings import Settings, check_runnable, question_problem
from app.studio import REFUSALS, Studio
from app.text import escape_html, plain
from models.base import EncodeParams, GenerationParams, ModelUnavailableError

CHOICE_LABELS = {"a": "A is better", "b": "B is better", "tie": "a tie", "both_bad": "both are bad"}


@dataclass
class SideSetup:
    model: str
    compressor: str
    budget_pct: float
    temperature: float
    top_p: float


def ab_run(
    studio: Studio,
    session: Session,
    who: Identity,
    question: str,
    setups: tuple[SideSetup, SideSetup],
    shared: Settings,
    progress: Progress = no_progress,
    mode: str = "setups",
) -> Iterator[dict[str, Any]]:
    """Answer one question with two setups, shown as A and B in a random order; names stay hidden until the vote.

    mode "compression": both sides run setup 1's model with greedy decoding, so only the compression differs."""
    question = (question or "").strip()
    problem = question_problem(question, "Type the question both setups should answer.")
    if problem:
        yield {"warning": problem}
        return
    video = session.video
    if mode == "compression":
        if video is None:
            yield {"warning": "Comparing two compressions needs a video: load one in the Chat tab first."}
            return
        setups = tuple(SideSetup(setups[0].model, s.compressor, s.budget_pct, 0.0, 1.0) for s in setups)
        if (setups[0].compressor, float(setups[0].budget_pct)) == (setups[1].compressor, float(setups[1].budget_pct)):
            yield {"warning": "Both setups use the same compression; change the compressor or the budget of one."}
            return
    try:
        sides = [_side(number, setup, shared, with_video=video is not None) for number, setup in enumerate(setups, 1)]
        studio.admit(who, "chat")
    except (*REFUSALS, ModelUnavailableError) as error:
        yield {"warning": str(error)}
        return
    if mode == "compression":
        try:
            problem = identical_inputs(sides, video, progress)
        except Exception as error:  # a bad video or parameter: the studio keeps serving
            problem = failure_message(error, "A/B run")
        if problem:
            yield {"warning": problem}
            return
    random.SystemRandom().shuffle(sides)  # which setup is A is a coin flip, so the labels give nothing away
    session.ab = round_ = ABRound(question=question, video=video, sides=sides, mode=mode)
    yield {**ab_outputs(round_), "session": session}

    try:
        for position, side in enumerate(sides):
            model = load_named_model(side.model, progress)
            context = None
            if video is not None:
                context, _ = encode_clip(model, video, EncodeParams(**side.encode_params), progress)
                note_frames(side, context)
            progress(0.5 * position + 0.45, desc=f"Answer {'AB'[position]}…")
            params = GenerationParams(**side.generation_params)
            stream = stream_answer(model, context, [], question, params, want_attention=False)
            answer = yield from relay_answer(stream, side, lambda: ab_outputs(round_))
            side.answer = (answer.text if answer is not None else "") or side.answer.strip()
            side.done = True
        yield {**ab_outputs(round_), "info": "Both answers are in: which one is better?"}
    except Exception as error:  # a bad video or parameter, or anything a model raised: the studio keeps serving
        session.ab = None
        yield {**ab_outputs(None), "warning": failure_message(error, "A/B run")}
    finally:
        if session.ab is round_ and not round_.ready:
            session.ab = None  # stopped half-way: a round with a missing answer cannot be judged


def identical_inputs(sides: list[Side], video, progress: Progress) -> str:
    """Why two compressions cannot be compared ("" when they can): both encodings feed the model identical tokens
    (e.g. `official` and `dynamic` at 100% on a model whose official rule keeps every token), so people would be
    asked to judge two answers to the same input. The encodings land in the encode cache for the answers."""
    contexts = []
    for side in sides:
        model = load_named_model(side.model, progress)
        contexts.append(encode_clip(model, video, EncodeParams(**side.encode_params), progress)[0])
    first, second = (context.fingerprint for context in contexts)
    if not first or first != second:
        return ""
    names = [f"{s.encode_params['compressor']} at {s.encode_params['budget_pct']:g}%" for s in sides]
    return (
        f"{names[0]} and {names[1]} feed {sides[0].model} identical visual tokens "
        f"({contexts[0].stats.total_visual_tokens} of them), so there is nothing to judge: change the compressor or "
        "the budget of one."
    )


def _side(number: int, setup: SideSetup, shared: Settings, with_video: bool) -> Side:
    """Setup `number` with the chat's shared settings, validated; raises with a message naming the setup."""
    try:
        check_runnable(setup.model)
    except ModelUnavailableError as error:
        raise ModelUnavailableError(f"setup {number}: {error}") from None
    settings = Settings(
        model=setup.model,
        num_frames=shared.num_frames,
        fps=shared.fps,
        compressor=setup.compressor,
        budget_pct=setup.budget_pct,
        temperature=setup.temperature,
        top_p=setup.top_p,
        max_new_tokens=shared.max_new_tokens,
        seed=shared.seed,
    )
    encode = settings.encode_params().as_dict() if with_video else None
    return Side(number, setup.model, encode, settings.generation_params().as_dict())


def ab_outputs(round_: ABRound | None) -> dict[str, Any]:
    if round_ is None:
        return {"ab_chat_a": [], "ab_chat_b": [], "ab_reveal": "", "ab_votable": False}
    out: dict[str, Any] = {}
    for position, side in enumerate(round_.sides):
        messages = [{"role": "user", "content": escape_html(round_.question)}]
        if side.answer or side.done:
            messages.append({"role": "assistant", "content": escape_html(side.answer) or "*(empty answer)*"})
        else:
            messages.append(
                {"role": "assistant", "content": "", "metadata": {"title": "⏳ Waiting…", "status": "pending"}}
            )
        out["ab_chat_" + "ab"[position]] = messages
    if round_.voted:
        out["ab_reveal"] = _reveal_markdown(round_)
    elif round_.ready:
        out["ab_reveal"] = "**Which answer is better?** The setups are revealed after your vote."
    else:
        out["ab_reveal"] = "*Answering… setups stay hidden until you vote.*"
    out["ab_votable"] = round_.ready and not round_.voted
    return out


def _reveal_markdown(round_: ABRound) -> str:
    a, b = round_.sides
    return (
        f"You judged: **{CHOICE_LABELS[round_.voted]}**.  \n"
        f"**A** was setup {a.setup}: {plain(a.describe())}  \n"
        f"**B** was setup {b.setup}: {plain(b.describe())}"
    )


def ab_vote(
    studio: Studio,
    session: Session,
    who: Identity,
    choice: str,
    reason: str,
) -> dict[str, Any]:
    """Record the judgement of the open A/B round, then reveal which setup was which."""
    round_ = session.ab
    if round_ is None or not round_.ready:
        return {"warning": "Run a comparison first: both answers must be in before you vote."}
    if round_.voted:
        return {"warning": "This round is already judged; run a new comparison to vote again.", **ab_outputs(round_)}
    try:
        studio.admit(who, "vote")
        record_id = record_comparison(
            studio.store,
            round_,
            judge_for(session, who),
            choice=choice,
            reason=reason,
            extra={"setup_a": round_.sides[0].setup, "setup_b": round_.sides[1].setup, "blind": True},
        )
    except REFUSALS as error:
        return {"warning": f"Not saved: {error}."}
    round_.voted = choice
    total = studio.store.counts()["total"]
    out = ab_outputs(round_)
    out["ab_reveal"] += f"  \n✅ Saved (record `{record_id[:8]}`) · {total} judgements in the store."
    return {
        **out,
        "record_id": record_id,
        "session": session,
        "ab_reason": "",
        "ab_summary": summary_markdown(studio),
        "info": "Vote saved",
    }


def ab_last_question(session: Session) -> dict[str, Any]:
    turn = session.last_turn()
    if turn is None:
        return {"warning": "The chat has no question yet."}
    return {"ab_question": turn.question}


def ab_video_markdown(session: Session) -> str:
    if session.video is None:
        return "*No video loaded in the chat: the comparison is text-only. Load a clip in the Chat tab.*"
    return f"Comparing on **{plain(session.video.name, 60)}** ({session.video.describe()}), the chat's current video."


def summary_markdown(studio: Studio) -> str:
    """Per pair of compression settings: wins, ties and losses of the first against the second, with a 95% interval
    on its win rate among decisive votes (Wilson score interval)."""
    rows = compression_preferences(studio.store.records(kind="comparison"))
    if not rows:
        return "*No compression comparisons yet: pick **Same model, two compressions**, compare and vote.*"
    lines = [
        "| setting X | setting Y | X wins | ties | both bad | Y wins | X win rate (95% interval) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        rate = "—" if row.decisive == 0 else f"{row.win_rate:.0%} ({row.low:.0%}–{row.high:.0%}, n = {row.decisive})"
        lines.append(
            f"| {plain(row.x)} | {plain(row.y)} | {row.x_wins} | {row.ties} | {row.both_bad} | {row.y_wins} | {rate} |"
        )
    return "\n".join(lines)
