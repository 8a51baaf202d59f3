"""The store on SQLite and on a real PostgreSQL: the same behaviour on both."""

from __future__ import annotations

import sqlite3
import time

import pytest
from sqlalchemy import delete, insert, inspect, select, text

from etlops_airflow.core.models import MetricPoint, TaskOutcome
from etlops_airflow.exceptions import ConfigError, StoreError, StoreSchemaError, ValidationError
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
    with pytest.raises(StoreSchemaError, match="upgrade etlops-airflow"):
        Store(store.engine).metrics.write(_points("x", [1], {}))


def test_windowed_aggregates_are_computed_over_the_window(store: Store) -> None:
    m = store.metrics
    m.write(_points("rows", [1, 2, 3, 4, 5, 6], {"table": "orders"}))
    m.write(_points("rows", [100, 100], {"table": "users"}))
    # [T0+10, T0+40) holds 2, 3, 4 of orders and 100 (T0+10) of users
    window = {"start": T0 + 10, "end": T0 + 40}
    assert m.aggregate("rows", fn="sum", labels={"table": "orders"}, **window) == 9
    assert m.aggregate("rows", fn="avg", labels={"table": "orders"}, **window) == 3
    assert m.aggregate("rows", fn="min", labels={"table": "orders"}, **window) == 2
    assert m.aggregate("rows", fn="max", labels={"table": "orders"}, **window) == 4
    assert m.aggregate("rows", fn="count", labels={"table": "orders"}, **window) == 3
    assert m.aggregate("rows", fn="last", labels={"table": "orders"}, **window) == 4
    assert m.aggregate("rows", fn="sum", **window) == 109  # no label filter: every series


@pytest.mark.parametrize("fn", ["avg", "sum", "min", "max", "count", "last"])
def test_no_point_in_the_window_is_none_for_every_fn(store: Store, fn: str) -> None:
    store.metrics.write(_points("rows", [5], {"table": "orders"}))
    assert store.metrics.aggregate("rows", fn=fn, start=T0 + 1, end=T0 + 100) is None
    assert store.metrics.aggregate("rows", fn=fn, labels={"table": "none"}, start=T0, end=T0 + 1) is None
    assert store.metrics.aggregate("nothing", fn=fn, start=T0, end=T0 + 1) is None


def test_a_point_just_written_is_in_the_last_window(store: Store) -> None:
    # "the last N seconds" includes a point recorded in the very same millisecond
    for i in range(100):
        store.metrics.write_point("fresh", 1.0)
        assert store.metrics.aggregate("fresh", fn="count", window=60) == i + 1


def test_explicit_window_end_is_exclusive(store: Store) -> None:
    store.metrics.write([MetricPoint("edge", 1.0, {}, 1.001), MetricPoint("edge", 2.0, {}, 2.0)])
    assert store.metrics.aggregate("edge", fn="sum", start=1.001, end=2.0) == 1.0
    assert store.metrics.aggregate("edge", fn="sum", start=1.0, end=2.001) == 3.0


def test_label_filter_is_a_subset_match_done_in_sql(store: Store) -> None:
    m = store.metrics
    m.write(_points("lag", [1], {"source": "kafka", "topic": "a"}))
    m.write(_points("lag", [2], {"source": "kafka", "topic": "b"}))
    m.write(_points("lag", [4], {"source": "s3"}))
    m.write(_points("other", [8], {"source": "kafka", "topic": "a"}))
    window = {"start": T0, "end": T0 + 1}
    assert m.aggregate("lag", fn="sum", labels={"source": "kafka"}, **window) == 3
    assert m.aggregate("lag", fn="sum", labels={"topic": "b"}, **window) == 2
    assert m.aggregate("lag", fn="sum", labels={"source": "kafka", "topic": "a"}, **window) == 1
    assert m.aggregate("lag", fn="sum", labels={"source": "kafka", "topic": "c"}, **window) is None
    # the filter is one statement over the labels table: a series whose JSON text contains the
    # value elsewhere does not match
    m.write(_points("lag", [16], {"source": "x", "note": '"source":"kafka"'}))
    assert m.aggregate("lag", fn="sum", labels={"source": "kafka"}, **window) == 3


def test_grouped_aggregates_per_series(store: Store) -> None:
    m = store.metrics
    m.write(_points("rows", [1, 2, 3], {"table": "orders"}))
    m.write(_points("rows", [10, 20], {"table": "users"}))
    m.write(_points("rows", [7], {"table": "late"}, start=T0 + 500))
    window = {"start": T0, "end": T0 + 100}
    each = m.aggregate_by("rows", fn="last", **window)
    last = {tuple(v.labels.items()): (v.value, v.count) for v in each}
    assert last == {(("table", "orders"),): (3.0, 3), (("table", "users"),): (20.0, 2)}
    sums = {v.labels["table"]: v.value for v in m.aggregate_by("rows", fn="sum", **window)}
    assert sums == {"orders": 6.0, "users": 30.0}


def test_grouped_aggregates_by_label_values(store: Store) -> None:
    m = store.metrics
    m.write(_points("rows", [1, 2], {"dag_id": "a", "table": "x"}))
    m.write(_points("rows", [10, 20], {"dag_id": "a", "table": "y"}, start=T0 + 5))
    m.write(_points("rows", [100], {"dag_id": "b", "table": "x"}))
    m.write(_points("rows", [1000], {"table": "z"}))  # no dag_id: its own group, without the label
    window = {"start": T0, "end": T0 + 100}
    sums = {
        tuple(v.labels.items()): (v.value, v.count)
        for v in m.aggregate_by("rows", by=["dag_id"], fn="sum", **window)
    }
    assert sums == {(("dag_id", "a"),): (33.0, 4), (("dag_id", "b"),): (100.0, 1), (): (1000.0, 1)}
    last = {
        v.labels.get("dag_id"): v.value for v in m.aggregate_by("rows", by=["dag_id"], fn="last", **window)
    }
    assert last == {"a": 20.0, "b": 100.0, None: 1000.0}  # dag a: 20 at T0+15 is newer than 2 at T0+10
    two = m.aggregate_by("rows", by=["dag_id", "table"], fn="count", labels={"dag_id": "a"}, **window)
    assert [(v.labels, v.value) for v in two] == [
        ({"dag_id": "a", "table": "x"}, 2.0),
        ({"dag_id": "a", "table": "y"}, 2.0),
    ]


def test_series_are_bucketed_in_sql(store: Store) -> None:
    store.metrics.write(_points("cpu", [1, 3, 5, 7, 9, 11], {"host": "a"}, start=T0, step=20))
    (series,) = store.metrics.series("cpu", step=60, fn="avg", start=T0, end=T0 + 120)
    assert series.labels == {"host": "a"}
    # T0 % 60 == 20, so buckets are [T0-20, T0+40), [T0+40, T0+100), [T0+100, T0+160)
    assert series.points == [(T0 - 20, 2.0), (T0 + 40, 7.0), (T0 + 100, 11.0)]
    total = store.metrics.series("cpu", step=3600, fn="sum", start=T0, end=T0 + 120)[0].points
    assert total == [((T0 // 3600) * 3600, 36.0)]


def test_series_refuses_more_buckets_than_allowed(store: Store) -> None:
    store.metrics.write(_points("cpu", [1], {"host": "a"}) + _points("cpu", [1], {"host": "b"}))
    with pytest.raises(ValidationError, match=r"step 0\.001.*at most 1,000.*at least 173 s"):
        store.metrics.series("cpu", step=0.001, start=T0, end=T0 + 86400, max_points=1000)
    assert len(store.metrics.series("cpu", step=180, start=T0, end=T0 + 86400, max_points=1000)) == 2


def test_batch_write_is_all_or_nothing(store: Store) -> None:
    good = _points("ok", [1, 2], {})
    with pytest.raises(ValidationError):
        store.metrics.write([*good, "not a point"])  # type: ignore[list-item]
    assert store.metrics.aggregate("ok", fn="count", start=0, end=T0 + 100) is None
    assert store.metrics.write(good) == 2


def test_many_series_and_points_in_one_batch(store: Store) -> None:
    points = [MetricPoint("m", float(i), {"shard": str(i % 50)}, T0 + i) for i in range(12_000)]
    assert store.metrics.write(points) == 12_000
    assert store.metrics.aggregate("m", fn="count", start=T0, end=T0 + 20_000) == 12_000
    assert store.metrics.aggregate("m", fn="sum", labels={"shard": "7"}, start=T0, end=T0 + 20_000) == sum(
        float(i) for i in range(12_000) if i % 50 == 7
    )
    # a second store object (another process) reuses the same series
    other = Store(store.engine)
    other.metrics.write([MetricPoint("m", 1.0, {"shard": "7"}, T0 + 30_000)])
    assert store.status()["rows"]["etlops_metric_series"] == 50


def test_cached_series_id_does_not_outlive_a_deleted_series(store: Store) -> None:
    writer = Store(store.engine)
    writer.metrics.write(_points("rows", [1], {"table": "orders"}))
    writer.metrics.write(_points("rows", [1], {"table": "users"}))
    # maintenance (another process) deletes the series; the writer still has its ids cached
    with store.engine.begin() as conn:
        conn.execute(delete(schema.metric_series))
    assert store.status()["rows"]["etlops_metric_points"] == 0
    writer.metrics.write(_points("rows", [5], {"table": "orders"}, start=T0 + 100))
    writer.metrics.write(_points("rows", [6], {"table": "new"}, start=T0 + 100))
    each = store.metrics.aggregate_by("rows", fn="sum", start=T0, end=T0 + 1000)
    assert {v.labels["table"]: v.value for v in each} == {"orders": 5.0, "new": 6.0}


def test_series_ids_are_never_reused(store: Store) -> None:
    store.metrics.write(_points("a", [1], {}))
    with store.engine.begin() as conn:
        (first,) = conn.execute(select(schema.metric_series.c.id)).scalars()
        conn.execute(delete(schema.metric_series))
    store.metrics.forget_series()
    store.metrics.write(_points("b", [1], {}))
    with store.engine.connect() as conn:
        (second,) = conn.execute(select(schema.metric_series.c.id)).scalars()
    assert second > first


def test_outcome_of_a_try_is_upserted(store: Store) -> None:
    now = time.time()
    o = store.outcomes
    o.record(TaskOutcome("d", "t", "r1", 1, "up_for_retry", end_ts=now, error_class="IOError"))
    o.record(TaskOutcome("d", "t", "r1", 2, "success", end_ts=now + 1, duration_s=0.5))
    o.record(TaskOutcome("d", "t", "r1", 2, "success", end_ts=now + 1, duration_s=0.5))
    rows = o.query(dag_id="d")
    assert [(r.try_number, r.state) for r in rows] == [(2, "success"), (1, "up_for_retry")]
    assert rows[1].error_class == "IOError"
    assert o.state_totals(since=now - 1) == {"success": 1, "up_for_retry": 1}
    assert o.query(states=["success"], since=now + 0.5)[0].duration_s == 0.5


def test_outcomes_without_end_time_come_last_on_both_databases(store: Store) -> None:
    o = store.outcomes
    o.record(TaskOutcome("d", "t", "r", 1, "failed", end_ts=None))
    o.record(TaskOutcome("d", "t", "r", 2, "failed", end_ts=T0))
    o.record(TaskOutcome("d", "t", "r", 3, "success", end_ts=T0 + 1))
    assert [r.try_number for r in o.query()] == [3, 2, 1]


def test_outcome_counts_per_dag_and_task(store: Store) -> None:
    o = store.outcomes
    for i, (dag, task, state) in enumerate(
        [("a", "x", "failed"), ("a", "x", "failed"), ("a", "y", "success"), ("b", "x", "failed")]
    ):
        o.record(TaskOutcome(dag, task, f"r{i}", 1, state, end_ts=T0 + i))
    counts = {(c.dag_id, c.task_id, c.state): c.count for c in o.counts(since=T0)}
    assert counts == {("a", "x", "failed"): 2, ("a", "y", "success"): 1, ("b", "x", "failed"): 1}
    per_dag = {(c.dag_id, c.state): c.count for c in o.counts(since=T0, group_by=["dag_id"])}
    assert per_dag == {("a", "failed"): 2, ("a", "success"): 1, ("b", "failed"): 1}
    assert {(c.dag_id, c.state): c.count for c in o.counts(since=T0, dag_ids=["b"], group_by=["dag_id"])} == {
        ("b", "failed"): 1
    }
    with pytest.raises(ValidationError, match="group_by"):
        o.counts(since=T0, group_by=["state"])


def test_dag_filters_take_one_parameter_however_many_dags(store: Store) -> None:
    # SQLite allows 32,766 bound parameters per statement: the filter must not use one per DAG
    allowed = [f"dag_{i}" for i in range(40_000)]
    store.outcomes.record(TaskOutcome("dag_39999", "t", "r", 1, "success", end_ts=T0))
    store.outcomes.record(TaskOutcome("hidden", "t", "r", 1, "success", end_ts=T0))
    assert [r.dag_id for r in store.outcomes.query(dag_ids=allowed)] == ["dag_39999"]
    store.metrics.write(_points("rows", [1], {"dag_id": "dag_7"}))
    store.metrics.write(_points("rows", [2], {"dag_id": "hidden"}))
    assert store.metrics.aggregate("rows", fn="sum", start=T0, end=T0 + 1, dag_ids=allowed) == 1
    assert store.metrics.names(dag_ids=["nope"]) == []


def test_metrics_with_a_dag_label_are_visible_only_for_that_dag(store: Store) -> None:
    m = store.metrics
    m.write(_points("rows", [1], {"dag_id": "a"}) + _points("rows", [2], {"dag_id": "b"}))
    m.write(_points("rows", [4], {"table": "shared"}) + _points("secret", [8], {"dag_id": "b"}))
    window = {"start": T0, "end": T0 + 1}
    assert m.aggregate("rows", fn="sum", dag_ids=["a"], **window) == 5
    assert m.names(dag_ids=["a"]) == ["rows"]
    assert m.names(dag_ids=["b"]) == ["rows", "secret"]
    assert {tuple(s.labels.items()) for s in m.series("rows", step=60, dag_ids=["a"], **window)} == {
        (("dag_id", "a"),),
        (("table", "shared"),),
    }


# -- transaction modes ----------------------------------------------------------------------------


def test_a_read_transaction_refuses_writes_on_both_databases(store: Store) -> None:
    with pytest.raises(StoreError) as info, store.db.read("probe") as conn:
        conn.execute(text("DELETE FROM etlops_task_outcomes"))
    assert "probe failed" in str(info.value) and store.display_url in str(info.value)


def test_autocommit_runs_what_cannot_run_in_a_transaction(store: Store) -> None:
    with store.db.autocommit("vacuum") as conn:
        conn.exec_driver_sql("VACUUM")
    # the pooled connection goes back to writing in transactions
    store.metrics.write(_points("after_vacuum", [1], {}))
    assert store.metrics.aggregate("after_vacuum", fn="count", start=T0, end=T0 + 1) == 1


def test_status_on_an_empty_database_creates_nothing(store: Store) -> None:
    empty = Store(store.engine)
    with store.engine.begin() as conn:
        for table in reversed(schema.metadata.sorted_tables):
            conn.execute(text(f"DROP TABLE {table.name}"))
    status = empty.status()
    assert (status["schema_version"], status["schema_head"], status["rows"]) == (0, upgrades.HEAD, {})
    with store.engine.connect() as conn:
        assert inspect(conn).get_table_names() == []


def test_status_reads_while_another_process_holds_the_write_lock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "locked.db"
    store = Store.from_url(f"sqlite:///{path}", sqlite_busy_timeout=1)
    store.upgrade()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        assert store.status()["schema_version"] == upgrades.HEAD
        assert time.monotonic() - started < 0.5
        with pytest.raises(StoreError, match="write metric points failed.*locked"):
            store.metrics.write(_points("x", [1], {}))
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_store_errors_name_store_and_operation_never_parameters(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE etlops_metric_labels"))
    with pytest.raises(StoreError) as info:
        store.metrics.write(_points("rows", [1], {"customer": "hunter2-label-value"}))
    message = str(info.value)
    assert message.startswith(f"store {store.display_url}: write metric points failed: ")
    assert "\n" not in message and "hunter2" not in message
    assert info.value.operation == "write metric points" and info.value.store == store.display_url
    # the chained driver error hides the parameters too (hide_parameters)
    assert "hunter2" not in str(info.value.__cause__)


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
    text_ = str(info.value)
    assert "store_url" in text_ and shown in text_
    assert ":pw@" not in text_  # never print a password


def test_aggregate_rejects_unknown_fn(store: Store) -> None:
    with pytest.raises(ValidationError, match="fn 'median'"):
        store.metrics.aggregate("x", fn="median", window=10)


def test_window_stats_agree_with_the_single_aggregates(store: Store) -> None:
    from etlops_airflow.store.alerts import StoreAlertSource

    m = store.metrics
    for shard in range(4):
        m.write(
            _points(
                "rows",
                [float(shard * 10 + i) for i in range(6)],
                {"shard": str(shard), "kind": "x" if shard % 2 else "y"},
            )
        )
    m.write(_points("rows", [99.0], {"shard": "9"}, start=T0 + 10_000))  # outside the window
    source = StoreAlertSource(store)
    for fn in ("avg", "sum", "min", "max", "count", "last"):
        for labels in ({}, {"kind": "x"}, {"shard": "2"}, {"shard": "nope"}):
            window = {"start": T0, "end": T0 + 45}
            expected = m.aggregate("rows", fn=fn, labels=labels, **window)
            got = source.metric_value("rows", fn, labels, window["start"], window["end"])
            assert got == pytest.approx(expected) if expected is not None else got is None, (fn, labels)
    by_kind = dict(
        (labels["kind"], v) for labels, v in source.metric_values_by("rows", ["kind"], "sum", {}, T0, T0 + 45)
    )
    assert by_kind == {
        v.labels["kind"]: v.value
        for v in m.aggregate_by("rows", by=["kind"], fn="sum", start=T0, end=T0 + 45)
    }
