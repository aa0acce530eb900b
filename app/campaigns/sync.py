"""Campaign tables as append-only Hub shards: what of a campaign store goes to the Hub, keyed so that a row reaches
the repo once, and how shards read back into an empty store (a Space restarted on a wiped disk).

Synced: the definitions (`campaigns`, `campaign_setups`, `campaign_items` without the queue's counters), every
answer and failure, every judgement, and skips (a person's decision never to see an item again). Not synced: live
claims (a reservation for ten minutes means nothing after a restart) and the counters `ready` / `judgements`, which
the import recomputes from the answers and judgements it holds, with a `judged` claim for each judgement so nobody
is handed an item twice. Each table's shards live under `campaigns/<table>/<boot-id>/shard-NNNNN.parquet`; columns
follow the SQLite columns (TEXT -> string, INTEGER -> int64, REAL -> float64), so `datasets.load_dataset(repo,
"campaign_judgements")` reads a table as it is stored. Plain Python: no gradio, no Hub client (`app.data.hub_sync`
does the uploading).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from app.campaigns.store import CampaignStore

CAMPAIGNS_DIRNAME = "campaigns"
SHARD_PATH = re.compile(rf"{CAMPAIGNS_DIRNAME}/(campaign[a-z_]*)/[A-Za-z0-9_.-]+/shard-\d+\.parquet")


@dataclass(frozen=True)
class SyncedTable:
    """One table as it goes to the Hub: the columns kept, the ones that identify a row, and a row filter."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    where: str = ""


# Parents first, so an import never meets an answer before its item.
TABLES = (
    SyncedTable(
        "campaigns",
        ("name", "kind", "k", "guidelines", "guidelines_version", "allow_visitors", "created_at")
        + ("created_by_kind", "created_by_id"),
        ("name",),
    ),
    SyncedTable("campaign_setups", ("campaign", "name", "position", "spec"), ("campaign", "name")),
    SyncedTable(
        "campaign_items",
        ("campaign", "item_id", "position", "video_path", "video_sha256", "video_duration_s", "question", "reference"),
        ("campaign", "item_id"),
    ),
    SyncedTable(
        "campaign_answers",
        ("campaign", "item_id", "setup", "text", "error", "frame_indices", "frame_timestamps_s", "compression")
        + ("visual_tokens", "timings", "created_at"),
        ("campaign", "item_id", "setup"),
    ),
    SyncedTable(
        "campaign_judgements",
        ("id", "campaign", "item_id", "identity_kind", "identity_id", "annotator", "setup_a", "setup_b", "choice")
        + ("score", "reason", "created_at", "overshoot"),
        ("id",),
    ),
    SyncedTable(
        "campaign_claims",
        ("campaign", "item_id", "identity_kind", "identity_id", "state", "slots", "expires_at"),
        ("campaign", "item_id", "identity_kind", "identity_id"),
        "state = 'skipped'",
    ),
)
BY_NAME = {table.name: table for table in TABLES}
_ARROW_TYPES = {"TEXT": pa.string(), "INTEGER": pa.int64(), "REAL": pa.float64()}


def row_key(table: SyncedTable, row: Mapping[str, Any]) -> tuple[str, ...]:
    """The identity of a row across boots and replicas: its table and key columns."""
    return (table.name, *(str(row[column]) for column in table.key))


def shard_path(table: str, boot_id: str, number: int) -> str:
    """Where a boot's n-th shard of a table goes in the repo (and in the outbox)."""
    return f"{CAMPAIGNS_DIRNAME}/{table}/{boot_id}/shard-{number:05d}.parquet"


def table_schema(store: CampaignStore, table: SyncedTable) -> pa.Schema:
    """The Arrow schema of a synced table, read off the SQLite declaration (so the two cannot drift)."""
    declared = {name: kind.upper() for name, kind in store.table_columns(table.name)}
    return pa.schema([(column, _ARROW_TYPES[declared[column]]) for column in table.columns])


def rows_to_sync(store: CampaignStore, staged: set[tuple[str, ...]]) -> dict[str, list[dict[str, Any]]]:
    """Every synced row whose key is not in `staged` (already on the Hub or in an outbox shard), by table."""
    new: dict[str, list[dict[str, Any]]] = {}
    for table in TABLES:
        rows = store.table_rows(table.name, table.columns, table.where)
        rows = [row for row in rows if row_key(table, row) not in staged]
        if rows:
            new[table.name] = rows
    return new


def rows_table(store: CampaignStore, table: str, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """One shard's worth of rows of `table` as Arrow, in the table's schema."""
    synced = BY_NAME[table]
    return pa.Table.from_pylist([{c: row[c] for c in synced.columns} for row in rows], table_schema(store, synced))


def import_rows(store: CampaignStore, by_table: Mapping[str, list[Mapping[str, Any]]]) -> dict[str, int]:
    """Add rows read from the Hub to `store` (rows it already has are left as they are), parents first, then bring
    the queue's counters and the judged claims up to date. Returns how many rows were new, by table."""
    added = {}
    for table in TABLES:
        rows = by_table.get(table.name) or []
        if rows:
            added[table.name] = store.import_table_rows(table.name, table.columns, rows)
    if any(added.values()):
        store.recount()
    return added
