"""Real DAG runs (dag.test in a fresh process): profiles reach the store, XCom (Airflow's
metadata DB), the metrics and the task log through the plugin's profiling listener."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from etlops_airflow.store import Store
from tests.fixtures.airflow import run_dag, run_dags

REPO = Path(__file__).resolve().parents[2]
TEST_DAGS = REPO / "tests" / "integration" / "dags"
EXAMPLE = "etlops_profiling_example"
EXAMPLE_FILE = REPO / "dags" / f"{EXAMPLE}.py"  # alone: other bundled DAGs do not matter here

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A ~1.5 s slowdown counts as a regression against one earlier run.
REGRESSION_ENV = {
    "AIRFLOW__ETLOPS__PROFILE_REGRESSION_RUNS": "1",
    "AIRFLOW__ETLOPS__PROFILE_REGRESSION_FLOOR": "0.5",
    "AIRFLOW__ETLOPS__PROFILE_REGRESSION_FACTOR": "1.25",
}


def _xcoms(home: str, dag_id: str, key: str = "etlops_profile") -> dict[tuple[str, str, int], Any]:
    """``{(run_id, task_id, map_index): value}`` from Airflow's metadata DB, as the API reads it."""
    conn = sqlite3.connect(os.path.join(home, "airflow.db"))
    try:
        rows = conn.execute(
            "SELECT run_id, task_id, map_index, value FROM xcom WHERE dag_id = ? AND key = ?", (dag_id, key)
        ).fetchall()
    finally:
        conn.close()
    return {(run_id, task_id, map_index): json.loads(value) for run_id, task_id, map_index, value in rows}


@dataclass
class ExampleRuns:
    home: str
    store: Store
    first_run_id: str
    first_output: str


@pytest.fixture(scope="module")
def example_store(airflow_db: str, tmp_path_factory: pytest.TempPathFactory) -> ExampleRuns:
    """The example DAG run once, with its own store."""
    url = f"sqlite:///{tmp_path_factory.mktemp('profiling') / 'store.db'}"
    env = {"AIRFLOW__ETLOPS__STORE_URL": url, **REGRESSION_ENV}
    runs, output = run_dags(EXAMPLE_FILE, [EXAMPLE], env)
    assert runs[EXAMPLE].state == "success", output[-4000:]
    store = Store.from_url(url)
    return ExampleRuns(airflow_db, store, runs[EXAMPLE].run_id, output)


def test_example_report_lands_in_store_xcom_metrics_and_task_log(example_store: ExampleRuns) -> None:
    store, run_id = example_store.store, example_store.first_run_id
    (stored,) = store.profiles.sessions(dag_id=EXAMPLE, run_id=run_id)
    report = stored.report
    assert (report.key.task_id, report.key.try_number, report.key.map_index) == ("orders_etl", 1, -1)
    stages = {s.path: s for s in report.stages}
    assert list(stages) == ["extract", "enrich", "load"]
    assert (stages["extract"].records_out, stages["enrich"].records_in, stages["enrich"].records_out) == (
        50_000,
        50_000,
        50_000,
    )
    assert (stages["load"].records_in, stages["load"].records_out) == (50_000, 50_000)
    assert all(s.duration_s > 0 and s.peak_rss_bytes > 0 and s.error is None for s in report.stages)
    assert report.records_per_s is not None and report.records_per_s > 1000
    assert not [f for f in report.findings if f.kind == "regression"]  # no history yet

    xcom = _xcoms(example_store.home, EXAMPLE)[(run_id, "orders_etl", -1)]
    assert xcom["session_id"] == stored.id
    assert [s["path"] for s in xcom["stages"]] == ["extract", "enrich", "load"]
    assert xcom["stages"][1]["records_out"] == 50_000
    assert xcom["key"] == {
        "dag_id": EXAMPLE,
        "task_id": "orders_etl",
        "run_id": run_id,
        "map_index": -1,
        "try_number": 1,
    }

    labels = {"dag_id": EXAMPLE, "task_id": "orders_etl", "stage": "enrich"}
    window = {"window": 3600}
    duration = store.metrics.aggregate("stage_duration_seconds", fn="last", labels=labels, **window)
    assert duration == pytest.approx(stages["enrich"].duration_s)
    for name in (
        "stage_records_per_second",
        "stage_peak_rss_bytes",
        "stage_cpu_percent",
        "stage_io_read_bytes",
        "stage_io_write_bytes",
    ):
        assert store.metrics.aggregate(name, fn="count", labels=labels, **window) == 1, name
    by_stage = store.metrics.aggregate_by("stage_duration_seconds", by=["stage"], fn="count", window=3600)
    assert sorted(v.labels["stage"] for v in by_stage) == ["enrich", "extract", "load"]

    assert f"etlops profile {EXAMPLE}.orders_etl run {run_id} try 1" in example_store.first_output
    assert "etlops: profile of" not in example_store.first_output  # nothing went wrong


def test_a_slowed_stage_is_a_regression_on_the_next_run(example_store: ExampleRuns) -> None:
    url = str(example_store.store.engine.url)
    env = {"AIRFLOW__ETLOPS__STORE_URL": url, "ETLOPS_EXAMPLE_SLOW_STAGE": "enrich", **REGRESSION_ENV}
    result = run_dag(EXAMPLE_FILE, EXAMPLE, env)
    assert result.state == "success", result.output[-4000:]
    newest = example_store.store.profiles.sessions(dag_id=EXAMPLE)[0]
    assert newest.report.key.run_id != example_store.first_run_id
    regressions = [f for f in newest.report.findings if f.kind == "regression"]
    assert [f.stage for f in regressions] == ["enrich"], newest.report.findings
    assert regressions[0].severity == "high" and regressions[0].value >= 1.5
    assert any("Regression (enrich)" in r for r in newest.report.recommendations)
    xcom = _xcoms(example_store.home, EXAMPLE)[(newest.report.key.run_id, "orders_etl", -1)]
    assert [(f["kind"], f["stage"]) for f in xcom["findings"] if f["kind"] == "regression"] == [
        ("regression", "enrich")
    ]
    assert "[high] regression enrich: took" in result.output


def test_profile_all_tasks_profiles_an_unmodified_dag(airflow_db: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    env = {"AIRFLOW__ETLOPS__STORE_URL": url, "AIRFLOW__ETLOPS__PROFILE_ALL_TASKS": "True"}
    runs, output = run_dags(TEST_DAGS, ["etlops_outcome_probe"], env)
    assert runs["etlops_outcome_probe"].state == "success", output[-4000:]
    store = Store.from_url(url)
    sessions = store.profiles.sessions(dag_id="etlops_outcome_probe")
    tries = sorted((s.report.key.task_id, s.report.key.try_number) for s in sessions)
    outcomes = sorted((o.task_id, o.try_number) for o in store.outcomes.query(dag_id="etlops_outcome_probe"))
    assert tries == outcomes == [("final", 1), ("flaky", 1), ("flaky", 2), ("ok", 1)]
    for s in sessions:
        (stage,) = s.report.stages  # the whole task as one stage, named after it
        assert (stage.name, stage.path) == (s.report.key.task_id, s.report.key.task_id)
        assert stage.duration_s > 0 and stage.peak_rss_bytes > 0
    failed = next(s for s in sessions if s.report.key.task_id == "flaky" and s.report.key.try_number == 1)
    assert failed.report.stages[0].error == "TimeoutError: upstream timed out"
    xcoms = _xcoms(airflow_db, "etlops_outcome_probe")
    run_id = runs["etlops_outcome_probe"].run_id
    assert {task for (r, task, _), v in xcoms.items() if r == run_id} == {"ok", "flaky", "final"}
