"""Where campaigns live: their own tables in the annotation store's SQLite file (`<data_dir>/annotations.sqlite3`,
opened the way `app.data.store.AnnotationStore` opens it: WAL, `synchronous=FULL`, a busy timeout and `BEGIN
IMMEDIATE` for every write), so the app and the command line can work on the same data directory at once.

Tables: `campaigns` (kind, k, guidelines and their version), `campaign_setups`, `campaign_items`, `campaign_answers`
(one row per item and setup, written once), `campaign_judgements` and `campaign_claims` (who was handed which item,
with the hidden slot -> setup mapping, and whether they judged or skipped it). The queue (`next_item`) hands out the
ready item with the fewest judgements plus live claims; a claim holds a slot for `CLAIM_SECONDS`, and a judgement
that arrives when an item already has its k (two people judging at once after a claim ran out) is kept with
`overshoot = 1` and not counted towards k.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.access.identity import Identity
from app.campaigns.manifest import NAME_PATTERN, Item, Setup, setup_from_dict
from app.data.store import CHOICES, DB_FILENAME, MAX_TEXT_CHARS, default_data_dir

KINDS = ("pairwise", "rating")
CLAIM_SECONDS = 600.0  # how long a handed-out item stays reserved for the person who got it

_SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('pairwise', 'rating')),
    k INTEGER NOT NULL CHECK (k >= 1),
    guidelines TEXT NOT NULL,
    guidelines_version TEXT NOT NULL,
    allow_visitors INTEGER NOT NULL CHECK (allow_visitors IN (0, 1)),
    created_at TEXT NOT NULL,
    created_by_kind TEXT NOT NULL,
    created_by_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_setups (
    campaign TEXT NOT NULL REFERENCES campaigns (name),
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY (campaign, name)
);
CREATE TABLE IF NOT EXISTS campaign_items (
    campaign TEXT NOT NULL REFERENCES campaigns (name),
    item_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    video_path TEXT NOT NULL,
    video_sha256 TEXT NOT NULL,
    video_duration_s REAL NOT NULL,
    question TEXT NOT NULL,
    reference TEXT,
    ready INTEGER NOT NULL DEFAULT 0,
    judgements INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign, item_id)
);
CREATE INDEX IF NOT EXISTS campaign_items_queue ON campaign_items (campaign, ready, judgements, position);
CREATE TABLE IF NOT EXISTS campaign_answers (
    campaign TEXT NOT NULL,
    item_id TEXT NOT NULL,
    setup TEXT NOT NULL,
    text TEXT,
    error TEXT,
    frame_indices TEXT NOT NULL,
    frame_timestamps_s TEXT NOT NULL,
    compression TEXT,
    visual_tokens INTEGER,
    timings TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (campaign, item_id, setup),
    CHECK ((text IS NULL) != (error IS NULL))
);
CREATE TABLE IF NOT EXISTS campaign_judgements (
    id TEXT PRIMARY KEY,
    campaign TEXT NOT NULL,
    item_id TEXT NOT NULL,
    identity_kind TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    annotator TEXT NOT NULL,
    setup_a TEXT NOT NULL,
    setup_b TEXT,
    choice TEXT CHECK (choice IS NULL OR choice IN ('a', 'b', 'tie', 'both_bad')),
    score INTEGER CHECK (score IS NULL OR score BETWEEN 1 AND 5),
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    overshoot INTEGER NOT NULL CHECK (overshoot IN (0, 1)),
    CHECK ((choice IS NULL) != (score IS NULL))
);
CREATE INDEX IF NOT EXISTS campaign_judgements_item ON campaign_judgements (campaign, item_id);
CREATE TABLE IF NOT EXISTS campaign_claims (
    campaign TEXT NOT NULL,
    item_id TEXT NOT NULL,
    identity_kind TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('claimed', 'judged', 'skipped')),
    slots TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (campaign, item_id, identity_kind, identity_id)
);
CREATE INDEX IF NOT EXISTS campaign_claims_live ON campaign_claims (campaign, state, expires_at);
CREATE INDEX IF NOT EXISTS campaign_claims_who ON campaign_claims (campaign, identity_kind, identity_id, state);
CREATE TABLE IF NOT EXISTS campaign_jobs (
    campaign TEXT PRIMARY KEY,
    wanted INTEGER NOT NULL CHECK (wanted IN (0, 1)),
    updated_at TEXT NOT NULL
);
"""

# The queue in one query: ready items not yet done, not already judged or skipped by this person, whose judgements
# plus live claims leave a slot; the least loaded first, then in manifest order.
_NEXT_SQL = """
WITH live AS (
    SELECT item_id, COUNT(*) AS n FROM campaign_claims
    WHERE campaign = :campaign AND state = 'claimed' AND expires_at > :now GROUP BY item_id
)
SELECT i.item_id, i.judgements + COALESCE(live.n, 0) AS load
FROM campaign_items AS i LEFT JOIN live ON live.item_id = i.item_id
WHERE i.campaign = :campaign AND i.ready = 1 AND i.judgements < :k
    AND i.judgements + COALESCE(live.n, 0) < :k
    AND NOT EXISTS (
        SELECT 1 FROM campaign_claims AS mine
        WHERE mine.campaign = :campaign AND mine.item_id = i.item_id AND mine.identity_kind = :who_kind
            AND mine.identity_id = :who_id AND mine.state != 'claimed'
    )
ORDER BY load, i.position
LIMIT 1
"""

# The front of the queue straight off its index (no sort): the first `FRONT` ready items by judgements, position.
FRONT = 64
_FRONT_SQL = """
SELECT i.item_id, i.judgements, i.position,
    (SELECT COUNT(*) FROM campaign_claims AS c WHERE c.campaign = i.campaign AND c.item_id = i.item_id
        AND c.state = 'claimed' AND c.expires_at > :now) AS live,
    EXISTS (SELECT 1 FROM campaign_claims AS mine WHERE mine.campaign = i.campaign AND mine.item_id = i.item_id
        AND mine.identity_kind = :who_kind AND mine.identity_id = :who_id AND mine.state != 'claimed') AS passed
FROM campaign_items AS i
WHERE i.campaign = :campaign AND i.ready = 1 AND i.judgements < :k
ORDER BY i.judgements, i.position
LIMIT :front
"""


def _least_loaded_near_front(conn: sqlite3.Connection, params: dict[str, Any]) -> str | None:
    """`_NEXT_SQL`'s answer read from the queue's front, when the front settles it: the least loaded eligible item
    there, provided no item behind the front could be less loaded (everything behind has at least the last front
    item's judgements). None means "ask the full query"."""
    rows = conn.execute(_FRONT_SQL, {**params, "front": FRONT}).fetchall()
    eligible = [(judgements + live, position, item_id) for item_id, judgements, position, live, passed in rows
                if not passed and judgements + live < params["k"]]  # fmt: skip
    if not eligible:
        return None
    load, _, item_id = min(eligible)
    if len(rows) == FRONT and load > rows[-1][1]:
        return None
    return item_id


_ITEM_COLUMNS = "item_id, video_path, question, reference, video_sha256, video_duration_s"
_ANSWER_COLUMNS = (
    "item_id, setup, text, error, frame_indices, frame_timestamps_s, compression, visual_tokens, timings, created_at"
)
_JUDGEMENT_COLUMNS = ", ".join(
    ("id", "item_id", "identity_kind", "identity_id", "annotator", "setup_a", "setup_b", "choice", "score")
    + ("reason", "created_at", "overshoot")
)


@dataclass(frozen=True)
class Campaign:
    """A campaign's definition as stored: what is judged how, by how many people per item."""

    name: str
    kind: str
    k: int
    guidelines: str
    guidelines_version: str
    allow_visitors: bool
    created_at: str
    created_by: tuple[str, str]
    setups: tuple[Setup, ...]
    items: int

    def setup(self, name: str) -> Setup:
        for setup in self.setups:
            if setup.name == name:
                return setup
        raise ValueError(f"campaign {self.name!r} has no setup {name!r}")


def guidelines_version(text: str) -> str:
    """The version a judgement was made under: the first 12 hex digits of the guidelines' sha256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _open_database(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection that waits for other writers instead of failing, in WAL mode with durable commits."""
    conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    journal = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if journal.lower() != "wal":
        conn.close()
        raise RuntimeError(f"{path} cannot use WAL mode (got {journal!r}); is it on a network drive?")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


class CampaignStore:
    """Campaigns, their answers and judgements in `<data_dir>/annotations.sqlite3`, next to the annotation store.

    Thread-safe (one connection behind a lock); other processes on the same directory are handled by WAL and the
    busy timeout. `rng` picks the pair and the slot order of each hand-out (seed it in tests).
    """

    def __init__(
        self, data_dir: str | Path | None = None, *, busy_timeout_ms: int = 15_000, rng: random.Random | None = None
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve() if data_dir is not None else default_data_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / DB_FILENAME
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._conn = _open_database(self.db_path, busy_timeout_ms)
        with self._writing() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    def close(self) -> None:
        """Close the connection (`contextlib.closing(CampaignStore(...))` does it at the end of a block)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> CampaignStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, all or nothing; the write lock is taken up front (BEGIN IMMEDIATE)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # -- campaigns ------------------------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        items: Sequence[Item],
        setups: Sequence[Setup],
        k: int,
        kind: str = "pairwise",
        guidelines: str = "",
        allow_visitors: bool = False,
        created_by: tuple[str, str] = ("owner", "owner"),
    ) -> Campaign:
        """Store a new campaign with its items and setups in one transaction (all or nothing)."""
        _check_definition(name, items, setups, k, kind)
        row = (name, kind, int(k), guidelines, guidelines_version(guidelines), int(bool(allow_visitors)), _now_iso())
        with self._writing() as conn:
            if conn.execute("SELECT 1 FROM campaigns WHERE name = ?", (name,)).fetchone():
                raise ValueError(f"a campaign named {name!r} already exists")
            conn.execute("INSERT INTO campaigns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, *created_by))
            conn.executemany(
                "INSERT INTO campaign_setups VALUES (?, ?, ?, ?)",
                [(name, s.name, n, json.dumps(s.as_dict())) for n, s in enumerate(setups)],
            )
            conn.executemany(
                f"INSERT INTO campaign_items (campaign, position, {_ITEM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (name, n, i.id, i.video, i.question, i.reference, i.sha256, i.duration_s)
                    for n, i in enumerate(items)
                ],
            )
        campaign = self.get(name)
        assert campaign is not None
        return campaign

    def get(self, name: str) -> Campaign | None:
        """The campaign called `name`, or None."""
        with self._lock:
            return _campaign(self._conn, name)

    def campaign(self, name: str) -> Campaign:
        """The campaign called `name`; a ValueError naming the known ones when there is none."""
        found = self.get(name)
        if found is None:
            known = ", ".join(self.names()) or "none yet"
            raise ValueError(f"no campaign named {name!r} (campaigns: {known})")
        return found

    def names(self) -> list[str]:
        return [row[0] for row in self._read("SELECT name FROM campaigns ORDER BY created_at, name")]

    def items(self, name: str) -> list[Item]:
        rows = self._read(f"SELECT {_ITEM_COLUMNS} FROM campaign_items WHERE campaign = ? ORDER BY position", (name,))
        return [Item(*row) for row in rows]

    def answers(self, name: str) -> list[dict[str, Any]]:
        """Every recorded answer (or failure) as a plain dict, JSON fields decoded."""
        rows = self._read(f"SELECT {_ANSWER_COLUMNS} FROM campaign_answers WHERE campaign = ? ORDER BY rowid", (name,))
        keys = _ANSWER_COLUMNS.split(", ")
        decoded = []
        for row in rows:
            answer = dict(zip(keys, row))
            for key in ("frame_indices", "frame_timestamps_s", "compression", "timings"):
                answer[key] = json.loads(answer[key]) if answer[key] is not None else None
            decoded.append(answer)
        return decoded

    def judgements(self, name: str) -> list[dict[str, Any]]:
        """Every judgement as a plain dict (overshoot as a bool), oldest first."""
        sql = f"SELECT {_JUDGEMENT_COLUMNS} FROM campaign_judgements WHERE campaign = ? ORDER BY rowid"
        keys = _JUDGEMENT_COLUMNS.split(", ")
        return [{**dict(zip(keys, row)), "overshoot": bool(row[-1])} for row in self._read(sql, (name,))]

    # -- answers --------------------------------------------------------------------------------------------------

    def record_answer(
        self,
        name: str,
        item_id: str,
        setup: str,
        *,
        text: str,
        frame_indices: Sequence[int] = (),
        frame_timestamps_s: Sequence[float] = (),
        compression: Mapping[str, Any] | None = None,
        timings: Mapping[str, float] | None = None,
    ) -> bool:
        """Keep one setup's answer to one item. Idempotent: False (and nothing written) when that item and setup
        already have an answer or a failure."""
        answer = {"item_id": item_id, "setup": setup, "text": text, "frame_indices": frame_indices}
        answer.update(frame_timestamps_s=frame_timestamps_s, compression=compression, timings=timings)
        return self.record_answers(name, [answer]) == 1

    def record_failure(self, name: str, item_id: str, setup: str, error: str) -> bool:
        """Keep why one setup could not answer one item (idempotent like `record_answer`)."""
        return self.record_answers(name, [{"item_id": item_id, "setup": setup, "error": str(error) or "failed"}]) == 1

    def record_answers(self, name: str, answers: Iterable[Mapping[str, Any]]) -> int:
        """Keep many answers in one transaction (an import, a test): mappings with item_id, setup and either text
        (plus the optional fields of `record_answer`) or error. Returns how many were new; the others are left as
        they were."""
        with self._writing() as conn:
            kind, setups = _kind_and_setups(conn, name)
            return sum(_insert_answer(conn, name, kind, setups, answer) for answer in answers)

    def pending_generations(self, name: str) -> list[tuple[Item, Setup]]:
        """Every (item, setup) without an answer or a failure yet, video by video (in order of first appearance),
        then setup by setup, so that each video is encoded once per setup."""
        campaign = self.campaign(name)
        done = {
            (row[0], row[1])
            for row in self._read("SELECT item_id, setup FROM campaign_answers WHERE campaign = ?", (name,))
        }
        items = self.items(name)
        first_seen = {}
        for position, item in enumerate(items):
            first_seen.setdefault(item.sha256, position)
        work = [(item, setup) for item in items for setup in campaign.setups if (item.id, setup.name) not in done]
        setup_order = {setup.name: n for n, setup in enumerate(campaign.setups)}
        return sorted(work, key=lambda pair: (first_seen[pair[0].sha256], setup_order[pair[1].name]))

    def want_generation(self, name: str, wanted: bool = True) -> None:
        """Remember that campaign `name`'s answers should be generated (until done), so an app that was killed
        while generating takes the job up again when it restarts."""
        self.campaign(name)
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO campaign_jobs VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET wanted = excluded.wanted, "
                "updated_at = excluded.updated_at",
                (name, int(bool(wanted)), _now_iso()),
            )

    def wanted_generations(self) -> list[str]:
        """Campaigns whose generation was asked for and has not finished, oldest request first."""
        rows = self._read("SELECT campaign FROM campaign_jobs WHERE wanted = 1 ORDER BY updated_at")
        return [row[0] for row in rows]

    # -- progress -------------------------------------------------------------------------------------------------

    def status(self, name: str) -> dict[str, Any]:
        """Where a campaign stands, as plain JSON: generation and judging progress and judgements per annotator."""
        campaign = self.campaign(name)
        generated, failed = self._read(
            "SELECT COALESCE(SUM(error IS NULL), 0), COALESCE(SUM(error IS NOT NULL), 0) "
            "FROM campaign_answers WHERE campaign = ?",
            (name,),
        )[0]
        completed, ready = self._read(
            "SELECT COALESCE(SUM(judgements >= ?), 0), COALESCE(SUM(ready), 0) FROM campaign_items WHERE campaign = ?",
            (campaign.k, name),
        )[0]
        per_annotator = dict(
            self._read(
                "SELECT annotator, COUNT(*) FROM campaign_judgements WHERE campaign = ? GROUP BY annotator "
                "ORDER BY annotator",
                (name,),
            )
        )
        return {
            "name": campaign.name,
            "kind": campaign.kind,
            "k": campaign.k,
            "guidelines_version": campaign.guidelines_version,
            "items": campaign.items,
            "setups": [setup.name for setup in campaign.setups],
            "generations_total": campaign.items * len(campaign.setups),
            "generated": int(generated),
            "failed": int(failed),
            "ready_items": int(ready),
            "judgements": sum(per_annotator.values()),
            "overshoot": self._read(
                "SELECT COUNT(*) FROM campaign_judgements WHERE campaign = ? AND overshoot = 1", (name,)
            )[0][0],
            "completed_items": int(completed),
            "per_annotator": per_annotator,
        }

    # -- moving tables (the Hub sync, app.campaigns.sync) -----------------------------------------------------------

    def table_columns(self, table: str) -> list[tuple[str, str]]:
        """(column, declared type) of one of the campaign tables."""
        _check_table(table)
        return [(row[1], row[2]) for row in self._read(f"PRAGMA table_info({table})")]

    def table_rows(self, table: str, columns: Sequence[str], where: str = "") -> list[dict[str, Any]]:
        """Every row of a campaign table as a dict of `columns` (optionally filtered by a fixed SQL condition)."""
        _check_table(table)
        sql = f"SELECT {', '.join(columns)} FROM {table}" + (f" WHERE {where}" if where else "") + " ORDER BY rowid"
        return [dict(zip(columns, row)) for row in self._read(sql)]

    def import_table_rows(self, table: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert rows into a campaign table, keeping the row already there on a key conflict; returns how many
        were new. Call `recount` after importing answers or judgements."""
        _check_table(table)
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            "ON CONFLICT DO NOTHING"
        )
        with self._writing() as conn:
            return sum(conn.execute(sql, [row.get(c) for c in columns]).rowcount for row in rows)

    def recount(self) -> None:
        """Recompute what the queue derives from answers and judgements: each item's `ready` flag and counted
        judgements, and a `judged` claim for every judgement (so an imported judge is never handed the item again)."""
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO campaign_claims SELECT campaign, item_id, identity_kind, identity_id, 'judged', '{}', 0 "
                "FROM campaign_judgements WHERE true ON CONFLICT DO UPDATE SET state = 'judged'"
            )
            conn.execute(
                "UPDATE campaign_items SET judgements = (SELECT COUNT(*) FROM campaign_judgements AS j WHERE "
                "j.campaign = campaign_items.campaign AND j.item_id = campaign_items.item_id AND j.overshoot = 0)"
            )
            for name, kind in conn.execute("SELECT name, kind FROM campaigns").fetchall():
                _, setups = _kind_and_setups(conn, name)
                needed = 2 if kind == "pairwise" else 1
                items = conn.execute("SELECT item_id FROM campaign_items WHERE campaign = ?", (name,)).fetchall()
                for (item_id,) in items:
                    _update_ready(conn, name, item_id, len(setups), needed)

    # -- the queue ------------------------------------------------------------------------------------------------

    def next_item(self, name: str, who: Identity, now: float | None = None) -> dict[str, Any] | None:
        """Hand `who` the next item to judge, reserved for them for `CLAIM_SECONDS` (the same one again while
        their claim is live), or None when nothing is left for them. The answers come as slots "a" / "b" in random
        order; which setup is behind each slot stays here, in the claim. A rating campaign shows one answer (slot
        "a"); either way k counts judgements per item, spread over the setups (or pairs) by `_deal`."""
        now = time.time() if now is None else float(now)
        with self._writing() as conn:
            campaign = _campaign(conn, name)
            if campaign is None:
                raise ValueError(f"no campaign named {name!r}")
            _check_may_judge(campaign, who)
            held = conn.execute(
                "SELECT c.item_id, c.slots FROM campaign_claims AS c JOIN campaign_items AS i "
                "ON i.campaign = c.campaign AND i.item_id = c.item_id WHERE c.campaign = ? AND c.identity_kind = ? "
                "AND c.identity_id = ? AND c.state = 'claimed' AND c.expires_at > ? AND i.judgements < ? LIMIT 1",
                (name, *who.key, now, campaign.k),
            ).fetchone()
            if held is not None:
                item_id, slots = held[0], json.loads(held[1])
            else:
                params = {"campaign": name, "now": now, "k": campaign.k, "who_kind": who.kind, "who_id": who.id}
                item_id = _least_loaded_near_front(conn, params)
                if item_id is None:
                    found = conn.execute(_NEXT_SQL, params).fetchone()
                    if found is None:
                        return None
                    item_id = found[0]
                slots = self._deal(conn, campaign, item_id, now)
            conn.execute(
                "INSERT INTO campaign_claims VALUES (?, ?, ?, ?, 'claimed', ?, ?) ON CONFLICT DO UPDATE "
                "SET state = 'claimed', slots = excluded.slots, expires_at = excluded.expires_at",
                (name, item_id, *who.key, json.dumps(slots), now + CLAIM_SECONDS),
            )
            return _hand_out(conn, campaign, item_id, slots, who)

    def _deal(self, conn: sqlite3.Connection, campaign: Campaign, item_id: str, now: float) -> dict[str, str]:
        """Which answers one hand-out shows: for a rating the answered setup, for a comparison the pair of answered
        setups, with the fewest judgements and live claims on this item (ties broken at random), in random slots."""
        answered = [
            row[0]
            for row in conn.execute(
                "SELECT setup FROM campaign_answers WHERE campaign = ? AND item_id = ? AND error IS NULL",
                (campaign.name, item_id),
            )
        ]
        order = [setup.name for setup in campaign.setups if setup.name in answered]
        uses = conn.execute(
            "SELECT setup_a, setup_b FROM campaign_judgements WHERE campaign = ? AND item_id = ? AND overshoot = 0",
            (campaign.name, item_id),
        ).fetchall()
        for (slots,) in conn.execute(
            "SELECT slots FROM campaign_claims WHERE campaign = ? AND item_id = ? AND state = 'claimed' "
            "AND expires_at > ?",
            (campaign.name, item_id, now),
        ):
            shown = json.loads(slots)
            uses.append((shown["a"], shown.get("b")))
        if campaign.kind == "rating":
            options = [(setup,) for setup in order]
            counts = {option: sum(a == option[0] for a, _ in uses) for option in options}
        else:
            options = [(a, b) for n, a in enumerate(order) for b in order[n + 1 :]]
            counts = {option: sum({a, b} == set(option) for a, b in uses) for option in options}
        fewest = min(counts.values())
        chosen = list(self._rng.choice([option for option in options if counts[option] == fewest]))
        self._rng.shuffle(chosen)
        return dict(zip("ab", chosen))

    def judge(
        self,
        name: str,
        item_id: str,
        who: Identity,
        choice: str | None = None,
        score: int | None = None,
        reason: str = "",
    ) -> dict[str, Any]:
        """Record `who`'s judgement of an item they were handed: a choice (a / b / tie / both_bad) for a pairwise
        campaign, a 1-5 score for a rating one. Returns {id, overshoot, setup_a, setup_b}; `overshoot` is True
        when the item already had its k judgements (kept, not counted)."""
        if not isinstance(reason, str) or len(reason) > MAX_TEXT_CHARS:
            raise ValueError(f"the reason must be text of at most {MAX_TEXT_CHARS:,} characters")
        with self._writing() as conn:
            campaign = _campaign(conn, name)
            if campaign is None:
                raise ValueError(f"no campaign named {name!r}")
            _check_may_judge(campaign, who)
            _check_judgement(campaign.kind, choice, score)
            claim = conn.execute(
                "SELECT state, slots FROM campaign_claims WHERE campaign = ? AND item_id = ? AND identity_kind = ? "
                "AND identity_id = ?",
                (name, item_id, *who.key),
            ).fetchone()
            if claim is None:
                raise ValueError(f"item {item_id!r} was not handed to you; ask for the next item first")
            if claim[0] != "claimed":
                raise ValueError(f"you already {claim[0]} item {item_id!r}")
            slots = json.loads(claim[1])
            (counted,) = conn.execute(
                "SELECT judgements FROM campaign_items WHERE campaign = ? AND item_id = ?", (name, item_id)
            ).fetchone()
            overshoot = counted >= campaign.k
            judgement_id = uuid.uuid4().hex
            conn.execute(
                f"INSERT INTO campaign_judgements (campaign, {_JUDGEMENT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    judgement_id,
                    item_id,
                    *who.key,
                    who.label,
                    slots["a"],
                    slots.get("b"),
                    choice,
                    None if score is None else int(score),
                    reason,
                    _now_iso(),
                    int(overshoot),
                ),
            )
            if not overshoot:
                conn.execute(
                    "UPDATE campaign_items SET judgements = judgements + 1 WHERE campaign = ? AND item_id = ?",
                    (name, item_id),
                )
            conn.execute(
                "UPDATE campaign_claims SET state = 'judged' WHERE campaign = ? AND item_id = ? AND identity_kind = ? "
                "AND identity_id = ?",
                (name, item_id, *who.key),
            )
        return {"id": judgement_id, "overshoot": overshoot, "setup_a": slots["a"], "setup_b": slots.get("b")}

    def skip(self, name: str, item_id: str, who: Identity) -> None:
        """`who` passes on an item: it is never handed to them again, and their claim no longer holds a slot."""
        with self._writing() as conn:
            campaign = _campaign(conn, name)
            if campaign is None:
                raise ValueError(f"no campaign named {name!r}")
            if not conn.execute(
                "SELECT 1 FROM campaign_items WHERE campaign = ? AND item_id = ?", (name, item_id)
            ).fetchone():
                raise ValueError(f"campaign {name!r} has no item {item_id!r}")
            previous = conn.execute(
                "SELECT state FROM campaign_claims WHERE campaign = ? AND item_id = ? AND identity_kind = ? "
                "AND identity_id = ?",
                (name, item_id, *who.key),
            ).fetchone()
            if previous is not None and previous[0] == "judged":
                raise ValueError(f"you already judged item {item_id!r}")
            conn.execute(
                "INSERT INTO campaign_claims VALUES (?, ?, ?, ?, 'skipped', '{}', 0) ON CONFLICT DO UPDATE "
                "SET state = 'skipped'",
                (name, item_id, *who.key),
            )


# ----------------------------------------------------------------------------------------------------------------
# Helpers inside a transaction


def _campaign(conn: sqlite3.Connection, name: str) -> Campaign | None:
    row = conn.execute("SELECT * FROM campaigns WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None
    specs = conn.execute("SELECT spec FROM campaign_setups WHERE campaign = ? ORDER BY position", (name,)).fetchall()
    (items,) = conn.execute("SELECT COUNT(*) FROM campaign_items WHERE campaign = ?", (name,)).fetchone()
    return Campaign(
        name=row[0],
        kind=row[1],
        k=int(row[2]),
        guidelines=row[3],
        guidelines_version=row[4],
        allow_visitors=bool(row[5]),
        created_at=row[6],
        created_by=(row[7], row[8]),
        setups=tuple(setup_from_dict(json.loads(spec)) for (spec,) in specs),
        items=int(items),
    )


def _kind_and_setups(conn: sqlite3.Connection, name: str) -> tuple[str, list[str]]:
    row = conn.execute("SELECT kind FROM campaigns WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise ValueError(f"no campaign named {name!r}")
    setups = [r[0] for r in conn.execute("SELECT name FROM campaign_setups WHERE campaign = ?", (name,))]
    return row[0], setups


def _insert_answer(conn: sqlite3.Connection, name: str, kind: str, setups: list[str], answer: Mapping) -> int:
    item_id, setup = answer["item_id"], answer["setup"]
    if setup not in setups:
        raise ValueError(f"campaign {name!r} has no setup {setup!r}")
    if not conn.execute("SELECT 1 FROM campaign_items WHERE campaign = ? AND item_id = ?", (name, item_id)).fetchone():
        raise ValueError(f"campaign {name!r} has no item {item_id!r}")
    text, error = answer.get("text"), answer.get("error")
    if (text is None) == (error is None):
        raise ValueError("an answer has either a text or an error")
    compression = answer.get("compression")
    row = (
        item_id,
        setup,
        text,
        error,
        json.dumps([int(i) for i in answer.get("frame_indices") or ()]),
        json.dumps([float(t) for t in answer.get("frame_timestamps_s") or ()]),
        None if compression is None else json.dumps(dict(compression)),
        None if compression is None else compression.get("visual_tokens"),
        json.dumps(dict(answer.get("timings") or {})),
        _now_iso(),
        name,
    )
    added = conn.execute(
        f"INSERT INTO campaign_answers ({_ANSWER_COLUMNS}, campaign) VALUES ({', '.join('?' * len(row))}) "
        "ON CONFLICT (campaign, item_id, setup) DO NOTHING",
        row,
    ).rowcount
    if added:
        _update_ready(conn, name, item_id, len(setups), 2 if kind == "pairwise" else 1)
    return added


def _update_ready(conn: sqlite3.Connection, name: str, item_id: str, setups: int, needed: int) -> None:
    """An item joins the queue once every setup has answered or failed, with enough answers to show."""
    total, answered = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(error IS NULL), 0) FROM campaign_answers WHERE campaign = ? AND item_id = ?",
        (name, item_id),
    ).fetchone()
    ready = int(total == setups and answered >= needed)
    conn.execute("UPDATE campaign_items SET ready = ? WHERE campaign = ? AND item_id = ?", (ready, name, item_id))


def _hand_out(
    conn: sqlite3.Connection, campaign: Campaign, item_id: str, slots: dict[str, str], who: Identity
) -> dict[str, Any]:
    video, question = conn.execute(
        "SELECT video_path, question FROM campaign_items WHERE campaign = ? AND item_id = ?", (campaign.name, item_id)
    ).fetchone()
    texts = dict(
        conn.execute(
            "SELECT setup, text FROM campaign_answers WHERE campaign = ? AND item_id = ?", (campaign.name, item_id)
        ).fetchall()
    )
    (done_by_me,) = conn.execute(
        "SELECT COUNT(*) FROM campaign_judgements WHERE campaign = ? AND identity_kind = ? AND identity_id = ?",
        (campaign.name, *who.key),
    ).fetchone()
    return {
        "campaign": campaign.name,
        "kind": campaign.kind,
        "item_id": item_id,
        "video": video,
        "question": question,
        "answers": [{"slot": slot, "text": texts[setup]} for slot, setup in sorted(slots.items())],
        "guidelines": campaign.guidelines,
        "guidelines_version": campaign.guidelines_version,
        "done_by_me": int(done_by_me),
        "total": campaign.items,
    }


# ----------------------------------------------------------------------------------------------------------------
# Checks


_TABLES = ("campaigns", "campaign_setups", "campaign_items", "campaign_answers", "campaign_judgements")
_TABLES += ("campaign_claims",)


def _check_table(table: str) -> None:
    if table not in _TABLES:
        raise ValueError(f"{table!r} is not a campaign table")


def _check_definition(name: str, items: Sequence[Item], setups: Sequence[Setup], k: Any, kind: str) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"campaign name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with one")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} (got {kind!r})")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (judgements per item) must be a whole number of at least 1 (got {k!r})")
    if not items:
        raise ValueError("a campaign needs at least one item")
    least = 2 if kind == "pairwise" else 1
    if len(setups) < least:
        raise ValueError(f"a {kind} campaign needs at least {least} setups (got {len(setups)})")
    for what, names in (("item id", [i.id for i in items]), ("setup name", [s.name for s in setups])):
        repeated = sorted(n for n, count in Counter(names).items() if count > 1)
        if repeated:
            raise ValueError(f"each {what} must be unique: {', '.join(repeated)} repeat")


def _check_may_judge(campaign: Campaign, who: Identity) -> None:
    if who.role == "visitor" and not campaign.allow_visitors:
        raise PermissionError(f"campaign {campaign.name!r} is open to signed-in annotators only; sign in to judge")


def _check_judgement(kind: str, choice: str | None, score: Any) -> None:
    if kind == "pairwise":
        if choice not in CHOICES or score is not None:
            raise ValueError(f"a pairwise judgement is a choice among {', '.join(CHOICES)} (got {choice!r})")
        return
    if choice is not None:
        raise ValueError("a rating judgement is a score from 1 to 5, not a choice")
    if isinstance(score, float) and score.is_integer():
        score = int(score)
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ValueError(f"a rating judgement is a whole-number score from 1 to 5 (got {score!r})")
