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
    Boolean,
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


# -- 3: DAG-run outcomes (frozen) ----------------------------------------------------------------


def _v3(conn: Connection) -> None:
    md = MetaData()
    Table(
        f"{P}dag_runs",
        md,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("dag_id", String(250), nullable=False),
        Column("run_id", String(250), nullable=False),
        Column("state", String(20), nullable=False),
        Column("run_type", String(50)),
        Column("start_ts", Double),
        Column("end_ts", Double),
        Column("duration_s", Double),
        Column("recorded_at", Double, nullable=False),
        UniqueConstraint("dag_id", "run_id", name=f"uq_{P}dag_runs_run"),
        Index(f"ix_{P}dag_runs_dag_end", "dag_id", "end_ts"),
        Index(f"ix_{P}dag_runs_end", "end_ts"),
    )
    md.create_all(conn, checkfirst=False)  # a table already in the way fails the upgrade


# -- 4: alerting: alerts, transitions, groups, outbox, attempts, silences; lease locks ----------


def _v4(conn: Connection) -> None:
    md = MetaData()
    big = BigInteger().with_variant(Integer, "sqlite")
    Table(
        f"{P}alerts",
        md,
        Column("fingerprint", String(32), primary_key=True),
        Column("rule_id", String(100), nullable=False),
        Column("labels", Text, nullable=False),
        Column("dag_id", String(250)),
        Column("state", String(16), nullable=False),
        Column("value", Double),
        Column("pending_since", Double),
        Column("active_since", Double),
        Column("resolved_at", Double),
        Column("last_breach_at", Double),
        Column("last_eval_at", Double),
        Column("acked_by", String(250)),
        Column("acked_at", Double),
        Column("incident", Integer, nullable=False, server_default="0"),
        Column("annotations", Text, nullable=False, server_default="{}"),
        Column("updated_at", Double, nullable=False),
        Index(f"ix_{P}alerts_state", "state"),
        Index(f"ix_{P}alerts_rule", "rule_id"),
        Index(f"ix_{P}alerts_dag", "dag_id"),
    )
    Table(
        f"{P}alert_transitions",
        md,
        Column("id", big, primary_key=True, autoincrement=True),
        Column("fingerprint", String(32), nullable=False),
        Column("rule_id", String(100), nullable=False),
        Column("from_state", String(16), nullable=False),
        Column("to_state", String(16), nullable=False),
        Column("at", Double, nullable=False),
        Column("value", Double),
        Column("labels", Text, nullable=False),
        Column("note", String(250)),
        Index(f"ix_{P}alert_transitions_fp_at", "fingerprint", "at"),
        Index(f"ix_{P}alert_transitions_at", "at"),
    )
    Table(
        f"{P}alert_groups",
        md,
        Column("key", String(32), primary_key=True),
        Column("route_index", Integer, nullable=False),
        Column("labels", Text, nullable=False),
        Column("created_at", Double, nullable=False),
        Column("last_flush_at", Double),
        Column("notified", Text, nullable=False),
        Column("sequence", Integer, nullable=False),
    )
    Table(
        f"{P}alert_outbox",
        md,
        Column("id", big, primary_key=True, autoincrement=True),
        Column("idempotency_key", String(120), nullable=False),
        Column("root_key", String(120)),
        Column("receiver", String(100), nullable=False),
        Column("payload", Text, nullable=False),
        Column("status", String(16), nullable=False),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("created_at", Double, nullable=False),
        Column("next_attempt_at", Double, nullable=False),
        Column("claimed_by", String(250)),
        Column("claimed_at", Double),
        Column("sent_at", Double),
        Column("external_id", String(250)),
        Column("last_error", Text),
        UniqueConstraint("idempotency_key", "receiver", name=f"uq_{P}alert_outbox_key"),
        Index(f"ix_{P}alert_outbox_status_next", "status", "next_attempt_at"),
    )
    Table(
        f"{P}alert_attempts",
        md,
        Column("id", big, primary_key=True, autoincrement=True),
        Column("outbox_id", big, ForeignKey(f"{P}alert_outbox.id", ondelete="CASCADE"), nullable=False),
        Column("at", Double, nullable=False),
        Column("status", Integer),
        Column("error", Text),
        Index(f"ix_{P}alert_attempts_outbox", "outbox_id"),
    )
    Table(
        f"{P}alert_silences",
        md,
        Column("id", String(32), primary_key=True),
        Column("matchers", Text, nullable=False),
        Column("starts_at", Double, nullable=False),
        Column("ends_at", Double, nullable=False),
        Column("created_by", String(250), nullable=False),
        Column("comment", Text, nullable=False),
        Column("created_at", Double, nullable=False),
        Index(f"ix_{P}alert_silences_ends", "ends_at"),
    )
    Table(
        f"{P}locks",
        md,
        Column("name", String(200), primary_key=True),
        Column("owner", String(250)),
        Column("acquired_at", Double, nullable=False),
        Column("expires_at", Double, nullable=False),
    )
    md.create_all(conn)


# -- 5: profiling: one session per task try, its stages and findings (frozen) ------------------


def _v5(conn: Connection) -> None:
    md = MetaData()
    big = BigInteger().with_variant(Integer, "sqlite")
    Table(
        f"{P}profile_sessions",
        md,
        Column("id", big, primary_key=True, autoincrement=True),
        Column("dag_id", String(250), nullable=False),
        Column("task_id", String(250), nullable=False),
        Column("run_id", String(250), nullable=False),
        Column("map_index", Integer, nullable=False, server_default="-1"),
        Column("try_number", Integer, nullable=False),
        Column("started_at", Double, nullable=False),
        Column("duration_s", Double, nullable=False),
        Column("peak_rss_bytes", BigInteger, nullable=False),
        Column("peak_cpu_percent", Double, nullable=False),
        Column("records_per_s", Double),
        Column("recommendations", Text, nullable=False),
        Column("recorded_at", Double, nullable=False),
        UniqueConstraint(
            "dag_id", "task_id", "run_id", "map_index", "try_number", name=f"uq_{P}profile_sessions_try"
        ),
        Index(f"ix_{P}profile_sessions_dag_task_started", "dag_id", "task_id", "started_at"),
        Index(f"ix_{P}profile_sessions_started", "started_at"),
        sqlite_autoincrement=True,
    )
    Table(
        f"{P}profile_stages",
        md,
        Column("id", big, primary_key=True, autoincrement=True),
        Column("session_id", big, ForeignKey(f"{P}profile_sessions.id", ondelete="CASCADE"), nullable=False),
        Column("path", String(500), nullable=False),
        Column("name", String(250), nullable=False),
        Column("stage_index", Integer, nullable=False),
        Column("started_at", Double, nullable=False),
        Column("duration_s", Double, nullable=False),
        Column("records_in", BigInteger),
        Column("records_out", BigInteger),
        Column("records_per_s", Double),
        Column("cpu_s", Double, nullable=False),
        Column("cpu_percent", Double, nullable=False),
        Column("cpu_percent_machine", Double, nullable=False),
        Column("peak_rss_bytes", BigInteger, nullable=False),
        Column("end_rss_bytes", BigInteger, nullable=False),
        Column("io_read_bytes", BigInteger),
        Column("io_write_bytes", BigInteger),
        Column("io_read_ops", BigInteger),
        Column("io_write_ops", BigInteger),
        Column("threads_peak", Integer, nullable=False),
        Column("children_peak", Integer, nullable=False),
        Column("samples", Integer, nullable=False),
        Column("error", Text),
        Index(f"ix_{P}profile_stages_session_path", "session_id", "path"),
    )
    Table(
        f"{P}profile_findings",
        md,
        Column("id", big, primary_key=True, autoincrement=True),
        Column("session_id", big, ForeignKey(f"{P}profile_sessions.id", ondelete="CASCADE"), nullable=False),
        Column("kind", String(20), nullable=False),
        Column("severity", String(10), nullable=False),
        Column("stage", String(500), nullable=False),
        Column("message", Text, nullable=False),
        Column("suggestion", Text, nullable=False),
        Column("value", Double, nullable=False),
        Column("threshold", Double, nullable=False),
        Index(f"ix_{P}profile_findings_session", "session_id"),
    )
    md.create_all(conn, checkfirst=False)  # a table already in the way fails the upgrade


# -- 6: maintenance runs and health verdicts; rollups of points, outcomes, DAG runs (frozen) -------


def _v6(conn: Connection) -> None:
    md = MetaData()
    big = BigInteger().with_variant(Integer, "sqlite")
    Table(f"{P}metric_series", md, Column("id", Integer, primary_key=True))  # for the foreign key only
    runs = Table(
        f"{P}maintenance_runs",
        md,
        Column("id", big, primary_key=True, autoincrement=True),
        Column("task", String(50), nullable=False),
        Column("target", String(500), nullable=False),
        Column("dag_id", String(250)),
        Column("task_id", String(250)),
        Column("run_id", String(250)),
        Column("started_at", Double, nullable=False),
        Column("duration_s", Double, nullable=False),
        Column("dry_run", Boolean, nullable=False),
        Column("ok", Boolean, nullable=False),
        Column("looked_at", BigInteger, nullable=False),
        Column("changed", BigInteger, nullable=False),
        Column("freed_bytes", BigInteger, nullable=False),
        Column("freed_rows", BigInteger, nullable=False),
        Column("freed_files", BigInteger, nullable=False),
        Column("errors", Text, nullable=False),
        Column("details", Text, nullable=False),
        Column("recorded_at", Double, nullable=False),
        Index(f"ix_{P}maintenance_runs_task_started", "task", "started_at"),
        Index(f"ix_{P}maintenance_runs_started", "started_at"),
        sqlite_autoincrement=True,
    )
    health = Table(
        f"{P}maintenance_health",
        md,
        Column(
            "maintenance_run_id",
            big,
            ForeignKey(f"{P}maintenance_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("component", String(50), nullable=False),
        Column("status", String(16), nullable=False),
        Column("reasons", Text, nullable=False),
        Column("latency_s", Double),
        Column("figures", Text, nullable=False),
        Column("checked_at", Double, nullable=False),
        PrimaryKeyConstraint("maintenance_run_id", "component", name=f"pk_{P}maintenance_health"),
        Index(f"ix_{P}maintenance_health_component_checked", "component", "checked_at"),
    )
    metric_rollups = Table(
        f"{P}metric_rollups",
        md,
        Column("granularity", String(10), nullable=False),
        Column("series_id", Integer, ForeignKey(f"{P}metric_series.id", ondelete="CASCADE"), nullable=False),
        Column("bucket_ms", BigInteger, nullable=False),
        Column("value_count", BigInteger, nullable=False),
        Column("value_sum", Double, nullable=False),
        Column("value_min", Double, nullable=False),
        Column("value_max", Double, nullable=False),
        Column("value_avg", Double, nullable=False),
        Column("value_p95", Double),
        PrimaryKeyConstraint("granularity", "series_id", "bucket_ms", name=f"pk_{P}metric_rollups"),
        Index(f"ix_{P}metric_rollups_bucket", "granularity", "bucket_ms"),
    )
    outcome_rollups = Table(
        f"{P}outcome_rollups",
        md,
        Column("granularity", String(10), nullable=False),
        Column("bucket_ms", BigInteger, nullable=False),
        Column("dag_id", String(250), nullable=False),
        Column("task_id", String(250), nullable=False),
        Column("state", String(20), nullable=False),
        Column("tries", BigInteger, nullable=False),
        Column("duration_count", BigInteger, nullable=False),
        Column("duration_sum", Double),
        Column("duration_min", Double),
        Column("duration_max", Double),
        PrimaryKeyConstraint(
            "granularity", "bucket_ms", "dag_id", "task_id", "state", name=f"pk_{P}outcome_rollups"
        ),
    )
    dag_run_rollups = Table(
        f"{P}dag_run_rollups",
        md,
        Column("granularity", String(10), nullable=False),
        Column("bucket_ms", BigInteger, nullable=False),
        Column("dag_id", String(250), nullable=False),
        Column("state", String(20), nullable=False),
        Column("runs", BigInteger, nullable=False),
        Column("duration_count", BigInteger, nullable=False),
        Column("duration_sum", Double),
        Column("duration_min", Double),
        Column("duration_max", Double),
        PrimaryKeyConstraint("granularity", "bucket_ms", "dag_id", "state", name=f"pk_{P}dag_run_rollups"),
    )
    rollup_buckets = Table(
        f"{P}rollup_buckets",
        md,
        Column("granularity", String(10), nullable=False),
        Column("start_ms", BigInteger, nullable=False),
        Column("end_ms", BigInteger, nullable=False),
        Column("points", BigInteger, nullable=False),
        Column("outcomes", BigInteger, nullable=False),
        Column("dag_runs", BigInteger, nullable=False),
        Column("rolled_at", Double, nullable=False),
        PrimaryKeyConstraint("granularity", "start_ms", name=f"pk_{P}rollup_buckets"),
    )
    raw_deleted = Table(
        f"{P}raw_deleted",
        md,
        Column("start_ms", BigInteger, nullable=False),
        Column("end_ms", BigInteger, nullable=False),
        Column("deleted_at", Double, nullable=False),
        PrimaryKeyConstraint("start_ms", name=f"pk_{P}raw_deleted"),
    )
    # one by one: metric_series is in this MetaData only for the foreign key
    tables = (runs, health, metric_rollups, outcome_rollups, dag_run_rollups, rollup_buckets, raw_deleted)
    for table in tables:
        table.create(conn)  # a table already in the way fails the upgrade


# -- 7: migrations: ledger, step log, applied migrations, pipeline versions and configs (frozen) --


def _v7(conn: Connection) -> None:
    md = MetaData()
    runs = Table(
        f"{P}migration_runs",
        md,
        Column("id", String(64), primary_key=True),
        Column("pipeline", String(200), nullable=False),
        Column("from_version", String(100), nullable=False),
        Column("to_version", String(100), nullable=False),
        Column("direction", String(8), nullable=False),
        Column("state", String(16), nullable=False),
        Column("owner", String(250), nullable=False),
        Column("started_at", Double, nullable=False),
        Column("ended_at", Double),
        Column("error", Text),
        Column("dag_id", String(250)),
        Column("dag_run_id", String(250)),
        Column("migrations", Text, nullable=False),
        Column("detail", Text, nullable=False),
        Index(f"ix_{P}migration_runs_pipeline_started", "pipeline", "started_at"),
        Index(f"ix_{P}migration_runs_state", "state"),
    )
    steps = Table(
        f"{P}migration_steps",
        md,
        Column("run_id", String(64), ForeignKey(f"{P}migration_runs.id", ondelete="CASCADE"), nullable=False),
        Column("seq", Integer, nullable=False),
        Column("migration", String(210), nullable=False),
        Column("phase", String(16), nullable=False),
        Column("idx", Integer, nullable=False),
        Column("kind", String(40), nullable=False),
        Column("description", Text, nullable=False),
        Column("state", String(16), nullable=False),
        Column("started_at", Double, nullable=False),
        Column("ended_at", Double),
        Column("sql", Text, nullable=False),
        Column("error", Text),
        Column("detail", Text, nullable=False),
        PrimaryKeyConstraint("run_id", "seq", name=f"pk_{P}migration_steps"),
    )
    applied = Table(
        f"{P}migration_applied",
        md,
        Column("pipeline", String(200), nullable=False),
        Column("from_version", String(100), nullable=False),
        Column("to_version", String(100), nullable=False),
        Column("checksum", String(64), nullable=False),
        Column("source", Text, nullable=False),
        Column("applied_at", Double, nullable=False),
        Column("run_id", String(64), nullable=False),
        Column("repaired_at", Double),
        PrimaryKeyConstraint("pipeline", "from_version", "to_version", name=f"pk_{P}migration_applied"),
    )
    versions = Table(
        f"{P}pipeline_versions",
        md,
        Column("pipeline", String(200), primary_key=True),
        Column("version", String(100), nullable=False),
        Column("updated_at", Double, nullable=False),
        Column("run_id", String(64)),
        Column("baseline", Boolean, nullable=False),
    )
    configs = Table(
        f"{P}pipeline_configs",
        md,
        Column("pipeline", String(200), primary_key=True),
        Column("document", Text, nullable=False),
        Column("revision", Integer, nullable=False),
        Column("updated_at", Double, nullable=False),
    )
    for table in (runs, steps, applied, versions, configs):
        table.create(conn)  # a table already in the way fails the upgrade


UPGRADES: tuple[Upgrade, ...] = (
    Upgrade(1, "metric series and points; task outcomes", _v1),
    Upgrade(2, "series keyed by a hash of their labels; labels table for filtering in SQL", _v2),
    Upgrade(3, "DAG-run outcomes", _v3),
    Upgrade(
        4, "alerting: alerts, transitions, groups, outbox, delivery attempts, silences; lease locks", _v4
    ),
    Upgrade(5, "profiling: sessions (one per task try), their stages and findings", _v5),
    Upgrade(6, "maintenance: runs, health verdicts; rollups of metric points, task outcomes, DAG runs", _v6),
    Upgrade(7, "migrations: ledger, step log, applied migrations, pipeline versions and configs", _v7),
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
