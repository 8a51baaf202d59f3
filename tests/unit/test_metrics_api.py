from __future__ import annotations

import time

import pytest

import etlops_airflow
from etlops_airflow import MetricPoint, record_metric, record_metrics
from etlops_airflow.exceptions import InvalidMetricError
from etlops_airflow.runtime import get_store
from etlops_airflow.store import Store


def test_record_metric_goes_to_the_configured_store(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    assert record_metric("rows_loaded", 120, {"table": "orders"}) is True
    record_metrics(
        [
            MetricPoint("rows_loaded", 30, {"table": "orders"}),
            {"name": "rows_loaded", "value": 5, "labels": {"table": "users"}},
            ("rows_loaded", 7, {"table": "orders"}),
        ]
    )
    store = get_store()
    assert store.display_url == sqlite_url
    assert store.metrics.aggregate("rows_loaded", fn="sum", labels={"table": "orders"}, window=60) == 157
    assert store.metrics.aggregate("rows_loaded", fn="count", window=60) == 4


def test_explicit_store_and_timestamp(sqlite_url: str) -> None:
    store = Store.from_url(sqlite_url)
    record_metric("lag", 3.5, ts=1_000.0, store=store)
    assert store.metrics.aggregate("lag", fn="last", start=999, end=1001) == 3.5
    assert store.metrics.aggregate("lag", fn="count", window=60, end=time.time()) is None


@pytest.mark.parametrize(
    ("items", "shown"),
    [
        ([("ok", 1), {"name": "x", "value": 1, "lables": {}}], "expected keys name, value"),
        ([("ok", 1), ("bad name", 1)], "'bad name'"),
        ([("ok", 1), ("ok", 1, "table=orders")], "labels 'table=orders'"),
        ([("ok", 1), ("ok", 1, {}, 1_700_000_000_000)], "looks like milliseconds"),
        ([("ok", 1), 42], "expected a MetricPoint"),
        ("rows", "points 'rows'"),
    ],
)
def test_bad_items_are_refused_before_anything_is_written(sqlite_url: str, items: object, shown: str) -> None:
    store = Store.from_url(sqlite_url)
    with pytest.raises(InvalidMetricError) as info:
        record_metrics(items, store=store)  # type: ignore[arg-type]
    assert shown in str(info.value)
    assert store.metrics.aggregate("ok", fn="count", window=60) is None


def test_unknown_attribute_of_package_root() -> None:
    with pytest.raises(AttributeError, match="nope"):
        etlops_airflow.nope  # noqa: B018


def test_unreachable_store_does_not_fail_the_task_unless_strict(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", "postgresql://etl:hunter2@127.0.0.1:9/nowhere")
    caplog.set_level("WARNING", logger="etlops_airflow")
    assert record_metric("rows_loaded", 1) is False
    assert record_metrics([("a", 1), ("b", 2)]) == 0
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("etlops_airflow")]
    assert len(messages) == 2
    assert "rows_loaded" in messages[0] and "not recorded" in messages[0] and "127.0.0.1:9" in messages[0]
    assert all("hunter2" not in m for m in messages)
    with pytest.raises(Exception, match="connection"):
        record_metric("rows_loaded", 1, strict=True)
    with pytest.raises(InvalidMetricError):  # a caller bug is never swallowed
        record_metric("bad name", 1)
