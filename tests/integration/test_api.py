"""The plugin's API on a real Airflow API server app: behind Airflow's auth, DAG-filtered."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from etlops_airflow.core.models import MetricPoint, TaskOutcome
from etlops_airflow.store import Store, reset_store_cache

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(airflow_db: str) -> Iterator[object]:
    # Register the demo DAG in the metadata DB, as the DAG processor would.
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags")}
    subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "reserialize"],
        env=env,
        cwd=airflow_db,
        check=True,
        capture_output=True,
        timeout=300,
    )
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app("core")) as client:
        yield client


def _token(username: str, role: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role)))


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", url)
    reset_store_cache()
    store = Store.from_url(url)
    now = time.time()
    store.record_outcome(TaskOutcome("etlops_demo_pipeline", "load", "r1", 1, "success", end_ts=now))
    store.record_outcome(TaskOutcome("some_dag_not_in_airflow", "x", "r1", 1, "failed", end_ts=now))
    store.write_points([MetricPoint("rows_loaded", 10, {"table": "orders"}, now - 30)])
    yield store
    reset_store_cache()


def test_anonymous_is_refused(api, store: Store) -> None:  # type: ignore[no-untyped-def]
    assert api.get("/etlops/api/outcomes").status_code == 401
    assert api.get("/etlops/api/store", headers={"Authorization": "Bearer not-a-token"}).status_code in (
        401,
        403,
    )


def test_outcomes_are_limited_to_known_dags(api, store: Store) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {_token('admin', 'admin')}"}
    response = api.get("/etlops/api/outcomes", headers=headers)
    assert response.status_code == 200, response.text
    assert [(r["dag_id"], r["task_id"], r["state"]) for r in response.json()] == [
        ("etlops_demo_pipeline", "load", "success")
    ]
    assert api.get("/etlops/api/outcomes?dag_id=some_dag_not_in_airflow", headers=headers).status_code == 403


def test_store_and_metrics_endpoints(api, store: Store) -> None:  # type: ignore[no-untyped-def]
    cookies = {"_token": _token("viewer", "viewer")}
    api.cookies.update(cookies)
    try:
        status = api.get("/etlops/api/store").json()
        assert status["schema_version"] == status["schema_head"] == 1
        assert status["url"] == store.display_url
        assert api.get("/etlops/api/metrics").json() == ["rows_loaded"]
        body = api.get("/etlops/api/metrics/rows_loaded?window=600&step=600&fn=sum").json()
        assert body["series"][0]["labels"] == {"table": "orders"}
        assert [p[1] for p in body["series"][0]["points"]] == [10.0]
        assert api.get("/etlops/api/metrics/rows_loaded?fn=median").status_code == 400
    finally:
        api.cookies.clear()
