"""Handlers of the Chat tab: loading a video, asking about it with the answer streamed in, and reworking the
conversation.

The conversation lives in the `Session` as turns and notes; `render_chat` draws the Chatbot's messages from it
(never the other way round), and `message_owner` maps a message the person clicked or edited back to its entry.
`load_video` probes, samples and encodes a clip as soon as it is picked, so its frames and token budget show before
the first question; `chat` streams an answer and ends with the views of that answer (`app/tabs/chat/views.py`);
`regenerate`, `undo`, `edit_message` and `clear_chat` rework the conversation.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from app.access.identity import Identity
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
from app.session import Note, Session, Turn, VideoRef, View
from app.settings import (
    Settings,
    check_runnable,
    question_problem,
)
from app.studio import REFUSALS, Example, Studio
from app.tabs.chat.views import view_from, view_outputs
from app.text import escape_html, plain, short
from models.base import ModelUnavailableError, VideoError, VisualContext
from models.pipeline import video_sha256
from models.units import plural
from models.video import claim_note, probe_video

GENERIC_QUESTIONS = ["What is shown in the video?", "What happens first, and what comes after?", "Is there a cut?"]


# ----------------------------------------------------------------------------------------------------------------
# The chat as messages, rendered from the session


def render_chat(session: Session) -> list[dict[str, Any]]:
    """Gradio 6 messages for the Chatbot. Notes become collapsible "thought" messages that are never rated."""
    return [message for message, _owner in _messages_with_owners(session)]


def _messages_with_owners(session: Session) -> list[tuple[dict[str, Any], tuple[str, Turn | Note]]]:
    rendered: list[tuple[dict[str, Any], tuple[str, Turn | Note]]] = []
    for entry in session.entries:
        if isinstance(entry, Note):
            rendered.append(
                ({"role": "assistant", "content": entry.text, "metadata": {"title": entry.title}}, ("note", entry))
            )
            continue
        rendered.append(({"role": "user", "content": escape_html(entry.question)}, ("question", entry)))
        if entry.status == "pending":
            message = {
                "role": "assistant",
                "content": "",
                "metadata": {"title": _pending_title(entry), "status": "pending"},
            }
            rendered.append((message, ("note", entry)))
        elif entry.status == "error":
            message = {
                "role": "assistant",
                "content": escape_html(entry.error),
                "metadata": {"title": "⚠️ No answer"},
            }
            rendered.append((message, ("note", entry)))
        else:
            text = escape_html(entry.answer)
            if entry.status == "stopped":
                text = (text + " " if text else "") + "*(stopped)*"
            rendered.append(({"role": "assistant", "content": text}, ("answer", entry)))
    return rendered


def _pending_title(turn: Turn) -> str:
    if turn.video is None:
        return "⏳ Thinking…"
    return f"⏳ Looking at the frames of {_title_text(turn.video.name)}…"


def _title_text(text: str) -> str:
    """Text for a message title, which the Chatbot may render as HTML: markup characters dropped."""
    return re.sub(r"[<>&\"'`]", "", short(text, 60))


def message_owner(session: Session, index: Any) -> tuple[str, Turn | Note] | None:
    """Which entry a Chatbot message index (from a like / edit event) belongs to, or None if out of range."""
    if isinstance(index, (list, tuple)):
        index = index[0] if index else None
    if not isinstance(index, int) or isinstance(index, bool):
        return None
    rendered = _messages_with_owners(session)
    if not 0 <= index < len(rendered):
        return None
    return rendered[index][1]


def rate_target_update(session: Session, select: Turn | None = None) -> dict[str, Any]:
    """Choices of the "answer to rate" dropdown: every answered turn, the newest (or `select`) chosen."""
    choices = []
    for number, turn in enumerate(session.turns, start=1):
        if turn.answered:
            label = f"#{number} · {short(turn.question, 40)} → {short(turn.answer, 40)}"
            choices.append((label, number))
    value = None
    if select is not None and select.answered:
        value = session.turn_number(select)
    elif choices:
        value = choices[-1][1]
    return gr.update(choices=choices, value=value)


def chat_outputs(session: Session) -> dict[str, Any]:
    return {"chatbot": render_chat(session), "session": session}


def video_status_markdown(session: Session, context: VisualContext | None = None) -> str:
    video = session.video
    if video is None:
        return "*No video: questions are answered as text-only turns. Upload a clip or pick an example.*"
    line = f"**{plain(video.name, 60)}** · {video.describe()}"
    if context is not None:
        times = context.timestamps_s
        span = f"t = {times[0]:.1f}–{times[-1]:.1f} s" if times else ""
        line += (
            f"  \n{plural(context.num_frames, 'frame')} sampled ({span}) · {plural(len(context.stats.clips), 'clip')}"
            f" · {context.stats.total_visual_tokens} visual tokens"
        )
    if video.container_note:
        line += f"  \n⚠️ {video.container_note}"
    return line


def answer_stats_markdown(session: Session, turn: Turn, context: VisualContext | None, cached: bool) -> str:
    number = session.turn_number(turn)
    timings = turn.timings_s
    parts = [f"Answer #{number}"]
    if "first_token" in timings:
        parts.append(f"first token {timings['first_token']:.2f} s")
    if "generate" in timings:
        parts.append(f"{turn.new_tokens} tokens in {timings['generate']:.1f} s")
    if context is not None:
        stats = context.stats
        times = context.timestamps_s
        parts.append(f"{context.num_frames} frames ({times[0]:.1f}–{times[-1]:.1f} s)" if times else "no frames")
        ratio = f" ({stats.compression_ratio:.1f}× compression)" if stats.native_tokens else ""
        parts.append(f"{stats.total_visual_tokens} visual tokens in {len(stats.clips)} clips{ratio}")
        parts.append("frames from cache" if cached else f"frames + encode {timings.get('frames_and_encode', 0):.1f} s")
    else:
        parts.append("text-only turn")
    return "<small>" + " · ".join(parts) + "</small>"


# ----------------------------------------------------------------------------------------------------------------
# Loading a video


def load_video(
    studio: Studio,
    session: Session,
    who: Identity,
    video_path: str | None,
    settings: Settings,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """A video was uploaded, picked from the examples or removed. Probes it, samples and encodes it (so the frames
    and the token budget show before the first question) and says in the chat that the next turn uses it. An
    uploaded file becomes `who`'s: nobody else can fetch it by its URL (`app/access/uploads.py`)."""
    previous = session.video
    had_turns = bool(session.turns)
    if not video_path:
        session.video = None
        session.view = None
        if previous is not None:
            session.entries.append(Note("🎞 Video removed", "Questions from here on are text-only."))
        return _video_outputs(session, video_status_markdown(session))

    name = Path(video_path).name
    try:
        progress(0.0, desc=f"Checking {name}…")
        info = probe_video(video_path)
        sha = video_sha256(video_path)
    except (VideoError, ValueError, OSError) as error:
        return _video_failed(session, error, previous)
    example = studio.example_for(sha)
    if example is None:
        studio.uploads.claim(video_path, who)
    same_video = previous is not None and previous.sha256 == sha and previous.path == str(video_path)
    session.video = VideoRef(
        path=str(video_path),
        name=name,
        sha256=sha,
        duration_s=float(info.duration_s),
        width=int(info.width),
        height=int(info.height),
        fps=float(info.fps),
        container_note=claim_note(info) or "",
        title=example.title if example else "",
        example=example is not None,
        questions=list(example.questions) if example else [],
    )
    warning: dict[str, str] = {}
    context = None
    try:
        if not same_video:
            studio.admit(who, "chat")  # encoding a new video is a model call
        model = load_named_model(settings.model, progress)
        context, _cached = encode_clip(model, session.video, settings.encode_params(), progress)
    except VideoError as error:
        return _video_failed(session, error, previous)
    except (*REFUSALS, ModelUnavailableError) as error:
        warning["warning"] = f"The video is loaded, but it could not be encoded yet: {error}"
    except Exception as error:  # keep serving whatever went wrong inside a model
        warning["warning"] = failure_message(error, f"encoding {name}")
    session.view = view_from(context) if context is not None else None

    if not same_video:  # the same file again (e.g. the settings changed) only refreshes the views
        session.entries.append(_now_watching(session.video, context, example, previous is not None or had_turns))
    return _video_outputs(session, video_status_markdown(session, context), **warning)


def _now_watching(video: VideoRef, context: VisualContext | None, example: Example | None, switched: bool) -> Note:
    title = f"🎞 Now watching: {short(example.title, 80)}" if example else "🎞 Now watching a new video"
    lines = [f"**{plain(video.name, 60)}** · {video.describe()}."]
    if context is not None:
        times = context.timestamps_s
        lines.append(
            f"{plural(context.num_frames, 'frame')} sampled at t = {times[0]:.1f}–{times[-1]:.1f} s, cut into "
            f"{plural(len(context.stats.clips), 'clip')}."
        )
    if video.container_note:
        lines.append(video.container_note)
    if switched:
        lines.append(
            "New questions are about this video; the model starts a fresh conversation (earlier turns stay above)."
        )
    else:
        lines.append("Ask anything about it below.")
    return Note(title, " ".join(lines))


def _video_failed(session: Session, error: BaseException, previous: VideoRef | None) -> dict[str, Any]:
    session.video = None
    session.view = None
    message = str(error)
    tail = " The previous video is no longer used either:" if previous is not None else ""
    session.entries.append(
        Note("⚠️ Video not usable", f"{plain(message)}{tail} Questions are text-only until a video loads.")
    )
    return _video_outputs(session, f"⚠️ {plain(message, 300)}", warning=message)


def _video_outputs(session: Session, video_status: str, **messages: str) -> dict[str, Any]:
    """What loading (or removing) a video updates: the chat, every view, the suggested questions, the status."""
    if session.video is None:
        suggestions = gr.update(samples=[], visible=False)
    else:
        questions = session.video.questions or GENERIC_QUESTIONS
        suggestions = gr.update(samples=[[q] for q in questions], visible=True)
    return {
        **messages,
        **chat_outputs(session),
        **view_outputs(session.view),
        "suggestions": suggestions,
        "video_status": video_status,
    }


# ----------------------------------------------------------------------------------------------------------------
# Asking


def chat(
    studio: Studio,
    session: Session,
    who: Identity,
    question: str,
    settings: Settings,
    progress: Progress = no_progress,
) -> Iterator[dict[str, Any]]:
    """Answer a question about the session's video (or a text-only question without one), streaming the answer.

    Yields the chat after the question appears, after each text chunk, and once more at the end with the
    compression and attention views of this answer. Refused, with the wait, when `who` asked too often.
    """
    refused = _refusal(studio, who)
    if refused:
        yield {"warning": refused, **chat_outputs(session)}
        return
    yield from _answer(session, question, settings, progress)


def _refusal(studio: Studio, who: Identity) -> str | None:
    """Why `who` may not run a model now (rate limit), or None; checked before the conversation changes."""
    try:
        studio.admit(who, "chat")
    except REFUSALS as error:
        return str(error)
    return None


def _answer(
    session: Session, question: str, settings: Settings, progress: Progress, seed_offset: int = 0
) -> Iterator[dict[str, Any]]:
    question = (question or "").strip()
    problem = question_problem(question, "Type a question first, or click one of the suggested questions.")
    if problem:
        yield {"warning": problem, **chat_outputs(session)}
        return
    try:
        encode_params = settings.encode_params() if session.video is not None else None
        generation_params = settings.generation_params(seed_offset)
        check_runnable(settings.model)
    except (ValueError, ModelUnavailableError) as error:
        yield {"warning": str(error), **chat_outputs(session)}
        return

    video = session.video
    turn = Turn(
        question=question,
        model=settings.model,
        generation_params=generation_params.as_dict(),
        video=video,
        encode_params=encode_params.as_dict() if encode_params else None,
        history=session.history_for(video),
    )
    session.entries.append(turn)
    yield {**chat_outputs(session), "question": ""}

    try:
        model = load_named_model(settings.model, progress)
        context, cached = None, False
        if video is not None:
            started = time.perf_counter()
            context, cached = encode_clip(model, video, encode_params, progress)
            turn.timings_s["frames_and_encode"] = time.perf_counter() - started
            note_frames(turn, context)
        progress(0.95, desc="Answering…")
        turn.status = "streaming"
        stream = stream_answer(model, context, turn.history, question, generation_params)
        answer = yield from relay_answer(stream, turn, lambda: chat_outputs(session))
        if answer is None:
            raise RuntimeError("the model's stream ended without an answer")
        turn.answer = answer.text or turn.answer.strip()
        turn.status = "done"
        turn.timings_s.update(answer.timings_s)
        turn.prompt_tokens, turn.new_tokens = answer.prompt_tokens, answer.new_tokens
        if context is not None:
            session.view = view_from(context, answer, question, turn.id)
        out = {
            **chat_outputs(session),
            **view_outputs(session.view if context is not None else None),
            "rate_target": rate_target_update(session),
            "answer_stats": answer_stats_markdown(session, turn, context, cached),
        }
        if not turn.answer:
            out["info"] = "The model gave an empty answer; try rephrasing, or raise max new tokens."
        yield out
    except Exception as error:  # a bad video or parameter, or anything a model raised: the studio keeps serving
        turn.status, turn.error = "error", failure_message(error, "answering")
        yield {"warning": turn.error, **chat_outputs(session)}
    finally:
        if turn.status in ("pending", "streaming"):  # closed early: the person pressed Stop
            turn.status = "stopped"
            turn.answer = turn.answer.strip()


def regenerate(
    studio: Studio, session: Session, who: Identity, settings: Settings, progress: Progress = no_progress
) -> Iterator[dict[str, Any]]:
    """Answer the last question again with the current settings (a new seed, so sampling gives a new answer)."""
    turn = session.last_turn()
    if turn is None or turn.status in ("pending", "streaming"):
        yield {"warning": "There is no finished answer to regenerate yet.", **chat_outputs(session)}
        return
    refused = _refusal(studio, who)
    if refused:
        yield {"warning": refused, **chat_outputs(session)}
        return
    session.remove_from(turn)
    session.regenerations += 1
    yield from _answer(session, turn.question, settings, progress, seed_offset=session.regenerations)


def undo(session: Session) -> dict[str, Any]:
    """Remove the last turn and put its question back in the box, to edit and send again."""
    turn = session.last_turn()
    if turn is None:
        return {"warning": "Nothing to undo.", **chat_outputs(session)}
    session.remove_from(turn)
    return {**chat_outputs(session), "question": turn.question, "rate_target": rate_target_update(session)}


def edit_message(
    studio: Studio,
    session: Session,
    who: Identity,
    event: dict[str, Any] | None,
    settings: Settings,
    progress: Progress = no_progress,
) -> Iterator[dict[str, Any]]:
    """The person edited a question in the chat: the last question is answered again as edited."""
    owner = message_owner(session, (event or {}).get("index"))
    new_text = _message_text((event or {}).get("value"))
    last = session.last_turn()
    if owner is None or owner[0] != "question" or owner[1] is not last:
        yield {
            "warning": "Only the last question can be edited; use Undo to go back further.",
            **chat_outputs(session),
        }
        return
    if not new_text.strip():
        yield {"warning": "The edited question is empty.", **chat_outputs(session)}
        return
    refused = _refusal(studio, who)
    if refused:
        yield {"warning": refused, **chat_outputs(session)}
        return
    session.remove_from(last)
    yield from _answer(session, new_text, settings, progress)


def _message_text(value: Any) -> str:
    """Text of a Chatbot message value as an edit event sends it (a string, or content blocks)."""
    if isinstance(value, str):
        return html.unescape(value)  # the displayed question was HTML-escaped
    if isinstance(value, dict):
        return _message_text(value.get("text", value.get("content", "")))
    if isinstance(value, list):
        return " ".join(_message_text(part) for part in value).strip()
    return ""


def clear_chat(session: Session) -> dict[str, Any]:
    """Forget the conversation; keep the video, the model and the settings."""
    session.entries.clear()
    if session.view is not None:
        session.view = View(session.view.thumbnails, session.view.timestamps_s, session.view.stats)
    return {
        **chat_outputs(session),
        **view_outputs(session.view),
        "rate_target": rate_target_update(session),
        "answer_stats": "",
    }
