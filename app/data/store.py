"""The annotation store: every judgement a person makes (a rating of one answer, or an A/B comparison of two) is one
row in a SQLite database, written once and never rewritten (FastChat style), so that a vote is a self-contained
record of who judged what they were shown: the video (kept in the data directory under its sha256), the sampled
frames, the model(s) and their parameters, the conversation, the answer(s) and the judgement. The database runs in
WAL mode with `synchronous=FULL`, so a vote is on disk before `record_*` returns; exports (app/data/exports.py) are
derived from it and never the other way round. Plain Python: no gradio, no torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

DATA_DIR_ENV = "STUDIO_DATA_DIR"
DB_FILENAME = "annotations.sqlite3"
VIDEOS_DIRNAME = "videos"
SCHEMA_VERSION = 2  # 2: who judged (identity_kind, identity_id) and the audit log of admin actions

# Caps on what a person (or a client of the public API) can make us store. Answers of the models shipped here stay
# well below MAX_TEXT_CHARS; a longer text is refused with a message rather than silently cut.
MAX_TEXT_CHARS = 10_000
MAX_NAME_CHARS = 100
MAX_CONVERSATION_MESSAGES = 200
MAX_FRAMES = 10_000
MAX_JSON_CHARS = 20_000

KINDS = ("rating", "comparison")
CHOICES = ("a", "b", "tie", "both_bad")
ROLES = ("system", "user", "assistant")
_KEPT_VIDEO_PATH = re.compile(rf"{VIDEOS_DIRNAME}/[0-9a-f]{{64}}(\.[a-z0-9]{{1,10}})?")

# Column order of a record, as returned by `records()` and used by every export. Rating rows fill the unsuffixed
# model/answer columns, comparison rows the `_a` / `_b` ones; the other group is null. Each side of a comparison
# has its own frames because two models (or two token budgets) may sample the video differently.
SIDE_FIELDS = ("model", "encode_params", "generation_params", "frame_indices", "frame_timestamps_s", "answer")
COLUMNS: tuple[str, ...] = (
    "id",
    "created_at",
    "kind",
    "annotator",
    "identity_kind",
    "identity_id",
    "video_path",
    "video_sha256",
    "video_duration_s",
    "conversation",
    "question",
    *SIDE_FIELDS,
    *(f"{name}_a" for name in SIDE_FIELDS),
    *(f"{name}_b" for name in SIDE_FIELDS),
    "thumbs",
    "score",
    "choice",
    "reason",
    "extra",
)
# Stored as JSON text in SQLite, returned as Python lists / dicts.
JSON_COLUMNS = frozenset(
    {"conversation", "extra"} | {f"{name}{suffix}" for name in SIDE_FIELDS[1:5] for suffix in ("", "_a", "_b")}
)

_SIDE_COLUMNS_SQL = "\n".join(f"    {name}{suffix} TEXT," for suffix in ("", "_a", "_b") for name in SIDE_FIELDS)
_SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS judgements (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('rating', 'comparison')),
    annotator TEXT NOT NULL,
    identity_kind TEXT,
    identity_id TEXT,
    video_path TEXT,
    video_sha256 TEXT,
    video_duration_s REAL,
    conversation TEXT NOT NULL,
    question TEXT NOT NULL,
{_SIDE_COLUMNS_SQL}
    thumbs INTEGER CHECK (thumbs IS NULL OR thumbs IN (-1, 1)),
    score INTEGER CHECK (score IS NULL OR score BETWEEN 1 AND 5),
    choice TEXT CHECK (choice IS NULL OR choice IN ('a', 'b', 'tie', 'both_bad')),
    reason TEXT NOT NULL,
    extra TEXT NOT NULL,
    CHECK (
        (kind = 'rating' AND model IS NOT NULL AND answer IS NOT NULL AND choice IS NULL
            AND model_a IS NULL AND model_b IS NULL)
        OR (kind = 'comparison' AND model_a IS NOT NULL AND model_b IS NOT NULL AND answer_a IS NOT NULL
            AND answer_b IS NOT NULL AND choice IS NOT NULL AND thumbs IS NULL AND score IS NULL AND model IS NULL)
    )
);
CREATE INDEX IF NOT EXISTS judgements_created_at ON judgements (created_at);
CREATE INDEX IF NOT EXISTS judgements_kind ON judgements (kind);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
-- A judgement is a historical fact: fixing one means recording a new one.
CREATE TRIGGER IF NOT EXISTS judgements_are_write_once BEFORE UPDATE ON judgements
BEGIN
    SELECT RAISE(ABORT, 'judgements are write-once: record a new judgement instead');
END;
"""


# Where a kept video that is not on this disk can be fetched from, per data directory (the Hub sync registers one
# after a restore, whose videos come down lazily). Keyed by directory because the app opens its store lazily.
VideoSource = Callable[[str], "Path | None"]
_VIDEO_SOURCES: dict[Path, VideoSource] = {}


def register_video_source(data_dir: str | Path, fetch: VideoSource | None) -> None:
    """Let `AnnotationStore.ensure_video` of stores on `data_dir` call `fetch(stored_path)` for a video that is
    missing locally; `fetch` puts it at `store.video_file(stored_path)` and returns that path, or None. None
    unregisters."""
    key = Path(data_dir).expanduser().resolve()
    if fetch is None:
        _VIDEO_SOURCES.pop(key, None)
    else:
        _VIDEO_SOURCES[key] = fetch


def default_data_dir() -> Path:
    """The data directory: `$STUDIO_DATA_DIR` if set, else `./data` (absolute, resolved against the cwd)."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data").expanduser().resolve()


def _check_annotator(name: str | None) -> str:
    """Who judged, as the caller names them (the app passes the signed-in identity's label): trimmed, length-capped,
    "anonymous" when empty."""
    return _check_text("annotator", name or "", MAX_NAME_CHARS).strip() or "anonymous"


class AnnotationStore:
    """Judgements in `<data_dir>/annotations.sqlite3`, referenced videos in `<data_dir>/videos/<sha256><ext>`.

    Thread-safe: one connection guarded by a lock (SQLite serializes writers anyway); other processes on the same
    directory are handled by WAL plus `busy_timeout`. Stored video paths are relative to the data directory
    (`videos/<sha256>.mp4`) so the directory can be moved or synced as a whole.
    """

    def __init__(self, data_dir: str | Path | None = None, *, busy_timeout_ms: int = 15_000) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve() if data_dir is not None else default_data_dir()
        self.videos_dir = self.data_dir / VIDEOS_DIRNAME
        self.db_path = self.data_dir / DB_FILENAME
        self.videos_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a write takes the lock up front instead of
        # failing half-way with "database is locked" when another process writes at the same moment.
        self._conn = sqlite3.connect(
            self.db_path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"could not put {self.db_path} in WAL mode (got {mode!r}); is it on a network drive?")
        # WAL + NORMAL already survives a killed process (the WAL is written before COMMIT returns, the OS keeps
        # it); FULL also fsyncs the WAL on every commit, so an acknowledged vote survives a power cut or a VM
        # being stopped. One fsync per human click costs milliseconds.
        self._conn.execute("PRAGMA synchronous = FULL")
        with self._lock:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.db_path} was written by a newer version of the studio (schema {version}, "
                    f"this one reads {SCHEMA_VERSION})"
                )
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                _add_identity_columns(self._conn)
                for statement in _split_sql(_SCHEMA_SQL):
                    self._conn.execute(statement)
                self._conn.execute(
                    "CREATE INDEX IF NOT EXISTS judgements_identity ON judgements (identity_kind, identity_id)"
                )
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AnnotationStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- videos ---------------------------------------------------------------------------------------------------

    def keep_video(self, path: str | Path) -> tuple[str, str]:
        """Copy a video into `<data_dir>/videos/<sha256><ext>` unless a file with that content is already there.

        Returns (stored_path relative to the data dir, sha256). The copy goes through a temp file in the same
        folder and an atomic rename, so a crash never leaves a half-written video under its final name.
        """
        source = Path(path)
        if not source.is_file():
            raise ValueError(f"cannot keep the video {source.name!r}: the file does not exist")
        sha256 = _file_sha256(source)
        existing = self._find_kept(sha256)
        if existing is not None:
            return existing, sha256
        # The extension comes from an uploaded file name: keep it only if it looks like one.
        suffix = source.suffix.lower()
        if not re.fullmatch(r"\.[a-z0-9]{1,10}", suffix):
            suffix = ""
        final = self.videos_dir / f"{sha256}{suffix}"
        handle, temp_name = tempfile.mkstemp(dir=self.videos_dir, prefix=".incoming-", suffix=suffix)
        try:
            digest = hashlib.sha256()
            with os.fdopen(handle, "wb") as out, open(source, "rb") as inp:
                while chunk := inp.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != sha256:
                raise ValueError(f"the video {source.name!r} changed while it was being copied; try again")
            os.replace(temp_name, final)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(self.videos_dir)
        return f"{VIDEOS_DIRNAME}/{final.name}", sha256

    def video_file(self, stored_path: str) -> Path:
        """Absolute path of a stored video (`record["video_path"]`)."""
        resolved = (self.data_dir / stored_path).resolve()
        if resolved.parent != self.videos_dir.resolve():
            raise ValueError(f"{stored_path!r} is not a video kept in {self.videos_dir}")
        return resolved

    def ensure_video(self, stored_path: str) -> Path | None:
        """The local file of a stored video, fetched first from the registered source (the Hub after a restore)
        when it is not on this disk; None when it is nowhere to be had."""
        path = self.video_file(stored_path)
        if path.is_file():
            return path
        fetch = _VIDEO_SOURCES.get(self.data_dir)
        if fetch is None:
            return None
        fetched = fetch(stored_path)
        return path if fetched is not None and path.is_file() else None

    def _find_kept(self, sha256: str) -> str | None:
        for candidate in sorted(self.videos_dir.glob(f"{sha256}*")):
            if candidate.is_file() and candidate.name.split(".", 1)[0] == sha256:
                return f"{VIDEOS_DIRNAME}/{candidate.name}"
        return None

    def _resolve_video(self, video_path: str | Path | None, video_sha256: str | None) -> tuple[str | None, str | None]:
        """A record's video reference: kept in our videos folder (copied there now if it is not yet), or only its
        sha256 when the uploader did not agree to share the file."""
        if video_path is None or str(video_path) == "":
            if video_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", str(video_sha256)):
                raise ValueError(f"video_sha256 {str(video_sha256)[:80]!r} is not a SHA-256 hex digest")
            return None, video_sha256
        candidate = Path(video_path)
        in_store = candidate if candidate.is_absolute() else self.data_dir / candidate
        try:
            is_kept = (
                in_store.resolve().parent == self.videos_dir.resolve()
                and re.fullmatch(r"[0-9a-f]{64}", in_store.name.split(".", 1)[0]) is not None
                and in_store.is_file()
            )
        except OSError:
            is_kept = False
        if is_kept:
            stored, sha256 = f"{VIDEOS_DIRNAME}/{in_store.name}", in_store.name.split(".", 1)[0]
        else:
            stored, sha256 = self.keep_video(candidate)
        if video_sha256 is not None and video_sha256 != sha256:
            raise ValueError(
                f"video_sha256 {video_sha256[:12]}… does not match the kept video {sha256[:12]}…: "
                "the file changed since it was encoded"
            )
        return stored, sha256

    # -- writing --------------------------------------------------------------------------------------------------

    def record_rating(
        self,
        *,
        model: str,
        question: str,
        answer: str,
        conversation: Sequence[Mapping[str, Any]] = (),
        video_path: str | Path | None = None,
        video_sha256: str | None = None,
        video_duration_s: float | None = None,
        frame_indices: Iterable[int] = (),
        frame_timestamps_s: Iterable[float] = (),
        encode_params: Any = None,
        generation_params: Any = None,
        thumbs: int | bool | None = None,
        score: int | None = None,
        reason: str = "",
        annotator: str = "",
        identity: tuple[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Record a judgement of one answer: thumbs (+1 / -1, or True / False as Gradio's like event gives it),
        a 1–5 score and/or a free-text reason (at least one of the three). Returns the record id once the row is
        durably on disk.

        conversation: the turns before the judged question, as {"role", "content"} messages with text content
        (a trailing user message equal to `question` is dropped, so Gradio's history can be passed as is).
        identity: (kind, id) of who judged, e.g. ("account", "ann1"); `records(identity=...)` finds them again.
        """
        thumbs_value = _check_thumbs(thumbs)
        score_value = _check_score(score)
        reason_text = _check_text("reason", reason, MAX_TEXT_CHARS)
        if thumbs_value is None and score_value is None and not reason_text.strip():
            raise ValueError("a rating needs a thumbs up/down, a 1–5 score or a reason")
        indices, timestamps = _check_frames("", frame_indices, frame_timestamps_s)
        row = self._common_row("rating", question, conversation, video_path, video_sha256, video_duration_s)
        row.update(
            model=_check_name("model", model),
            encode_params=_to_json("encode_params", encode_params),
            generation_params=_to_json("generation_params", generation_params),
            frame_indices=json.dumps(indices),
            frame_timestamps_s=json.dumps(timestamps),
            answer=_check_text("answer", answer, MAX_TEXT_CHARS),
            thumbs=thumbs_value,
            score=score_value,
            reason=reason_text,
            annotator=_check_annotator(annotator),
            **_identity_fields(identity),
            extra=_to_json("extra", extra, default={}),
        )
        return self._insert(row)

    def record_comparison(
        self,
        *,
        model_a: str,
        model_b: str,
        question: str,
        answer_a: str,
        answer_b: str,
        choice: str,
        conversation: Sequence[Mapping[str, Any]] = (),
        video_path: str | Path | None = None,
        video_sha256: str | None = None,
        video_duration_s: float | None = None,
        frame_indices_a: Iterable[int] = (),
        frame_timestamps_s_a: Iterable[float] = (),
        frame_indices_b: Iterable[int] | None = None,
        frame_timestamps_s_b: Iterable[float] | None = None,
        encode_params_a: Any = None,
        encode_params_b: Any = None,
        generation_params_a: Any = None,
        generation_params_b: Any = None,
        reason: str = "",
        annotator: str = "",
        identity: tuple[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Record an A/B judgement: choice is "a", "b", "tie" or "both_bad". Side B's frames default to side A's
        (same sampling). Returns the record id once the row is durably on disk."""
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)} (got {choice!r})")
        indices_a, timestamps_a = _check_frames("_a", frame_indices_a, frame_timestamps_s_a)
        if frame_indices_b is None and frame_timestamps_s_b is None:
            indices_b, timestamps_b = indices_a, timestamps_a
        else:
            indices_b, timestamps_b = _check_frames("_b", frame_indices_b or (), frame_timestamps_s_b or ())
        row = self._common_row("comparison", question, conversation, video_path, video_sha256, video_duration_s)
        row.update(
            model_a=_check_name("model_a", model_a),
            model_b=_check_name("model_b", model_b),
            encode_params_a=_to_json("encode_params_a", encode_params_a),
            encode_params_b=_to_json("encode_params_b", encode_params_b),
            generation_params_a=_to_json("generation_params_a", generation_params_a),
            generation_params_b=_to_json("generation_params_b", generation_params_b),
            frame_indices_a=json.dumps(indices_a),
            frame_timestamps_s_a=json.dumps(timestamps_a),
            frame_indices_b=json.dumps(indices_b),
            frame_timestamps_s_b=json.dumps(timestamps_b),
            answer_a=_check_text("answer_a", answer_a, MAX_TEXT_CHARS),
            answer_b=_check_text("answer_b", answer_b, MAX_TEXT_CHARS),
            choice=choice,
            reason=_check_text("reason", reason, MAX_TEXT_CHARS),
            annotator=_check_annotator(annotator),
            **_identity_fields(identity),
            extra=_to_json("extra", extra, default={}),
        )
        return self._insert(row)

    def _common_row(
        self,
        kind: str,
        question: str,
        conversation: Sequence[Mapping[str, Any]],
        video_path: str | Path | None,
        video_sha256: str | None,
        video_duration_s: float | None,
    ) -> dict[str, Any]:
        question_text = _check_text("question", question, MAX_TEXT_CHARS)
        if not question_text.strip():
            raise ValueError("the question is empty: there is nothing to judge an answer against")
        messages = _check_conversation(conversation)
        # Gradio's chat history already holds the judged question as its last user message.
        if messages and messages[-1] == {"role": "user", "content": question_text}:
            messages = messages[:-1]
        if video_duration_s is not None:
            video_duration_s = float(video_duration_s)
            if not math.isfinite(video_duration_s) or video_duration_s < 0:
                raise ValueError(f"video_duration_s must be a non-negative number (got {video_duration_s})")
        stored_path, sha256 = self._resolve_video(video_path, video_sha256)
        return {
            "id": uuid.uuid4().hex,
            "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "kind": kind,
            "video_path": stored_path,
            "video_sha256": sha256,
            "video_duration_s": video_duration_s,
            "conversation": json.dumps(messages, ensure_ascii=False),
            "question": question_text,
        }

    def _insert(self, row: dict[str, Any]) -> str:
        columns = [name for name in COLUMNS if name in row]
        sql = f"INSERT INTO judgements ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(sql, [row[name] for name in columns])
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return row["id"]

    def import_records(self, records: Iterable[Mapping[str, Any]]) -> tuple[int, list[str]]:
        """Add records made elsewhere (a restore from the Hub) exactly as they are, ids and timestamps included.

        Idempotent by id: a record whose id is already here is left alone (judgements are write-once). A record
        the schema refuses is skipped and named in the returned problems. Returns (records added, problems). Videos
        are not copied: a record's `video_path` may name a file that only `ensure_video` brings here later.
        """
        rows, problems = [], []
        for record in records:
            try:
                rows.append(_import_row(record))
            except (KeyError, TypeError, ValueError) as error:
                problems.append(f"record {str(record.get('id', '?'))[:12]}: {error}")
        sql = (
            f"INSERT INTO judgements ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)}) "
            "ON CONFLICT(id) DO NOTHING"
        )
        added = 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    try:
                        added += self._conn.execute(sql, [row[name] for name in COLUMNS]).rowcount
                    except sqlite3.IntegrityError as error:  # a CHECK the row breaks: skip it, keep the others
                        problems.append(f"record {row['id'][:12]}: {error}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return added, problems

    # -- reading --------------------------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """{"rating": n, "comparison": n, "total": n}."""
        with self._lock:
            rows = self._conn.execute("SELECT kind, COUNT(*) FROM judgements GROUP BY kind").fetchall()
        counts = dict.fromkeys(KINDS, 0)
        counts.update({kind: int(n) for kind, n in rows})
        counts["total"] = sum(counts[kind] for kind in KINDS)
        return counts

    def tally(self) -> dict[str, Any]:
        """Counts grouped by judgement without loading the records (cheap enough to refresh after every vote):
        {"groups": [(kind, thumbs, score, choice, count), ...], "videos": n, "annotators": n}."""
        with self._lock:
            groups = self._conn.execute(
                "SELECT kind, thumbs, score, choice, COUNT(*) FROM judgements GROUP BY kind, thumbs, score, choice"
            ).fetchall()
            videos, annotators = self._conn.execute(
                "SELECT COUNT(DISTINCT video_sha256), COUNT(DISTINCT annotator) FROM judgements"
            ).fetchone()
        return {"groups": [tuple(group) for group in groups], "videos": int(videos), "annotators": int(annotators)}

    def records(
        self,
        kind: str | None = None,
        *,
        newest_first: bool = False,
        limit: int | None = None,
        identity: tuple[str, str] | None = None,
    ) -> list[dict]:
        """Every judgement as a dict keyed by `COLUMNS` (JSON columns decoded), oldest first by default; with
        `identity` only the ones that (kind, id) made."""
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)} or None (got {kind!r})")
        sql = f"SELECT {', '.join(COLUMNS)} FROM judgements"
        where, params = [], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if identity is not None:
            where.append("identity_kind = ? AND identity_id = ?")
            params += list(identity)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY rowid DESC" if newest_first else " ORDER BY rowid"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [_decode_row(row) for row in rows]

    # -- the audit log of admin actions --------------------------------------------------------------------------

    def audit(self, actor: tuple[str, str], action: str, detail: Mapping[str, Any] | None = None) -> None:
        """Note an admin action (an export, a push to the Hub, a deletion): who, what, when; never rewritten."""
        row = (
            datetime.now(UTC).isoformat(timespec="microseconds"),
            _check_name("actor kind", actor[0]),
            _check_name("actor id", actor[1]),
            _check_name("action", action),
            _to_json("detail", detail, default={}),
        )
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT INTO audit (created_at, actor_kind, actor_id, action, detail) VALUES (?, ?, ?, ?, ?)", row
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest admin actions first: {created_at, actor_kind, actor_id, action, detail}."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT created_at, actor_kind, actor_id, action, detail FROM audit ORDER BY seq DESC LIMIT ?",
                (int(limit),),
            ).fetchall()
        keys = ("created_at", "actor_kind", "actor_id", "action", "detail")
        return [{**dict(zip(keys, row)), "detail": json.loads(row[4])} for row in rows]

    def get(self, record_id: str) -> dict | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM judgements WHERE id = ?", (record_id,)
            ).fetchone()
        return None if row is None else _decode_row(row)

    def to_dataframe(self, kind: str | None = None) -> pd.DataFrame:
        """All records as a DataFrame with `COLUMNS` (lists and dicts kept as Python objects)."""
        return pd.DataFrame(self.records(kind), columns=list(COLUMNS))

    def integrity_check(self) -> str:
        """SQLite's own verdict on the database file ("ok" when healthy)."""
        with self._lock:
            return "\n".join(row[0] for row in self._conn.execute("PRAGMA integrity_check").fetchall())

    def backup_to(self, destination: str | Path) -> Path:
        """A consistent copy of the database (SQLite online backup), e.g. for syncing while votes keep coming."""
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        temp = destination.with_name(destination.name + ".tmp")
        temp.unlink(missing_ok=True)
        target = sqlite3.connect(temp)
        try:
            with self._lock:
                self._conn.backup(target)
        finally:
            target.close()
        os.replace(temp, destination)
        return destination


# ----------------------------------------------------------------------------------------------------------------
# Validation at the boundary: messages say which field is wrong and what is allowed.


def _check_text(field: str, value: Any, max_chars: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be text (got {type(value).__name__})")
    if len(value) > max_chars:
        raise ValueError(f"{field} is too long: {len(value):,} characters, the limit is {max_chars:,}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"{field} contains characters that are not valid Unicode text") from error
    return value


def _check_name(field: str, value: Any) -> str:
    text = _check_text(field, value, MAX_NAME_CHARS).strip()
    if not text:
        raise ValueError(f"{field} is empty")
    return text


def _identity_fields(identity: tuple[str, str] | None) -> dict[str, str | None]:
    if identity is None:
        return {"identity_kind": None, "identity_id": None}
    kind, ident = identity
    return {"identity_kind": _check_name("identity kind", kind), "identity_id": _check_name("identity id", ident)}


def _check_thumbs(thumbs: Any) -> int | None:
    if thumbs is None:
        return None
    if isinstance(thumbs, bool):  # Gradio's LikeData.liked
        return 1 if thumbs else -1
    if isinstance(thumbs, int) and thumbs in (1, -1):
        return int(thumbs)
    raise ValueError(f"thumbs must be +1 (up), -1 (down) or empty (got {thumbs!r})")


def _check_score(score: Any) -> int | None:
    if score is None:
        return None
    if isinstance(score, float) and score.is_integer():
        score = int(score)
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ValueError(f"score must be a whole number from 1 to 5 or empty (got {score!r})")
    return score


def _check_conversation(conversation: Sequence[Mapping[str, Any]] | None) -> list[dict[str, str]]:
    if conversation is None:
        return []
    if isinstance(conversation, (str, bytes)) or not isinstance(conversation, Sequence):
        raise ValueError("conversation must be a list of {'role', 'content'} messages")
    if len(conversation) > MAX_CONVERSATION_MESSAGES:
        raise ValueError(f"conversation has {len(conversation)} messages, the limit is {MAX_CONVERSATION_MESSAGES}")
    messages = []
    for position, message in enumerate(conversation):
        if not isinstance(message, Mapping):
            raise ValueError(f"conversation[{position}] must be a {{'role', 'content'}} message")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"conversation[{position}].role must be one of {', '.join(ROLES)} (got {role!r})")
        content = message.get("content")
        if not isinstance(content, str):
            raise ValueError(
                f"conversation[{position}].content must be text (got {type(content).__name__}); "
                "leave file/video messages out of the recorded conversation"
            )
        messages.append({"role": role, "content": _check_text(f"conversation[{position}]", content, MAX_TEXT_CHARS)})
    return messages


def _check_frames(suffix: str, indices: Iterable[int], timestamps: Iterable[float]) -> tuple[list[int], list[float]]:
    try:
        index_list = [int(i) for i in indices]
        time_list = [float(t) for t in timestamps]
    except (TypeError, ValueError) as error:
        raise ValueError(f"frame_indices{suffix} / frame_timestamps_s{suffix} must be lists of numbers") from error
    if len(index_list) != len(time_list):
        raise ValueError(
            f"frame_indices{suffix} has {len(index_list)} entries but frame_timestamps_s{suffix} has {len(time_list)}"
        )
    if len(index_list) > MAX_FRAMES:
        raise ValueError(f"{len(index_list)} frames is more than the {MAX_FRAMES} a record can hold")
    if any(i < 0 for i in index_list) or any(not math.isfinite(t) or t < 0 for t in time_list):
        raise ValueError(f"frame_indices{suffix} and frame_timestamps_s{suffix} must be non-negative")
    return index_list, time_list


def _plain(value: Any) -> Any:
    """Parameters may arrive as the dataclasses of models/base.py (EncodeParams, GenerationParams) or mappings."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _to_json(field: str, value: Any, default: Any = None) -> str | None:
    value = _plain(value)
    if value is None:
        return None if default is None else json.dumps(default)
    if not isinstance(value, Mapping):
        raise ValueError(f"{field} must be a mapping of names to values (got {type(value).__name__})")
    try:
        text = json.dumps(dict(value), ensure_ascii=False, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{field} must hold plain JSON values (numbers, text, lists, mappings): {error}") from error
    if len(text) > MAX_JSON_CHARS:
        raise ValueError(f"{field} is too large: {len(text):,} characters of JSON, the limit is {MAX_JSON_CHARS:,}")
    return text


def _import_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record from elsewhere as a row for the judgements table. Only what the schema cannot check is checked
    here: the id and a video path that must stay inside the videos folder."""
    row = {name: record.get(name) for name in COLUMNS}
    if not isinstance(row["id"], str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", row["id"]):
        raise ValueError(f"id {row['id']!r} is not a record id")
    video_path = row["video_path"]
    if video_path is not None and not _KEPT_VIDEO_PATH.fullmatch(str(video_path)):
        raise ValueError(f"video path {video_path!r} is not a kept video")
    for name in JSON_COLUMNS:
        if row[name] is not None and not isinstance(row[name], str):
            row[name] = json.dumps(row[name], ensure_ascii=False, sort_keys=name != "conversation")
    row["conversation"] = row["conversation"] or "[]"
    row["extra"] = row["extra"] or "{}"
    row["reason"] = row["reason"] or ""
    return row


def _decode_row(row: Sequence[Any]) -> dict[str, Any]:
    record = dict(zip(COLUMNS, row, strict=True))
    for name in JSON_COLUMNS:
        if record[name] is not None:
            record[name] = json.loads(record[name])
    return record


# ----------------------------------------------------------------------------------------------------------------
# Files


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _add_identity_columns(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2: a store made before identities keeps every record; its records have no identity (NULL),
    so only admins see them. ADD COLUMN leaves existing rows untouched (the write-once trigger does not fire)."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(judgements)").fetchall()}
    if not present:
        return  # a new store: the schema script creates the table with the columns
    for column in ("identity_kind", "identity_id"):
        if column not in present:
            conn.execute(f"ALTER TABLE judgements ADD COLUMN {column} TEXT")


def _split_sql(script: str) -> list[str]:
    """Statements of the schema script, so they can run inside one explicit transaction (executescript would
    commit first). The trigger body holds a semicolon, so let SQLite say where a statement is complete."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements
