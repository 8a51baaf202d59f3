"""What every maintenance operator shares: one run per host at a time (a flock the kernel
releases with its holder), the run and its figures recorded, a failed task when the job failed."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from etlops_airflow.core.maintenance.locks import host_lock
from etlops_airflow.exceptions import MaintenanceFailed
from etlops_airflow.operators.maintenance import CacheCleanupOperator
from etlops_airflow.runtime import get_store


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("AIRFLOW__ETLOPS__MAINTENANCE_LOCK_DIR", str(tmp_path / "locks"))
    cache = tmp_path / "cache"
    cache.mkdir()
    old = time.time() - 3 * 86400
    for i in range(3):
        (cache / f"f{i}").write_bytes(b"x" * 100)
        os.utime(cache / f"f{i}", (old, old))
    return cache


def _context() -> dict[str, Any]:
    from types import SimpleNamespace

    return {"ti": SimpleNamespace(run_id="manual__1")}


def test_the_lock_is_per_name_and_released_with_its_holder(tmp_path: Path) -> None:
    with host_lock(str(tmp_path), "dag.task") as first:
        assert first is True
        seen: list[bool] = []
        other = threading.Thread(target=lambda: seen.append(host_lock(str(tmp_path), "dag.task").__enter__()))
        other.start()
        other.join()
        assert seen == [False]  # held (flock is per open file description, so a thread sees it too)
        with host_lock(str(tmp_path), "dag.other") as unrelated:
            assert unrelated is True
    with host_lock(str(tmp_path), "dag.task") as again:
        assert again is True  # released on exit: no stale lock file to clean up


def test_a_second_run_on_the_same_host_is_skipped_not_overlapped(configured: Path, tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    op = CacheCleanupOperator(task_id="clean", path=str(configured), max_age_hours=24)
    with host_lock(str(tmp_path / "locks"), f"{op.dag_id}.{op.task_id}"):
        with pytest.raises(AirflowSkipException, match="another run of .*clean is running on this host"):
            op.execute(_context())
    assert sorted(p.name for p in configured.iterdir()) == ["f0", "f1", "f2"]  # nothing touched


def test_a_run_is_recorded_with_its_figures_and_a_dry_run_changes_nothing(configured: Path) -> None:
    dry = CacheCleanupOperator(task_id="clean", path=str(configured), max_age_hours=24, dry_run=True)
    summary = dry.execute(_context())
    assert summary["dry_run"] is True and summary["freed_files"] == 0
    assert len(list(configured.iterdir())) == 3
    real = CacheCleanupOperator(task_id="clean", path=str(configured), max_age_hours=24)
    summary = real.execute(_context())
    assert (summary["freed_files"], summary["freed_bytes"]) == (3, 300)
    store = get_store()
    runs = store.maintenance.runs(task="cache_cleanup")
    assert [(r.run.dry_run, r.run.freed_files) for r in runs] == [(False, 3), (True, 0)]
    freed = store.metrics.aggregate(
        "maintenance_freed_bytes", fn="sum", labels={"task": "cache_cleanup"}, window=600
    )
    assert freed == 300


def test_a_run_that_could_not_do_its_job_fails_its_task_and_is_recorded(configured: Path) -> None:
    missing = configured.parent / "no-such-cache"
    op = CacheCleanupOperator(task_id="clean", path=str(missing), max_age_hours=24)
    with pytest.raises(MaintenanceFailed, match=r"cache_cleanup on .*no-such-cache failed"):
        op.execute(_context())
    (run,) = get_store().maintenance.runs(task="cache_cleanup")
    assert run.run.errors and not run.run.ok
