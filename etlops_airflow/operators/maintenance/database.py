"""Database maintenance: rollups and retention of the etlops store, and VACUUM / REINDEX /
ANALYZE of the store or of any SQLite or PostgreSQL database behind an Airflow Connection.

Imported by DAG files: SQLAlchemy, hooks and the store load inside ``run_maintenance()``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from etlops_airflow.core.maintenance.model import MaintenanceRun
from etlops_airflow.core.maintenance.rollup import check_granularity
from etlops_airflow.exceptions import StoreError, ValidationError
from etlops_airflow.operators.data_quality import _conn_id, _suggest
from etlops_airflow.operators.maintenance.base import MaintenanceOperator

MAX_TABLE_NAME = 255


def data_interval(context: Any) -> tuple[float | None, float]:
    """``(start, end)`` of the run's data interval in seconds; no end (a task run outside a DAG
    run): now, and no start."""
    getter = context.get if hasattr(context, "get") else (lambda _key: None)
    start, end = getter("data_interval_start"), getter("data_interval_end")
    end_s = end.timestamp() if end is not None else time.time()
    return (start.timestamp() if start is not None else None), end_s


def rollup_interval(context: Any) -> tuple[float | None, float]:
    """The interval a rollup covers: the data interval; when it has no width (cron schedules get
    Airflow 3's ``CronTriggerTimetable``, whose interval starts where it ends) or none, from the
    end of the previous successful run's interval (buckets completed since then, also across
    failed runs), else None (the last bucket width)."""
    start, end = data_interval(context)
    if start is not None and start < end:
        return start, end
    previous: float | None = None
    try:
        value = context.get("prev_data_interval_end_success") if hasattr(context, "get") else None
        if value is not None:
            previous = float(value.timestamp())  # a lazy proxy: asks the API server; may hold None
    except Exception:
        previous = None
    return (previous if previous is not None and previous < end else None), end


def is_dry_run(operator: Any) -> bool:
    """Whether the operator only plans (``dry_run=True``)."""
    return bool(operator.plan_only)


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _owner(kind: str, kwargs: dict[str, Any]) -> str:
    return f"{kind} {kwargs.get('task_id', '?')!r}"


# ------------------------------------------------------------------------------ metrics aggregation


class MetricsAggregationOperator(MaintenanceOperator):
    """Roll up the store's metric points, task outcomes and DAG runs for the run's data interval,
    then (with ``retention_days``) delete the raw rows the rollups hold.

    Rollups run in SQL (``INSERT … SELECT … GROUP BY`` series and bucket) in one transaction that
    first deletes the rollup rows of the same buckets: running an interval again gives the same
    rows. The buckets rolled up are those of ``granularity`` that END in the data interval
    (an hourly rollup at ``5 * * * *`` rolls up the hour that ended five minutes before; a daily
    rollup rolls the day up in the run whose interval holds midnight). A zero-width interval (a
    cron schedule's ``CronTriggerTimetable``) starts at the end of the previous successful run's
    interval (so a failed run's buckets are rolled up by the next success), or, for the first
    run, one bucket width before its end.

    Each bucket holds count, sum, min, max and average of the points of each series; the 95th
    percentile on PostgreSQL (``percentile_cont``) and NULL on SQLite (which has no percentile
    function unless built with one). Task tries are rolled up per DAG, task and state (tries,
    duration count / sum / min / max); DAG runs per DAG and state.

    Retention (``retention_days``; None: none) deletes, in batches of ``batch_size`` rows each in
    its own transaction, raw points, task outcomes and DAG runs that are older than
    ``retention_days`` before the interval's end AND rolled up by every granularity in use, and
    maintenance runs older than that. ``store.metrics.series()`` then answers whole hours (days)
    from the rollups. A dry run counts what it would roll up and delete and changes nothing.

    Returns (XCom) the base summary; the run's details hold the buckets, rows written per rollup
    table, the retention cutoff and rows freed per table.
    """

    maintenance_task = "metrics_aggregation"

    def __init__(
        self,
        *,
        granularity: str = "hourly",
        retention_days: float | None = None,
        batch_size: int = 10_000,
        **kwargs: Any,
    ) -> None:
        owner = _owner("MetricsAggregationOperator", kwargs)
        self.granularity = check_granularity(granularity, owner)
        if retention_days is not None and (
            isinstance(retention_days, bool)
            or not isinstance(retention_days, (int, float))
            or not 0 < retention_days <= 100_000
            or not math.isfinite(retention_days)
        ):
            raise ValidationError(
                "retention_days", retention_days, "expected a positive number of days", owner=owner
            )
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or not 1 <= batch_size <= 1_000_000
        ):
            raise ValidationError(
                "batch_size", batch_size, "expected a whole number from 1 to 1,000,000", owner=owner
            )
        super().__init__(**kwargs)
        self.retention_days = retention_days
        self.batch_size = batch_size

    def run_maintenance(self, context: Any) -> MaintenanceRun:
        from etlops_airflow.runtime import store_for

        started = time.time()
        start, end = rollup_interval(context)
        store = store_for(self.etlops_conn_id)
        result = store.maintenance.rollup(self.granularity, start, end, dry_run=is_dry_run(self))
        written = sum(result.rows_written.values())
        details: dict[str, Any] = {
            "granularity": self.granularity,
            "interval": {"start": start, "end": end},
            "buckets": [[b.start_ms, b.end_ms] for b in result.buckets],
            "points": result.points,
            "outcomes": result.outcomes,
            "dag_runs": result.dag_runs,
            "rows_written": result.rows_written,
            "rows_replaced": result.rows_replaced,
            "p95": result.p95,
            "kept": [[b.start_ms, b.end_ms] for b in result.kept],
            "derived": [[b.start_ms, b.end_ms, source] for b, source in result.derived],
            "skipped": [[b.start_ms, b.end_ms] for b in result.skipped],
        }
        if result.kept:
            self.log.info(
                "%d bucket(s) kept as rolled up before: retention already deleted some of their raw rows",
                len(result.kept),
            )
        if result.derived:
            self.log.info("%d bucket(s) rolled up from finer rollups (raw rows deleted)", len(result.derived))
        if result.skipped:
            self.log.warning(
                "%d bucket(s) NOT rolled up: retention deleted raw rows there before this granularity "
                "rolled them up, and no finer rollup holds them all: %s",
                len(result.skipped),
                ", ".join(_utc(b.start_ms / 1000) for b in result.skipped[:10]),
            )
        if not result.buckets:
            details["note"] = f"no {self.granularity} bucket ended in the data interval: nothing rolled up"
        shown = [_utc(b.start_ms / 1000) for b in result.buckets[:1]] + [
            _utc(b.end_ms / 1000) for b in result.buckets[-1:]
        ]
        self.log.info(
            "%s rollup of %d bucket(s) (%s): %d point(s), %d task tries, %d DAG run(s) -> %s",
            self.granularity,
            len(result.buckets),
            " to ".join(shown) or "none",
            result.points,
            result.outcomes,
            result.dag_runs,
            "nothing written (dry run)"
            if is_dry_run(self)
            else f"{written} rollup row(s); p95: {result.p95}",
        )
        errors: list[str] = []
        freed_rows = 0
        if self.retention_days is not None:
            cutoff = end - self.retention_days * 86400
            try:
                cleaned = store.maintenance.clean(
                    cutoff, batch_size=self.batch_size, dry_run=is_dry_run(self)
                )
            except StoreError as exc:
                errors.append(f"retention failed after the rollup: {exc}")
            else:
                details["retention"] = {
                    "cutoff": cutoff,
                    "retention_days": self.retention_days,
                    "ranges_ms": [list(r) for r in cleaned.ranges],
                    "would_free" if is_dry_run(self) else "freed": cleaned.freed,
                    "batches": cleaned.batches,
                }
                freed_rows = 0 if is_dry_run(self) else cleaned.rows
                self.log.info(
                    "Retention before %s (rolled-up ranges %s): %s %s",
                    _utc(cutoff),
                    [list(r) for r in cleaned.ranges],
                    "would delete" if is_dry_run(self) else "deleted",
                    cleaned.freed,
                )
                if not cleaned.ranges:
                    self.log.info(
                        "No raw data before the cutoff is rolled up yet: no point, outcome or run deleted"
                    )
        return MaintenanceRun(
            task=self.maintenance_task,
            target=f"{store.display_url} ({self.granularity})",
            started_at=started,
            duration_s=0.0,
            looked_at=result.points + result.outcomes + result.dag_runs,
            changed=0 if is_dry_run(self) else written,
            freed_rows=freed_rows,
            errors=tuple(errors),
            details=details,
        )


# ------------------------------------------------------------------------------ database optimisation


def _error_line(exc: BaseException) -> str:
    """The driver's first line, secrets masked (a failed statement on a connection the pool keeps:
    the SQLAlchemy wrapper's SQL and parameters lines are dropped)."""
    from etlops_airflow._log import one_line
    from etlops_airflow._secrets import redact

    orig = getattr(exc, "orig", None)
    return str(redact(one_line(orig if isinstance(orig, BaseException) else exc)))


def _autocommit_connection(engine: Any) -> Any:
    """A connection outside any transaction (VACUUM and REINDEX CONCURRENTLY refuse one)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _table_names(owner: str, tables: Any) -> tuple[str, ...] | None:
    """Parse-time check: None, or a non-empty list of non-empty names without NUL."""
    if tables is None:
        return None
    if isinstance(tables, str) or not isinstance(tables, Sequence) or not tables:
        raise ValidationError(
            "tables", tables, "expected a non-empty list of table names, or None", owner=owner
        )
    for i, name in enumerate(tables):
        if not isinstance(name, str) or not name.strip() or "\x00" in name or len(name) > MAX_TABLE_NAME:
            raise ValidationError(
                f"tables[{i}]",
                name,
                f"expected a table name (non-empty text without NUL, at most {MAX_TABLE_NAME} characters)",
                owner=owner,
            )
    return tuple(dict.fromkeys(tables))


class DatabaseOptimizationOperator(MaintenanceOperator):
    """VACUUM, REINDEX and ANALYZE tables of the etlops store (``conn_id=None``) or of the SQLite or
    PostgreSQL database of an Airflow Connection, outside any transaction.

    PostgreSQL, per table: ``VACUUM (ANALYZE)`` (``VACUUM`` without analyze, ``ANALYZE`` without
    vacuum), then ``REINDEX TABLE CONCURRENTLY`` (plain ``REINDEX TABLE`` before PostgreSQL 12),
    each in autocommit with ``lock_timeout``: a table another session holds is reported, not
    waited for. Sizes are ``pg_total_relation_size`` (table, indexes, TOAST) before and after.

    SQLite: ``REINDEX`` and ``ANALYZE`` per table, then ``VACUUM`` (SQLite vacuums the whole
    file), ``PRAGMA optimize`` and ``PRAGMA quick_check``; a quick_check that does not answer
    ``ok`` fails the task. The file's size is ``page_count * page_size``; per table the pages of
    the table and its indexes when SQLite has ``dbstat``.

    ``tables`` (None: every etlops table of the store, or every table of the connection's
    default schema) are checked against the database's own catalogue and quoted by its dialect:
    a name that is not there is refused with a ValidationError naming it before any statement
    runs. ``freed_bytes`` is the size before minus the size after (0 when it grew). A dry run
    measures, runs the read-only ``quick_check``, lists the statements and runs none of them.
    Never uses Airflow's metadata database.
    """

    maintenance_task = "db_optimization"

    def __init__(
        self,
        *,
        conn_id: str | None = None,
        tables: Sequence[str] | None = None,
        vacuum: bool = True,
        reindex: bool = False,
        analyze: bool = True,
        lock_timeout_s: float = 30.0,
        **kwargs: Any,
    ) -> None:
        owner = _owner("DatabaseOptimizationOperator", kwargs)
        self.conn_id = None if conn_id is None else _conn_id(owner, "conn_id", conn_id)
        self.tables = _table_names(owner, tables)
        for name, value in (("vacuum", vacuum), ("reindex", reindex), ("analyze", analyze)):
            if not isinstance(value, bool):
                raise ValidationError(name, value, "expected True or False", owner=owner)
        if not (vacuum or reindex or analyze):
            raise ValidationError(
                "vacuum", vacuum, "nothing to do: set vacuum, reindex or analyze", owner=owner
            )
        if (
            isinstance(lock_timeout_s, bool)
            or not isinstance(lock_timeout_s, (int, float))
            or not 0 < lock_timeout_s <= 86400
        ):
            raise ValidationError(
                "lock_timeout_s", lock_timeout_s, "expected seconds, more than 0", owner=owner
            )
        super().__init__(**kwargs)
        self.vacuum, self.reindex, self.analyze = vacuum, reindex, analyze
        self.lock_timeout_s = float(lock_timeout_s)

    def run_maintenance(self, context: Any) -> MaintenanceRun:
        from contextlib import ExitStack
        from functools import partial

        from sqlalchemy import inspect

        from etlops_airflow.operators.data_quality import open_warehouse
        from etlops_airflow.runtime import store_for
        from etlops_airflow.store import schema

        started = time.time()
        owner = f"DatabaseOptimizationOperator {self.task_id!r}"
        with ExitStack() as stack:
            opener: Any
            if self.conn_id is None:
                store = store_for(self.etlops_conn_id)
                store.ensure_schema()
                engine = store.engine
                target = f"etlops store {store.display_url}"
                opener = partial(store.db.autocommit, "optimize tables")
                known = inspect(engine).get_table_names()
                default = [t.name for t in schema.metadata.sorted_tables if t.name in known]
            else:
                warehouse = open_warehouse(self.conn_id, self.log)
                stack.callback(warehouse.close)
                engine = warehouse.engine
                target = f"conn_id {self.conn_id!r}"
                opener = partial(_autocommit_connection, engine)
                known = inspect(engine).get_table_names()
                default = sorted(known)
            dialect = engine.dialect.name
            if dialect not in ("sqlite", "postgresql"):
                raise ValidationError(
                    "conn_id",
                    self.conn_id,
                    f"database {dialect!r} is not supported: SQLite or PostgreSQL",
                    owner=owner,
                )
            tables = list(self.tables) if self.tables is not None else default
            for name in tables:
                if name not in known:
                    raise ValidationError(
                        "tables", name, f"no such table in {target}{_suggest(name, known)}", owner=owner
                    )
            preparer = engine.dialect.identifier_preparer
            quoted = {name: preparer.quote(name) for name in tables}
            conn = stack.enter_context(opener())
            if dialect == "postgresql":
                figures, errors = self._postgres(conn, quoted)
            else:
                figures, errors = self._sqlite(conn, quoted)
        before = figures.pop("_before_total")
        after = figures.pop("_after_total")
        freed = max(0, int(before) - int(after)) if not is_dry_run(self) else 0
        done = sum(1 for f in figures["tables"].values() if f.get("ok"))
        self.log.info("Sizes before %s, after %s bytes: freed %d", before, after, freed)
        return MaintenanceRun(
            task=self.maintenance_task,
            target=f"{target}: {', '.join(tables) or '(no table)'}"[:500],
            started_at=started,
            duration_s=0.0,
            looked_at=len(tables),
            changed=0 if is_dry_run(self) else done,
            freed_bytes=freed,
            errors=tuple(errors),
            details={**figures, "size_before_bytes": before, "size_after_bytes": after, "dialect": dialect},
        )

    def _run(self, conn: Any, sql: str, errors: list[str], what: str) -> bool:
        if is_dry_run(self):
            self.log.info("Dry run, not running: %s", sql)
            return True
        began = time.monotonic()
        try:
            conn.exec_driver_sql(sql)
        except Exception as exc:
            errors.append(f"{what}: {sql} failed: {_error_line(exc)}")
            self.log.error("%s: %s failed: %s", what, sql, _error_line(exc))
            return False
        self.log.info("%s (%.2f s)", sql, time.monotonic() - began)
        return True

    def _postgres(self, conn: Any, quoted: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
        from sqlalchemy import text

        errors: list[str] = []
        version = conn.dialect.server_version_info or (0,)
        concurrently = version >= (12,)
        conn.exec_driver_sql(f"SET lock_timeout = {int(self.lock_timeout_s * 1000)}")
        size_sql = text("SELECT pg_total_relation_size(CAST(:name AS regclass))")

        def size(name: str, q: str) -> int | None:
            """pg_total_relation_size; None (and the error noted) when it cannot be had, e.g. a
            table another session holds in ACCESS EXCLUSIVE mode past lock_timeout."""
            try:
                return int(conn.execute(size_sql, {"name": q}).scalar_one() or 0)
            except Exception as exc:
                errors.append(f"table {name!r}: size not measured: {_error_line(exc)}")
                self.log.error("table %r: size not measured: %s", name, _error_line(exc))
                return None

        statements = []
        if self.vacuum:
            statements.append("VACUUM (ANALYZE) {t}" if self.analyze else "VACUUM {t}")
        elif self.analyze:
            statements.append("ANALYZE {t}")
        if self.reindex:
            statements.append("REINDEX TABLE CONCURRENTLY {t}" if concurrently else "REINDEX TABLE {t}")
        per_table: dict[str, dict[str, Any]] = {}
        total_before = total_after = 0
        for name, q in quoted.items():
            before = size(name, q)
            ok = before is not None and all(
                [self._run(conn, s.format(t=q), errors, f"table {name!r}") for s in statements]
            )
            after = size(name, q) if before is not None else None
            if before is not None and after is not None:
                total_before += before
                total_after += after
            per_table[name] = {
                "before_bytes": before,
                "after_bytes": after,
                "freed_bytes": max(0, before - after)
                if before is not None and after is not None and not is_dry_run(self)
                else 0,
                "statements": [s.format(t=q) for s in statements],
                "ok": ok,
            }
        figures = {
            "tables": per_table,
            "server_version": ".".join(map(str, version)),
            "reindex_concurrently": concurrently,
            "lock_timeout_s": self.lock_timeout_s,
            "_before_total": total_before,
            "_after_total": total_after,
        }
        return figures, errors

    def _sqlite(self, conn: Any, quoted: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
        from sqlalchemy import text

        errors: list[str] = []

        def file_size() -> int:
            pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
            return pages * int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())

        def table_size(name: str) -> int | None:
            try:
                found = conn.execute(
                    text(
                        "SELECT sum(pgsize) FROM dbstat WHERE name IN "
                        "(SELECT name FROM sqlite_schema WHERE tbl_name = :t)"
                    ),
                    {"t": name},
                ).scalar_one()
            except Exception:
                return None  # SQLite built without dbstat
            return int(found or 0)

        before_file = file_size()
        free_pages = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
        per_table: dict[str, dict[str, Any]] = {}
        for name, q in quoted.items():
            statements = [
                s for s, on in ((f"REINDEX {q}", self.reindex), (f"ANALYZE {q}", self.analyze)) if on
            ]
            before = table_size(name)
            ok = all([self._run(conn, s, errors, f"table {name!r}") for s in statements])
            per_table[name] = {"before_bytes": before, "statements": statements, "ok": ok}
        if self.vacuum:
            vacuumed = self._run(conn, "VACUUM", errors, "database file")
            for figures in per_table.values():
                figures["statements"].append("VACUUM")
                figures["ok"] = figures["ok"] and vacuumed
        self._run(conn, "PRAGMA optimize", errors, "database file")
        check = [str(row[0]) for row in conn.exec_driver_sql("PRAGMA quick_check").fetchall()]
        if check != ["ok"]:
            errors.append(f"PRAGMA quick_check found problems: {'; '.join(check[:10])}")
        for name, figures in per_table.items():
            after = table_size(name)
            figures["after_bytes"] = after
            before = figures["before_bytes"]
            figures["freed_bytes"] = (
                max(0, before - after)
                if before is not None and after is not None and not is_dry_run(self)
                else 0
            )
        after_file = file_size()
        figures_out = {
            "tables": per_table,
            "file_free_pages_before": free_pages,
            "quick_check": check[:10],
            "_before_total": before_file,
            "_after_total": after_file,
        }
        return figures_out, errors
