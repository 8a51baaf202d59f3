"""The Airflow side of alerting, against a real SQLite store and the Slack stand-in (a real HTTP
server on 127.0.0.1): AlertSensor (parse-time checks, poke), AlertTrigger (serialisation as the
task runner does it, its polling loop) and EtlopsAlertNotifier (callback alerts routed by the
rule file, one message for many failures, never raising, resolved by a later evaluation)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from etlops_airflow import runtime
from etlops_airflow.alerting import run_evaluation
from etlops_airflow.core.alerts.rules import load_rules
from etlops_airflow.core.alerts.state import RESOLVED, AlertState
from etlops_airflow.core.models import DagRunOutcome, TaskOutcome
from etlops_airflow.exceptions import ValidationError
from etlops_airflow.notifications.alerts import EtlopsAlertNotifier
from etlops_airflow.sensors.alerts import AlertSensor
from etlops_airflow.store import Store
from etlops_airflow.triggers.alerts import AlertTrigger
from tests.fixtures.slack_server import TOKEN, SlackServer

POST = "/api/chat.postMessage"
UPDATE = "/api/chat.update"

RULES = """\
receivers:
  ops: {type: slack, conn_id: slack_ops, channel: "#etl-alerts"}
routes:
  - receivers: [ops]
    group_by: [dag_id, task_id]
    group_wait: 0s
rules: []
"""


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> Store:
    """The configured store ([etlops] store_url), as sensors, triggers and notifiers find it
    (replaces the unit tier's ``store`` fixture in this module: SQLite only)."""
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    runtime.reset()
    found = runtime.get_store()
    found.upgrade()
    return found


def _raise(store: Store, rule_id: str, **labels: str) -> AlertState:
    alert, _ = store.alerts.raise_alert(rule_id, labels, {"source": "test"}, now=time.time())
    return alert


def _plain(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k not in ("rule_id", "severity")}


def _resolve(store: Store, alert: AlertState) -> None:
    now = time.time()
    store.alerts.commit_evaluation(
        [replace(alert, state=RESOLVED, resolved_at=now, last_eval_at=now)], [], [], {}, [], now=now
    )


# -- AlertSensor: parse time ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"rule_id": "orders-failing", "target": "gone"}, "target", "gone"),
        ({"rule_id": "orders-failing", "target": "FIRING"}, "target", "FIRING"),
        ({"rule_id": ""}, "rule_id", ""),
        ({"rule_id": None}, "rule_id", None),
        ({"rule_id": 42}, "rule_id", 42),
        ({"rule_id": "orders-failing", "labels": ["dag_id"]}, "labels", ["dag_id"]),
        ({"rule_id": "orders-failing", "labels": "dag_id=orders"}, "labels", "dag_id=orders"),
        ({"rule_id": "orders-failing", "poke_interval": 0}, "poke_interval", 0),
    ],
)
def test_alert_sensor_refuses_bad_arguments_at_parse_time(
    kwargs: dict[str, Any], field: str, value: object
) -> None:
    with pytest.raises(ValidationError) as info:
        AlertSensor(task_id="wait", **kwargs)
    error = info.value
    assert (error.owner, error.field, error.value) == ("AlertSensor 'wait'", field, value)
    assert str(error).startswith(f"AlertSensor 'wait': {field} {value!r}")


def test_alert_sensor_without_rule_id_names_the_argument() -> None:
    with pytest.raises(TypeError, match="rule_id"):
        AlertSensor(task_id="wait")  # type: ignore[call-arg]


def test_alert_sensor_keeps_what_it_was_given() -> None:
    sensor = AlertSensor(
        task_id="wait", rule_id="orders-failing", target="cleared", labels={"attempt": 3}, deferrable=True
    )
    assert (sensor.rule_id, sensor.target, sensor.labels, sensor.deferrable) == (
        "orders-failing",
        "cleared",
        {"attempt": "3"},  # label values are strings in the store
        True,
    )


# -- AlertSensor: poke against a real store ---------------------------------------------------------


def test_poke_for_firing_matches_rule_and_labels(store: Store) -> None:
    orders = AlertSensor(task_id="w1", rule_id="load-failed", labels={"dag_id": "orders"})
    any_dag = AlertSensor(task_id="w2", rule_id="load-failed")
    users = AlertSensor(task_id="w3", rule_id="load-failed", labels={"dag_id": "users"})
    both = AlertSensor(task_id="w4", rule_id="load-failed", labels={"dag_id": "orders", "task_id": "load"})
    assert [s.poke({}) for s in (orders, any_dag, users, both)] == [False] * 4
    _raise(store, "other-rule", dag_id="orders", task_id="load")  # another rule: no match
    assert [s.poke({}) for s in (orders, any_dag, users, both)] == [False] * 4
    alert = _raise(store, "load-failed", dag_id="orders", task_id="load")
    assert [s.poke({}) for s in (orders, any_dag, users, both)] == [True, True, False, True]
    _resolve(store, alert)
    assert [s.poke({}) for s in (orders, any_dag, users, both)] == [False] * 4


def test_poke_for_cleared_matches_rule_and_labels(store: Store) -> None:
    orders = AlertSensor(task_id="c1", rule_id="load-failed", target="cleared", labels={"dag_id": "orders"})
    any_dag = AlertSensor(task_id="c2", rule_id="load-failed", target="cleared")
    assert orders.poke({}) and any_dag.poke({})  # nothing ever fired: cleared
    _raise(store, "load-failed", dag_id="users")  # another DAG's alert
    assert orders.poke({}) is True and any_dag.poke({}) is False
    alert = _raise(store, "load-failed", dag_id="orders")
    assert orders.poke({}) is False and any_dag.poke({}) is False
    _resolve(store, alert)
    assert orders.poke({}) is True and any_dag.poke({}) is False


# -- AlertTrigger -------------------------------------------------------------------------------------


def _trigger(**overrides: Any) -> AlertTrigger:
    kwargs: dict[str, Any] = {
        "rule_id": "load-failed",
        "labels": {"dag_id": "orders"},
        "target": "firing",
        "poll_interval": 0.1,
    }
    kwargs.update(overrides)
    return AlertTrigger(**kwargs)


def test_trigger_is_rebuilt_from_what_it_serialises() -> None:
    from airflow.sdk._shared.module_loading import import_string
    from airflow.sdk.serde import deserialize
    from airflow.sdk.serde import serialize as serde_serialize

    original = _trigger(target="cleared", poll_interval=2.5, etlops_conn_id="etlops_pg")
    classpath, kwargs = original.serialize()
    # as the task runner sends it to the triggerer (serde, then JSON), and back
    sent = json.loads(json.dumps(serde_serialize(kwargs)))
    rebuilt = import_string(classpath)(**deserialize(sent))
    assert isinstance(rebuilt, AlertTrigger)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs == {
        "rule_id": "load-failed",
        "labels": {"dag_id": "orders"},
        "target": "cleared",
        "poll_interval": 2.5,
        "etlops_conn_id": "etlops_pg",
    }


@pytest.mark.timeout(60)  # without deferral the sensor would poke until its timeout
def test_sensor_defers_to_a_trigger_with_its_own_settings(store: Store) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    sensor = AlertSensor(
        task_id="wait",
        rule_id="load-failed",
        labels={"dag_id": "orders"},
        deferrable=True,
        poke_interval=7,
        timeout=600,
    )
    with pytest.raises(TaskDeferred) as info:
        sensor.execute({})
    trigger = info.value.trigger
    assert isinstance(trigger, AlertTrigger)
    assert trigger.serialize()[1] == {
        "rule_id": "load-failed",
        "labels": {"dag_id": "orders"},
        "target": "firing",
        "poll_interval": 7.0,
        "etlops_conn_id": None,
    }
    assert info.value.method_name == "execute_complete"
    assert info.value.timeout is not None and info.value.timeout.total_seconds() == 600
    _raise(store, "load-failed", dag_id="orders")
    assert sensor.execute({}) is None  # already met: no deferral
    sensor.execute_complete({}, {"status": "met"})
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException, match="load-failed"):
        sensor.execute_complete({}, {"status": "timeout"})


async def _first_event(trigger: AlertTrigger, flip: Any, *, after: float, timeout: float = 10.0) -> Any:
    """Run the trigger; ``after`` seconds in (several polls), check it has not fired, call
    ``flip`` in another thread and return the event it then yields."""
    events = trigger.run()
    waiting = asyncio.ensure_future(anext(events))
    await asyncio.sleep(after)
    assert not waiting.done(), f"fired before its condition held: {waiting.result()}"
    await asyncio.to_thread(flip)
    started = time.monotonic()
    event = await asyncio.wait_for(waiting, timeout)
    took = time.monotonic() - started
    with pytest.raises(StopAsyncIteration):  # one event, then done
        await anext(events)
    return event, took


def test_trigger_fires_once_the_alert_fires(store: Store) -> None:
    trigger = _trigger()

    def flip() -> None:
        _raise(store, "load-failed", dag_id="users")  # not ours
        time.sleep(0.3)
        _raise(store, "load-failed", dag_id="orders", task_id="load")

    event, took = asyncio.run(_first_event(trigger, flip, after=0.35))
    assert event.payload == {"status": "met", "rule_id": "load-failed", "target": "firing"}
    assert took < 2.0  # polls every 0.1 s


def test_trigger_fires_once_the_alert_clears(store: Store) -> None:
    alert = _raise(store, "load-failed", dag_id="orders")
    event, _ = asyncio.run(
        _first_event(_trigger(target="cleared"), lambda: _resolve(store, alert), after=0.35)
    )
    assert event.payload == {"status": "met", "rule_id": "load-failed", "target": "cleared"}


def test_trigger_keeps_polling_through_store_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # The store's directory does not exist yet: every poll fails until it does. With target
    # "cleared" a failed read must not pass for "nothing is firing".
    path = tmp_path / "later" / "store.db"
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", f"sqlite:///{path}")
    runtime.reset()

    def repair() -> None:
        path.parent.mkdir()
        Store.from_url(f"sqlite:///{path}").upgrade()

    event, took = asyncio.run(_first_event(_trigger(target="cleared"), repair, after=0.45))
    assert event.payload["status"] == "met" and took < 2.0
    out, err = capfd.readouterr()  # the trigger logs through Airflow's structlog set-up
    failures = [line for line in (out + err).splitlines() if "not checked" in line]
    assert len(failures) >= 3, out + err
    assert "'load-failed'" in failures[0] and "unable to open database file" in failures[0]


# -- EtlopsAlertNotifier ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"rule_id": "bad id!"}, "rule_id", "bad id!"),
        ({"rule_id": ""}, "rule_id", ""),
        ({"rule_id": None}, "rule_id", None),
        ({"severity": "urgent"}, "severity", "urgent"),
        ({"severity": "HIGH"}, "severity", "HIGH"),
    ],
)
def test_notifier_refuses_bad_arguments(kwargs: dict[str, Any], field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        EtlopsAlertNotifier(**kwargs)
    assert (info.value.owner, info.value.field, info.value.value) == ("EtlopsAlertNotifier", field, value)


@pytest.fixture
def rules_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack_server: SlackServer) -> str:
    conn = {"conn_type": "slack", "password": TOKEN, "extra": {"base_url": slack_server.api_url}}
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_OPS", json.dumps(conn))
    path = tmp_path / "alert_rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    return str(path)


DSN_PASSWORD = "hunter2-dsn-pw"
TOKEN_SECRET = "tok-9f8e7d6c5b4a-etlops"


def _context(run_id: str = "manual__2026-01-01T00:00:00") -> dict[str, Any]:
    """What a task's on_failure_callback is given (the parts the notifier reads)."""
    ti = SimpleNamespace(dag_id="orders", task_id="load", run_id=run_id, try_number=1)
    return {
        "ti": ti,
        "task_instance": ti,
        "task": SimpleNamespace(task_id="load"),
        "dag": SimpleNamespace(dag_id="orders"),
        "dag_run": SimpleNamespace(run_id=run_id, dag_id="orders"),
        "exception": ConnectionError(
            f"cannot reach postgresql://etl:{DSN_PASSWORD}@db:5432/orders using {TOKEN_SECRET}"
        ),
    }


def _callback_alerts(store: Store) -> list[AlertState]:
    return [a for a in store.alerts.alerts() if a.rule_id == "orders-load-failed"]


def test_notifier_raises_a_callback_alert_routed_to_slack(
    store: Store, rules_file: str, slack_server: SlackServer
) -> None:
    from etlops_airflow._secrets import mask_secret

    mask_secret(TOKEN_SECRET)  # a secret Airflow knows of (a connection password, say)
    notifier = EtlopsAlertNotifier(rule_id="orders-load-failed", severity="high", rules_file=rules_file)
    notifier.notify(_context())

    (alert,) = _callback_alerts(store)
    assert alert.state == "firing"
    assert alert.labels == {
        "dag_id": "orders",
        "task_id": "load",
        "rule_id": "orders-load-failed",
        "severity": "high",
    }
    assert alert.annotations["source"] == "callback"
    assert alert.annotations["run_id"] == "manual__2026-01-01T00:00:00"
    error = alert.annotations["error"]
    assert error.startswith("ConnectionError: cannot reach postgresql://etl:***@db:5432/orders using ")
    stored = json.dumps([a.annotations for a in store.alerts.alerts()]) + json.dumps(
        [row.payload for row in store.alerts.outbox()]
    )
    assert DSN_PASSWORD not in stored and TOKEN_SECRET not in stored

    (post,) = slack_server.requests_to(POST)
    assert post.body["channel"] == "#etl-alerts"
    assert "orders-load-failed" in post.body["text"] and "[FIRING:1]" in post.body["text"]
    assert DSN_PASSWORD not in post.raw.decode() and TOKEN_SECRET not in post.raw.decode()
    (row,) = store.alerts.outbox()
    assert row.status == "sent" and row.receiver == "ops"


def test_a_hundred_failures_of_one_task_are_one_message(
    store: Store, rules_file: str, slack_server: SlackServer
) -> None:
    notifier = EtlopsAlertNotifier(rule_id="orders-load-failed", rules_file=rules_file)
    started = time.monotonic()
    for attempt in range(100):
        notifier.notify(_context(run_id=f"scheduled__{attempt:03d}"))
    took = time.monotonic() - started
    assert len(slack_server.requests_to(POST)) == 1
    (alert,) = _callback_alerts(store)
    assert alert.state == "firing" and alert.incident == 1
    assert alert.annotations["run_id"] == "scheduled__099"  # the latest failure is shown
    assert [(t.from_state, t.to_state) for t in store.alerts.transitions()] == [("inactive", "firing")]
    assert len(store.alerts.outbox()) == 1
    assert took < 30, f"100 callbacks took {took:.1f} s"


@pytest.mark.parametrize("broken", ["store", "missing file", "bad yaml", "unknown receiver"])
def test_notifier_never_raises_and_says_so_in_one_line(
    broken: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    rules_file: str,
    caplog: pytest.LogCaptureFixture,
    slack_server: SlackServer,
) -> None:
    path = rules_file
    if broken == "store":  # a server that is not there, with a password in the URL
        monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", "postgresql://etl:hunter2@127.0.0.1:9/nowhere")
    else:
        monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
        if broken == "missing file":
            path = str(tmp_path / "nowhere.yaml")
        else:
            text = "receivers: {ops: [unclosed" if broken == "bad yaml" else RULES.replace("[ops]", "[pager]")
            Path(path).write_text(text, encoding="utf-8")
    runtime.reset()
    notifier = EtlopsAlertNotifier(rule_id="orders-load-failed", rules_file=path)
    with caplog.at_level(logging.INFO):
        notifier.notify(_context())  # does not raise
    lines = [r for r in caplog.records if "orders-load-failed" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    (line,) = lines
    assert line.levelno == logging.WARNING and "not raised" in line.getMessage()
    assert "\n" not in line.getMessage() and "hunter2" not in caplog.text
    assert slack_server.requests == []


def test_notifier_without_any_rule_file_says_so(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AIRFLOW__ETLOPS__ALERT_RULES_FILE", raising=False)
    EtlopsAlertNotifier(rule_id="orders-load-failed").notify(_context())
    assert any("alert_rules_file" in r.getMessage() for r in caplog.records)


def test_the_rule_file_can_come_from_the_configuration(
    store: Store, rules_file: str, monkeypatch: pytest.MonkeyPatch, slack_server: SlackServer
) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__ALERT_RULES_FILE", rules_file)
    EtlopsAlertNotifier(rule_id="orders-load-failed").notify(_context())
    assert len(_callback_alerts(store)) == 1 and len(slack_server.requests_to(POST)) == 1


def _success(store: Store, run_id: str = "scheduled__100") -> None:
    now = time.time()
    store.outcomes.record(
        TaskOutcome("orders", "load", run_id, 1, "success", start_ts=now - 1, end_ts=now, duration_s=1)
    )


def test_a_later_success_resolves_the_callback_alert_with_a_notice(
    store: Store, rules_file: str, slack_server: SlackServer
) -> None:
    rules = load_rules(rules_file)
    notifier = EtlopsAlertNotifier(rule_id="orders-load-failed", rules_file=rules_file)
    notifier.notify(_context())
    store.outcomes.record(
        TaskOutcome("orders", "load", "manual__2026-01-01T00:00:00", 1, "failed", end_ts=time.time())
    )
    later = lambda: time.time() + 301  # noqa: E731 - past the route's group_interval (5 min)

    kept = run_evaluation(rules, store=store, now=later)  # the task has not succeeded since
    assert (kept.resolved, kept.sent) == (0, 0)
    assert _callback_alerts(store)[0].state == "firing"

    _success(store)
    done = run_evaluation(rules, store=store, now=later)
    assert (done.resolved, done.queued, done.sent) == (1, 1, 1)
    (alert,) = _callback_alerts(store)
    assert alert.state == "resolved"
    _, notice = slack_server.requests_to(POST)
    (original,) = [m for m in slack_server.messages.values() if m.thread_ts is None]
    assert "RESOLVED" in notice.body["text"] and notice.body["thread_ts"] == original.ts
    (update,) = slack_server.requests_to(UPDATE)
    assert update.body["ts"] == original.ts and original.edited
    assert [(t.from_state, t.to_state) for t in store.alerts.transitions()] == [
        ("inactive", "firing"),
        ("firing", "resolved"),
    ]

    again = run_evaluation(rules, store=store, now=lambda: time.time() + 700)
    assert (again.resolved, again.sent) == (0, 0)  # resolved once, told once
    # the task fails again later: a new incident, a new message
    notifier.notify(_context(run_id="scheduled__101"))
    assert len(slack_server.requests_to(POST)) == 3
    assert _callback_alerts(store)[0].incident == 2


def test_from_a_dag_callback_the_alert_is_the_dags_and_resolves_when_the_dag_succeeds(
    store: Store, rules_file: str, slack_server: SlackServer
) -> None:
    # Airflow 3.3 gives a DAG's on_failure_callback the template context of the run's last
    # task instance ("ti", "task" ...) plus "reason" (DagRun.handle_dag_callback, and
    # dag_processing.processor._execute_dag_callbacks).
    context = {**_context(), "reason": "task_failure"}
    del context["exception"]
    notifier = EtlopsAlertNotifier(rule_id="orders-run-failed", rules_file=rules_file)
    notifier.notify(context)
    (alert,) = [a for a in store.alerts.alerts() if a.rule_id == "orders-run-failed"]
    assert _plain(alert.labels) == {"dag_id": "orders"}
    assert len(slack_server.requests_to(POST)) == 1

    rules = load_rules(rules_file)
    later = lambda: time.time() + 301  # noqa: E731
    _success(store)  # the task succeeding is not the DAG succeeding
    assert run_evaluation(rules, store=store, now=later).resolved == 0
    now = time.time()
    store.dag_runs.record(DagRunOutcome("orders", "scheduled__100", "success", "scheduled", now - 5, now, 5))
    done = run_evaluation(rules, store=store, now=later)
    assert (done.resolved, done.sent) == (1, 1)
    assert "RESOLVED" in slack_server.requests_to(POST)[-1].body["text"]


def test_from_a_dag_callback_without_a_task_instance_the_run_is_still_named(
    store: Store, rules_file: str, slack_server: SlackServer
) -> None:
    # a run with no task instance to describe: Airflow's minimal DAG-callback context
    context = {"dag": SimpleNamespace(dag_id="orders"), "run_id": "manual__x", "reason": "timed_out"}
    EtlopsAlertNotifier(rule_id="orders-run-failed", rules_file=rules_file).notify(context)
    (alert,) = store.alerts.alerts(rule_id="orders-run-failed")
    assert _plain(alert.labels) == {"dag_id": "orders"}
    assert alert.annotations["run_id"] == "manual__x"
    assert len(slack_server.requests_to(POST)) == 1


def test_evaluate_operator_loops_only_in_scheduled_runs() -> None:
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from etlops_airflow.operators.alerts import EvaluateAlertRulesOperator

    rules = str(Path(__file__).resolve().parents[1] / "fixtures" / "alert_rules_example.yaml")
    op = EvaluateAlertRulesOperator(task_id="evaluate", rules_file=rules, evaluate_for="59m", interval="1m")
    at = datetime(2026, 1, 1, 10, 0, tzinfo=timezone.utc)
    scheduled = {"dag_run": SimpleNamespace(run_type="scheduled", run_after=at)}
    assert op._until(scheduled) == at.timestamp() + 59 * 60  # from the scheduled time, not the start
    for run_type in ("manual", "backfill", "asset_triggered"):
        assert op._until({"dag_run": SimpleNamespace(run_type=run_type, run_after=at)}) == 0.0  # once
    once = EvaluateAlertRulesOperator(task_id="once", rules_file=rules)
    assert once._until(scheduled) == 0.0
