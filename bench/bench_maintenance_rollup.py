"""Hourly rollup of the store's metric points against the hand-written SQL, on SQLite.

Baseline ("hand"): ``sqlite3`` with the store's pragmas running one hand-written statement,
``BEGIN IMMEDIATE; INSERT INTO etlops_metric_rollups … SELECT series_id, hour, count, sum, min,
max, avg FROM etlops_metric_points WHERE ts_ms in the day GROUP BY series_id, hour; COMMIT``.
Ours: ``store.maintenance.rollup("hourly", day_start, day_end)``, the whole operation the
MetricsAggregationOperator runs: delete the day's rollup rows, insert them (points, task
outcomes, DAG runs), record the 24 buckets, in one transaction.

One store file holds the points (``ETLOPS_BENCH_POINTS``, default 1,000,000, over one day in
``ETLOPS_BENCH_SERIES`` series), written by the store before timing. Before every timed run the
rollup tables are emptied (not timed), so both sides insert into the same empty tables; the
sides alternate which goes first; the figures are the median of ``ETLOPS_BENCH_REPEATS`` runs
(default 5). The answers of both sides are checked to be the same rows.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from etlops_airflow.core.models import MetricPoint
from etlops_airflow.store import Store

POINTS = int(os.environ.get("ETLOPS_BENCH_POINTS", "1000000"))
SERIES = int(os.environ.get("ETLOPS_BENCH_SERIES", "20"))
REPEATS = int(os.environ.get("ETLOPS_BENCH_REPEATS", "5"))
GOAL = 1.2  # ours / hand time
T0 = 1_704_067_200.0  # 2024-01-01 00:00 UTC
DAY = 86400.0
HAND = """
    INSERT INTO etlops_metric_rollups (granularity, series_id, bucket_ms, value_count, value_sum, value_min,
                                       value_max, value_avg, value_p95)
    SELECT 'hourly', series_id, (ts_ms / 3600000) * 3600000 AS bucket, count(*), sum(value), min(value),
           max(value), avg(value), NULL
    FROM etlops_metric_points
    WHERE ts_ms >= ? AND ts_ms < ?
    GROUP BY series_id, bucket
"""
ROWS = (
    "SELECT series_id, bucket_ms, value_count, value_sum, value_min, value_max "
    "FROM etlops_metric_rollups ORDER BY 1, 2"
)


def fill(store: Store) -> None:
    store.upgrade()
    step = DAY / POINTS
    batch = 100_000
    for first in range(0, POINTS, batch):
        store.metrics.write(
            [
                MetricPoint("bench_rows", float(i % 1000) / 4, {"table": f"t{i % SERIES}"}, T0 + i * step)
                for i in range(first, min(POINTS, first + batch))
            ]
        )


def raw_connection(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def clear(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for table in (
        "etlops_metric_rollups",
        "etlops_outcome_rollups",
        "etlops_dag_run_rollups",
        "etlops_rollup_buckets",
    ):
        conn.execute(f"DELETE FROM {table}")
    conn.execute("COMMIT")


def hand(conn: sqlite3.Connection) -> float:
    began = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(HAND, (int(T0 * 1000), int((T0 + DAY) * 1000)))
    conn.execute("COMMIT")
    return time.perf_counter() - began


def ours(store: Store) -> float:
    began = time.perf_counter()
    result = store.maintenance.rollup("hourly", T0, T0 + DAY)
    elapsed = time.perf_counter() - began
    assert result.points == POINTS and len(result.buckets) == 24, result
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="etlops-bench-rollup-") as tmp:
        path = os.path.join(tmp, "store.db")
        store = Store.from_url(f"sqlite:///{path}")
        began = time.perf_counter()
        fill(store)
        filled = time.perf_counter() - began
        print(f"filled {POINTS:,} points in {SERIES} series over one day in {filled:.1f} s (not timed)")
        conn = raw_connection(path)
        answers = {}
        timings: dict[str, list[float]] = {"hand": [], "ours": []}
        for repeat in range(REPEATS + 1):  # the first round warms the page cache and is not counted
            order = ("hand", "ours") if repeat % 2 == 0 else ("ours", "hand")
            for side in order:
                clear(conn)
                elapsed = hand(conn) if side == "hand" else ours(store)
                if repeat:
                    timings[side].append(elapsed)
                answers[side] = conn.execute(ROWS).fetchall()
        assert answers["hand"] == answers["ours"], "the two sides disagree"
        conn.close()
        store.dispose()
    h, o = statistics.median(timings["hand"]), statistics.median(timings["ours"])
    ratio = o / h
    print(f"rollup rows: {len(answers['ours']):,} (24 hours x {SERIES} series); answers identical")
    print(f"hand-written INSERT … SELECT … GROUP BY: median {h * 1000:8.1f} ms  ({POINTS / h:,.0f} points/s)")
    print(f"store.maintenance.rollup('hourly'):      median {o * 1000:8.1f} ms  ({POINTS / o:,.0f} points/s)")
    print(f"ratio ours/hand: {ratio:.3f}  (goal <= {GOAL}) {'OK' if ratio <= GOAL else 'OVER GOAL'}")
    runs = {side: [round(t * 1000, 1) for t in values] for side, values in timings.items()}
    print(f"runs: hand {runs['hand']} ms, ours {runs['ours']} ms")


if __name__ == "__main__":
    main()
