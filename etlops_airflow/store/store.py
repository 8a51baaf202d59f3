"""The store: one object over one database holding every etlops record.

Metric writes are batched (one transaction, one executemany per batch); windowed
aggregates and bucketed series are computed by the database.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL

from etlops_airflow.core.models import AGGREGATES, MetricPoint, TaskOutcome, to_ms
from etlops_airflow.exceptions import StoreError
from etlops_airflow.store import schema, upgrades
from etlops_airflow.store.engine import READ_ONLY, create_store_engine, mask_url

_SQL_AGG: dict[str, Callable[..., Any]] = {
    "avg": func.avg,
    "sum": func.sum,
    "min": func.min,
    "max": func.max,
    "count": func.count,
}
_OUTCOME_UPDATE = (
    "state",
    "start_ts",
    "end_ts",
    "duration_s",
    "error_class",
    "error_message",
    "hostname",
    "recorded_at",
)
# Rows per executemany; keeps statements well under driver and SQLite variable limits.
_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class Series:
    """One labelled series of bucketed values: ``points`` are (bucket start seconds, value)."""

    name: str
    labels: dict[str, str]
    points: list[tuple[float, float]]


def _check_fn(fn: str, allowed: Sequence[str]) -> None:
    if fn not in allowed:
        raise ValueError(f"aggregate fn {fn!r}: expected one of {', '.join(allowed)}")


def _window(start: float | None, end: float | None, window: float | None) -> tuple[int, int]:
    """``[start_ms, end_ms)``. With no ``end`` the window closes *now*, inclusive: a point
    recorded a moment ago (even in the same millisecond) is in "the last N seconds"."""
    if end is None:
        end_s = time.time()
        end_ms = to_ms(end_s) + 1
    else:
        end_s = end
        end_ms = to_ms(end)
    if start is None:
        if window is None:
            raise ValueError("give start or window (seconds)")
        if window <= 0:
            raise ValueError(f"window {window!r}: must be positive seconds")
        start = end_s - window
    if start > end_s:
        raise ValueError(f"window start {start!r} is after end {end_s!r}")
    return to_ms(start), end_ms


class Store:
    """Access to the etlops store. Build with :meth:`from_url` or :func:`etlops_airflow.store.get_store`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._series_ids: dict[tuple[str, str], int] = {}
        self._schema_ready = False
        self._lock = threading.Lock()

    @classmethod
    def from_url(
        cls,
        url: str | URL,
        *,
        connect_timeout: int = 5,
        sqlite_busy_timeout: int = 30,
        source: str = "store_url",
    ) -> Store:
        return cls(
            create_store_engine(
                url, connect_timeout=connect_timeout, sqlite_busy_timeout=sqlite_busy_timeout, source=source
            )
        )

    # -- schema -----------------------------------------------------------------------------------

    @property
    def display_url(self) -> str:
        return mask_url(self.engine.url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def upgrade(self) -> tuple[int, int]:
        """Create or upgrade the schema to this package's version. Returns (from, to)."""
        with self.engine.begin() as conn:
            result = upgrades.upgrade(conn)
        self._schema_ready = True
        return result

    def schema_version(self) -> int:
        with self._read() as conn:
            return upgrades.current_version(conn)

    def ensure_schema(self) -> None:
        """Upgrade on first use; afterwards a no-op for this object."""
        if self._schema_ready:
            return
        with self._lock:
            if self._schema_ready:
                return
            with self._read() as conn:
                found = upgrades.current_version(conn)
            if found != upgrades.HEAD:
                self.upgrade()
            self._schema_ready = True

    def _read(self) -> Any:
        return self.engine.connect().execution_options(**{READ_ONLY: True})

    def dispose(self) -> None:
        self.engine.dispose()

    def _insert(self) -> Any:
        if self.dialect == "postgresql":
            return pg_dialect.insert
        if self.dialect == "sqlite":
            return sqlite_dialect.insert
        raise StoreError(f"unsupported store dialect {self.dialect!r}")

    # -- metrics ----------------------------------------------------------------------------------

    def write_point(
        self, name: str, value: float, labels: Mapping[str, Any] | None = None, ts: float | None = None
    ) -> None:
        self.write_points([MetricPoint(name, value, dict(labels or {}), time.time() if ts is None else ts)])

    def write_points(self, points: Iterable[MetricPoint]) -> int:
        """Write points in one transaction. All or nothing. Returns how many were written."""
        batch = list(points)
        if not batch:
            return 0
        for point in batch:
            if not isinstance(point, MetricPoint):
                raise TypeError(f"write_points takes MetricPoint objects, got {type(point).__name__}")
        self.ensure_schema()
        keys = [(p.name, p.labels_key) for p in batch]
        with self.engine.begin() as conn:
            ids = self._resolve_series(conn, set(keys))
            rows = [
                {"series_id": ids[key], "ts_ms": p.ts_ms, "value": float(p.value)}
                for key, p in zip(keys, batch, strict=True)
            ]
            for i in range(0, len(rows), _CHUNK):
                conn.execute(insert(schema.metric_points), rows[i : i + _CHUNK])
        # Only now, after commit, may fresh series ids be trusted by later writes.
        self._series_ids.update(ids)
        return len(rows)

    def _resolve_series(self, conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        known = {k: self._series_ids[k] for k in keys if k in self._series_ids}
        missing = keys - known.keys()
        if not missing:
            return known
        table = schema.metric_series
        stmt = self._insert()(table).on_conflict_do_nothing(index_elements=["name", "labels"])
        conn.execute(stmt, [{"name": n, "labels": lab} for n, lab in sorted(missing)])
        names = sorted({n for n, _ in missing})
        for i in range(0, len(names), 500):
            for row in conn.execute(
                select(table.c.id, table.c.name, table.c.labels).where(table.c.name.in_(names[i : i + 500]))
            ):
                key = (row.name, row.labels)
                if key in missing:
                    known[key] = row.id
        lost = missing - known.keys()
        if lost:
            raise StoreError(f"metric series could not be created: {sorted(lost)[:3]}")
        return known

    def _matching_series(
        self, conn: Connection, name: str, labels: Mapping[str, Any] | None
    ) -> dict[int, dict[str, str]]:
        table = schema.metric_series
        want = {k: str(v) for k, v in (labels or {}).items()}
        found: dict[int, dict[str, str]] = {}
        for row in conn.execute(select(table.c.id, table.c.labels).where(table.c.name == name)):
            have = json.loads(row.labels)
            if all(have.get(k) == v for k, v in want.items()):
                found[row.id] = have
        return found

    def aggregate(
        self,
        name: str,
        *,
        fn: str = "avg",
        labels: Mapping[str, Any] | None = None,
        start: float | None = None,
        end: float | None = None,
        window: float | None = None,
    ) -> float | None:
        """One aggregate over every series of ``name`` whose labels include ``labels``, in
        ``[start, end)`` (or the last ``window`` seconds). ``None`` when there is no point."""
        _check_fn(fn, AGGREGATES)
        start_ms, end_ms = _window(start, end, window)
        self.ensure_schema()
        pts = schema.metric_points
        with self._read() as conn:
            ids = list(self._matching_series(conn, name, labels))
            if not ids:
                return 0.0 if fn == "count" else None
            where = and_(pts.c.series_id.in_(ids), pts.c.ts_ms >= start_ms, pts.c.ts_ms < end_ms)
            if fn == "last":
                stmt = select(pts.c.value).where(where).order_by(pts.c.ts_ms.desc(), pts.c.id.desc()).limit(1)
            else:
                stmt = select(_SQL_AGG[fn](pts.c.value)).where(where)
            value = conn.execute(stmt).scalar()
        return None if value is None else float(value)

    def series(
        self,
        name: str,
        *,
        step: float,
        fn: str = "avg",
        labels: Mapping[str, Any] | None = None,
        start: float | None = None,
        end: float | None = None,
        window: float | None = None,
    ) -> list[Series]:
        """Per-series values bucketed by ``step`` seconds, aggregated in SQL."""
        _check_fn(fn, tuple(_SQL_AGG))
        if step <= 0:
            raise ValueError(f"series step {step!r}: must be positive seconds")
        step_ms = max(1, int(round(step * 1000)))
        start_ms, end_ms = _window(start, end, window)
        self.ensure_schema()
        pts = schema.metric_points
        with self._read() as conn:
            matched = self._matching_series(conn, name, labels)
            if not matched:
                return []
            bucket = ((pts.c.ts_ms // step_ms) * step_ms).label("bucket")
            stmt = (
                select(pts.c.series_id, bucket, _SQL_AGG[fn](pts.c.value).label("value"))
                .where(pts.c.series_id.in_(list(matched)), pts.c.ts_ms >= start_ms, pts.c.ts_ms < end_ms)
                .group_by(pts.c.series_id, bucket)
                .order_by(pts.c.series_id, bucket)
            )
            by_series: dict[int, list[tuple[float, float]]] = {}
            for row in conn.execute(stmt):
                by_series.setdefault(row.series_id, []).append((row.bucket / 1000.0, float(row.value)))
        return [Series(name, matched[sid], values) for sid, values in by_series.items()]

    def metric_names(self) -> list[str]:
        self.ensure_schema()
        table = schema.metric_series
        with self._read() as conn:
            return list(conn.execute(select(table.c.name).distinct().order_by(table.c.name)).scalars())

    # -- task outcomes ----------------------------------------------------------------------------

    def record_outcome(self, outcome: TaskOutcome) -> None:
        """Insert the outcome of one try, or update it if that try was recorded already."""
        self.ensure_schema()
        values = {
            "dag_id": outcome.dag_id,
            "task_id": outcome.task_id,
            "run_id": outcome.run_id,
            "map_index": outcome.map_index,
            "try_number": outcome.try_number,
            "state": outcome.state,
            "start_ts": outcome.start_ts,
            "end_ts": outcome.end_ts,
            "duration_s": outcome.duration_s,
            "error_class": outcome.error_class,
            "error_message": outcome.error_message,
            "hostname": outcome.hostname,
            "recorded_at": time.time(),
        }
        stmt = self._insert()(schema.task_outcomes).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["dag_id", "task_id", "run_id", "map_index", "try_number"],
            set_={col: stmt.excluded[col] for col in _OUTCOME_UPDATE},
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def outcomes(
        self,
        *,
        dag_id: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        states: Sequence[str] | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[TaskOutcome]:
        """Recorded outcomes, newest first."""
        self.ensure_schema()
        t = schema.task_outcomes
        stmt = select(t)
        if dag_id is not None:
            stmt = stmt.where(t.c.dag_id == dag_id)
        if task_id is not None:
            stmt = stmt.where(t.c.task_id == task_id)
        if run_id is not None:
            stmt = stmt.where(t.c.run_id == run_id)
        if states:
            stmt = stmt.where(t.c.state.in_(list(states)))
        if since is not None:
            stmt = stmt.where(t.c.end_ts >= since)
        stmt = stmt.order_by(t.c.end_ts.desc(), t.c.id.desc()).limit(limit)
        with self._read() as conn:
            rows = conn.execute(stmt).mappings().all()
        fields = TaskOutcome.__dataclass_fields__
        return [TaskOutcome(**{k: v for k, v in row.items() if k in fields}) for row in rows]

    def outcome_counts(self, *, since: float, dag_id: str | None = None) -> dict[str, int]:
        """How many tries ended in each state since ``since`` (seconds), counted in SQL."""
        self.ensure_schema()
        t = schema.task_outcomes
        stmt = select(t.c.state, func.count()).where(t.c.end_ts >= since).group_by(t.c.state)
        if dag_id is not None:
            stmt = stmt.where(t.c.dag_id == dag_id)
        with self._read() as conn:
            return {state: int(n) for state, n in conn.execute(stmt)}
