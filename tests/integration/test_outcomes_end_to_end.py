"""Real DAG runs (dag.test in a fresh process): outcomes land in the store through the plugin's listener."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from etlops_airflow.store import Store
from tests.fixtures.airflow import run_dag

REPO = Path(__file__).resolve().parents[2]
TEST_DAGS = REPO / "tests" / "integration" / "dags"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _tries(store: Store, dag_id: str) -> list[tuple[str, int, str]]:
    return sorted((o.task_id, o.try_number, o.state) for o in store.outcomes.query(dag_id=dag_id))


def test_demo_dag_on_the_default_sqlite_store(airflow_db: str) -> None:
    result = run_dag(REPO / "dags", "etlops_demo_pipeline")
    assert result.state == "success", result.output[-4000:]
    store = Store.from_url(f"sqlite:///{os.path.join(airflow_db, 'etlops.db')}")
    assert _tries(store, "etlops_demo_pipeline") == [
        ("enough_rows", 1, "success"),
        ("extract", 1, "success"),
        ("load", 1, "success"),
        ("publish", 1, "up_for_retry"),
        ("publish", 2, "success"),
        ("transform", 1, "success"),
    ]
    retry = next(o for o in store.outcomes.query(dag_id="etlops_demo_pipeline", states=["up_for_retry"]))
    assert retry.error_class == "ConnectionError" and "not ready" in (retry.error_message or "")
    assert all(o.duration_s is not None and o.duration_s >= 0 for o in store.outcomes.query())
    # metrics written from task code and by RecordMetricsOperator (value rendered from XCom)
    assert store.metrics.aggregate("rows_loaded", fn="last", labels={"table": "orders"}, window=3600) == 166
    assert store.metrics.aggregate("rows_dropped", fn="last", labels={"table": "orders"}, window=3600) == 84


@pytest.mark.postgres
def test_outcomes_land_in_postgresql_when_the_connection_says_so(airflow_db: str, postgres_server) -> None:
    url = postgres_server.create_database("etlops_e2e")
    env = {
        "AIRFLOW__ETLOPS__STORE_CONN_ID": "etlops_pg",
        "AIRFLOW_CONN_ETLOPS_PG": url.replace("postgresql+psycopg", "postgresql"),
    }
    result = run_dag(TEST_DAGS, "etlops_outcome_probe", env)
    assert result.state == "success", result.output[-4000:]
    store = Store.from_url(url)
    assert store.dialect == "postgresql"
    assert _tries(store, "etlops_outcome_probe") == [
        ("final", 1, "success"),
        ("flaky", 1, "up_for_retry"),
        ("flaky", 2, "success"),
        ("ok", 1, "success"),
    ]
    failed = store.outcomes.query(dag_id="etlops_outcome_probe", states=["up_for_retry"])[0]
    assert failed.error_class == "TimeoutError"


def test_wrong_store_url_tasks_succeed_with_one_clear_line_each(airflow_db: str) -> None:
    env = {"AIRFLOW__ETLOPS__STORE_URL": "postgresql://etl:hunter2@127.0.0.1:9/nowhere"}
    result = run_dag(TEST_DAGS, "etlops_outcome_probe", env)
    assert result.state == "success", result.output[-4000:]
    found = [line for line in result.output.splitlines() if "etlops: outcome of" in line]
    lines = [line for line in found if "outcome of DAG run" not in line]
    # ok, flaky try 1, flaky try 2, final: one line for each
    assert len(lines) == 4, "\n".join(found)
    # and one for the run (the DAG-run listener, in the process that ran dag.test())
    (run_line,) = [line for line in found if "outcome of DAG run etlops_outcome_probe" in line]
    assert "the run is not affected" in run_line
    for task_id in ("ok", "flaky", "final"):
        assert any(f"etlops_outcome_probe.{task_id}" in line for line in lines)
    assert all("not recorded" in line for line in lines)
    assert "hunter2" not in result.output
