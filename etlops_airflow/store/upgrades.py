"""Versioned schema upgrades for the store.

Each upgrade is a numbered function run inside one transaction together with the row that
records it in ``etlops_schema_version``. Concurrent first use is safe: SQLite transactions
start with ``BEGIN IMMEDIATE`` (one writer at a time) and on PostgreSQL a transaction-scoped
advisory lock serialises upgraders. On SQLite the upgrade runs with foreign keys off (a
table rebuild must not cascade into its children) and checks them before committing.

Rules for upgrades:

* Never edit a released upgrade; add the next number. An upgrade builds the tables it
  creates from its own frozen definitions, never from ``schema.py`` (which only describes
  the current shape for queries).
* Alter tables with Alembic's operations (Alembic ships with Airflow and is a dependency of
  ours). SQLite cannot ALTER most things; ``op.batch_alter_table`` does the move-and-copy
  there (new table, copy rows, drop, rename) and plain ``ALTER TABLE`` on PostgreSQL.
* An upgrade leaves the store equal to ``schema.py`` (tests/unit/test_store_upgrades.py
  upgrades a version 1 file written by etlops-airflow 0.1.0 and compares).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    insert,
    inspect,
    select,
    text,
)

from etlops_airflow.exceptions import StoreSchemaError

P = "etlops_"
# Arbitrary constant naming our advisory lock on PostgreSQL ("etlops" in ASCII, folded to 63 bits).
PG_LOCK_KEY = 0x65746C6F7073


def labels_hash(labels_text: str) -> str:
    """The key of a series' labels: SHA-256 (hex) of the canonical labels text."""
    return hashlib.sha256(labels_text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Upgrade:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _schema_version_table(metadata: MetaData) -> Table:
    return Table(
        f"{P}schema_version",
        metadata,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("description", String(200), nullable=False),
        Column("applied_at", Double, nullable=False),
    )


# -- 1: as shipped in 0.1.0 (frozen) -----------------------------------------------------------


def _v1(conn: Connection) -> None:
    md = MetaData()
    Table(
        f"{P}metric_series",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(200), nullable=False),
        Column("labels", Text, nullable=False),
        UniqueConstraint("name", "labels", name=f"uq_{P}metric_series_name_labels"),
    )
    Table(
        f"{P}metric_points",
        md,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("series_id", Integer, ForeignKey(f"{P}metric_series.id", ondelete="CASCADE"), nullable=False),
        Column("ts_ms", BigInteger, nullable=False),
        Column("value", Double, nullable=False),
        Index(f"ix_{P}metric_points_series_ts", "series_id", "ts_ms"),
        Index(f"ix_{P}metric_points_ts", "ts_ms"),
    )
    Table(
        f"{P}task_outcomes",
        md,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("dag_id", String(250), nullable=False),
        Column("task_id", String(250), nullable=False),
        Column("run_id", String(250), nullable=False),
        Column("map_index", Integer, nullable=False, server_default="-1"),
        Column("try_number", Integer, nullable=False),
        Column("state", String(20), nullable=False),
        Column("start_ts", Double),
        Column("end_ts", Double),
        Column("duration_s", Double),
        Column("error_class", String(250)),
        Column("error_message", Text),
        Column("hostname", String(250)),
        Column("recorded_at", Double, nullable=False),
        UniqueConstraint(
            "dag_id", "task_id", "run_id", "map_index", "try_number", name=f"uq_{P}task_outcomes_try"
        ),
        Index(f"ix_{P}task_outcomes_dag_task_end", "dag_id", "task_id", "end_ts"),
        Index(f"ix_{P}task_outcomes_end", "end_ts"),
    )
    md.create_all(conn, checkfirst=True)


# -- 2: series keyed by a hash of their labels; labels in their own table ----------------------


def _v2(conn: Connection) -> None:
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    # Our caller owns the transaction (DDL is transactional on both databases here).
    op = Operations(MigrationContext.configure(conn, opts={"transactional_ddl": True}))
    series = f"{P}metric_series"
    sqlite = conn.dialect.name == "sqlite"

    op.add_column(series, Column("labels_hash", String(64), nullable=True))
    rows = conn.execute(text(f"SELECT id, labels FROM {series}")).all()
    if rows:
        conn.execute(
            text(f"UPDATE {series} SET labels_hash = :h WHERE id = :id"),
            [{"h": labels_hash(row.labels), "id": row.id} for row in rows],
        )
    # SQLite: rebuild (move-and-copy) with AUTOINCREMENT so ids are never reused.
    with op.batch_alter_table(
        series,
        recreate="always" if sqlite else "auto",
        table_kwargs={"sqlite_autoincrement": True} if sqlite else {},
    ) as batch:
        batch.alter_column("labels_hash", existing_type=String(64), nullable=False)
        batch.drop_constraint(f"uq_{P}metric_series_name_labels", type_="unique")
        batch.create_unique_constraint(f"uq_{P}metric_series_name_hash", ["name", "labels_hash"])

    md = MetaData()
    labels = Table(
        f"{P}metric_labels",
        md,
        Column("series_id", Integer, ForeignKey(f"{series}.id", ondelete="CASCADE"), nullable=False),
        Column("name", String(100), nullable=False),
        Column("value", String(500), nullable=False),
        PrimaryKeyConstraint("series_id", "name", name=f"pk_{P}metric_labels"),
        Index(f"ix_{P}metric_labels_name_value", "name", "value"),
    )
    Table(series, md, Column("id", Integer, primary_key=True))  # for the foreign key only
    labels.create(conn)
    label_rows: list[dict[str, Any]] = [
        {"series_id": row.id, "name": key, "value": value}
        for row in rows
        for key, value in json.loads(row.labels).items()
    ]
    if label_rows:
        conn.execute(insert(labels), label_rows)


UPGRADES: tuple[Upgrade, ...] = (
    Upgrade(1, "metric series and points; task outcomes", _v1),
    Upgrade(2, "series keyed by a hash of their labels; labels table for filtering in SQL", _v2),
)

HEAD = UPGRADES[-1].version


def current_version(conn: Connection) -> int:
    """Schema version recorded in the store; 0 for an empty database. Reads only."""
    if not inspect(conn).has_table(f"{P}schema_version"):
        return 0
    table = _schema_version_table(MetaData())
    return int(conn.execute(select(func.coalesce(func.max(table.c.version), 0))).scalar_one())


def upgrade(conn: Connection, target: int = HEAD) -> tuple[int, int]:
    """Bring the schema to ``target`` inside the caller's transaction. Returns (from, to)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
    table = _schema_version_table(MetaData())
    table.create(conn, checkfirst=True)
    found = current_version(conn)
    if found > HEAD:
        raise StoreSchemaError(found, HEAD, "upgrade etlops-airflow; this version cannot use the store")
    for step in UPGRADES:
        if step.version <= found or step.version > target:
            continue
        try:
            step.apply(conn)
        except Exception as exc:
            raise StoreSchemaError(found, HEAD, f"upgrade to {step.version} failed: {exc}") from exc
        conn.execute(
            insert(table).values(version=step.version, description=step.description, applied_at=time.time())
        )
    return found, max(found, target)
