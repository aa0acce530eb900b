"""The Live tab's handlers: an online assistant that speaks up while the video plays, and the server-side replay.

The layout and events are in `app/tabs/live/layout.py`; this module holds the per-viewer state and what each
event does. `live_replay(video, threshold, fps)` is also a plain function.

How it runs: the browser plays the video and is the clock (the server never paces playback itself). While it
plays, a `gr.Timer` ticks every 0.5 s; each tick's `js=` hook reads the player's `currentTime`, and the server
decodes the 2 fps grid frames between the last ingested time and now (`models.online.frames.StreamReader`) and
feeds them to the viewer's session, streaming any remark into the chat (prefixed with its video time) and onto the
timeline plot under the player (score per frame, the bar 1 - θ, a marker per remark). Pause stops the timer after
a last ingest; a seek backwards rewinds the session to the new time, a jump ahead restarts its context there.
Questions are queued at the current video time and answered when the stream reaches it (at once when paused).
Remarks are rated with the chat's thumbs and stored with `AnnotationStore.record_rating` (video time in `extra`),
so they export like any answer. Per-viewer state lives server-side in a bounded registry keyed by a random id
kept in a `gr.State`; each entry holds one bounded `OnlineSession`.
"""

from __future__ import annotations

import html
import os
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import plotly.graph_objects as go

from app.access.identity import Identity
from app.data.store import AnnotationStore
from models.base import ModelUnavailableError, VideoError
from models.online.base import (
    DEFAULT_FPS,
    DEFAULT_THRESHOLD,
    AnswerStart,
    FrameDecision,
    OnlineParams,
    OnlineSession,
    OnlineVideoLLM,
    Remark,
    check_threshold,
    respond_bar,
)
from models.online.frames import StreamReader
from models.pipeline import video_sha256

VIDEO_ELEM_ID = "live-video"
CHAT_ELEM_ID = "live-chat"
TICK_S = 0.5
MAX_LIVE_STREAMS = 16  # viewers with a live session at once; the oldest idle one is closed beyond that
MAX_MESSAGES = 200  # chat entries kept per viewer
MAX_BACKLOG_FRAMES = 60  # more than this behind (30 s at 2 fps): jump to the playhead instead of catching up
JUMP_AHEAD_S = 1.5  # the player ran this much further than the wall clock since the last tick: a seek forward
REWIND_SLACK_S = 0.75  # currentTime this far behind the last ingested frame counts as a seek backwards
MAX_REPLAY_S = float(os.environ.get("STUDIO_LIVE_MAX_REPLAY_SECONDS", 20 * 60))
REMARK_COLOR = "#e8590c"
ANSWER_COLOR = "#3b5bdb"
SCORE_COLOR = "#15aabf"

# Reads the player's clock into the input at `index` (the other inputs pass through unchanged).
_CLOCK_JS = (
    "(...args) => {{ const v = document.querySelector('#{elem} video'); "
    "args[{index}] = v ? v.currentTime : 0; return args; }}"
)


def clock_js(index: int) -> str:
    return _CLOCK_JS.format(elem=VIDEO_ELEM_ID, index=index)


def video_time_label(time_s: float) -> str:
    """00:07.3: the video time remarks are prefixed with."""
    minutes, seconds = divmod(max(0.0, time_s), 60)
    return f"{int(minutes):02d}:{seconds:04.1f}"


# ----------------------------------------------------------------------------------------------------------------
# Per-viewer state (server-side)


@dataclass
class ChatEntry:
    role: str
    content: str
    remark: Remark | None = None  # what a rating records (None for questions and notes)
    question_id: int | None = None  # a question's placeholder answer, replaced when the answer arrives


@dataclass
class LiveStream:
    """One viewer's live session on one video."""

    path: str
    model: OnlineVideoLLM
    session: OnlineSession
    reader: StreamReader
    entries: list[ChatEntry] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    playhead_s: float = 0.0  # the player's time at the last tick
    playhead_wall_s: float | None = None  # perf_counter() at the last tick (None before the first)
    paused: bool = True
    ingested_until_s: float | None = None  # grid frames after this time are still to be fed (None: from the start)
    plotted_at_s: float = -1.0  # playhead when the timeline was last drawn

    @property
    def duration_s(self) -> float:
        return self.reader.info.duration_s

    def estimated_playhead(self) -> float:
        """Where the player is now: the last reported time, plus the wall time since while it plays."""
        if self.paused or self.playhead_wall_s is None:
            return self.playhead_s
        return min(self.duration_s, self.playhead_s + time.perf_counter() - self.playhead_wall_s)

    def close(self) -> None:
        self.session.close()
        self.reader.close()

    def add(self, entry: ChatEntry) -> None:
        self.entries.append(entry)
        if len(self.entries) > MAX_MESSAGES:
            del self.entries[: len(self.entries) - MAX_MESSAGES]

    def messages(self) -> list[dict[str, str]]:
        return [{"role": e.role, "content": e.content} for e in self.entries]


class LiveRegistry:
    """Live streams by viewer key: bounded, least recently used closed first."""

    def __init__(self, max_streams: int = MAX_LIVE_STREAMS):
        self.max_streams = max_streams
        self._streams: OrderedDict[str, LiveStream] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str | None) -> LiveStream | None:
        with self._lock:
            stream = self._streams.get(key or "")
            if stream is not None:
                self._streams.move_to_end(key)
            return stream

    def put(self, key: str, stream: LiveStream) -> None:
        evicted = []
        with self._lock:
            if key in self._streams:
                evicted.append(self._streams.pop(key))
            self._streams[key] = stream
            while len(self._streams) > self.max_streams:
                evicted.append(self._streams.popitem(last=False)[1])
        for old in evicted:
            old.close()

    def drop(self, key: str | None) -> None:
        with self._lock:
            stream = self._streams.pop(key or "", None)
        if stream is not None:
            stream.close()

    def __len__(self) -> int:
        return len(self._streams)


REGISTRY = LiveRegistry()


def default_model() -> OnlineVideoLLM:
    from models.online.lite import load_online

    return load_online()


# ----------------------------------------------------------------------------------------------------------------
# Pure builders


def timeline_figure(
    decisions: list[FrameDecision], remarks: list[Remark], threshold: float, duration_s: float, playhead_s: float
) -> go.Figure:
    """Score per ingested frame, the respond bar (1 - θ), a marker per remark/answer, and the playhead."""
    figure = go.Figure()
    if decisions:
        figure.add_trace(
            go.Scatter(
                x=[d.time_s for d in decisions],
                y=[d.score for d in decisions],
                mode="lines",
                line={"color": SCORE_COLOR, "width": 1.5},
                name="respond score",
                hovertemplate="%{x:.1f} s · score %{y:.2f}<extra></extra>",
            )
        )
    for kind, color, symbol in (("remark", REMARK_COLOR, "diamond"), ("answer", ANSWER_COLOR, "circle")):
        chosen = [r for r in remarks if r.kind == kind]
        if chosen:
            figure.add_trace(
                go.Scatter(
                    x=[r.time_s for r in chosen],
                    y=[min(1.0, r.score) for r in chosen],
                    mode="markers",
                    marker={"color": color, "size": 11, "symbol": symbol, "line": {"color": "white", "width": 1}},
                    name=f"{kind}s",
                    text=[_hover(r) for r in chosen],
                    hovertemplate="%{text}<extra></extra>",
                )
            )
    bar = respond_bar(threshold)
    figure.add_hline(y=bar, line={"color": "#495057", "dash": "dash", "width": 1})
    figure.add_annotation(
        x=0,
        xref="paper",
        y=bar,
        text=f"bar 1 − θ = {bar:.2f}",
        showarrow=False,
        yshift=9,
        xanchor="left",
        font={"size": 10, "color": "#495057"},
    )
    figure.add_vline(x=playhead_s, line={"color": "#adb5bd", "width": 1})
    figure.update_layout(
        template="plotly_white",
        height=210,
        margin={"l": 40, "r": 10, "t": 10, "b": 30},
        xaxis={"range": [0, max(duration_s, 1.0)], "title": {"text": "video time (s)", "standoff": 4}},
        yaxis={"range": [0, 1.12], "title": {"text": "score"}},
        legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right", "font": {"size": 10}},
        showlegend=bool(remarks),
    )
    if not decisions:
        figure.add_annotation(
            x=0.5,
            y=0.25,
            xref="paper",
            yref="paper",
            text="Press play: remarks appear here as the video runs",
            showarrow=False,
            font={"color": "#868e96"},
        )
    return figure


def _hover(remark: Remark) -> str:
    text = html.escape(remark.text if len(remark.text) < 120 else remark.text[:117] + "…")
    head = f"{video_time_label(remark.time_s)} · score {remark.score:.2f}"
    if remark.kind == "answer":
        return f"{head}<br>Q: {html.escape(remark.question[:80])}<br>{text}"
    return f"{head}<br>{text}"


def remark_message(remark: Remark) -> str:
    return f"**[{video_time_label(remark.time_s)}]** {remark.text}"


# ----------------------------------------------------------------------------------------------------------------
# Handlers (plain functions: testable without a browser)


class LiveController:
    """The Live tab's handlers over a registry of viewer streams and a model getter."""

    def __init__(
        self,
        get_model: Callable[[], OnlineVideoLLM] | None = None,
        store_getter: Callable[[], AnnotationStore] | None = None,
        registry: LiveRegistry | None = None,
    ):
        self.get_model = get_model or default_model
        self._store_getter = store_getter
        self._store: AnnotationStore | None = None
        self.registry = registry or REGISTRY

    def store(self) -> AnnotationStore:
        if self._store_getter is not None:
            return self._store_getter()
        if self._store is None:
            self._store = AnnotationStore()
        return self._store

    # -- loading

    def load(self, video: str | None, threshold: float, key: str | None) -> tuple[str, list, go.Figure, str]:
        """A new video (or none): a fresh stream for this viewer. Returns (key, messages, timeline, status)."""
        self.registry.drop(key)
        key = uuid.uuid4().hex
        if not video:
            return key, [], timeline_figure([], [], threshold, 1.0, 0.0), "Load a video, then press play."
        try:
            reader = StreamReader(video, fps=DEFAULT_FPS)
        except VideoError as error:
            raise gr.Error(str(error)) from error
        try:
            model = self.get_model()
        except ModelUnavailableError as error:
            reader.close()
            raise gr.Error(str(error)) from error
        session = model.start_session(OnlineParams(threshold=check_threshold(threshold), fps=DEFAULT_FPS))
        stream = LiveStream(path=str(video), model=model, session=session, reader=reader)
        session.playhead = stream.estimated_playhead
        self.registry.put(key, stream)
        info = reader.info
        status = (
            f"Ready: {info.duration_s:.1f} s at {info.fps:.0f} fps. Press play; the assistant looks at "
            f"{DEFAULT_FPS:g} frames per second and speaks when a frame's score passes the bar 1 − θ."
        )
        return key, [], timeline_figure([], [], threshold, info.duration_s, 0.0), status

    def _stream(self, key: str | None) -> LiveStream:
        stream = self.registry.get(key)
        if stream is None:
            raise gr.Error("Load a video in the Live tab first (or load it again: the live session expired).")
        return stream

    # -- ticking

    @staticmethod
    def _in_one_thread(updates: Iterator[Any]) -> Iterator[Any]:
        """Run a handler's generator to the end on one worker thread and pass its updates on.

        Gradio may resume a sync generator on a different pool thread at every step, but the generators below hold
        locks across their yields (the stream's, the session's, SmolLM's): a lock taken on one thread and released
        on another fails, or blocks the next step forever. Here the locks are taken and released on one thread.
        """
        items: queue.Queue = queue.Queue()
        done = object()

        def run() -> None:
            try:
                for item in updates:
                    items.put(item)
            except BaseException as error:  # handed to the caller's thread and raised there
                items.put(_Failure(error))
            finally:
                items.put(done)

        threading.Thread(target=run, name="live-handler", daemon=True).start()
        while (item := items.get()) is not done:
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def tick(self, key: str | None, time_s: float | None, threshold: float) -> Iterator[tuple[Any, Any, Any]]:
        """Ingest every grid frame up to the player's time; yields (messages, timeline, status) as they change."""
        yield from self._in_one_thread(self._tick(key, time_s, threshold))

    def _tick(self, key: str | None, time_s: float | None, threshold: float) -> Iterator[tuple[Any, Any, Any]]:
        stream = self.registry.get(key)
        if stream is None:
            yield gr.skip(), gr.skip(), gr.skip()
            return
        with stream.lock:
            stream.session.threshold = check_threshold(threshold)
            now = min(max(0.0, float(time_s or 0.0)), stream.duration_s)
            note = self._handle_seek(stream, now)
            stream.playhead_s, stream.playhead_wall_s = now, time.perf_counter()
            if note:
                stream.add(ChatEntry("assistant", note))
            changed = bool(note)
            targets = stream.reader.grid_between(stream.ingested_until_s, now)
            if len(targets):
                pixels, frame_times = stream.reader.read(targets)
                stream.ingested_until_s = float(targets[-1])
                events = stream.session.feed_many(pixels, frame_times)
                for update in self._drain(stream, events):
                    changed = True
                    yield update
            for update in self._drain(stream, stream.session.answer_due(now)):
                changed = True
                yield update
            redraw = changed or abs(now - stream.plotted_at_s) >= 2.0
            yield (
                stream.messages() if changed else gr.skip(),
                self._figure(stream) if redraw else gr.skip(),
                self._status(stream),
            )

    def _handle_seek(self, stream: LiveStream, now: float) -> str:
        """A seek backwards rewinds the session; a seek forward (the player ran ahead of the wall clock) restarts
        its context at the playhead. Falling behind while playing is not a seek: those frames are still ingested
        (the fast path is cheap; late remarks are written without the LLM), up to MAX_BACKLOG_FRAMES."""
        position = stream.ingested_until_s
        if position is not None and now < position - REWIND_SLACK_S:
            note = f"⏪ *Rewound to {video_time_label(now)}: the commentary restarts from there.*"
        else:
            ran = now - stream.playhead_s
            allowed = JUMP_AHEAD_S
            if stream.playhead_wall_s is not None and not stream.paused:
                allowed += time.perf_counter() - stream.playhead_wall_s
            if ran <= allowed and len(stream.reader.grid_between(position, now)) <= MAX_BACKLOG_FRAMES:
                return ""
            note = f"⏩ *Jumped to {video_time_label(now)}.*"
        # Start again with the frame on screen now (the last grid frame before the playhead), forgetting it and
        # everything after it, so the timeline never shows a remark twice.
        shown = stream.reader.grid_between(None, now)
        restart = float(shown[-1]) if len(shown) else 0.0
        stream.session.rewind(restart)
        stream.ingested_until_s = float(shown[-2]) if len(shown) >= 2 else None
        return note

    def play(self, key: str | None) -> gr.Timer:
        stream = self.registry.get(key)
        if stream is not None:
            with stream.lock:
                stream.paused = False
                stream.playhead_wall_s = time.perf_counter() if stream.playhead_wall_s is not None else None
        return gr.Timer(active=True)

    def pause(self, key: str | None) -> gr.Timer:
        stream = self.registry.get(key)
        if stream is not None:
            stream.paused = True
        return gr.Timer(active=False)

    def _drain(self, stream: LiveStream, events: Iterator[Any]) -> Iterator[tuple[Any, Any, Any]]:
        """Turn session events into chat entries, yielding while a remark or answer streams in."""
        current: ChatEntry | None = None
        last_yield = 0.0
        for event in events:
            if isinstance(event, FrameDecision):
                continue
            if isinstance(event, AnswerStart):
                current = self._placeholder(stream, event.question_id)
            elif isinstance(event, str):
                if current is None:
                    current = ChatEntry("assistant", "")
                    stream.add(current)
                current.content += event
                if time.perf_counter() - last_yield > 0.15:
                    last_yield = time.perf_counter()
                    yield stream.messages(), gr.skip(), gr.skip()
            elif isinstance(event, Remark):
                if current is None:
                    current = ChatEntry("assistant", "")
                    stream.add(current)
                current.remark = event
                current.content = remark_message(event)
                current = None
                yield stream.messages(), self._figure(stream), self._status(stream)

    @staticmethod
    def _placeholder(stream: LiveStream, question_id: int) -> ChatEntry:
        """The chat entry a question's answer is written into (its "waiting" placeholder, if still shown)."""
        for entry in stream.entries:
            if entry.question_id == question_id and entry.remark is None:
                entry.content = ""
                return entry
        entry = ChatEntry("assistant", "", question_id=question_id)
        stream.add(entry)
        return entry

    def _figure(self, stream: LiveStream) -> go.Figure:
        session = stream.session
        stream.plotted_at_s = stream.playhead_s
        return timeline_figure(
            list(session.decisions), list(session.remarks), session.threshold, stream.duration_s, stream.playhead_s
        )

    def _status(self, stream: LiveStream) -> str:
        session = stream.session
        last = session.decisions[-1] if session.decisions else None
        parts = [f"▶ {video_time_label(stream.playhead_s)} / {video_time_label(stream.duration_s)}"]
        parts.append(f"{session.frames_seen} frames ingested")
        recent = list(session.fast_path_s)[-20:]
        if recent:
            cost = sorted(recent)[len(recent) // 2]  # the median: one slow first call should not dominate
            parts.append(
                f"fast path {cost * 1000:.0f} ms/frame ({cost / (1 / stream.reader.fps):.0%} of the interval)"
            )
        if last is not None:
            parts.append(f"last score {last.score:.2f} (bar {respond_bar(session.threshold):.2f})")
        remarks = sum(1 for r in session.remarks if r.kind == "remark")
        parts.append(f"{remarks} remark{'s' if remarks != 1 else ''}")
        if session.pending_questions:
            parts.append(f"{len(session.pending_questions)} question(s) waiting")
        return " · ".join(parts)

    # -- controls

    def clear_chat(self, key: str | None) -> None:
        """The chat's clear button: forget the shown entries too, so ratings keep pointing at the right remark."""
        stream = self.registry.get(key)
        if stream is not None:
            with stream.lock:
                stream.entries.clear()

    def set_threshold(self, key: str | None, threshold: float) -> Any:
        stream = self.registry.get(key)
        if stream is None:
            return gr.skip()
        with stream.lock:
            stream.session.threshold = check_threshold(threshold)
            return self._figure(stream)

    def ask(
        self, key: str | None, question: str, time_s: float | None, threshold: float
    ) -> Iterator[tuple[Any, Any, Any, Any]]:
        """Queue a question at the player's time; answer it now if the stream already reached that point."""
        yield from self._in_one_thread(self._ask(key, question, time_s, threshold))

    def _ask(
        self, key: str | None, question: str, time_s: float | None, threshold: float
    ) -> Iterator[tuple[Any, Any, Any, Any]]:
        stream = self._stream(key)
        text = (question or "").strip()
        if not text:
            raise gr.Error("Type a question first.")
        with stream.lock:
            now = min(max(0.0, float(time_s or 0.0)), stream.duration_s)
            try:
                question_id = stream.session.ask(text, now)
            except ValueError as error:
                raise gr.Error(str(error)) from error
            stream.add(ChatEntry("user", f"[{video_time_label(now)}] {text}"))
            waiting = f"⏳ *Waiting for the video to reach {video_time_label(now)}…*"
            stream.add(ChatEntry("assistant", waiting, question_id=question_id))
            yield stream.messages(), "", gr.skip(), gr.skip()
        for messages, figure, status in self._tick(key, now, threshold):
            yield messages, gr.skip(), figure, status

    def rate(self, key: str | None, liked: Any, index: Any, who: Identity, keep_video: Callable[[str], bool]) -> str:
        """Store `who`'s thumbs up/down on a remark or answer, with its video time in `extra`. The video file goes
        with the record only when `keep_video(sha256)` says it may (an example clip, the local owner's video)."""
        stream = self._stream(key)
        position = index[0] if isinstance(index, (list, tuple)) else index
        with stream.lock:
            if not isinstance(position, int) or not 0 <= position < len(stream.entries):
                raise gr.Error("That message is no longer in the live chat.")
            entry = stream.entries[position]
            remark = entry.remark
            if remark is None:
                raise gr.Error("Only the assistant's remarks and answers can be rated.")
            earlier = [{"role": e.role, "content": e.content} for e in stream.entries[:position] if e.content.strip()][
                -20:
            ]
            session = stream.session
            question = (
                remark.question
                if remark.kind == "answer"
                else f"Live commentary: what is new at {video_time_label(remark.time_s)}?"
            )
            thumbs = liked if isinstance(liked, bool) else str(liked).lower() in ("like", "true", "1")
            fps = stream.reader.info.fps
            sha = video_sha256(stream.path)
            kept = keep_video(sha)
            record_id = self.store().record_rating(
                model=f"{stream.model.name} (live)",
                question=question,
                answer=remark.text,
                conversation=earlier,
                video_path=stream.path if kept else None,
                video_sha256=None if kept else sha,
                video_duration_s=stream.duration_s,
                frame_indices=[round(remark.time_s * fps)],
                frame_timestamps_s=[remark.time_s],
                encode_params={"mode": "live", "fps": session.params.fps, "threshold": session.threshold},
                generation_params=session.params.generation.as_dict(),
                thumbs=thumbs,
                annotator=who.label,
                identity=who.key,
                extra={
                    "live": True,
                    "kind": remark.kind,
                    "video_time_s": remark.time_s,
                    "score": remark.score,
                    "threshold": session.threshold,
                    "asked_at_s": remark.asked_at_s,
                    "detail": {k: v for k, v in remark.detail.items() if k in ("now", "before", "main_object")},
                },
            )
        verdict = "👍" if thumbs else "👎"
        return (
            f"{verdict} Saved your rating of the remark at {video_time_label(remark.time_s)} (record {record_id[:8]})."
        )

    def replay(self, video: str | None, threshold: float = DEFAULT_THRESHOLD, fps: float = DEFAULT_FPS) -> list[dict]:
        return live_replay(video, threshold, fps, model=self.get_model())


@dataclass
class _Failure:
    error: BaseException


def live_replay(
    video: str | None,
    threshold: float = DEFAULT_THRESHOLD,
    fps: float = DEFAULT_FPS,
    model: OnlineVideoLLM | None = None,
    remark_text: str = "llm",
) -> list[dict[str, Any]]:
    """Process a whole video server-side and return its remarks: [{"time_s", "score", "text", "kind"}, ...].

    threshold: θ in [0, 1], higher = more talkative (a frame speaks when its score > 1 - θ); fps: frames per second
    looked at (0.25-8). remark_text "template" skips the language model (fast: where would it speak?).
    """
    if not video:
        raise gr.Error("Give a video file to replay.")
    try:
        params = OnlineParams(threshold=check_threshold(threshold), fps=float(fps), remark_text=remark_text)
    except (TypeError, ValueError) as error:
        raise gr.Error(str(error)) from error
    if not 0.25 <= params.fps <= 8:
        raise gr.Error(f"fps must lie between 0.25 and 8 (got {fps}).")
    try:
        with StreamReader(video, fps=params.fps) as reader:
            duration = reader.info.duration_s
    except VideoError as error:
        raise gr.Error(str(error)) from error
    if duration > MAX_REPLAY_S:
        raise gr.Error(
            f"The video is {duration / 60:.0f} min long; a server-side replay takes at most "
            f"{MAX_REPLAY_S / 60:.0f} min (STUDIO_LIVE_MAX_REPLAY_SECONDS)."
        )
    model = model or default_model()
    remarks = model.replay(str(video), params)
    return [r.as_dict() for r in remarks]
