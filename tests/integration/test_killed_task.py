"""A task killed by SIGKILL (the out-of-memory killer's signal) under a real LocalExecutor still
gets its outcome in the store, and counts for failure streaks and error rates.

With no retry left, Airflow 3.3 runs no task-instance listener and no ``on_failure_callback``
for it: the task process dies before its finalizers, its supervisor reports ``failed`` to the
API server's execution API (which calls no listener) and the executor reports the workload as
done, so the scheduler has nothing to handle either. Our DAG-run listener records it when the
run ends. With a retry left, the scheduler fails the try itself and calls the task listener.

Components as in production, each in its own process group: ``airflow api-server``,
``airflow scheduler`` (LocalExecutor) and ``airflow dag-processor``, on a throwaway
AIRFLOW_HOME with its own SQLite metadata DB, on free ports.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from etlops_airflow.listeners.dag_runs import NO_OUTCOME_MESSAGE
from etlops_airflow.store import Store

REPO = Path(__file__).resolve().parents[2]
KILLED_DAGS = REPO / "tests" / "integration" / "dags_killed"
DAG_ID = "etlops_killed_task"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalAirflow:
    base: str
    home: Path
    store_url: str
    logs: dict[str, Path]

    def request(self, path: str, token: str | None = None, data: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, None

    def tail(self) -> str:
        return "\n".join(
            f"== {name}\n{path.read_text(errors='replace')[-2500:]}" for name, path in self.logs.items()
        )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every component's process group, wait for all of them, SIGKILL what is left."""
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    for proc in procs:
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.3)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@pytest.fixture
def local_airflow(tmp_path: Path) -> Iterator[LocalAirflow]:
    home = tmp_path / "airflow"
    home.mkdir()
    (home / "passwords.json").write_text('{"admin": "admin"}')
    port = _free_port()
    store_url = f"sqlite:///{tmp_path / 'etlops.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__DAGS_FOLDER=str(KILLED_DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API__SECRET_KEY="etlops-killed-task-test-secret",
        AIRFLOW__API_AUTH__JWT_SECRET="etlops-killed-task-jwt-" + "0123456789abcdef" * 4,
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(_free_port()),
        AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False",
        AIRFLOW__ETLOPS__STORE_URL=store_url,
    )
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    procs: list[subprocess.Popen[bytes]] = []
    logs: dict[str, Path] = {}
    try:
        for component in ("api-server", "scheduler", "dag-processor"):
            logs[component] = tmp_path / f"{component}.log"
            with open(logs[component], "wb") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "airflow", component],
                        env=env,
                        cwd=home,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # own process group: stopped as a whole
                    )
                )
        yield LocalAirflow(f"http://127.0.0.1:{port}", home, store_url, logs)
    finally:
        _stop(procs)


def _wait(what: str, airflow: LocalAirflow, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{airflow.tail()}")
        time.sleep(0.5)


def test_a_task_killed_by_sigkill_is_recorded_as_failed(local_airflow: LocalAirflow) -> None:
    af = local_airflow
    t0 = time.monotonic()

    def token() -> str | None:
        status, body = af.request("/auth/token", data={"username": "admin", "password": "admin"})
        return body["access_token"] if status in (200, 201) else None

    jwt = _wait("the API server", af, token, 90)
    _wait("the DAG to be parsed", af, lambda: af.request(f"/api/v2/dags/{DAG_ID}", jwt)[0] == 200, 90)
    status, run = af.request(f"/api/v2/dags/{DAG_ID}/dagRuns", jwt, {"logical_date": None})
    assert status == 200, status
    run_id = run["dag_run_id"]
    started = time.monotonic()

    def finished() -> str | None:
        state = af.request(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", jwt)[1]["state"]
        return str(state) if state in ("success", "failed") else None

    assert _wait("the DAG run to end", af, finished, 90) == "failed"
    ran_for = time.monotonic() - started

    store = Store.from_url(af.store_url)
    (dag_run,) = store.dag_runs.query(dag_id=DAG_ID)
    assert (dag_run.run_id, dag_run.state, dag_run.run_type) == (run_id, "failed", "manual")
    tries = {(o.task_id, o.try_number): o for o in store.outcomes.query(dag_id=DAG_ID, run_id=run_id)}
    assert {key: o.state for key, o in tries.items()} == {
        ("killed", 1): "failed",
        ("killed_once", 1): "up_for_retry",
        ("killed_once", 2): "success",
        ("after_killed", 0): "upstream_failed",
    }
    killed = tries[("killed", 1)]
    assert killed.error_message == NO_OUTCOME_MESSAGE
    assert killed.hostname and killed.duration_s is not None and killed.end_ts is not None
    # with a retry left the supervisor reports nothing (UP_FOR_RETRY is "sent directly", by the task
    # that died), the executor reports the workload done, and the scheduler, finding the try still
    # running, fails it for retry and calls on_task_instance_failed: our listener, in the scheduler
    retried = tries[("killed_once", 1)]
    assert "task-state-changed-externally" in (retried.error_message or ""), retried
    assert tries[("killed_once", 2)].error_message is None  # the worker's own row
    # they count for alert rules
    assert store.dag_runs.failure_streaks(DAG_ID) == [({"dag_id": DAG_ID}, 1)]
    assert store.outcomes.failure_streaks(DAG_ID, "killed") == [({"dag_id": DAG_ID, "task_id": "killed"}, 1)]
    assert store.outcomes.error_counts(0, time.time() + 1, dag_id=DAG_ID, by=["task_id"]) == [
        ({"task_id": "killed"}, 1, 1),
        ({"task_id": "killed_once"}, 1, 2),
    ]
    # the tasks really died by SIGKILL: the supervisor says so in the task log
    task_logs = [p.read_text(errors="replace") for p in (af.home / "logs").rglob("*.log")]
    assert sum("Process terminated by signal" in text for text in task_logs) == 2
    print(f"\nkilled-task run: components up and run triggered in {started - t0:.1f} s, ran {ran_for:.1f} s")
