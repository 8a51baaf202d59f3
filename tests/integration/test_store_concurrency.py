"""Several task processes write into one SQLite store at once: nothing lost, never "database is locked"."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from etlops_airflow.store import Store, upgrades

pytestmark = pytest.mark.integration

WRITERS = 4
POINTS = 10_000
BATCH = 50  # 200 transactions per writer, interleaved with the others


def _writer(url: str, worker: int, barrier: mp.synchronize.Barrier, errors: mp.Queue) -> None:
    from etlops_airflow.core.models import MetricPoint

    try:
        store = Store.from_url(url, sqlite_busy_timeout=30)
        barrier.wait(timeout=60)
        store.ensure_schema()  # first use races with the other writers on a fresh file
        for start in range(0, POINTS, BATCH):
            store.metrics.write(
                MetricPoint("load", float(i), {"worker": str(worker), "part": str(i % 7)}, 1_700_000_000 + i)
                for i in range(start, start + BATCH)
            )
    except BaseException as exc:  # report every error, including "database is locked"
        errors.put(f"writer {worker}: {type(exc).__name__}: {exc}")
        raise


@pytest.mark.parametrize("round_", range(3))  # the first-use race on a fresh file is timing-dependent
def test_four_processes_write_10k_points_each(tmp_path: Path, round_: int) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    errors: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, w, barrier, errors)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == []
    assert [p.exitcode for p in procs] == [0] * WRITERS

    store = Store.from_url(url)
    window = {"start": 1_700_000_000, "end": 1_700_000_000 + POINTS}
    assert store.metrics.aggregate("load", fn="count", **window) == WRITERS * POINTS
    expected_sum = float(sum(range(POINTS)))
    for w in range(WRITERS):
        assert store.metrics.aggregate("load", fn="count", labels={"worker": str(w)}, **window) == POINTS
        assert store.metrics.aggregate("load", fn="sum", labels={"worker": str(w)}, **window) == expected_sum
    assert store.schema_version() == upgrades.HEAD
