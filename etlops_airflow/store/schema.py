"""The store's tables in their current shape (schema version = ``upgrades.HEAD``), as SQLAlchemy Core.

This module describes what queries run against. It never builds a table by itself: every
table is created or altered by a numbered upgrade in ``upgrades.py``, which freezes the
shape it shipped. Change a table here only together with a new upgrade that makes an
existing store look like this (tests/unit/test_store_upgrades.py compares the two).

Time columns are seconds since the epoch (UTC) as double precision, except metric points,
whose ``ts_ms`` is whole milliseconds so that bucketing is integer arithmetic that SQLite
and PostgreSQL compute the same way.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
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
)

PREFIX = "etlops_"

metadata = MetaData()

schema_version = Table(
    f"{PREFIX}schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(200), nullable=False),
    Column("applied_at", Double, nullable=False),
)

# A series is a metric name plus one set of labels. It is keyed by a SHA-256 of the canonical
# labels text, so the unique index stays small on PostgreSQL whatever the labels hold; ids are
# never reused (SQLite AUTOINCREMENT), so a stale cached id fails instead of hitting another series.
metric_series = Table(
    f"{PREFIX}metric_series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("labels", Text, nullable=False),  # canonical JSON: sorted keys, text values
    Column("labels_hash", String(64), nullable=False),  # sha256 hex of labels
    UniqueConstraint("name", "labels_hash", name=f"uq_{PREFIX}metric_series_name_hash"),
    sqlite_autoincrement=True,
)

# One row per label of a series: label filters are joins on (name, value), done in SQL.
metric_labels = Table(
    f"{PREFIX}metric_labels",
    metadata,
    Column(
        "series_id",
        Integer,
        ForeignKey(f"{PREFIX}metric_series.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(100), nullable=False),
    Column("value", String(500), nullable=False),
    PrimaryKeyConstraint("series_id", "name", name=f"pk_{PREFIX}metric_labels"),
    Index(f"ix_{PREFIX}metric_labels_name_value", "name", "value"),
)

metric_points = Table(
    f"{PREFIX}metric_points",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column(
        "series_id",
        Integer,
        ForeignKey(f"{PREFIX}metric_series.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("ts_ms", BigInteger, nullable=False),
    Column("value", Double, nullable=False),
    Index(f"ix_{PREFIX}metric_points_series_ts", "series_id", "ts_ms"),
    Index(f"ix_{PREFIX}metric_points_ts", "ts_ms"),
)

task_outcomes = Table(
    f"{PREFIX}task_outcomes",
    metadata,
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
        "dag_id", "task_id", "run_id", "map_index", "try_number", name=f"uq_{PREFIX}task_outcomes_try"
    ),
    Index(f"ix_{PREFIX}task_outcomes_dag_task_end", "dag_id", "task_id", "end_ts"),
    Index(f"ix_{PREFIX}task_outcomes_end", "end_ts"),
)
