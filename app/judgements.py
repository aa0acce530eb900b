"""Judgements into the annotation store: a rated chat `Turn` and a voted A/B `ABRound` become records, one function
per kind, called alike by the chat's rating panel and thumbs, the A/B tab and the program API, so a record holds
the same fields whichever surface made it (who judged, the video kept by hash, the frames, the parameters, the
compression).

The video file itself is kept only when its uploader agreed to share it (the consent box beside the terms; an
example clip and the local owner's own videos always are); otherwise the record keeps the video's sha256 and
duration and the sampled timestamps, and no export ever carries the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.access.identity import Identity
from app.data.store import AnnotationStore
from app.session import ABRound, Session, Turn, VideoRef


@dataclass
class Judge:
    """Who judges and what they agreed to: the identity a record is stored under, whether their uploaded video
    may be kept with it, and the videos already kept for them (sha256 -> stored path)."""

    who: Identity
    share_video: bool
    kept_videos: dict[str, str]


def judge_for(session: Session, who: Identity) -> Judge:
    """A chat or A/B judgement's judge: the session's consent and the videos it already kept."""
    return Judge(who, session.share_video, session.kept_videos)


def video_fields(store: AnnotationStore, video: VideoRef | None, judge: Judge) -> dict[str, Any]:
    """The video fields of a judgement: its path inside the data dir (copied there, by hash, on its first judgement)
    when it may be kept, its sha256 and its duration; all None for a text-only one."""
    if video is None:
        return {"video_path": None, "video_sha256": None, "video_duration_s": None}
    if not (judge.share_video or video.example or judge.who.kind == "owner"):
        return {"video_path": None, "video_sha256": video.sha256, "video_duration_s": video.duration_s}
    kept_videos = judge.kept_videos
    stored = kept_videos.get(video.sha256)
    if stored is None:
        stored, sha = store.keep_video(video.path)
        if sha != video.sha256:
            raise ValueError(f"{video.name} changed on disk since it was loaded; load it again")
        kept_videos[video.sha256] = stored
    return {"video_path": stored, "video_sha256": video.sha256, "video_duration_s": video.duration_s}


def record_rating(
    store: AnnotationStore,
    turn: Turn,
    judge: Judge,
    *,
    thumbs: int | None,
    score: int | None,
    reason: str,
    extra: dict[str, Any],
) -> str:
    """Store one rating of an answered turn; returns the record id. `extra` adds where it came from."""
    return store.record_rating(
        model=turn.model,
        question=turn.question,
        answer=turn.answer,
        conversation=turn.history,
        **video_fields(store, turn.video, judge),
        frame_indices=turn.frame_indices,
        frame_timestamps_s=turn.frame_timestamps_s,
        encode_params=turn.encode_params,
        generation_params=turn.generation_params,
        thumbs=thumbs,
        score=score,
        reason=reason or "",
        annotator=judge.who.label,
        identity=judge.who.key,
        extra={
            **extra,
            "status": turn.status,
            "video_name": turn.video.name if turn.video else None,
            "timings_s": {name: round(float(value), 4) for name, value in turn.timings_s.items()},
            "prompt_tokens": turn.prompt_tokens,
            "new_tokens": turn.new_tokens,
            "compression": turn.compression,
        },
    )


def record_comparison(
    store: AnnotationStore,
    round_: ABRound,
    judge: Judge,
    *,
    choice: str,
    reason: str,
    extra: dict[str, Any],
) -> str:
    """Store the judgement of a two-sided round (A is `round_.sides[0]`); returns the record id."""
    a, b = round_.sides
    return store.record_comparison(
        model_a=a.model,
        model_b=b.model,
        question=round_.question,
        answer_a=a.answer,
        answer_b=b.answer,
        choice=choice,
        conversation=[],
        **video_fields(store, round_.video, judge),
        frame_indices_a=a.frame_indices,
        frame_timestamps_s_a=a.frame_timestamps_s,
        frame_indices_b=b.frame_indices,
        frame_timestamps_s_b=b.frame_timestamps_s,
        encode_params_a=a.encode_params,
        encode_params_b=b.encode_params,
        generation_params_a=a.generation_params,
        generation_params_b=b.generation_params,
        reason=reason or "",
        annotator=judge.who.label,
        identity=judge.who.key,
        extra={
            **extra,
            "round_id": round_.id,
            "mode": round_.mode,
            "compression_a": a.compression,
            "compression_b": b.compression,
        },
    )
