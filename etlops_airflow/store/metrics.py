"""Metric series and points: batched writes at driver speed, label filters and aggregates in SQL.

Writes: one transaction per batch. Series are resolved once per process and cached; the
points go in with the driver's fastest path (SQLite ``executemany``, PostgreSQL binary
``COPY``). A cached series id that no longer exists (maintenance deleted the series) makes
the insert fail on its foreign key: the cache is dropped and the batch written again once.

Reads: a label filter is a subset match (``{"table": "orders"}`` matches every series whose
labels include it), evaluated by the database through the labels table. ``dag_ids``, when
given, hides every series whose ``dag_id`` label is not in it (series without a ``dag_id``
label stay visible): the API passes the DAGs the user may read.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, and_, exists, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement

from etlops_airflow.core.models import AGGREGATES, MetricPoint, check_metric_name, clean_labels, to_ms
from etlops_airflow.exceptions import InvalidMetricError, StoreError, ValidationError
from etlops_airflow.store import schema
from etlops_airflow.store.db import Database
from etlops_airflow.store.maintenance import rollup_history_statement, rollup_series_statement
from etlops_airflow.store.upgrades import labels_hash

_SQL_AGG: dict[str, Callable[..., Any]] = {
    "avg": func.avg,
    "sum": func.sum,
    "min": func.min,
    "max": func.max,
    "count": func.count,
}
BUCKET_FUNCTIONS = tuple(_SQL_AGG)
# "WITH … AS MATERIALIZED" needs SQLite 3.35; older versions run the same query without the hint.
_SQLITE_MATERIALIZED = sqlite3.sqlite_version_info >= (3, 35)
MAX_POINTS = 20_000  # buckets x series one series() call may return
_CACHE_LIMIT = 100_000

S = schema.metric_series
L = schema.metric_labels
P = schema.metric_points


@dataclass(frozen=True, slots=True)
class Series:
    """One labelled series of bucketed values: ``points`` are (bucket start seconds, value)."""

    name: str
    labels: dict[str, str]
    points: list[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class SeriesValue:
    """One aggregate of one series over a window, and how many points it covers."""

    labels: dict[str, str]
    value: float
    count: int


@dataclass(frozen=True, slots=True)
class LatestValue:
    """The newest point of one series: its time (seconds) and value."""

    name: str
    labels: dict[str, str]
    ts: float
    value: float


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Every aggregate of one series over one window: what alert rules combine."""

    count: int
    sum: float
    min: float
    max: float
    last: float
    last_ts_ms: int
    last_id: int  # the newest point's id: ties on time go to the later write, as in aggregate()


def window_ms(start: float | None, end: float | None, window: float | None) -> tuple[int, int]:
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
            raise ValidationError("window", None, "give start or window (seconds)")
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not window > 0:
            raise ValidationError("window", window, "must be positive seconds")
        start = end_s - window
    if start > end_s:
        raise ValidationError("start", start, f"is after end {end_s!r}")
    return to_ms(start), end_ms


def _check_fn(fn: str, allowed: Sequence[str]) -> None:
    if fn not in allowed:
        raise ValidationError("fn", fn, f"expected one of {', '.join(allowed)}")


class MetricsStore:
    """The metrics concern of the store (``store.metrics``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._series_ids: dict[tuple[str, str], int] = {}
        self._hashes: dict[str, str] = {}
        self._labels_cache: dict[int, dict[str, str]] = {}

    # -- writes -----------------------------------------------------------------------------------

    def write_point(
        self, name: str, value: float, labels: Mapping[str, Any] | None = None, ts: float | None = None
    ) -> None:
        self.write([MetricPoint(name, value, dict(labels or {}), time.time() if ts is None else ts)])

    def write(self, points: Iterable[MetricPoint]) -> int:
        """Write points in one transaction: all or nothing. Returns how many were written."""
        if points is None or isinstance(points, (str, bytes, Mapping, MetricPoint)):
            raise InvalidMetricError("points", points, "expected a list of MetricPoint objects")
        batch = list(points)
        if set(map(type, batch)) - {MetricPoint}:  # anything else (a subclass is fine): find it
            for point in batch:
                if not isinstance(point, MetricPoint):
                    raise InvalidMetricError("points", point, "expected MetricPoint objects")
        if not batch:
            return 0
        self.db.ensure_schema()
        cache = self._series_ids
        keys: set[tuple[str, str]] = set()  # collected only when a series is not cached
        for attempt in (1, 2):
            # The steady state: every series of the batch is cached. The rows are built with one
            # lookup per point, without first collecting the batch's keys; a miss falls back to
            # resolving the keys in the transaction.
            rows: list[tuple[int, int, float]] | None = None
            if len(cache) <= _CACHE_LIMIT:
                try:
                    rows = [(cache[(p.name, p.labels_key)], p.ts_ms, p.value) for p in batch]
                except KeyError:
                    pass
            ids: dict[tuple[str, str], int] = {}
            if rows is None:
                if not keys:
                    keys = {(p.name, p.labels_key) for p in batch}
                cached = any(k in cache for k in keys)
            else:
                cached = True
            try:
                with self.db.write("write metric points") as conn:
                    if rows is None:
                        ids = self._resolve_series(conn, keys)
                        rows = [(ids[(p.name, p.labels_key)], p.ts_ms, p.value) for p in batch]
                    self._insert_points(conn, rows)
            except StoreError as exc:
                if attempt == 1 and cached and self._is_integrity_error(exc.__cause__):
                    self.forget_series()  # a series was deleted under us: resolve afresh
                    continue
                raise
            # Only now, after commit, may fresh series ids be trusted by later writes.
            if ids:
                if len(cache) > _CACHE_LIMIT:
                    self.forget_series()
                cache.update(ids)
            return len(rows)
        raise AssertionError("unreachable")  # pragma: no cover

    def forget_series(self) -> None:
        """Drop the cached series ids (after series were deleted, e.g. by maintenance)."""
        self._series_ids.clear()

    def _is_integrity_error(self, exc: BaseException | None) -> bool:
        dbapi = self.db.engine.dialect.loaded_dbapi
        return isinstance(exc, (IntegrityError, dbapi.IntegrityError))

    def _hash(self, labels_key: str) -> str:
        found = self._hashes.get(labels_key)
        if found is None:
            if len(self._hashes) > _CACHE_LIMIT:
                self._hashes.clear()
            found = self._hashes[labels_key] = labels_hash(labels_key)
        return found

    def _resolve_series(self, conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        known = {k: self._series_ids[k] for k in keys if k in self._series_ids}
        missing = keys - known.keys()
        if not missing:
            return known
        by_hash = {(name, self._hash(key)): (name, key) for name, key in missing}
        stmt = (
            self.db.insert(S)
            .on_conflict_do_nothing(index_elements=["name", "labels_hash"])
            .returning(S.c.id, S.c.name, S.c.labels_hash)
        )
        created = conn.execute(
            stmt, [{"name": n, "labels": by_hash[(n, h)][1], "labels_hash": h} for n, h in sorted(by_hash)]
        ).all()
        label_rows = [
            {"series_id": row.id, "name": k, "value": v}
            for row in created
            for k, v in json.loads(by_hash[(row.name, row.labels_hash)][1]).items()
        ]
        if label_rows:
            conn.execute(L.insert(), label_rows)
        found = conn.execute(
            select(S.c.id, S.c.name, S.c.labels_hash).where(
                self.db.values_in(S.c.labels_hash, sorted({h for _, h in by_hash}))
            )
        )
        for row in found:
            key = by_hash.get((row.name, row.labels_hash))
            if key is not None:
                known[key] = row.id
        lost = missing - known.keys()
        if lost:
            raise StoreError(
                f"store {self.db.display_url}: metric series could not be created: {sorted(lost)[:3]}"
            )
        return known

    def _insert_points(self, conn: Connection, rows: list[tuple[int, int, float]]) -> None:
        if self.db.dialect == "postgresql":
            raw: Any = conn.connection.dbapi_connection
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY {P.name} (series_id, ts_ms, value) FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.set_types(["int4", "int8", "float8"])
                for row in rows:
                    copy.write_row(row)
        else:
            conn.exec_driver_sql(f"INSERT INTO {P.name} (series_id, ts_ms, value) VALUES (?, ?, ?)", rows)

    # -- reads ------------------------------------------------------------------------------------

    def _visible(self, dag_ids: Sequence[str] | None) -> list[ColumnElement[bool]]:
        if dag_ids is None:
            return []
        la = L.alias()
        hidden = exists().where(
            la.c.series_id == S.c.id, la.c.name == "dag_id", ~self.db.values_in(la.c.value, dag_ids)
        )
        return [~hidden]

    def _matching(
        self, name: str, labels: Mapping[str, Any] | None, dag_ids: Sequence[str] | None
    ) -> Select[Any]:
        """Ids of the series of ``name`` whose labels include ``labels`` (and that are visible)."""
        check_metric_name(name)
        stmt = select(S.c.id).where(S.c.name == name, *self._visible(dag_ids))
        for key, value in clean_labels(labels).items():
            la = L.alias()
            stmt = stmt.where(exists().where(la.c.series_id == S.c.id, la.c.name == key, la.c.value == value))
        return stmt

    def _in_window(
        self,
        name: str,
        labels: Mapping[str, Any] | None,
        span: tuple[int, int],
        dag_ids: Sequence[str] | None,
    ) -> ColumnElement[bool]:
        """Points of the matching series in ``[start_ms, end_ms)``."""
        start_ms, end_ms = span
        return and_(
            P.c.series_id.in_(self._matching(name, labels, dag_ids)),
            P.c.ts_ms >= start_ms,
            P.c.ts_ms < end_ms,
        )

    def aggregate(
        self,
        name: str,
        *,
        fn: str = "avg",
        labels: Mapping[str, Any] | None = None,
        start: float | None = None,
        end: float | None = None,
        window: float | None = None,
        dag_ids: Sequence[str] | None = None,
    ) -> float | None:
        """One aggregate over every matching series in ``[start, end)`` (or the last ``window``
        seconds). ``None`` when no point is in the window, for every ``fn`` (``count`` too)."""
        _check_fn(fn, AGGREGATES)
        where = self._in_window(name, labels, window_ms(start, end, window), dag_ids)
        self.db.ensure_schema()
        with self.db.read(f"aggregate {name}") as conn:
            if fn == "last":
                value = conn.execute(
                    select(P.c.value).where(where).order_by(P.c.ts_ms.desc(), P.c.id.desc()).limit(1)
                ).scalar()
                return None if value is None else float(value)
            count, value = conn.execute(
                select(func.count(P.c.value), _SQL_AGG[fn](P.c.value)).where(where)
            ).one()
        return float(value) if count else None

    def aggregate_by(
        self,
        name: str,
        *,
        by: Sequence[str] | None = None,
        fn: str = "avg",
        labels: Mapping[str, Any] | None = None,
        start: float | None = None,
        end: float | None = None,
        window: float | None = None,
        dag_ids: Sequence[str] | None = None,
    ) -> list[SeriesValue]:
        """The aggregate per group of series, in SQL: per distinct values of the ``by`` labels
        (a series without one of them is grouped without it, as Prometheus does), or per series
        when ``by`` is None. Only groups with a point in the window are returned."""
        _check_fn(fn, AGGREGATES)
        where = self._in_window(name, labels, window_ms(start, end, window), dag_ids)
        keys: list[Any]
        if by is None:
            keys = [P.c.series_id]
            joined: Any = P
        else:
            names = list(clean_labels({k: "" for k in by}))
            joined = P
            keys = []
            for key in names:
                la = L.alias(f"by_{key}")
                joined = joined.outerjoin(la, and_(la.c.series_id == P.c.series_id, la.c.name == key))
                keys.append(la.c.value.label(key))
        if fn == "last":
            ranked = (
                select(
                    *keys,
                    P.c.value,
                    func.row_number()
                    .over(partition_by=keys, order_by=(P.c.ts_ms.desc(), P.c.id.desc()))
                    .label("rn"),
                    func.count().over(partition_by=keys).label("n"),
                )
                .select_from(joined)
                .where(where)
                .subquery()
            )
            group_cols = [ranked.c[k.name] for k in keys]
            stmt = select(*group_cols, ranked.c.value, ranked.c.n).where(ranked.c.rn == 1)
        else:
            stmt = (
                select(*keys, _SQL_AGG[fn](P.c.value), func.count(P.c.value))
                .select_from(joined)
                .where(where)
                .group_by(*keys)
            )
        self.db.ensure_schema()
        with self.db.read(f"aggregate {name} by {by or 'series'}") as conn:
            rows = conn.execute(stmt).all()
            texts = self._labels_of(conn, [row[0] for row in rows]) if by is None else {}
        result = []
        for row in rows:
            if by is None:
                group = texts[row[0]]
            else:
                group = {k.name: v for k, v in zip(keys, row[: len(keys)], strict=True) if v is not None}
            result.append(SeriesValue(group, float(row[-2]), int(row[-1])))
        return sorted(result, key=lambda v: sorted(v.labels.items()))

    def count_series(
        self, name: str, *, labels: Mapping[str, Any] | None = None, dag_ids: Sequence[str] | None = None
    ) -> int:
        stmt = select(func.count()).select_from(self._matching(name, labels, dag_ids).subquery())
        self.db.ensure_schema()
        with self.db.read(f"count series of {name}") as conn:
            return int(conn.execute(stmt).scalar_one())

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
        dag_ids: Sequence[str] | None = None,
        max_points: int = MAX_POINTS,
    ) -> list[Series]:
        """Per-series values bucketed by ``step`` seconds, aggregated in SQL. Refuses a step that
        would return more than ``max_points`` buckets over all matching series."""
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0:
            raise ValidationError("step", step, "must be positive seconds")
        step_ms = max(1, int(round(step * 1000)))
        _check_fn(fn, BUCKET_FUNCTIONS)
        start_ms, end_ms = window_ms(start, end, window)
        buckets = math.ceil((end_ms - start_ms) / step_ms) + 1
        n_series = self.count_series(name, labels=labels, dag_ids=dag_ids)
        if n_series == 0:
            return []
        if buckets * n_series > max_points:
            least = (end_ms - start_ms) * n_series / max_points / 1000
            raise ValidationError(
                "step",
                step,
                f"gives up to {buckets * n_series:,} points ({n_series} series); at most {max_points:,}: "
                f"use a step of at least {math.ceil(least)} s",
            )
        bucket = ((P.c.ts_ms // step_ms) * step_ms).label("bucket")
        stmt = (
            select(P.c.series_id, bucket, _SQL_AGG[fn](P.c.value).label("value"))
            .where(self._in_window(name, labels, (start_ms, end_ms), dag_ids))
            .group_by(P.c.series_id, bucket)
            .order_by(P.c.series_id, bucket)
        )
        with self.db.read(f"series of {name}") as conn:
            # Whole hours/days of the window that the rollups hold come from them (store/maintenance.py).
            matching = self._matching(name, labels, dag_ids)
            rolled = rollup_series_statement(conn, matching, fn, step_ms, start_ms, end_ms)
            by_series: dict[int, list[tuple[float, float]]] = {}
            for row in conn.execute(stmt if rolled is None else rolled):
                by_series.setdefault(row.series_id, []).append((row.bucket / 1000.0, float(row.value)))
            label_sets = self._labels_of(conn, list(by_series))
        return [Series(name, label_sets[sid], values) for sid, values in by_series.items()]

    def history(
        self,
        names: Sequence[str],
        *,
        step_for: Callable[[str, int], float],
        fn: str = "avg",
        labels: Mapping[str, Any] | None = None,
        start: float | None = None,
        end: float | None = None,
        window: float | None = None,
        dag_ids: Sequence[str] | None = None,
        max_points: int = MAX_POINTS,
    ) -> dict[str, tuple[float, list[Series]]]:
        """:meth:`series` of several metrics in one read transaction: ``{name: (step, series)}``.
        ``step_for(name, n_series)`` gives each metric's step from its number of matching series
        (a chart of many series gets a coarser step). Bucketed in SQL; whole days (hours) come
        from the rollups for the longest stretch of the window they hold, the rest from the raw
        points: the answer of :meth:`series`, also while the newest hours are not rolled up yet."""
        _check_fn(fn, BUCKET_FUNCTIONS)
        wanted = list(dict.fromkeys(check_metric_name(n) for n in names))
        start_ms, end_ms = window_ms(start, end, window)
        result: dict[str, tuple[float, list[Series]]] = {}
        self.db.ensure_schema()
        with self.db.read(f"history of {len(wanted)} metric(s)") as conn:
            counts: dict[str, int] = {}
            if wanted:
                counted = select(S.c.name, func.count()).where(
                    self.db.values_in(S.c.name, wanted), *self._visible(dag_ids)
                )
                for key, value in clean_labels(labels).items():
                    la = L.alias()
                    counted = counted.where(
                        exists().where(la.c.series_id == S.c.id, la.c.name == key, la.c.value == value)
                    )
                counts = {row[0]: int(row[1]) for row in conn.execute(counted.group_by(S.c.name))}
            for name in wanted:
                n_series = counts.get(name, 0)
                step = step_for(name, max(n_series, 1))
                if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0:
                    raise ValidationError("step", step, "must be positive seconds")
                if n_series == 0:
                    result[name] = (float(step), [])
                    continue
                step_ms = max(1, int(round(step * 1000)))
                buckets = math.ceil((end_ms - start_ms) / step_ms) + 1
                if buckets * n_series > max_points:
                    raise ValidationError(
                        "step",
                        step,
                        f"gives up to {buckets * n_series:,} points ({n_series} series) of {name!r}",
                    )
                matching = self._matching(name, labels, dag_ids)
                stmt = rollup_history_statement(conn, matching, fn, step_ms, start_ms, end_ms)
                if stmt is None:
                    bucket = ((P.c.ts_ms // step_ms) * step_ms).label("bucket")
                    stmt = (
                        select(P.c.series_id, bucket, _SQL_AGG[fn](P.c.value).label("value"))
                        .where(P.c.series_id.in_(matching), P.c.ts_ms >= start_ms, P.c.ts_ms < end_ms)
                        .group_by(P.c.series_id, bucket)
                        .order_by(P.c.series_id, bucket)
                    )
                by_series: dict[int, list[tuple[float, float]]] = {}
                for row in conn.execute(stmt):
                    by_series.setdefault(row.series_id, []).append((row.bucket / 1000.0, float(row.value)))
                label_sets = self._labels_of(conn, list(by_series))
                result[name] = (
                    float(step),
                    [Series(name, label_sets[sid], values) for sid, values in by_series.items()],
                )
        return result

    def _labels_of(self, conn: Connection, ids: list[int]) -> dict[int, dict[str, str]]:
        """Labels of series ids (cached: a series' labels never change and ids are never reused)."""
        cache = self._labels_cache
        missing = [i for i in ids if i not in cache]
        if missing:
            if len(cache) > _CACHE_LIMIT:
                cache.clear()
            rows = conn.execute(select(S.c.id, S.c.labels).where(self.db.values_in(S.c.id, missing)))
            cache.update({sid: json.loads(labels_text) for sid, labels_text in rows})
        return {i: cache[i] for i in ids if i in cache}

    def catalogue(self, names: Sequence[str]) -> dict[str, list[tuple[int, dict[str, str]]]]:
        """The series of each metric name: ``{name: [(series id, labels), …]}`` (one query)."""
        wanted = sorted({check_metric_name(n) for n in names})
        found: dict[str, list[tuple[int, dict[str, str]]]] = {n: [] for n in wanted}
        if not wanted:
            return found
        self.db.ensure_schema()
        with self.db.read("read series catalogue") as conn:
            rows = conn.execute(
                select(S.c.id, S.c.name, S.c.labels)
                .where(self.db.values_in(S.c.name, wanted))
                .order_by(S.c.id)
            ).all()
        cache = self._labels_cache
        for sid, name, labels_text in rows:
            labels = cache.get(sid)
            if labels is None:
                labels = cache[sid] = json.loads(labels_text)
            found[name].append((sid, labels))
        return found

    def stats(self, requests: Sequence[tuple[int, int, int]]) -> dict[tuple[int, int, int], WindowStats]:
        """count, sum, min, max and last of many (series id, start_ms, end_ms) windows in ONE
        query: the database does one index range scan per window, and only the figures come
        back. Windows without a point are left out. Alert evaluation asks this once for every
        window of every rule."""
        unique = sorted(set(requests))
        if not unique:
            return {}
        window = "p.series_id = w.sid AND p.ts_ms >= w.a AND p.ts_ms < w.b"
        newest = f"FROM {P.name} p WHERE {window} ORDER BY p.ts_ms DESC, p.id DESC LIMIT 1"
        if self.db.dialect == "postgresql":
            # One index range scan and one index seek per window, through LATERAL joins.
            sql = f"""
                WITH w AS (
                    SELECT * FROM unnest(CAST(:sids AS integer[]), CAST(:starts AS bigint[]),
                                         CAST(:ends AS bigint[])) AS w(sid, a, b)
                )
                SELECT w.sid, w.a, w.b, agg.n, agg.total, agg.low, agg.high, lst.value, lst.ts_ms, lst.id
                FROM w
                CROSS JOIN LATERAL (
                    SELECT count(p.value) AS n, sum(p.value) AS total, min(p.value) AS low,
                           max(p.value) AS high
                    FROM {P.name} p WHERE {window}
                ) agg
                CROSS JOIN LATERAL (SELECT p.value, p.ts_ms, p.id {newest}) lst
            """
            params: dict[str, Any] = {
                "sids": [r[0] for r in unique],
                "starts": [r[1] for r in unique],
                "ends": [r[2] for r in unique],
            }
        else:
            # The windows are decoded from JSON once (MATERIALIZED), not once per joined row;
            # the newest point of each window is an index seek.
            materialized = "MATERIALIZED " if _SQLITE_MATERIALIZED else ""
            sql = f"""
                WITH w AS {materialized}(
                    SELECT json_extract(value, '$[0]') AS sid, json_extract(value, '$[1]') AS a,
                           json_extract(value, '$[2]') AS b
                    FROM json_each(:req)
                )
                SELECT w.sid, w.a, w.b, count(p.value), sum(p.value), min(p.value), max(p.value),
                       (SELECT p.value {newest}), (SELECT p.ts_ms {newest}), (SELECT p.id {newest})
                FROM w JOIN {P.name} p ON {window}
                GROUP BY w.sid, w.a, w.b
            """
            params = {"req": json.dumps(unique)}
        self.db.ensure_schema()
        with self.db.read("read window stats") as conn:
            rows = conn.execute(text(sql), params).all()
        return {
            (int(r[0]), int(r[1]), int(r[2])): WindowStats(
                int(r[3]), float(r[4]), float(r[5]), float(r[6]), float(r[7]), int(r[8]), int(r[9])
            )
            for r in rows
            if r[3]
        }

    def latest(
        self,
        names: Sequence[str],
        *,
        labels: Mapping[str, Any] | None = None,
        before: float | None = None,
        dag_ids: Sequence[str] | None = None,
    ) -> list[LatestValue]:
        """The newest point (before ``before`` when given) of every matching series of the
        ``names``: one index seek per series on (series, time), whatever the number of points.
        Series without a point are left out. Ordered by name, then labels."""
        wanted = sorted({check_metric_name(n) for n in names})
        if not wanted:
            return []
        stmt = select(S.c.id, S.c.name, S.c.labels).where(
            self.db.values_in(S.c.name, wanted), *self._visible(dag_ids)
        )
        for key, value in clean_labels(labels).items():
            la = L.alias()
            stmt = stmt.where(exists().where(la.c.series_id == S.c.id, la.c.name == key, la.c.value == value))
        series = stmt.subquery()
        newest = select(P.c.id).where(P.c.series_id == series.c.id)
        if before is not None:
            newest = newest.where(P.c.ts_ms < to_ms(before))
        newest_id = newest.order_by(P.c.ts_ms.desc(), P.c.id.desc()).limit(1).scalar_subquery()
        found = select(series.c.id, series.c.name, series.c.labels, newest_id.label("pid")).subquery()
        query = (
            select(found.c.id, found.c.name, P.c.ts_ms, P.c.value)
            .join(P, P.c.id == found.c.pid)
            .order_by(found.c.name, found.c.labels)
        )
        self.db.ensure_schema()
        with self.db.read("read latest metric values") as conn:
            rows = conn.execute(query).all()
            label_sets = self._labels_of(conn, [int(r.id) for r in rows])
        return [
            LatestValue(r.name, label_sets[int(r.id)], int(r.ts_ms) / 1000.0, float(r.value)) for r in rows
        ]

    def names(self, *, dag_ids: Sequence[str] | None = None) -> list[str]:
        """Metric names that have at least one (visible) series."""
        self.db.ensure_schema()
        stmt = select(S.c.name).where(*self._visible(dag_ids)).distinct().order_by(S.c.name)
        with self.db.read("list metric names") as conn:
            return list(conn.execute(stmt).scalars())
