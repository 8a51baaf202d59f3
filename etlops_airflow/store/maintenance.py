"""Maintenance in the store (``store.maintenance``): the record of every maintenance run and the
health verdicts, the rollups of metric points, task outcomes and DAG runs, the store's own
retention ("db clean"), and the figures of the performance report. All aggregation in SQL.

Rollups: one transaction per call deletes the rollup rows of the buckets it covers and inserts
them again with ``INSERT … SELECT … GROUP BY`` (series and bucket; DAG, task, state and bucket),
then records the buckets in ``etlops_rollup_buckets``. Running it again for the same interval
gives the same rows. Rollups hold count, sum, min, max and average; the 95th percentile
(``percentile_cont(0.95)``) on PostgreSQL, and on SQLite only when SQLite was built with its
percentile functions (3.47+ with ``SQLITE_ENABLE_PERCENTILE``; Python's usually is not): NULL
otherwise.

Retention deletes, in batches of their own transactions, raw metric points, task outcomes and
DAG runs older than a cutoff that the rollups already hold (see
:func:`etlops_airflow.core.maintenance.rollup.deletable_ranges`), and maintenance runs older than
the cutoff. The ranges it deleted from are kept (``etlops_raw_deleted``): a later rollup of a
bucket there is never rebuilt from what is left of its raw rows. It keeps the rollup it has,
derives it from a finer granularity's rollups that hold the whole bucket, or skips it and says
so (:class:`~etlops_airflow.core.maintenance.rollup.BucketWork`).

Reads: :meth:`MetricsStore.series` asks :func:`rollup_series_statement` first: when the step is
a whole number of hours (or days) and the rollups hold every whole hour (day) of the window, the
buckets come from the rollups, and the partial hours at the window's ends from the raw points.
"""

from __future__ import annotations

import json
import math
import numbers
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Double, Select, case, cast, func, or_, select, text, union_all
from sqlalchemy.exc import SQLAlchemyError

from etlops_airflow.core.maintenance.health import STATUSES
from etlops_airflow.core.maintenance.model import MAINTENANCE_TASKS, MaintenanceRun
from etlops_airflow.core.maintenance.report import DagFailures, TaskDurations
from etlops_airflow.core.maintenance.rollup import (
    Bucket,
    BucketWork,
    Range,
    RollupPlan,
    buckets_in,
    classify_buckets,
    contiguous,
    deletable_ranges,
    fixed_width,
    merge_ranges,
    plan_rollup,
    read_splits,
)
from etlops_airflow.core.models import FAILED_TRY_STATES, RAN_TRY_STATES, clean_text
from etlops_airflow.exceptions import ValidationError
from etlops_airflow.store import schema
from etlops_airflow.store.db import Database
from etlops_airflow.store.outcomes import check_limit

R = schema.maintenance_runs
H = schema.maintenance_health
MR = schema.metric_rollups
OR = schema.outcome_rollups
DR = schema.dag_run_rollups
RB = schema.rollup_buckets
RDEL = schema.raw_deleted
P = schema.metric_points
T = schema.task_outcomes
D = schema.dag_runs

MAX_TARGET = 500
MAX_IDENTIFIER = 250
MAX_ERROR = 2000
MAX_ERRORS = 100
MAX_DETAILS = 4_000_000  # characters of a run's details as JSON
MAX_COUNT = 2**63 - 1
DEFAULT_BATCH = 10_000


@dataclass(frozen=True)
class StoredRun:
    """A recorded maintenance run: its id in the store, when it was recorded, and the run."""

    id: int
    recorded_at: float
    run: MaintenanceRun


@dataclass(frozen=True)
class HealthRecord:
    """The newest verdict on one component, and the run that gave it."""

    component: str
    status: str
    reasons: tuple[str, ...]
    latency_s: float | None
    figures: dict[str, float]
    checked_at: float
    maintenance_run_id: int
    dag_id: str | None
    task_id: str | None


@dataclass
class PipelineCounts:
    """One DAG's task tries and DAG runs per state in a window, and its runs' durations."""

    dag_id: str
    tries: dict[str, int] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)
    duration_count: int = 0
    duration_sum: float = 0.0
    duration_max: float | None = None

    @property
    def avg_duration_s(self) -> float | None:
        return self.duration_sum / self.duration_count if self.duration_count else None


@dataclass(frozen=True)
class TaskTotals:
    """The runs of one maintenance task type: how many, how many failed or were dry runs, and
    what the real (not dry) runs freed."""

    task: str
    runs: int
    failed: int
    dry_runs: int
    freed_bytes: int
    freed_rows: int
    freed_files: int
    last_started_at: float


@dataclass(frozen=True)
class RollupResult:
    """What :meth:`MaintenanceStore.rollup` did (or, in a dry run, would do)."""

    granularity: str
    buckets: tuple[Bucket, ...]
    points: int  # raw metric points in the buckets
    outcomes: int  # task outcomes in the buckets
    dag_runs: int  # DAG runs in the buckets
    rows_written: dict[str, int] = field(default_factory=dict)  # rollup table -> rows (in a dry run: 0)
    rows_replaced: dict[str, int] = field(default_factory=dict)  # rollup rows of these buckets before
    p95: str = ""  # how the 95th percentile was computed, or why it was not
    dry_run: bool = False
    # buckets overlapping raw rows already deleted by retention (see BucketWork)
    derived: tuple[tuple[Bucket, str], ...] = ()
    kept: tuple[Bucket, ...] = ()
    skipped: tuple[Bucket, ...] = ()


@dataclass(frozen=True)
class CleanResult:
    """What :meth:`MaintenanceStore.clean` deleted (or, in a dry run, would delete)."""

    cutoff_ms: int
    ranges: tuple[Range, ...]  # the rolled-up time ranges raw rows were deleted from
    freed: dict[str, int]  # table -> rows
    batches: int
    dry_run: bool = False

    @property
    def rows(self) -> int:
        return sum(self.freed.values())


# -- checks ---------------------------------------------------------------------------------------


def _text(field_name: str, value: Any, limit: int, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not value and not optional):
        raise ValidationError(field_name, value, "expected text", owner="maintenance run")
    text_value = clean_text(value)
    return text_value if len(text_value) <= limit else text_value[: limit - 1] + "…"


def _count(field_name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= int(value) <= MAX_COUNT:
        raise ValidationError(
            field_name, value, "expected a whole number, 0 or more", owner="maintenance run"
        )
    return int(value)


def _seconds(field_name: str, value: Any, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValidationError(
            field_name, value, "expected a finite number of seconds", owner="maintenance run"
        )
    if value < minimum:
        raise ValidationError(field_name, value, f"must be at least {minimum:g}", owner="maintenance run")
    return float(value)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)


def _errors(errors: Any) -> list[str]:
    if isinstance(errors, str) or not isinstance(errors, Sequence):
        raise ValidationError("errors", errors, "expected a list of messages", owner="maintenance run")
    items = [clean_text(str(e))[:MAX_ERROR] for e in errors]
    if len(items) > MAX_ERRORS:
        items = [*items[: MAX_ERRORS - 1], f"and {len(items) - MAX_ERRORS + 1} more"]
    return items


def _health_rows(details: Mapping[str, Any], checked_at: float) -> list[dict[str, Any]]:
    """The ``components`` of a health-check run's details as rows (one per component)."""
    components = details.get("components", [])
    if isinstance(components, (str, bytes)) or not isinstance(components, Sequence):
        raise ValidationError("details.components", components, "expected a list", owner="health check")
    rows: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(components):
        where = f"details.components[{i}]"
        if not isinstance(item, Mapping):
            raise ValidationError(where, item, "expected a dict", owner="health check")
        component = _text(f"{where}.component", item.get("component"), 50)
        status = item.get("status")
        if status not in STATUSES:
            raise ValidationError(
                f"{where}.status", status, f"expected one of {', '.join(STATUSES)}", owner="health check"
            )
        latency = item.get("latency_s")
        figures = item.get("figures") or {}
        rows[str(component)] = {
            "component": component,
            "status": status,
            "reasons": _json(_errors(item.get("reasons") or [])),
            "latency_s": None if latency is None else _seconds(f"{where}.latency_s", latency),
            "figures": _json({str(k): v for k, v in dict(figures).items()}),
            "checked_at": checked_at,
        }
    return list(rows.values())


def _derive_sql() -> list[tuple[str, str]]:
    """Rollups of one bucket (``:bucket`` = ``:lo``) from the rollups of a finer granularity
    (``:source``) that hold all of ``[:lo, :hi)``: counts and sums add up, min of mins, max of
    maxes, average = sum / count; no percentile."""
    where = "granularity = :source AND bucket_ms >= :lo AND bucket_ms < :hi"
    return [
        (
            MR.name,
            f"""
            INSERT INTO {MR.name} (granularity, series_id, bucket_ms, value_count, value_sum, value_min,
                                   value_max, value_avg, value_p95)
            SELECT :g, series_id, CAST(:lo AS BIGINT), sum(value_count), sum(value_sum), min(value_min),
                   max(value_max), sum(value_sum) / CAST(sum(value_count) AS DOUBLE PRECISION), NULL
            FROM {MR.name} WHERE {where}
            GROUP BY series_id
            """,
        ),
        (
            OR.name,
            f"""
            INSERT INTO {OR.name} (granularity, bucket_ms, dag_id, task_id, state, tries, duration_count,
                                   duration_sum, duration_min, duration_max)
            SELECT :g, CAST(:lo AS BIGINT), dag_id, task_id, state, sum(tries), sum(duration_count),
                   sum(duration_sum), min(duration_min), max(duration_max)
            FROM {OR.name} WHERE {where}
            GROUP BY dag_id, task_id, state
            """,
        ),
        (
            DR.name,
            f"""
            INSERT INTO {DR.name} (granularity, bucket_ms, dag_id, state, runs, duration_count,
                                   duration_sum, duration_min, duration_max)
            SELECT :g, CAST(:lo AS BIGINT), dag_id, state, sum(runs), sum(duration_count),
                   sum(duration_sum), min(duration_min), max(duration_max)
            FROM {DR.name} WHERE {where}
            GROUP BY dag_id, state
            """,
        ),
    ]


def _p95_sql(conn: Connection) -> tuple[str, str]:
    """The 95th-percentile aggregate of ``value`` on this database, and how it is computed."""
    if conn.dialect.name == "postgresql":
        return "percentile_cont(0.95) WITHIN GROUP (ORDER BY value)", "PostgreSQL percentile_cont(0.95)"
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("SELECT percentile_cont(1.0, 0.95)")
    except SQLAlchemyError:
        return "NULL", "not computed: this SQLite has no percentile_cont (NULL in value_p95)"
    return "percentile_cont(value, 0.95)", "SQLite percentile_cont(value, 0.95)"


class MaintenanceStore:
    """The maintenance concern of the store (``store.maintenance``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- maintenance runs --------------------------------------------------------------------------

    def record(self, run: MaintenanceRun) -> int:
        """Store one run (and, for a health check, the verdict on each component of
        ``details["components"]``) in one transaction. Returns the run's id. Free text is made
        storable (NUL shown as ``\\x00``) and cut to its column; bad figures are refused before
        anything is written."""
        if not isinstance(run, MaintenanceRun):
            raise ValidationError("run", run, "expected a MaintenanceRun", owner="maintenance run")
        if run.task not in MAINTENANCE_TASKS:
            raise ValidationError(
                "task", run.task, f"expected one of {', '.join(MAINTENANCE_TASKS)}", owner="maintenance run"
            )
        if not isinstance(run.details, Mapping):
            raise ValidationError("details", run.details, "expected a dict", owner="maintenance run")
        details = _json(dict(run.details))
        if len(details) > MAX_DETAILS:
            details = _json({"truncated": f"details of {len(details):,} characters were too large to keep"})
        errors = _errors(run.errors)
        started_at = _seconds("started_at", run.started_at)
        row = {
            "task": run.task,
            "target": _text("target", run.target, MAX_TARGET),
            "dag_id": _text("dag_id", run.dag_id, MAX_IDENTIFIER, optional=True),
            "task_id": _text("task_id", run.task_id, MAX_IDENTIFIER, optional=True),
            "run_id": _text("run_id", run.run_id, MAX_IDENTIFIER, optional=True),
            "started_at": started_at,
            "duration_s": _seconds("duration_s", run.duration_s),
            "dry_run": bool(run.dry_run),
            "ok": not errors,
            "looked_at": _count("looked_at", run.looked_at),
            "changed": _count("changed", run.changed),
            "freed_bytes": _count("freed_bytes", run.freed_bytes),
            "freed_rows": _count("freed_rows", run.freed_rows),
            "freed_files": _count("freed_files", run.freed_files),
            "errors": _json(errors),
            "details": details,
            "recorded_at": time.time(),
        }
        health = _health_rows(run.details, started_at) if run.task == "health_check" else []
        self.db.ensure_schema()
        with self.db.write(f"record maintenance run {run.task}") as conn:
            run_id = int(conn.execute(R.insert().values(**row).returning(R.c.id)).scalar_one())
            if health:
                conn.execute(H.insert(), [h | {"maintenance_run_id": run_id} for h in health])
        return run_id

    def runs(
        self,
        task: str | None = None,
        since: float | None = None,
        *,
        dag_id: str | None = None,
        dag_ids: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[StoredRun]:
        """Recorded runs, newest start first; of one task type and started at or after ``since``
        when given. ``dag_ids`` keeps the runs of those DAGs and runs not started from a DAG,
        in SQL before ``limit``."""
        stmt = select(R)
        if task is not None:
            if task not in MAINTENANCE_TASKS:
                raise ValidationError("task", task, f"expected one of {', '.join(MAINTENANCE_TASKS)}")
            stmt = stmt.where(R.c.task == task)
        if since is not None:
            stmt = stmt.where(R.c.started_at >= _seconds("since", since))
        if dag_id is not None:
            stmt = stmt.where(R.c.dag_id == dag_id)
        if dag_ids is not None:
            stmt = stmt.where(or_(R.c.dag_id.is_(None), self.db.values_in(R.c.dag_id, list(dag_ids))))
        stmt = stmt.order_by(R.c.started_at.desc(), R.c.id.desc()).limit(check_limit(limit))
        self.db.ensure_schema()
        with self.db.read("query maintenance runs") as conn:
            rows = conn.execute(stmt).all()
        return [
            StoredRun(
                id=int(r.id),
                recorded_at=float(r.recorded_at),
                run=MaintenanceRun(
                    task=r.task,
                    target=r.target,
                    started_at=float(r.started_at),
                    duration_s=float(r.duration_s),
                    dry_run=bool(r.dry_run),
                    looked_at=int(r.looked_at),
                    changed=int(r.changed),
                    freed_bytes=int(r.freed_bytes),
                    freed_rows=int(r.freed_rows),
                    freed_files=int(r.freed_files),
                    errors=tuple(json.loads(r.errors)),
                    details=json.loads(r.details),
                    dag_id=r.dag_id,
                    task_id=r.task_id,
                    run_id=r.run_id,
                ),
            )
            for r in rows
        ]

    def totals(self, *, since: float | None = None, dag_ids: Sequence[str] | None = None) -> list[TaskTotals]:
        """Per maintenance task type: runs, failed runs, dry runs, and what the real runs freed,
        since ``since`` (all when None), added up in SQL. ``dag_ids`` as in :meth:`runs`."""
        real = R.c.dry_run.is_(False)
        stmt = select(
            R.c.task,
            func.count(),
            func.sum(case((R.c.ok.is_(False), 1), else_=0)),
            func.sum(case((real, 0), else_=1)),
            func.sum(case((real, R.c.freed_bytes), else_=0)),
            func.sum(case((real, R.c.freed_rows), else_=0)),
            func.sum(case((real, R.c.freed_files), else_=0)),
            func.max(R.c.started_at),
        )
        if since is not None:
            stmt = stmt.where(R.c.started_at >= _seconds("since", since))
        if dag_ids is not None:
            stmt = stmt.where(or_(R.c.dag_id.is_(None), self.db.values_in(R.c.dag_id, list(dag_ids))))
        stmt = stmt.group_by(R.c.task).order_by(R.c.task)
        self.db.ensure_schema()
        with self.db.read("sum maintenance runs") as conn:
            rows = conn.execute(stmt).all()
        return [
            TaskTotals(
                task=r[0],
                runs=int(r[1]),
                failed=int(r[2] or 0),
                dry_runs=int(r[3] or 0),
                freed_bytes=int(r[4] or 0),
                freed_rows=int(r[5] or 0),
                freed_files=int(r[6] or 0),
                last_started_at=float(r[7]),
            )
            for r in rows
        ]

    def last_health(self) -> dict[str, HealthRecord]:
        """The newest verdict on each component ever checked, ``{component: HealthRecord}``."""
        ranked = select(
            H,
            func.row_number()
            .over(partition_by=H.c.component, order_by=(H.c.checked_at.desc(), H.c.maintenance_run_id.desc()))
            .label("rn"),
        ).subquery()
        stmt = (
            select(ranked, R.c.dag_id, R.c.task_id)
            .join(R, R.c.id == ranked.c.maintenance_run_id)
            .where(ranked.c.rn == 1)
            .order_by(ranked.c.component)
        )
        self.db.ensure_schema()
        with self.db.read("read last health") as conn:
            rows = conn.execute(stmt).all()
        return {
            r.component: HealthRecord(
                component=r.component,
                status=r.status,
                reasons=tuple(json.loads(r.reasons)),
                latency_s=None if r.latency_s is None else float(r.latency_s),
                figures={
                    k: float(v) for k, v in json.loads(r.figures).items() if isinstance(v, (int, float))
                },
                checked_at=float(r.checked_at),
                maintenance_run_id=int(r.maintenance_run_id),
                dag_id=r.dag_id,
                task_id=r.task_id,
            )
            for r in rows
        }

    # -- rollups ----------------------------------------------------------------------------------

    def rollup(
        self, granularity: str, start: float | None, end: float, *, dry_run: bool = False
    ) -> RollupResult:
        """Roll up the buckets of ``granularity`` that end in ``(start, end]`` (seconds; see
        :func:`~etlops_airflow.core.maintenance.rollup.plan_rollup`) in one transaction:
        delete their rollup rows, insert them again from the raw rows (or from finer rollups
        where retention deleted raw rows), record the buckets. A dry run counts and writes
        nothing."""
        return self.rollup_plan(plan_rollup(granularity, start, end), dry_run=dry_run)

    def rollup_plan(self, plan: RollupPlan, *, dry_run: bool = False) -> RollupResult:
        g = plan.granularity
        if not plan.buckets:
            return RollupResult(g, (), 0, 0, 0, dry_run=dry_run)
        span = plan.span
        assert span is not None
        self.db.ensure_schema()
        if dry_run:
            with self.db.read(f"plan {g} rollup") as conn:
                work = self._classify(conn, plan)
                counts = [0, 0, 0]
                for lo, hi in contiguous(work.raw):
                    for i, n in enumerate(self._source_counts(conn, (lo, hi))):
                        counts[i] += n
                replaced = self._rollup_rows(conn, g, [(b.start_ms, b.end_ms) for b in self._redone(work)])
            return RollupResult(
                g,
                plan.buckets,
                counts[0],
                counts[1],
                counts[2],
                rows_replaced=replaced,
                dry_run=True,
                derived=work.derived,
                kept=work.kept,
                skipped=work.skipped,
            )
        with self.db.write(f"{g} rollup") as conn:
            work = self._classify(conn, plan)
            redone = self._redone(work)
            p95_sql, p95_note = _p95_sql(conn)
            replaced = self._delete_rollups(conn, g, [(b.start_ms, b.end_ms) for b in redone])
            written = {MR.name: 0, OR.name: 0, DR.name: 0}
            pieces: list[tuple[Range, int | None]] = (
                [(r, None) for r in contiguous(work.raw)]
                if fixed_width(g)
                else [((b.start_ms, b.end_ms), b.start_ms) for b in work.raw]
            )
            for piece, constant in pieces:
                for table, sql in self._insert_sql(g, p95_sql, constant is not None):
                    params: dict[str, Any] = {
                        "g": g,
                        "lo": piece[0],
                        "hi": piece[1],
                        **self._seconds_params(piece),
                    }
                    if constant is not None:
                        params["bucket"] = constant
                    written[table] += max(0, conn.execute(text(sql), params).rowcount or 0)
            for bucket, source in work.derived:
                for table, sql in _derive_sql():
                    params = {"g": g, "source": source, "lo": bucket.start_ms, "hi": bucket.end_ms}
                    written[table] += max(0, conn.execute(text(sql), params).rowcount or 0)
            per_bucket = self._bucket_counts(conn, g, span)
            for lo, hi in contiguous(redone):
                conn.execute(
                    RB.delete().where(RB.c.granularity == g, RB.c.start_ms >= lo, RB.c.start_ms < hi)
                )
            now = time.time()
            if redone:
                conn.execute(
                    RB.insert(),
                    [
                        {
                            "granularity": g,
                            "start_ms": b.start_ms,
                            "end_ms": b.end_ms,
                            "points": per_bucket[0].get(b.start_ms, 0),
                            "outcomes": per_bucket[1].get(b.start_ms, 0),
                            "dag_runs": per_bucket[2].get(b.start_ms, 0),
                            "rolled_at": now,
                        }
                        for b in redone
                    ],
                )
        done = {b.start_ms for b in redone}
        return RollupResult(
            g,
            plan.buckets,
            sum(n for b, n in per_bucket[0].items() if b in done),
            sum(n for b, n in per_bucket[1].items() if b in done),
            sum(n for b, n in per_bucket[2].items() if b in done),
            written,
            replaced,
            p95_note,
            False,
            derived=work.derived,
            kept=work.kept,
            skipped=work.skipped,
        )

    def _classify(self, conn: Connection, plan: RollupPlan) -> BucketWork:
        span = plan.span
        assert span is not None
        deleted = [
            (int(a), int(b))
            for a, b in conn.execute(
                select(RDEL.c.start_ms, RDEL.c.end_ms).where(
                    RDEL.c.start_ms < span[1], RDEL.c.end_ms > span[0]
                )
            )
        ]
        if not deleted:
            return BucketWork(raw=plan.buckets)
        rows = conn.execute(
            select(RB.c.granularity, RB.c.start_ms, RB.c.end_ms).where(
                RB.c.start_ms < span[1], RB.c.end_ms > span[0]
            )
        )
        coverage: dict[str, list[Range]] = {}
        for granularity, start, end in rows:
            coverage.setdefault(granularity, []).append((int(start), int(end)))
        return classify_buckets(plan, deleted, coverage)

    @staticmethod
    def _redone(work: BucketWork) -> list[Bucket]:
        return sorted([*work.raw, *(b for b, _source in work.derived)], key=lambda b: b.start_ms)

    def _ms_sql(self, column_sql: str) -> str:
        """Whole milliseconds of a seconds column, rounded down (as ``to_ms`` does), in SQL."""
        if self.db.dialect == "postgresql":
            return f"CAST(floor({column_sql} * 1000) AS BIGINT)"
        return f"CAST({column_sql} * 1000 AS INTEGER)"  # truncation = floor for times after 1970

    @staticmethod
    def _bucket_sql(granularity: str, ms_sql: str, constant: bool) -> str:
        if constant:
            return "CAST(:bucket AS BIGINT)"
        fixed = fixed_width(granularity)
        assert fixed is not None
        width, offset = fixed
        if not offset:
            return f"(({ms_sql}) / {width}) * {width}"
        shift = width - offset  # keeps the dividend positive: integer division truncates on both databases
        return f"((({ms_sql}) + {shift}) / {width}) * {width} - {shift}"

    @staticmethod
    def _seconds_params(piece: Range) -> dict[str, float]:
        # an index-friendly pre-filter on end_ts, a second wider than the exact filter in milliseconds
        return {"lo_s": piece[0] / 1000 - 1, "hi_s": piece[1] / 1000 + 1}

    def _done_sql(self, table: str) -> tuple[str, str]:
        """The millisecond time of a task outcome / DAG run, and the filter for ``[lo, hi)``."""
        ms = self._ms_sql("coalesce(end_ts, recorded_at)")
        where = f"{ms} >= :lo AND {ms} < :hi AND (end_ts IS NULL OR (end_ts >= :lo_s AND end_ts < :hi_s))"
        return ms, where

    def _insert_sql(self, g: str, p95_sql: str, constant: bool) -> list[tuple[str, str]]:
        bucket = self._bucket_sql(g, "ts_ms", constant)
        points = f"""
            INSERT INTO {MR.name} (granularity, series_id, bucket_ms, value_count, value_sum, value_min,
                                   value_max, value_avg, value_p95)
            SELECT :g, series_id, {bucket} AS bucket, count(*), sum(value), min(value), max(value),
                   avg(value), {p95_sql}
            FROM {P.name}
            WHERE ts_ms >= :lo AND ts_ms < :hi
            GROUP BY series_id, bucket
        """
        ms, where = self._done_sql(T.name)
        done_bucket = self._bucket_sql(g, ms, constant)
        outcomes = f"""
            INSERT INTO {OR.name} (granularity, bucket_ms, dag_id, task_id, state, tries, duration_count,
                                   duration_sum, duration_min, duration_max)
            SELECT :g, {done_bucket} AS bucket, dag_id, task_id, state, count(*), count(duration_s),
                   sum(duration_s), min(duration_s), max(duration_s)
            FROM {T.name}
            WHERE {where}
            GROUP BY bucket, dag_id, task_id, state
        """
        runs = f"""
            INSERT INTO {DR.name} (granularity, bucket_ms, dag_id, state, runs, duration_count,
                                   duration_sum, duration_min, duration_max)
            SELECT :g, {done_bucket} AS bucket, dag_id, state, count(*), count(duration_s),
                   sum(duration_s), min(duration_s), max(duration_s)
            FROM {D.name}
            WHERE {where}
            GROUP BY bucket, dag_id, state
        """
        return [(MR.name, points), (OR.name, outcomes), (DR.name, runs)]

    def _delete_rollups(self, conn: Connection, g: str, ranges: Sequence[Range]) -> dict[str, int]:
        removed = {MR.name: 0, OR.name: 0, DR.name: 0}
        for lo, hi in merge_ranges(ranges):
            for table in (MR, OR, DR):
                result = conn.execute(
                    table.delete().where(
                        table.c.granularity == g, table.c.bucket_ms >= lo, table.c.bucket_ms < hi
                    )
                )
                removed[table.name] += max(0, result.rowcount or 0)
        return removed

    def _rollup_rows(self, conn: Connection, g: str, ranges: Sequence[Range]) -> dict[str, int]:
        found = {MR.name: 0, OR.name: 0, DR.name: 0}
        for lo, hi in merge_ranges(ranges):
            for table in (MR, OR, DR):
                found[table.name] += int(
                    conn.execute(
                        select(func.count())
                        .select_from(table)
                        .where(table.c.granularity == g, table.c.bucket_ms >= lo, table.c.bucket_ms < hi)
                    ).scalar_one()
                )
        return found

    def _source_counts(self, conn: Connection, span: Range) -> tuple[int, int, int]:
        params = {"lo": span[0], "hi": span[1], **self._seconds_params(span)}
        points = conn.execute(
            text(f"SELECT count(*) FROM {P.name} WHERE ts_ms >= :lo AND ts_ms < :hi"), params
        ).scalar_one()
        counts = [int(points)]
        for table in (T, D):
            _ms, where = self._done_sql(table.name)
            counts.append(
                int(
                    conn.execute(
                        text(f"SELECT count(*) FROM {table.name} WHERE {where}"), params
                    ).scalar_one()
                )
            )
        return counts[0], counts[1], counts[2]

    def _bucket_counts(self, conn: Connection, g: str, span: Range) -> tuple[dict[int, int], ...]:
        out = []
        for table, column in ((MR, MR.c.value_count), (OR, OR.c.tries), (DR, DR.c.runs)):
            rows = conn.execute(
                select(table.c.bucket_ms, func.sum(column))
                .where(table.c.granularity == g, table.c.bucket_ms >= span[0], table.c.bucket_ms < span[1])
                .group_by(table.c.bucket_ms)
            )
            out.append({int(b): int(n) for b, n in rows})
        return tuple(out)

    def coverage(self, granularity: str | None = None) -> dict[str, list[Range]]:
        """The rolled-up buckets, ``{granularity: [(start_ms, end_ms), …]}`` oldest first."""
        stmt = select(RB.c.granularity, RB.c.start_ms, RB.c.end_ms).order_by(RB.c.granularity, RB.c.start_ms)
        if granularity is not None:
            stmt = stmt.where(RB.c.granularity == granularity)
        self.db.ensure_schema()
        with self.db.read("read rollup coverage") as conn:
            found: dict[str, list[Range]] = {}
            for g, start, end in conn.execute(stmt):
                found.setdefault(g, []).append((int(start), int(end)))
        return found

    # -- retention ("db clean") -------------------------------------------------------------------

    def clean(self, cutoff: float, *, batch_size: int = DEFAULT_BATCH, dry_run: bool = False) -> CleanResult:
        """Delete what is older than ``cutoff`` (seconds since the epoch): raw metric points, task
        outcomes and DAG runs only where the rollups hold them, and maintenance runs (with their
        health verdicts). In batches of ``batch_size`` rows, each in its own transaction, so
        writers are never held up for long. A dry run counts instead."""
        cutoff_s = _seconds("cutoff", cutoff)
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or not 1 <= batch_size <= 1_000_000
        ):
            raise ValidationError("batch_size", batch_size, "expected a whole number from 1 to 1,000,000")
        cutoff_ms = math.floor(cutoff_s * 1000)
        ranges = deletable_ranges(self.coverage(), cutoff_ms)
        freed = {P.name: 0, T.name: 0, D.name: 0, R.name: 0}
        batches = 0
        plans: list[tuple[str, str, dict[str, Any]]] = []
        for lo, hi in ranges:
            params: dict[str, Any] = {"lo": lo, "hi": hi, **self._seconds_params((lo, hi))}
            plans.append((P.name, "ts_ms >= :lo AND ts_ms < :hi", params))
            for source in (T, D):
                plans.append((source.name, self._done_sql(source.name)[1], params))
        plans.append((R.name, "started_at < :cutoff_s", {"cutoff_s": cutoff_s}))
        self.db.ensure_schema()
        if ranges and not dry_run:
            self._mark_deleted(ranges)
        for table, where, params in plans:
            if dry_run:
                with self.db.read(f"count old rows of {table}") as conn:
                    freed[table] += int(
                        conn.execute(text(f"SELECT count(*) FROM {table} WHERE {where}"), params).scalar_one()
                    )
                continue
            sql = text(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {where} LIMIT :batch)")
            while True:
                with self.db.write(f"delete old rows of {table}") as conn:
                    deleted = max(0, conn.execute(sql, {**params, "batch": batch_size}).rowcount or 0)
                batches += 1
                freed[table] += deleted
                if deleted < batch_size:
                    break
        return CleanResult(cutoff_ms, tuple(ranges), freed, batches, dry_run)

    def _mark_deleted(self, ranges: Sequence[Range]) -> None:
        """Record (before deleting: a crash half-way leaves them marked) the ranges whose raw rows
        go, merged with those recorded before, so that no rollup is rebuilt from what is left."""
        with self.db.write("record ranges deleted by retention") as conn:
            known = [(int(a), int(b)) for a, b in conn.execute(select(RDEL.c.start_ms, RDEL.c.end_ms))]
            merged = merge_ranges([*known, *ranges])
            if merged != known:
                conn.execute(RDEL.delete())
                now = time.time()
                conn.execute(
                    RDEL.insert(), [{"start_ms": a, "end_ms": b, "deleted_at": now} for a, b in merged]
                )

    def deleted_ranges(self) -> list[Range]:
        """The time ranges retention deleted raw rows from, merged, oldest first."""
        self.db.ensure_schema()
        with self.db.read("read ranges deleted by retention") as conn:
            rows = conn.execute(select(RDEL.c.start_ms, RDEL.c.end_ms).order_by(RDEL.c.start_ms))
            return [(int(a), int(b)) for a, b in rows]

    # -- performance report figures ---------------------------------------------------------------

    def task_durations(
        self, start: float, end: float, previous_start: float, *, limit: int = 1000
    ) -> list[TaskDurations]:
        """Per task, the tries that ran (success, failed, up_for_retry) and ended in
        ``[start, end)`` with a duration: how many, their average and longest duration; and the
        tries and average of ``[previous_start, start)``. Slowest (this period) first. In SQL."""
        start, end, previous_start = (
            _seconds(n, v) for n, v in (("start", start), ("end", end), ("previous_start", previous_start))
        )
        now = T.c.end_ts >= start
        duration = T.c.duration_s
        tries = func.sum(case((now, 1), else_=0))
        avg_now = func.avg(case((now, duration)))
        prev_tries = func.sum(case((now, 0), else_=1))
        avg_prev = func.avg(case((now, None), else_=duration))
        stmt = (
            select(
                T.c.dag_id, T.c.task_id, tries, avg_now, func.max(case((now, duration))), prev_tries, avg_prev
            )
            .where(
                T.c.end_ts >= previous_start,
                T.c.end_ts < end,
                duration.is_not(None),
                self.db.values_in(T.c.state, list(RAN_TRY_STATES)),
            )
            .group_by(T.c.dag_id, T.c.task_id)
            .order_by(avg_now.desc().nulls_last(), T.c.dag_id, T.c.task_id)
            .limit(check_limit(limit))
        )
        self.db.ensure_schema()
        with self.db.read("compute task durations") as conn:
            rows = conn.execute(stmt).all()

        def opt(value: Any) -> float | None:
            return None if value is None else float(value)

        return [
            TaskDurations(r[0], r[1], int(r[2] or 0), opt(r[3]), opt(r[4]), int(r[5] or 0), opt(r[6]))
            for r in rows
        ]

    def dag_failures(self, start: float, end: float, previous_start: float) -> list[DagFailures]:
        """Per DAG: task tries that ran and how many failed (``failed``, ``up_for_retry``), and
        DAG runs and how many failed, in ``[start, end)`` and in ``[previous_start, start)``
        (by end time). In SQL."""
        start, end, previous_start = (
            _seconds(n, v) for n, v in (("start", start), ("end", end), ("previous_start", previous_start))
        )

        def per_dag(table: Any, failed_states: Sequence[str], states: Sequence[str] | None) -> Select[Any]:
            now = table.c.end_ts >= start
            failed = self.db.values_in(table.c.state, list(failed_states))
            stmt = select(
                table.c.dag_id,
                func.sum(case((now, 1), else_=0)),
                func.sum(case((now & failed, 1), else_=0)),
                func.sum(case((now, 0), else_=1)),
                func.sum(case((~now & failed, 1), else_=0)),
            ).where(table.c.end_ts >= previous_start, table.c.end_ts < end)
            if states is not None:
                stmt = stmt.where(self.db.values_in(table.c.state, list(states)))
            return stmt.group_by(table.c.dag_id)

        self.db.ensure_schema()
        with self.db.read("compute failure rates") as conn:
            tries = {
                r[0]: [int(x or 0) for x in r[1:]]
                for r in conn.execute(per_dag(T, FAILED_TRY_STATES, RAN_TRY_STATES))
            }
            runs = {r[0]: [int(x or 0) for x in r[1:]] for r in conn.execute(per_dag(D, ("failed",), None))}
        result = []
        for dag_id in sorted(set(tries) | set(runs)):
            t = tries.get(dag_id, [0, 0, 0, 0])
            r = runs.get(dag_id, [0, 0, 0, 0])
            result.append(DagFailures(dag_id, t[0], t[1], r[0], r[1], t[2], t[3], r[2], r[3]))
        return result

    def pipeline_counts(
        self, since: float, until: float, *, dag_ids: Sequence[str] | None = None
    ) -> dict[str, PipelineCounts]:
        """Per DAG: task tries and DAG runs per state in ``[since, until)`` by their end time
        (else the time recorded, as the rollups count them), and the runs' durations. The
        longest stretch of the window's whole days (else hours) that the rollups hold comes from
        them, the rest from the raw rows (all of it when they hold none). Aggregated in SQL; the
        same answer either way."""
        start_ms = int(_seconds("since", since) * 1000)
        end_ms = int(_seconds("until", until) * 1000)
        if start_ms >= end_ms:
            raise ValidationError("since", since, f"is not before until {until!r}")

        def allowed(table: Any) -> list[Any]:
            return [] if dag_ids is None else [self.db.values_in(table.c.dag_id, list(dag_ids))]

        def done(table: Any, lo: int, hi: int) -> Any:
            at = func.coalesce(table.c.end_ts, table.c.recorded_at)
            near = or_(
                table.c.end_ts.is_(None), (table.c.end_ts >= lo / 1000 - 1) & (table.c.end_ts < hi / 1000 + 1)
            )
            return (at >= lo / 1000) & (at < hi / 1000) & near

        def raw_parts(lo: int, hi: int) -> tuple[Select[Any], Select[Any]]:
            tries = select(T.c.dag_id, T.c.state, func.count().label("n")).where(done(T, lo, hi), *allowed(T))
            runs = select(
                D.c.dag_id,
                D.c.state,
                func.count().label("n"),
                func.count(D.c.duration_s).label("dn"),
                func.sum(D.c.duration_s).label("ds"),
                func.max(D.c.duration_s).label("dmax"),
            ).where(done(D, lo, hi), *allowed(D))
            return tries.group_by(T.c.dag_id, T.c.state), runs.group_by(D.c.dag_id, D.c.state)

        result: dict[str, PipelineCounts] = {}

        def add(tries_stmt: Select[Any], runs_stmt: Select[Any], conn: Connection) -> None:
            for dag_id, state, n in conn.execute(tries_stmt):
                counts = result.setdefault(dag_id, PipelineCounts(dag_id))
                counts.tries[state] = counts.tries.get(state, 0) + int(n)
            for dag_id, state, n, dn, ds, dmax in conn.execute(runs_stmt):
                counts = result.setdefault(dag_id, PipelineCounts(dag_id))
                counts.runs[state] = counts.runs.get(state, 0) + int(n)
                counts.duration_count += int(dn or 0)
                counts.duration_sum += float(ds or 0.0)
                if dmax is not None:
                    counts.duration_max = max(counts.duration_max or 0.0, float(dmax))

        self.db.ensure_schema()
        with self.db.read("count pipeline tries and runs") as conn:
            for split in read_splits(86_400_000, start_ms, end_ms):
                g = split.granularity
                run = covered_run(conn, g, split.inner)
                if run is None:
                    continue
                inner = run
                rolled = (OR.c.granularity == g) & (OR.c.bucket_ms >= inner[0]) & (OR.c.bucket_ms < inner[1])
                tries = select(OR.c.dag_id, OR.c.state, func.sum(OR.c.tries)).where(rolled, *allowed(OR))
                run_window = (
                    (DR.c.granularity == g) & (DR.c.bucket_ms >= inner[0]) & (DR.c.bucket_ms < inner[1])
                )
                runs = select(
                    DR.c.dag_id,
                    DR.c.state,
                    func.sum(DR.c.runs),
                    func.sum(DR.c.duration_count),
                    func.sum(DR.c.duration_sum),
                    func.max(DR.c.duration_max),
                ).where(run_window, *allowed(DR))
                add(tries.group_by(OR.c.dag_id, OR.c.state), runs.group_by(DR.c.dag_id, DR.c.state), conn)
                for lo, hi in ((start_ms, run[0]), (run[1], end_ms)):
                    if lo < hi:
                        add(*raw_parts(lo, hi), conn)
                break
            else:
                add(*raw_parts(start_ms, end_ms), conn)
        return dict(sorted(result.items()))


# -- reads through the rollups (used by MetricsStore.series) ---------------------------------------


def rollup_series_statement(
    conn: Connection, matching: Select[Any], fn: str, step_ms: int, start_ms: int, end_ms: int
) -> Select[Any] | None:
    """``(series_id, bucket, value)`` rows of a stepped read from the rollups, or None when they
    cannot give the raw answer: the step is not a whole number of hours (days), or an hour (day)
    inside the window is not rolled up. The window's partial hours (days) at either end are read
    from the raw points; both parts merge per step bucket in SQL (count and sum add up, min and
    max of the parts, average = sum / count)."""
    for split in read_splits(step_ms, start_ms, end_ms):
        g = split.granularity
        inner = split.inner
        have = conn.execute(
            select(func.count())
            .select_from(RB)
            .where(RB.c.granularity == g, RB.c.start_ms >= inner[0], RB.c.start_ms < inner[1])
        ).scalar_one()
        if int(have) < buckets_in(g, inner):
            continue
        return _rolled_and_raw(matching, fn, step_ms, g, split.head, inner, split.tail)
    return None


def covered_run(conn: Connection, granularity: str, span: Range) -> Range | None:
    """The longest stretch of ``span`` (on bucket starts) whose every bucket of ``granularity``
    is rolled up, or None when none is."""
    fixed = fixed_width(granularity)
    assert fixed is not None
    width = fixed[0]
    starts = conn.execute(
        select(RB.c.start_ms)
        .where(RB.c.granularity == granularity, RB.c.start_ms >= span[0], RB.c.start_ms < span[1])
        .order_by(RB.c.start_ms)
    ).scalars()
    best: Range | None = None
    run: Range | None = None
    for start in starts:
        run = (run[0], start + width) if run is not None and start == run[1] else (start, start + width)
        if best is None or run[1] - run[0] > best[1] - best[0]:
            best = run
    return best


def rollup_history_statement(
    conn: Connection, matching: Select[Any], fn: str, step_ms: int, start_ms: int, end_ms: int
) -> Select[Any] | None:
    """As :func:`rollup_series_statement`, but when the rollups hold only part of the window
    (the newest hours are rolled up a few minutes after they end; rollups started later than
    the window) the longest rolled-up stretch comes from them and the rest from the raw points,
    instead of all from the raw points. The same answer; None when no whole day (hour) of the
    window is rolled up or the step is not a whole number of them."""
    for split in read_splits(step_ms, start_ms, end_ms):
        run = covered_run(conn, split.granularity, split.inner)
        if run is None:
            continue
        return _rolled_and_raw(
            matching, fn, step_ms, split.granularity, (start_ms, run[0]), run, (run[1], end_ms)
        )
    return None


def _rolled_and_raw(
    matching: Select[Any], fn: str, step_ms: int, g: str, head: Range, inner: Range, tail: Range
) -> Select[Any]:
    """The rollups of granularity ``g`` over ``inner`` and the raw points of ``head`` and
    ``tail``, merged per step bucket in SQL."""
    parts: list[Select[Any]] = []
    raw_bucket = (P.c.ts_ms // step_ms) * step_ms
    for lo, hi in (head, tail):
        if lo < hi:
            parts.append(
                select(
                    P.c.series_id.label("series_id"),
                    raw_bucket.label("bucket"),
                    func.count(P.c.value).label("n"),
                    func.sum(P.c.value).label("s"),
                    func.min(P.c.value).label("lo"),
                    func.max(P.c.value).label("hi"),
                )
                .where(P.c.series_id.in_(matching), P.c.ts_ms >= lo, P.c.ts_ms < hi)
                .group_by(P.c.series_id, raw_bucket)
            )
    rolled_bucket = (MR.c.bucket_ms // step_ms) * step_ms
    parts.append(
        select(
            MR.c.series_id.label("series_id"),
            rolled_bucket.label("bucket"),
            func.sum(MR.c.value_count).label("n"),
            func.sum(MR.c.value_sum).label("s"),
            func.min(MR.c.value_min).label("lo"),
            func.max(MR.c.value_max).label("hi"),
        )
        .where(
            MR.c.granularity == g,
            MR.c.series_id.in_(matching),
            MR.c.bucket_ms >= inner[0],
            MR.c.bucket_ms < inner[1],
        )
        .group_by(MR.c.series_id, rolled_bucket)
    )
    u = union_all(*parts).subquery()
    count = cast(func.sum(u.c.n), Double)
    value = {
        "avg": func.sum(u.c.s) / count,
        "sum": func.sum(u.c.s),
        "min": func.min(u.c.lo),
        "max": func.max(u.c.hi),
        "count": count,
    }[fn]
    return (
        select(u.c.series_id, u.c.bucket, value.label("value"))
        .group_by(u.c.series_id, u.c.bucket)
        .order_by(u.c.series_id, u.c.bucket)
    )
