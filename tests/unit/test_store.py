"""The store on SQLite and on a real PostgreSQL: the same behaviour on both."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import insert

from etlops_airflow.core.models import MetricPoint, TaskOutcome
from etlops_airflow.exceptions import ConfigError, InvalidMetricError, StoreSchemaError
from etlops_airflow.store import Store, schema, upgrades

T0 = 1_700_000_000.0


def _points(name: str, values: list[float], labels: dict[str, str], start: float = T0, step: float = 10.0):
    return [MetricPoint(name, v, labels, start + i * step) for i, v in enumerate(values)]


def test_upgrade_is_idempotent(store: Store) -> None:
    assert store.schema_version() == upgrades.HEAD
    assert store.upgrade() == (upgrades.HEAD, upgrades.HEAD)


def test_newer_schema_is_refused(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            insert(schema.schema_version).values(
                version=upgrades.HEAD + 1, description="future", applied_at=0
            )
        )
    with pytest.raises(StoreSchemaError, match="upgrade etlops-airflow"):
        store.upgrade()


def test_windowed_aggregates_are_computed_over_the_window(store: Store) -> None:
    store.write_points(_points("rows", [1, 2, 3, 4, 5, 6], {"table": "orders"}))
    store.write_points(_points("rows", [100, 100], {"table": "users"}))
    # [T0+10, T0+40) holds 2, 3, 4 of orders and 100 (T0+10) of users
    window = {"start": T0 + 10, "end": T0 + 40}
    assert store.aggregate("rows", fn="sum", labels={"table": "orders"}, **window) == 9
    assert store.aggregate("rows", fn="avg", labels={"table": "orders"}, **window) == 3
    assert store.aggregate("rows", fn="min", labels={"table": "orders"}, **window) == 2
    assert store.aggregate("rows", fn="max", labels={"table": "orders"}, **window) == 4
    assert store.aggregate("rows", fn="count", labels={"table": "orders"}, **window) == 3
    assert store.aggregate("rows", fn="last", labels={"table": "orders"}, **window) == 4
    assert store.aggregate("rows", fn="sum", **window) == 109  # no label filter: every series
    assert store.aggregate("rows", fn="avg", labels={"table": "none"}, **window) is None
    assert store.aggregate("nothing", fn="count", **window) == 0


def test_a_point_just_written_is_in_the_last_window(store: Store) -> None:
    # "the last N seconds" includes a point recorded in the very same millisecond
    for i in range(200):
        store.write_point("fresh", 1.0)
        assert store.aggregate("fresh", fn="count", window=60) == i + 1


def test_explicit_window_end_is_exclusive(store: Store) -> None:
    store.write_points([MetricPoint("edge", 1.0, {}, 1.001), MetricPoint("edge", 2.0, {}, 2.0)])
    assert store.aggregate("edge", fn="sum", start=1.001, end=2.0) == 1.0
    assert store.aggregate("edge", fn="sum", start=1.0, end=2.001) == 3.0


def test_label_filter_is_a_subset_match(store: Store) -> None:
    store.write_points(_points("lag", [1], {"source": "kafka", "topic": "a"}))
    store.write_points(_points("lag", [2], {"source": "kafka", "topic": "b"}))
    store.write_points(_points("lag", [4], {"source": "s3"}))
    assert store.aggregate("lag", fn="sum", labels={"source": "kafka"}, start=T0, end=T0 + 1) == 3
    assert store.aggregate("lag", fn="sum", labels={"topic": "b"}, start=T0, end=T0 + 1) == 2


def test_series_are_bucketed_in_sql(store: Store) -> None:
    store.write_points(_points("cpu", [1, 3, 5, 7, 9, 11], {"host": "a"}, start=T0, step=20))
    (series,) = store.series("cpu", step=60, fn="avg", start=T0, end=T0 + 120)
    assert series.labels == {"host": "a"}
    # T0 % 60 == 20, so buckets are [T0-20, T0+40), [T0+40, T0+100), [T0+100, T0+160)
    assert series.points == [(T0 - 20, 2.0), (T0 + 40, 7.0), (T0 + 100, 11.0)]
    total = store.series("cpu", step=3600, fn="sum", start=T0, end=T0 + 120)[0].points
    assert total == [((T0 // 3600) * 3600, 36.0)]


def test_batch_write_is_all_or_nothing(store: Store) -> None:
    good = _points("ok", [1, 2], {})
    with pytest.raises(InvalidMetricError):
        store.write_points([*good, MetricPoint("ok", float("nan"))])
    assert store.aggregate("ok", fn="count", start=0, end=T0 + 100) == 0
    assert store.write_points(good) == 2


def test_many_series_and_points_in_one_batch(store: Store) -> None:
    points = [MetricPoint("m", float(i), {"shard": str(i % 50)}, T0 + i) for i in range(12_000)]
    assert store.write_points(points) == 12_000
    assert store.aggregate("m", fn="count", start=T0, end=T0 + 20_000) == 12_000
    assert store.aggregate("m", fn="sum", labels={"shard": "7"}, start=T0, end=T0 + 20_000) == sum(
        float(i) for i in range(12_000) if i % 50 == 7
    )
    # a second store object (another process) reuses the same series
    other = Store(store.engine)
    other.write_points([MetricPoint("m", 1.0, {"shard": "7"}, T0 + 30_000)])
    assert len(store.metric_names()) == 1


def test_outcome_of_a_try_is_upserted(store: Store) -> None:
    now = time.time()
    store.record_outcome(TaskOutcome("d", "t", "r1", 1, "up_for_retry", end_ts=now, error_class="IOError"))
    store.record_outcome(TaskOutcome("d", "t", "r1", 2, "success", end_ts=now + 1, duration_s=0.5))
    store.record_outcome(TaskOutcome("d", "t", "r1", 2, "success", end_ts=now + 1, duration_s=0.5))
    rows = store.outcomes(dag_id="d")
    assert [(r.try_number, r.state) for r in rows] == [(2, "success"), (1, "up_for_retry")]
    assert rows[1].error_class == "IOError"
    assert store.outcome_counts(since=now - 1) == {"success": 1, "up_for_retry": 1}
    assert store.outcomes(states=["success"], since=now + 0.5)[0].duration_s == 0.5


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("not a url", "not a valid SQLAlchemy URL"),
        ("mysql://u:pw@h/db", "unsupported database 'mysql'"),
        ("sqlite+pysqlcipher:///x.db", "plain sqlite"),
    ],
)
def test_bad_store_url_names_option_and_value(url: str, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        Store.from_url(url)
    text = str(info.value)
    assert "store_url" in text and shown in text
    assert "pw" not in text  # never print a password


def test_aggregate_rejects_unknown_fn(store: Store) -> None:
    with pytest.raises(ValueError, match="'median'"):
        store.aggregate("x", fn="median", window=10)
