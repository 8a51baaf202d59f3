"""Operators, sensor and notifier: parse-time validation and their work against a real store."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from etlops_airflow.notifications.metric import RecordMetricNotifier
from etlops_airflow.operators.metrics import RecordMetricsOperator
from etlops_airflow.sensors.metric import MetricSensor
from etlops_airflow.store import get_store


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> str:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    return sqlite_url


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"metrics": []}, "non-empty list"),
        ({"metrics": [{"name": "rows"}]}, "metrics[0]"),
        ({"metrics": [{"name": "bad name", "value": 1}]}, "'bad name'"),
        ({"metrics": [{"name": "rows", "value": 1, "label": {}}]}, "['label']"),
    ],
)
def test_record_metrics_operator_validates_at_parse_time(kwargs: dict[str, object], shown: str) -> None:
    with pytest.raises(ValueError) as info:
        RecordMetricsOperator(task_id="rec", **kwargs)  # type: ignore[arg-type]
    assert "'rec'" in str(info.value) and shown in str(info.value)


def test_record_metrics_operator_writes_rendered_values(configured: str) -> None:
    op = RecordMetricsOperator(
        task_id="rec", metrics=[{"name": "rows", "value": "{{ 40 + 2 }}", "labels": {"t": "orders"}}]
    )
    op.metrics = [{"name": "rows", "value": "42", "labels": {"t": "orders"}}]  # as rendered by Airflow
    assert op.execute({}) == 1
    store = get_store()
    assert store.aggregate("rows", fn="last", labels={"t": "orders", "task_id": "rec"}, window=60) == 42


def test_record_metrics_operator_rejects_non_numbers_at_run_time(configured: str) -> None:
    op = RecordMetricsOperator(task_id="rec", metrics=[{"name": "rows", "value": "{{ x }}"}])
    op.metrics = [{"name": "rows", "value": "n/a"}]
    with pytest.raises(ValueError, match="'n/a' is not a number"):
        op.execute({})


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"op": "=>"}, "op '=>'"),
        ({"fn": "median"}, "fn 'median'"),
        ({"window": 0}, "window 0"),
        ({"metric": "9lives"}, "metric '9lives'"),
        ({"threshold": "10"}, "threshold '10'"),
    ],
)
def test_metric_sensor_validates_at_parse_time(kwargs: dict[str, object], shown: str) -> None:
    args: dict[str, object] = {"metric": "rows", "threshold": 10}
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        MetricSensor(task_id="wait", **args)  # type: ignore[arg-type]
    assert "'wait'" in str(info.value) and shown in str(info.value)


def test_metric_sensor_pokes_the_store(configured: str) -> None:
    sensor = MetricSensor(
        task_id="wait", metric="rows", labels={"t": "orders"}, fn="sum", window=60, op=">=", threshold=100
    )
    assert sensor.poke({}) is False  # no data yet
    store = get_store()
    store.write_point("rows", 60, {"t": "orders"})
    assert sensor.poke({}) is False
    store.write_point("rows", 40, {"t": "orders"})
    store.write_point("rows", 1000, {"t": "users"})
    assert sensor.poke({}) is True
    old = MetricSensor(task_id="old", metric="rows", fn="count", window=60, op=">", threshold=0)
    store.write_point("other", 1, {}, ts=time.time() - 3600)
    assert old.poke({}) is True


def test_notifier_records_a_point_with_dag_and_task(configured: str) -> None:
    notifier = RecordMetricNotifier("dag_run_failures", labels={"team": "data"})
    context = {
        "dag": SimpleNamespace(dag_id="orders"),
        "ti": SimpleNamespace(dag_id="orders", task_id="load"),
    }
    notifier.notify(context)
    notifier.notify(context)
    labels = {"dag_id": "orders", "task_id": "load", "team": "data"}
    assert get_store().aggregate("dag_run_failures", fn="sum", labels=labels, window=60) == 2


def test_notifier_never_raises(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", "sqlite:////nonexistent-dir/x.db")
    RecordMetricNotifier("failures").notify({})
    assert any("not recorded" in r.getMessage() for r in caplog.records)


def test_notifier_validates_name() -> None:
    with pytest.raises(ValueError, match="'bad name'"):
        RecordMetricNotifier("bad name")
