"""Operators, sensor and notifier: parse-time validation and their work against a real store."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from etlops_airflow.exceptions import ValidationError
from etlops_airflow.notifications.metric import RecordMetricNotifier
from etlops_airflow.operators.metrics import RecordMetricsOperator
from etlops_airflow.runtime import get_store
from etlops_airflow.sensors.metric import MetricSensor


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
        ({"metrics": [{"name": "rows", "value": 1, "labels": ["t"]}]}, "metrics[0].labels"),
    ],
)
def test_record_metrics_operator_validates_at_parse_time(kwargs: dict[str, object], shown: str) -> None:
    with pytest.raises(ValidationError) as info:
        RecordMetricsOperator(task_id="rec", **kwargs)  # type: ignore[arg-type]
    assert "'rec'" in str(info.value) and shown in str(info.value)


def _render(op: RecordMetricsOperator, rows: object) -> None:
    """Render the templated fields as Airflow does before execute()."""
    ti = SimpleNamespace(xcom_pull=lambda task_ids: {"rows": rows})
    op.render_template_fields({"ti": ti, "params": {"table": "orders"}})


def test_record_metrics_operator_writes_rendered_values(configured: str) -> None:
    op = RecordMetricsOperator(
        task_id="rec",
        metrics=[
            {
                "name": "rows",
                "value": "{{ ti.xcom_pull('transform')['rows'] }}",
                "labels": {"t": "{{ params.table }}"},
            }
        ],
    )
    _render(op, 42)
    assert op.execute({}) == 1
    labels = {"t": "orders", "task_id": "rec"}
    assert get_store().metrics.aggregate("rows", fn="last", labels=labels, window=60) == 42


def test_record_metrics_operator_rejects_non_numbers_at_run_time(configured: str) -> None:
    op = RecordMetricsOperator(
        task_id="rec", metrics=[{"name": "rows", "value": "{{ ti.xcom_pull('transform')['rows'] }}"}]
    )
    _render(op, "n/a")
    with pytest.raises(ValidationError, match=r"metrics\[0\]\.value 'n/a': is not a number"):
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
    with pytest.raises(ValidationError) as info:
        MetricSensor(task_id="wait", **args)  # type: ignore[arg-type]
    assert "'wait'" in str(info.value) and shown in str(info.value)


def test_metric_sensor_pokes_the_store(configured: str) -> None:
    sensor = MetricSensor(
        task_id="wait", metric="rows", labels={"t": "orders"}, fn="sum", window=60, op=">=", threshold=100
    )
    assert sensor.poke({}) is False  # no data yet
    store = get_store()
    store.metrics.write_point("rows", 60, {"t": "orders"})
    assert sensor.poke({}) is False
    store.metrics.write_point("rows", 40, {"t": "orders"})
    store.metrics.write_point("rows", 1000, {"t": "users"})
    assert sensor.poke({}) is True


def test_metric_sensor_only_sees_its_window(configured: str) -> None:
    store = get_store()
    store.metrics.write_point("rows", 500, {}, ts=time.time() - 3600)  # an hour ago: outside the window
    recent = MetricSensor(task_id="recent", metric="rows", fn="sum", window=60, op=">", threshold=0)
    assert recent.poke({}) is False
    assert MetricSensor(task_id="hour", metric="rows", fn="sum", window=7200, op=">", threshold=0).poke({})
    store.metrics.write_point("rows", 1, {})
    assert recent.poke({}) is True


@pytest.mark.parametrize("fn", ["count", "sum", "avg", "min", "max", "last"])
def test_no_data_is_never_met_whatever_the_fn(configured: str, fn: str) -> None:
    # count of nothing is not "0 < 2": with no point in the window the condition is not met
    sensor = MetricSensor(task_id="quiet", metric="rows", fn=fn, window=60, op="<", threshold=2)
    assert sensor.poke({}) is False
    get_store().metrics.write_point("rows", 0.5, {})
    assert sensor.poke({}) is True


def test_notifier_records_a_point_with_dag_and_task(configured: str) -> None:
    notifier = RecordMetricNotifier("dag_run_failures", labels={"team": "data"})
    context = {
        "dag": SimpleNamespace(dag_id="orders"),
        "ti": SimpleNamespace(dag_id="orders", task_id="load"),
    }
    notifier.notify(context)
    notifier.notify(context)
    labels = {"dag_id": "orders", "task_id": "load", "team": "data"}
    assert get_store().metrics.aggregate("dag_run_failures", fn="sum", labels=labels, window=60) == 2


def test_notifier_never_raises(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", "sqlite:////nonexistent-dir/x.db")
    RecordMetricNotifier("failures").notify({})
    assert any("not recorded" in r.getMessage() for r in caplog.records)


def test_notifier_validates_name() -> None:
    with pytest.raises(ValidationError, match="'bad name'"):
        RecordMetricNotifier("bad name")
