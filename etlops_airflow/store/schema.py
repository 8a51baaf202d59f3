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

# One row per finished DAG run (success or failed), upserted on (dag_id, run_id). Added by upgrade 3.
dag_runs = Table(
    f"{PREFIX}dag_runs",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("dag_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("state", String(20), nullable=False),
    Column("run_type", String(50)),
    Column("start_ts", Double),
    Column("end_ts", Double),
    Column("duration_s", Double),
    Column("recorded_at", Double, nullable=False),
    UniqueConstraint("dag_id", "run_id", name=f"uq_{PREFIX}dag_runs_run"),
    Index(f"ix_{PREFIX}dag_runs_dag_end", "dag_id", "end_ts"),
    Index(f"ix_{PREFIX}dag_runs_end", "end_ts"),
)

# -- alerting -----------------------------------------------------------------------------------

# One row per alert (a rule and a set of labels) that is pending, firing or resolved.
alerts = Table(
    f"{PREFIX}alerts",
    metadata,
    Column("fingerprint", String(32), primary_key=True),
    Column("rule_id", String(100), nullable=False),
    Column("labels", Text, nullable=False),  # JSON
    Column("dag_id", String(250)),  # the dag_id label, for DAG authorization in SQL
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
    Column("annotations", Text, nullable=False, server_default="{}"),  # JSON, e.g. the failed run_id
    Column("updated_at", Double, nullable=False),
    Index(f"ix_{PREFIX}alerts_state", "state"),
    Index(f"ix_{PREFIX}alerts_rule", "rule_id"),
    Index(f"ix_{PREFIX}alerts_dag", "dag_id"),
)

alert_transitions = Table(
    f"{PREFIX}alert_transitions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("fingerprint", String(32), nullable=False),
    Column("rule_id", String(100), nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    Column("at", Double, nullable=False),
    Column("value", Double),
    Column("labels", Text, nullable=False),
    Column("note", String(250)),
    Index(f"ix_{PREFIX}alert_transitions_fp_at", "fingerprint", "at"),
    Index(f"ix_{PREFIX}alert_transitions_at", "at"),
)

# Alertmanager-style groups: what each route's receivers were last told, and when.
alert_groups = Table(
    f"{PREFIX}alert_groups",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("route_index", Integer, nullable=False),
    Column("labels", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("last_flush_at", Double),
    Column("notified", Text, nullable=False),  # JSON {fingerprint: "firing"}
    Column("sequence", Integer, nullable=False),
)

# The outbox: every notification to every receiver, written in the evaluation's transaction
# and delivered afterwards, so a crash between the two neither loses nor repeats one.
alert_outbox = Table(
    f"{PREFIX}alert_outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("idempotency_key", String(120), nullable=False),
    Column("root_key", String(120)),  # the group's first notification to this receiver (threads)
    Column("receiver", String(100), nullable=False),
    Column("payload", Text, nullable=False),  # the MessageView as JSON
    Column("status", String(16), nullable=False),  # pending, sending, sent, failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", Double, nullable=False),
    Column("next_attempt_at", Double, nullable=False),
    Column("claimed_by", String(250)),
    Column("claimed_at", Double),
    Column("sent_at", Double),
    Column("external_id", String(250)),  # Slack "CHANNEL:TS" of a bot-token message
    Column("last_error", Text),
    UniqueConstraint("idempotency_key", "receiver", name=f"uq_{PREFIX}alert_outbox_key"),
    Index(f"ix_{PREFIX}alert_outbox_status_next", "status", "next_attempt_at"),
)

alert_attempts = Table(
    f"{PREFIX}alert_attempts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column(
        "outbox_id",
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey(f"{PREFIX}alert_outbox.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("at", Double, nullable=False),
    Column("status", Integer),
    Column("error", Text),
    Index(f"ix_{PREFIX}alert_attempts_outbox", "outbox_id"),
)

alert_silences = Table(
    f"{PREFIX}alert_silences",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("matchers", Text, nullable=False),  # JSON {label: [values]}
    Column("starts_at", Double, nullable=False),
    Column("ends_at", Double, nullable=False),
    Column("created_by", String(250), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Index(f"ix_{PREFIX}alert_silences_ends", "ends_at"),
)

# Lease locks (alert evaluation, migrations): one holder, and a dead holder's lease expires.
locks = Table(
    f"{PREFIX}locks",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("owner", String(250)),
    Column("acquired_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
)
