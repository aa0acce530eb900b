"""Ratings of the chat's answers: the rating panel (thumbs, a 1-5 score, a reason) and the Chatbot's own thumbs.

`rate_answer` records one judgement of an answered turn in the annotation store, with everything needed to train
on it later: the conversation before the question, the video (copied into the data directory on its first
judgement), the frames the model saw and the parameters it ran with. `like` is the Chatbot's thumbs gesture: a
click on an answer is recorded at once as such a rating; clicks on questions or notes are refused.
"""

from __future__ import annotations

from typing import Any

from app.access.identity import Identity
from app.judgements import judge_for, record_rating
from app.session import Session
from app.studio import REFUSALS, Studio
from app.tabs.chat.handlers import message_owner, rate_target_update

THUMBS = {"👍 good": 1, "👎 bad": -1, "no thumbs": None}


def rate_answer(
    studio: Studio,
    session: Session,
    turn_number: Any,
    thumbs: Any,
    score: Any,
    reason: str,
    who: Identity,
    source: str = "panel",
) -> dict[str, Any]:
    """Record one rating of an answer (thumbs and/or a 1-5 score and/or a reason) in the store."""
    turn = None
    if turn_number not in (None, ""):
        try:
            turn = session.turn_by_number(int(turn_number))
        except (TypeError, ValueError):
            turn = None
    else:
        answered = [t for t in session.turns if t.answered]
        turn = answered[-1] if answered else None
    if turn is None or not turn.answered:
        return {"warning": "There is no answer to rate yet: ask a question first."}
    thumbs_value = THUMBS.get(thumbs, thumbs) if isinstance(thumbs, str) else thumbs
    if thumbs_value not in (None, 1, -1, True, False):
        return {"warning": "Thumbs must be 👍, 👎 or none."}
    score_value = None if score in (None, "", 0, "0") else score
    try:
        if score_value is not None:
            score_value = int(score_value)
        studio.admit(who, "vote")
        record_id = record_rating(
            studio.store,
            turn,
            judge_for(session, who),
            thumbs=thumbs_value,
            score=score_value,
            reason=reason,
            extra={"source": source, "turn": session.turn_number(turn), "turn_id": turn.id},
        )
    except REFUSALS as error:
        return {"warning": f"Not saved: {error}."}
    number = session.turn_number(turn)
    what = []
    if thumbs_value is not None:
        what.append("👍" if thumbs_value in (1, True) else "👎")
    if score_value is not None:
        what.append(f"{score_value}/5")
    if (reason or "").strip():
        what.append("a reason")
    total = studio.store.counts()["total"]
    status = (
        f"✅ Saved {' + '.join(what)} for answer #{number} (record `{record_id[:8]}`). "
        f"{total} judgement{'s' if total != 1 else ''} in the store."
    )
    return {
        "rating_status": status,
        "info": f"Rating saved for answer #{number}",
        "record_id": record_id,
        "rate_target": rate_target_update(session, select=turn),
        "session": session,
        "score": None,
        "reason": "",
        "thumbs": "no thumbs",
    }


def like(studio: Studio, session: Session, event: dict[str, Any] | None, who: Identity) -> dict[str, Any]:
    """The Chatbot's thumbs: recorded at once as a rating of that answer (FastChat style: a click is a vote)."""
    event = event or {}
    owner = message_owner(session, event.get("index"))
    if owner is None or owner[0] != "answer":
        return {"warning": "Only the model's answers can be rated."}
    liked = event.get("liked")
    if liked not in (True, False):
        return {"info": "Thumbs removed on screen; the earlier vote stays recorded (votes are never rewritten)."}
    turn = owner[1]
    return rate_answer(
        studio,
        session,
        session.turn_number(turn),
        1 if liked else -1,
        None,
        "",
        who,
        source="like",
    )
