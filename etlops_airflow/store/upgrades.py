"""Versioned schema upgrades for the store.

Each upgrade is a numbered function run inside one transaction together with the
row that records it in ``etlops_schema_version``. Concurrent first use is safe:
SQLite transactions start with ``BEGIN IMMEDIATE`` (one writer at a time) and on
PostgreSQL a transaction-scoped advisory lock serialises upgraders.

Rule for later upgrades: never edit a released upgrade; add the next number. When
a table in ``schema.py`` changes shape, freeze the table as it was inside the
upgrade that created it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, inspect, select, text

from etlops_airflow.exceptions import StoreSchemaError
from etlops_airflow.store import schema

# Arbitrary constant naming our advisory lock on PostgreSQL ("etlops" in ASCII, folded to 63 bits).
PG_LOCK_KEY = 0x65746C6F7073


@dataclass(frozen=True)
class Upgrade:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1(conn: Connection) -> None:
    for table in (schema.metric_series, schema.metric_points, schema.task_outcomes):
        table.create(conn, checkfirst=True)


UPGRADES: tuple[Upgrade, ...] = (Upgrade(1, "metric series and points; task outcomes", _v1),)

HEAD = UPGRADES[-1].version


def current_version(conn: Connection) -> int:
    """Schema version recorded in the store; 0 for an empty database."""
    if not inspect(conn).has_table(schema.schema_version.name):
        return 0
    return int(conn.execute(select(func.coalesce(func.max(schema.schema_version.c.version), 0))).scalar_one())


def upgrade(conn: Connection) -> tuple[int, int]:
    """Bring the schema to HEAD inside the caller's transaction. Returns (from, to)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
    schema.schema_version.create(conn, checkfirst=True)
    found = current_version(conn)
    if found > HEAD:
        raise StoreSchemaError(found, HEAD, "upgrade etlops-airflow; this version cannot use the store")
    for step in UPGRADES:
        if step.version <= found:
            continue
        try:
            step.apply(conn)
        except Exception as exc:
            raise StoreSchemaError(found, HEAD, f"upgrade to {step.version} failed: {exc}") from exc
        conn.execute(
            insert(schema.schema_version).values(
                version=step.version, description=step.description, applied_at=time.time()
            )
        )
    return found, HEAD
