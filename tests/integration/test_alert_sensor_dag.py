"""AlertSensor and EtlopsAlertNotifier in real DAG runs (dag.test() in a fresh process).

In Airflow 3.3 ``dag.test()`` runs a deferred task's trigger in line
(``InProcessTestSupervisor.run_trigger_in_process``: the first event of ``trigger.run()``, the
trigger timeout not enforced), then resumes the task with ``execute_complete``; a task in
``reschedule`` mode goes ``up_for_reschedule`` and is run again once its reschedule date has
passed. Task callbacks run in the task runner, in the same process, after the failure; the
DAG's callbacks run in line too (``DagRun.handle_dag_callback``), given the last task
instance's context plus ``reason``.

The test process changes alerts in the store only once the metadata DB shows the sensor waiting
(its trigger row, its reschedule row): so the sensors can only succeed through the trigger and
through a later poke. The Slack stand-in runs in the test process; the DAG process reaches it
through an ``AIRFLOW_CONN_`` connection.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from etlops_airflow.core.alerts.state import RESOLVED
from etlops_airflow.store import Store
from tests.fixtures.airflow import run_dags
from tests.fixtures.slack_server import TOKEN, SlackServer

REPO = Path(__file__).resolve().parents[2]
ALERT_DAGS = REPO / "tests" / "integration" / "dags_alerts"
TRIGGER = "etlops_airflow.triggers.alerts.AlertTrigger"
SENSORS = "etlops_alert_sensors"
CALLBACK = "etlops_alert_callback"
POST = "/api/chat.postMessage"

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = """\
receivers:
  ops: {type: slack, conn_id: slack_ops, channel: "#etl-alerts"}
  runs: {type: slack, conn_id: slack_ops, channel: "#etl-runs"}
routes:                 # the sensors' alerts (no severity) are not routed
  - receivers: [runs]
    match: {rule_id: orders-run-failed}
    group_wait: 0s
  - receivers: [ops]
    match: {severity: [critical, high]}
    group_by: [dag_id, task_id]
    group_wait: 0s
rules: []
"""


def _metadata(home: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Read Airflow's metadata DB (SQLite) while the DAG process writes it."""
    conn = sqlite3.connect(f"file:{os.path.join(home, 'airflow.db')}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _trigger_ids(home: str) -> set[object]:
    return {row[0] for row in _metadata(home, "SELECT id FROM trigger WHERE classpath = ?", TRIGGER)}


def _reschedules(home: str, task_id: str) -> int:
    rows = _metadata(
        home,
        "SELECT count(*) FROM task_reschedule r JOIN task_instance ti ON r.ti_id = ti.id "
        "WHERE ti.dag_id = ? AND ti.task_id = ?",
        SENSORS,
        task_id,
    )
    return int(rows[0][0])  # type: ignore[call-overload]


class _When(threading.Thread):
    """Once ``ready()`` holds, do ``then()`` (and note when); gives up after ``limit`` s."""

    def __init__(self, ready: Callable[[], bool], then: Callable[[], None], limit: float = 240) -> None:
        super().__init__(daemon=True)
        self.ready, self.then, self.limit = ready, then, limit
        self.done_at: float | None = None
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.limit
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                if self.ready():
                    self.then()
                    self.done_at = time.monotonic()
                    return
                time.sleep(0.2)
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_sensors_wait_in_the_trigger_and_between_pokes_and_a_failure_raises_one_alert(
    airflow_db: str, tmp_path: Path, slack_server: SlackServer
) -> None:
    store_url = f"sqlite:///{tmp_path / 'etlops.db'}"
    store = Store.from_url(store_url)
    store.upgrade()
    now = time.time()
    store.alerts.raise_alert("upstream-broken", {"dag_id": "orders"}, {}, now=now)
    store.alerts.raise_alert("clears-later", {"dag_id": "orders"}, {}, now=now)
    rules_file = tmp_path / "alert_rules.yaml"
    rules_file.write_text(RULES, encoding="utf-8")
    env = {
        "AIRFLOW__ETLOPS__STORE_URL": store_url,
        "AIRFLOW__ETLOPS__ALERT_RULES_FILE": str(rules_file),
        "AIRFLOW_CONN_SLACK_OPS": json.dumps(
            {"conn_type": "slack", "password": TOKEN, "extra": {"base_url": slack_server.api_url}}
        ),
    }

    old_triggers = _trigger_ids(airflow_db)
    old_reschedules = _reschedules(airflow_db, "clears_between_pokes")

    def raise_later() -> None:
        store.alerts.raise_alert("raised-later", {"dag_id": "orders", "task_id": "x"}, {}, now=time.time())

    def clear_later() -> None:
        (alert,) = store.alerts.alerts(rule_id="clears-later")
        at = time.time()
        resolved = replace(alert, state=RESOLVED, resolved_at=at, last_eval_at=at)
        store.alerts.commit_evaluation([resolved], [], [], {}, [], now=at)

    deferred = _When(lambda: bool(_trigger_ids(airflow_db) - old_triggers), raise_later)
    rescheduled = _When(
        lambda: _reschedules(airflow_db, "clears_between_pokes") > old_reschedules, clear_later
    )
    deferred.start()
    rescheduled.start()
    started = time.monotonic()
    try:
        runs, output = run_dags(ALERT_DAGS, [SENSORS, CALLBACK], env, timeout=400)
    finally:
        deferred.stop.set()
        rescheduled.stop.set()
    took = time.monotonic() - started
    print(f"two DAG runs took {took:.1f} s")
    assert deferred.error is None and rescheduled.error is None, (deferred.error, rescheduled.error)

    # -- the sensors ---------------------------------------------------------------------------
    assert runs[SENSORS].state == "success", output[-6000:]
    assert deferred.done_at is not None, "the deferrable sensor never deferred"
    assert rescheduled.done_at is not None, "the reschedule sensor never rescheduled"
    assert "[DAG TEST] running trigger in line" in output
    states = dict(
        _metadata(  # type: ignore[arg-type]
            airflow_db,
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
            SENSORS,
            runs[SENSORS].run_id,
        )
    )
    assert states == {
        "already_firing": "success",
        "fires_while_deferred": "success",
        "clears_between_pokes": "success",
        "never_fired": "success",
    }
    # only the sensor whose alert was not firing yet deferred; the other found it at once
    assert len(_trigger_ids(airflow_db) - old_triggers) == 1
    assert _reschedules(airflow_db, "never_fired") == 0

    # -- the failure callback ------------------------------------------------------------------
    assert runs[CALLBACK].state == "failed", output[-6000:]
    (alert,) = store.alerts.alerts(rule_id="orders-load-failed")
    assert alert.state == "firing"
    assert alert.labels == {
        "dag_id": CALLBACK,
        "task_id": "load",
        "rule_id": "orders-load-failed",
        "severity": "high",
    }
    assert alert.annotations["source"] == "callback"
    assert alert.annotations["run_id"] == runs[CALLBACK].run_id
    assert alert.annotations["description"] == f"load of {CALLBACK} failed"  # rendered by Airflow
    assert alert.annotations["error"] == (
        "ConnectionError: cannot reach postgresql://etl:***@db.example.com:5432/orders"
    )
    posts = {p.body["channel"]: p for p in slack_server.requests_to(POST)}
    assert len(slack_server.requests_to(POST)) == 2 and set(posts) == {"#etl-alerts", "#etl-runs"}
    assert "Orders load failed" in posts["#etl-alerts"].body["text"]
    assert "hunter2" not in posts["#etl-alerts"].raw.decode()
    assert [row.status for row in store.alerts.outbox()] == ["sent", "sent"]

    # the DAG's own callback (run by dag.test() in line, with the last task's context plus
    # "reason"): an alert of the DAG, not of its last task
    (run_alert,) = store.alerts.alerts(rule_id="orders-run-failed")
    assert run_alert.state == "firing"
    assert run_alert.labels == {"dag_id": CALLBACK, "rule_id": "orders-run-failed", "severity": "critical"}
    assert run_alert.annotations["run_id"] == runs[CALLBACK].run_id
    assert "orders-run-failed" in posts["#etl-runs"].body["text"]
    # the listener recorded the failed try in the same store
    assert [(o.task_id, o.state) for o in store.outcomes.query(dag_id=CALLBACK)] == [("load", "failed")]
