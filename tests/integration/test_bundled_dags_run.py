"""The bundled DAGs run to success on the demo set-up (dag.test() in a fresh process), with the
demo's alert rules: the demo pipeline's retry trips the demo error-rate rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from etlops_airflow.store import Store
from tests.fixtures.airflow import run_dags

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_pipeline_then_alerting_on_the_demo_rules(airflow_db: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo-store.db'}"
    env = {
        "AIRFLOW__ETLOPS__STORE_URL": url,
        "AIRFLOW__ETLOPS__ALERT_RULES_FILE": str(REPO / "scripts" / "demo_alert_rules.yaml"),
    }
    runs, output = run_dags(REPO / "dags", ["etlops_demo_pipeline", "etlops_alerting"], env)
    assert {dag_id: run.state for dag_id, run in runs.items()} == {
        "etlops_demo_pipeline": "success",
        "etlops_alerting": "success",  # a manual run evaluates once, then ends
    }, output[-4000:]
    store = Store.from_url(url)
    firing = {a.rule_id: a for a in store.alerts.alerts(states=["firing"])}
    assert set(firing) == {"demo-retries"}  # 1 failed try of 6 = 17 % > 5 %; 166 rows >= 100
    assert firing["demo-retries"].labels["dag_id"] == "etlops_demo_pipeline"
    assert round(firing["demo-retries"].value or 0) == 17


MAINTENANCE = [
    "etlops_maintenance_cache_cleanup",
    "etlops_maintenance_log_rotation",
    "etlops_maintenance_health_check",
    "etlops_maintenance_checkpoint_cleanup",
    "etlops_maintenance_metrics_aggregation",
    "etlops_maintenance_db_optimization",
    "etlops_maintenance_performance_report",
]


def test_every_maintenance_dag_runs_to_success_on_the_demo_set_up(airflow_db: str, tmp_path: Path) -> None:
    import os
    import time

    url = f"sqlite:///{tmp_path / 'demo-store.db'}"
    cache, checkpoints, logs = tmp_path / "cache", tmp_path / "checkpoints", tmp_path / "logs"
    old = time.time() - 40 * 86400
    for i in range(5):
        (cache / f"d{i}").mkdir(parents=True)
        (cache / f"d{i}" / "blob.bin").write_bytes(b"x" * 1000)
        os.utime(cache / f"d{i}" / "blob.bin", (old, old))
        ckpt = checkpoints / "orders" / f"ckpt-{i}"
        ckpt.mkdir(parents=True)
        (ckpt / "state.json").write_text("{}")
        for path in (ckpt / "state.json", ckpt):  # a checkpoint's age is its newest file's
            os.utime(path, (old + i, old + i))
    attempt = logs / "dag_id=orders" / "run_id=r1" / "task_id=load" / "attempt=1.log"
    attempt.parent.mkdir(parents=True)
    attempt.write_text("old attempt\n")
    os.utime(attempt, (old, old))
    env = {
        "AIRFLOW__ETLOPS__STORE_URL": url,
        "AIRFLOW__ETLOPS__MAINTENANCE_CACHE_PATH": str(cache),
        "AIRFLOW__ETLOPS__MAINTENANCE_CHECKPOINT_PATH": str(checkpoints),
        "AIRFLOW__ETLOPS__MAINTENANCE_LOG_PATH": str(logs),
        "AIRFLOW__ETLOPS__MAINTENANCE_LOCK_DIR": str(tmp_path / "locks"),
    }
    runs, output = run_dags(REPO / "dags", ["etlops_demo_pipeline", *MAINTENANCE], env, timeout=900)
    assert {d: r.state for d, r in runs.items()} == dict.fromkeys(
        ["etlops_demo_pipeline", *MAINTENANCE], "success"
    ), output[-6000:]
    store = Store.from_url(url)
    tasks = {stored.run.task for stored in store.maintenance.runs(limit=50)}
    assert tasks >= {
        "cache_cleanup",
        "log_rotation",
        "health_check",
        "checkpoint_cleanup",
        "metrics_aggregation",
        "db_optimization",
        "performance_report",
    }
    assert not any((cache / f"d{i}" / "blob.bin").exists() for i in range(5))  # 40 days old: gone
    assert sorted(p.name for p in (checkpoints / "orders").iterdir()) == [
        "ckpt-2",
        "ckpt-3",
        "ckpt-4",
    ]  # keep_last 3
    assert not attempt.exists()  # 40 days > 30
