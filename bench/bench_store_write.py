"""Store write throughput against the raw driver, on SQLite and PostgreSQL in one run.

Baseline ("raw"): the driver alone writing the same rows into the same schema, one
transaction per batch. SQLite: ``sqlite3`` with the store's pragmas (WAL, synchronous=NORMAL,
foreign keys on, busy timeout) doing ``BEGIN IMMEDIATE; executemany(INSERT …); COMMIT``.
PostgreSQL: psycopg binary ``COPY`` (``set_types`` int4/int8/float8, ``write_row``).
Ours: ``store.metrics.write(batch)`` on pre-built ``MetricPoint`` lists.

Each repeat gives both sides fresh tables of their own (new SQLite files; new PostgreSQL
schemas) made by ``store.upgrade()``, plus a warm-up batch written by the store: the series
exist (the store's cache is warm) and both start from the same rows. The raw rows use the
series ids read back from ``etlops_metric_series``. Building the points and the raw rows is
not timed. The sides take turns batch by batch, alternating which goes first, so a load
that comes and goes on the machine hits both alike; the figures are the median of the repeats.

PostgreSQL: ``ETLOPS_BENCH_PG_URL`` when set (the runs go into throwaway schemas there,
dropped afterwards); otherwise a temporary server started from the PostgreSQL binaries,
with fsync off unless ``ETLOPS_BENCH_PG_FSYNC=on`` (a flush per commit costs both sides the
same and only dilutes the ratio); skipped, saying why, when neither is there.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from etlops_airflow.core.models import MetricPoint, to_ms
from etlops_airflow.store import Store

POINTS = int(os.environ.get("ETLOPS_BENCH_POINTS", "100000"))
BATCH_SIZE = int(os.environ.get("ETLOPS_BENCH_BATCH_SIZE", "5000"))
SERIES = int(os.environ.get("ETLOPS_BENCH_SERIES", "20"))
REPEATS = int(os.environ.get("ETLOPS_BENCH_REPEATS", "7"))
PG_FSYNC = os.environ.get("ETLOPS_BENCH_PG_FSYNC", "off").lower() in ("1", "on", "true", "yes")
GOAL = 1.2  # ours / raw time

METRIC = "bench_rows"
T0 = 1_700_000_000.0
INSERT = "INSERT INTO etlops_metric_points (series_id, ts_ms, value) VALUES (?, ?, ?)"
COPY = "COPY etlops_metric_points (series_id, ts_ms, value) FROM STDIN (FORMAT BINARY)"

Batches = list[list[MetricPoint]]
Row = tuple[int, int, float]


def _labels(i: int) -> dict[str, str]:
    return {"table": f"t{i % SERIES}", "stage": "load"}


def build_batches() -> Batches:
    points = [MetricPoint(METRIC, float(i), _labels(i), T0 + 60 + i * 0.01) for i in range(POINTS)]
    return [points[i : i + BATCH_SIZE] for i in range(0, len(points), BATCH_SIZE)]


def warm_up(store: Store) -> dict[tuple[str, str], int]:
    """Schema, one point per series (creates them, fills the store's cache); the series ids."""
    store.upgrade()
    store.metrics.write([MetricPoint(METRIC, 0.0, _labels(i), T0 + i) for i in range(SERIES)])
    with store.db.read("bench: series ids") as conn:
        rows = conn.exec_driver_sql("SELECT id, name, labels FROM etlops_metric_series").all()
    return {(name, labels): int(sid) for sid, name, labels in rows}


def raw_rows(batches: Batches, ids: dict[tuple[str, str], int]) -> list[list[Row]]:
    return [[(ids[(p.name, p.labels_key)], to_ms(p.ts), p.value) for p in batch] for batch in batches]


class Side(Protocol):
    """One side of one repeat, on its own fresh tables."""

    def write(self, i: int) -> None: ...  # batch i, in one transaction

    def close(self) -> int: ...  # the points in the table


class Ours:
    def __init__(self, url: str, batches: Batches) -> None:
        self.store = Store.from_url(url)
        warm_up(self.store)
        self.batches = batches

    def write(self, i: int) -> None:
        self.store.metrics.write(self.batches[i])

    def close(self) -> int:
        try:
            with self.store.db.read("bench: count") as conn:
                return int(conn.exec_driver_sql("SELECT count(*) FROM etlops_metric_points").scalar_one())
        finally:
            self.store.dispose()


def _raw_rows_for(url: str, batches: Batches) -> list[list[Row]]:
    store = Store.from_url(url)
    try:
        return raw_rows(batches, warm_up(store))
    finally:
        store.dispose()


class RawSqlite:
    def __init__(self, url: str, batches: Batches) -> None:
        self.rows = _raw_rows_for(url, batches)
        self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        for pragma in (
            "busy_timeout = 30000",
            "journal_mode = WAL",
            "synchronous = NORMAL",
            "foreign_keys = ON",
        ):
            self.conn.execute(f"PRAGMA {pragma}")

    def write(self, i: int) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(INSERT, self.rows[i])
        self.conn.execute("COMMIT")

    def close(self) -> int:
        try:
            return int(self.conn.execute("SELECT count(*) FROM etlops_metric_points").fetchone()[0])
        finally:
            self.conn.close()


def connect_args(url: str) -> dict[str, Any]:
    """psycopg's keyword arguments for a store URL (as SQLAlchemy passes them)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    args: dict[str, Any] = parsed.translate_connect_args(username="user", database="dbname")
    args.update(parsed.query)
    return args


class RawPostgres:
    def __init__(self, url: str, batches: Batches) -> None:
        import psycopg

        self.rows = _raw_rows_for(url, batches)
        self.conn = psycopg.connect(**connect_args(url))

    def write(self, i: int) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur, cur.copy(COPY) as copy:
            copy.set_types(["int4", "int8", "float8"])
            for row in self.rows[i]:
                copy.write_row(row)

    def close(self) -> int:
        try:
            found = self.conn.execute("SELECT count(*) FROM etlops_metric_points").fetchone()
            return int(found[0]) if found else -1
        finally:
            self.conn.close()


# -- fresh tables per side and repeat --------------------------------------------------------------


@contextlib.contextmanager
def sqlite_urls() -> Iterator[Callable[[], str]]:
    """A new database file per call."""
    with tempfile.TemporaryDirectory(prefix="etlops-bench-") as tmp:
        made = 0

        def fresh() -> str:
            nonlocal made
            made += 1
            return f"sqlite:///{tmp}/run{made}.db"

        yield fresh


@contextlib.contextmanager
def postgres_urls(url: str) -> Iterator[Callable[[], str]]:
    """A new schema of ``url`` per call (``search_path`` set for the store and the driver),
    all dropped at the end: nothing else in that database is touched."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(url)
    admin = connect_args(url)
    schemas: list[str] = []

    def fresh() -> str:
        name = f"etlops_bench_{os.getpid()}_{len(schemas)}"
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        schemas.append(name)
        options = f"{base.query.get('options', '')} -c search_path={name}".strip()
        return base.update_query_dict({"options": options}).render_as_string(hide_password=False)

    try:
        yield fresh
    finally:
        with psycopg.connect(**admin, autocommit=True) as conn:
            for name in schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextlib.contextmanager
def postgres_database() -> Iterator[tuple[str, str]]:
    """(URL of a database to bench in, where it comes from)."""
    given = os.environ.get("ETLOPS_BENCH_PG_URL")
    if given:
        yield given, "ETLOPS_BENCH_PG_URL"
        return
    from tests.fixtures.postgres import running_postgres

    with running_postgres(fsync=PG_FSYNC) as server:
        yield server.create_database("etlops_bench"), f"temporary server, fsync={'on' if PG_FSYNC else 'off'}"


# -- the comparison --------------------------------------------------------------------------------


def compare(
    label: str, fresh: Callable[[], str], raw_side: Callable[[str, Batches], Side], batches: Batches
) -> float:
    raw_times: list[float] = []
    our_times: list[float] = []
    for r in range(REPEATS):
        sides: list[tuple[Side, list[float]]] = [
            (raw_side(fresh(), batches), raw_times),
            (Ours(fresh(), batches), our_times),
        ]
        spent = [0.0, 0.0]
        gc.collect()
        for i in range(len(batches)):
            order = (0, 1) if (r + i) % 2 == 0 else (1, 0)
            for k in order:
                start = time.perf_counter()
                sides[k][0].write(i)
                spent[k] += time.perf_counter() - start
        for k, (side, times) in enumerate(sides):
            found = side.close()
            assert found == SERIES + POINTS, f"{label}: {found} points in the table"
            times.append(spent[k])
    raw_s, our_s = statistics.median(raw_times), statistics.median(our_times)
    ratio = our_s / raw_s
    what = f"{POINTS:,} points in batches of {BATCH_SIZE:,}, {SERIES} series, median of {REPEATS}"
    print(f"{label:<10} raw driver: {POINTS / raw_s:>10,.0f} points/s   ({what})")
    print(f"{label:<10} ours:       {POINTS / our_s:>10,.0f} points/s")
    verdict = "ok" if ratio <= GOAL else "over the goal"
    print(f"{label:<10} ratio ours/raw time: {ratio:.2f}x   (goal <= {GOAL}: {verdict})")
    sys.stdout.flush()
    return ratio


def main() -> None:
    batches = build_batches()
    with sqlite_urls() as fresh:
        compare("sqlite", fresh, RawSqlite, batches)
    with contextlib.ExitStack() as stack:
        try:
            url, source = stack.enter_context(postgres_database())
        except Exception as exc:  # no binaries, or the server did not start: SQLite's figures stand
            print(f"postgresql skipped: {exc}")
            return
        print(f"postgresql: {source}")
        fresh = stack.enter_context(postgres_urls(url))
        compare("postgresql", fresh, RawPostgres, batches)


if __name__ == "__main__":
    main()
