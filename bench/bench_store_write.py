"""Store write throughput: one point per transaction vs batched writes (points/s and ratio)."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from etlops_airflow.core.models import MetricPoint
from etlops_airflow.store import Store

SINGLE = int(os.environ.get("ETLOPS_BENCH_SINGLE", "2000"))
BATCHED = int(os.environ.get("ETLOPS_BENCH_BATCHED", "100000"))
BATCH_SIZE = int(os.environ.get("ETLOPS_BENCH_BATCH_SIZE", "5000"))
REPEATS = 3


def _points(n: int, offset: int) -> list[MetricPoint]:
    return [
        MetricPoint(
            "bench_rows", float(i), {"table": f"t{i % 20}", "stage": "load"}, 1_700_000_000 + offset + i
        )
        for i in range(n)
    ]


def _rate(fn: Callable[[], int]) -> float:
    start = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - start)


def run(label: str, url: str) -> float:
    store = Store.from_url(url)
    store.upgrade()
    singles, batches = [], []
    for r in range(REPEATS):
        one_by_one = _points(SINGLE, r * 10_000_000)

        def write_singly(points: list[MetricPoint] = one_by_one) -> int:
            for p in points:
                store.write_points([p])
            return len(points)

        batched = _points(BATCHED, r * 10_000_000 + 5_000_000)

        def write_batched(points: list[MetricPoint] = batched) -> int:
            for i in range(0, len(points), BATCH_SIZE):
                store.write_points(points[i : i + BATCH_SIZE])
            return len(points)

        singles.append(_rate(write_singly))
        batches.append(_rate(write_batched))
    single, batch = statistics.median(singles), statistics.median(batches)
    print(
        f"{label:<11} one per transaction: {single:>10,.0f} points/s   ({SINGLE} points, median of {REPEATS})"
    )
    print(
        f"{label:<11} batched ({BATCH_SIZE:>5}):    {batch:>10,.0f} points/s   "
        f"({BATCHED} points, median of {REPEATS})"
    )
    print(f"{label:<11} ratio batched / one-by-one: {batch / single:.1f}x")
    store.dispose()
    return batch / single


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run("sqlite", f"sqlite:///{tmp}/bench.db")
    pg = os.environ.get("ETLOPS_BENCH_PG_URL")
    if pg:
        run("postgresql", pg)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
