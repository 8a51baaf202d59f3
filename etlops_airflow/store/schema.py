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
    Boolean,
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

# -- profiling (upgrade 5) ------------------------------------------------------------------------

# One row per profiled task try, upserted on the try's key; its stages and findings are replaced
# with it. Ids are never reused (SQLite AUTOINCREMENT): a link to a session never shows another.
profile_sessions = Table(
    f"{PREFIX}profile_sessions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
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
    Column("recommendations", Text, nullable=False),  # JSON list of text
    Column("recorded_at", Double, nullable=False),
    UniqueConstraint(
        "dag_id", "task_id", "run_id", "map_index", "try_number", name=f"uq_{PREFIX}profile_sessions_try"
    ),
    Index(f"ix_{PREFIX}profile_sessions_dag_task_started", "dag_id", "task_id", "started_at"),
    Index(f"ix_{PREFIX}profile_sessions_started", "started_at"),
    sqlite_autoincrement=True,
)

# Every StageFigures field of one stage run (``stage_index`` is StageFigures.index).
profile_stages = Table(
    f"{PREFIX}profile_stages",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column(
        "session_id",
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey(f"{PREFIX}profile_sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
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
    Index(f"ix_{PREFIX}profile_stages_session_path", "session_id", "path"),
)

profile_findings = Table(
    f"{PREFIX}profile_findings",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column(
        "session_id",
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey(f"{PREFIX}profile_sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("kind", String(20), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("stage", String(500), nullable=False),
    Column("message", Text, nullable=False),
    Column("suggestion", Text, nullable=False),
    Column("value", Double, nullable=False),
    Column("threshold", Double, nullable=False),
    Index(f"ix_{PREFIX}profile_findings_session", "session_id"),
)

# -- maintenance (upgrade 6) ----------------------------------------------------------------------

# One row per run of a maintenance operator (a retried task writes one per try). Ids are never
# reused (SQLite AUTOINCREMENT).
maintenance_runs = Table(
    f"{PREFIX}maintenance_runs",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("task", String(50), nullable=False),  # one of core.maintenance.model.MAINTENANCE_TASKS
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
    Column("errors", Text, nullable=False),  # JSON list of text
    Column("details", Text, nullable=False),  # JSON object
    Column("recorded_at", Double, nullable=False),
    Index(f"ix_{PREFIX}maintenance_runs_task_started", "task", "started_at"),
    Index(f"ix_{PREFIX}maintenance_runs_started", "started_at"),
    sqlite_autoincrement=True,
)

# The verdict on each component of a health-check run (what the operations view shows).
maintenance_health = Table(
    f"{PREFIX}maintenance_health",
    metadata,
    Column(
        "maintenance_run_id",
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey(f"{PREFIX}maintenance_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("component", String(50), nullable=False),
    Column("status", String(16), nullable=False),  # healthy, degraded, unhealthy, skipped
    Column("reasons", Text, nullable=False),  # JSON list of text
    Column("latency_s", Double),
    Column("figures", Text, nullable=False),  # JSON object of numbers
    Column("checked_at", Double, nullable=False),
    PrimaryKeyConstraint("maintenance_run_id", "component", name=f"pk_{PREFIX}maintenance_health"),
    Index(f"ix_{PREFIX}maintenance_health_component_checked", "component", "checked_at"),
)

# Rollups of metric points per series and bucket (granularity hourly, daily, weekly, monthly;
# bucket_ms = the bucket's start). value_p95 is NULL where the database has no percentile_cont.
metric_rollups = Table(
    f"{PREFIX}metric_rollups",
    metadata,
    Column("granularity", String(10), nullable=False),
    Column(
        "series_id",
        Integer,
        ForeignKey(f"{PREFIX}metric_series.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("bucket_ms", BigInteger, nullable=False),
    Column("value_count", BigInteger, nullable=False),
    Column("value_sum", Double, nullable=False),
    Column("value_min", Double, nullable=False),
    Column("value_max", Double, nullable=False),
    Column("value_avg", Double, nullable=False),
    Column("value_p95", Double),
    PrimaryKeyConstraint("granularity", "series_id", "bucket_ms", name=f"pk_{PREFIX}metric_rollups"),
    Index(f"ix_{PREFIX}metric_rollups_bucket", "granularity", "bucket_ms"),
)

# Task tries per bucket (of their end time, else the time recorded), task and state.
outcome_rollups = Table(
    f"{PREFIX}outcome_rollups",
    metadata,
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
        "granularity", "bucket_ms", "dag_id", "task_id", "state", name=f"pk_{PREFIX}outcome_rollups"
    ),
)

# DAG runs per bucket (of their end time, else the time recorded), DAG and state.
dag_run_rollups = Table(
    f"{PREFIX}dag_run_rollups",
    metadata,
    Column("granularity", String(10), nullable=False),
    Column("bucket_ms", BigInteger, nullable=False),
    Column("dag_id", String(250), nullable=False),
    Column("state", String(20), nullable=False),
    Column("runs", BigInteger, nullable=False),
    Column("duration_count", BigInteger, nullable=False),
    Column("duration_sum", Double),
    Column("duration_min", Double),
    Column("duration_max", Double),
    PrimaryKeyConstraint("granularity", "bucket_ms", "dag_id", "state", name=f"pk_{PREFIX}dag_run_rollups"),
)

# One row per rolled-up bucket of a granularity: what the rollups cover. Reads use a rollup only
# where it is listed here; retention deletes raw rows only where every granularity in use is.
rollup_buckets = Table(
    f"{PREFIX}rollup_buckets",
    metadata,
    Column("granularity", String(10), nullable=False),
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("outcomes", BigInteger, nullable=False),
    Column("dag_runs", BigInteger, nullable=False),
    Column("rolled_at", Double, nullable=False),
    PrimaryKeyConstraint("granularity", "start_ms", name=f"pk_{PREFIX}rollup_buckets"),
)

# The time ranges retention deleted raw points, task outcomes and DAG runs from (merged). A
# rollup of a bucket that overlaps one is not rebuilt from what is left of the raw rows.
raw_deleted = Table(
    f"{PREFIX}raw_deleted",
    metadata,
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger, nullable=False),
    Column("deleted_at", Double, nullable=False),
    PrimaryKeyConstraint("start_ms", name=f"pk_{PREFIX}raw_deleted"),
)

# -- migrations (upgrade 7) ----------------------------------------------------------------------

# The ledger: one row per run of a pipeline's migrations (a path of one or more migrations).
# ``detail`` (JSON) carries what another process needs to continue the run: the plan, the
# backup, figures taken before the steps.
migration_runs = Table(
    f"{PREFIX}migration_runs",
    metadata,
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
    Column("migrations", Text, nullable=False),  # JSON ["1.0.0->1.1.0", ...]
    Column("detail", Text, nullable=False),  # JSON
    Index(f"ix_{PREFIX}migration_runs_pipeline_started", "pipeline", "started_at"),
    Index(f"ix_{PREFIX}migration_runs_state", "state"),
)

# The step log: every phase of a run (backup, validation, step, rollback, restore, recover).
migration_steps = Table(
    f"{PREFIX}migration_steps",
    metadata,
    Column(
        "run_id", String(64), ForeignKey(f"{PREFIX}migration_runs.id", ondelete="CASCADE"), nullable=False
    ),
    Column("seq", Integer, nullable=False),
    Column("migration", String(210), nullable=False),
    Column("phase", String(16), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("description", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", Double, nullable=False),
    Column("ended_at", Double),
    Column("sql", Text, nullable=False),  # JSON list of statements
    Column("error", Text),
    Column("detail", Text, nullable=False),  # JSON
    PrimaryKeyConstraint("run_id", "seq", name=f"pk_{PREFIX}migration_steps"),
)

# The migrations applied to each pipeline now, with the checksum of the file that was applied.
migration_applied = Table(
    f"{PREFIX}migration_applied",
    metadata,
    Column("pipeline", String(200), nullable=False),
    Column("from_version", String(100), nullable=False),
    Column("to_version", String(100), nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("applied_at", Double, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("repaired_at", Double),
    PrimaryKeyConstraint("pipeline", "from_version", "to_version", name=f"pk_{PREFIX}migration_applied"),
)

# Each pipeline's current version (set by runs, or by ``baseline``).
pipeline_versions = Table(
    f"{PREFIX}pipeline_versions",
    metadata,
    Column("pipeline", String(200), primary_key=True),
    Column("version", String(100), nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("run_id", String(64)),
    Column("baseline", Boolean, nullable=False),
)

# Each pipeline's JSON config document, changed by ``config_update`` steps (compare-and-set).
pipeline_configs = Table(
    f"{PREFIX}pipeline_configs",
    metadata,
    Column("pipeline", String(200), primary_key=True),
    Column("document", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("updated_at", Double, nullable=False),
)
