"""Every condition type evaluated on stored history (SQLite and PostgreSQL): metrics, task
outcomes, DAG runs and data-quality ratios written to a real store, observed through
StoreAlertSource."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from etlops_airflow.core.alerts.conditions import observe
from etlops_airflow.core.alerts.rules import Custom, DataQuality, ErrorRate, MetricThreshold, PipelineFailure
from etlops_airflow.core.models import DagRunOutcome, MetricPoint, TaskOutcome
from etlops_airflow.exceptions import RuleError
from etlops_airflow.store import Store
from etlops_airflow.store.alerts import StoreAlertSource

NOW = 1_700_000_000.0


def _check(condition: object) -> object:
    """Conditions are checked when a Rule is built; do the same here."""
    from etlops_airflow.core.alerts.rules import Rule

    return Rule(id="probe", condition=condition).condition  # type: ignore[arg-type]


def test_metric_threshold_over_a_window_of_stored_points(store: Store) -> None:
    store.metrics.write(
        [
            MetricPoint("rows_loaded", v, {"table": "orders"}, NOW - age)
            for v, age in [(40, 3000), (30, 600), (500, 7200)]
        ]
    )
    store.metrics.write([MetricPoint("rows_loaded", 1000, {"table": "users"}, NOW - 60)])
    c = _check(
        MetricThreshold(
            metric="rows_loaded",
            labels={"table": "orders"},
            fn="sum",
            window="1h",
            op="<",
            threshold=100,
            resolve_threshold=150,
        )
    )
    (obs,) = observe(c, StoreAlertSource(store), NOW)  # type: ignore[arg-type]
    assert (obs.value, obs.breach, obs.clear) == (70.0, True, False)  # 40 + 30: the 500 is 2 h old
    store.metrics.write([MetricPoint("rows_loaded", 50, {"table": "orders"}, NOW - 30)])
    (obs,) = observe(c, StoreAlertSource(store), NOW)  # type: ignore[arg-type]
    assert (obs.value, obs.breach, obs.clear) == (120.0, False, False)  # between the thresholds
    empty = _check(MetricThreshold(metric="nothing", window="1h", op=">", threshold=1))
    assert [(o.value, o.breach) for o in observe(empty, StoreAlertSource(store), NOW)] == [(None, None)]  # type: ignore[arg-type]


def test_metric_threshold_by_label_makes_one_observation_per_group(store: Store) -> None:
    for dag, lag in [("a", 10), ("b", 500), ("c", 900)]:
        store.metrics.write([MetricPoint("lag_seconds", lag, {"dag_id": dag}, NOW - 60)])
    c = _check(
        MetricThreshold(metric="lag_seconds", by=["dag_id"], fn="max", window="15m", op=">", threshold=300)
    )
    got = {o.labels["dag_id"]: o.breach for o in observe(c, StoreAlertSource(store), NOW)}  # type: ignore[arg-type]
    assert got == {"a": False, "b": True, "c": True}


def _tries(store: Store, dag: str, task: str, states: list[str], start: float = NOW - 600) -> None:
    for i, state in enumerate(states):
        store.outcomes.record(TaskOutcome(dag, task, f"r{i}", 1, state, end_ts=start + i * 10))


def test_error_rate_counts_failed_tries_over_all_tries_in_the_window(store: Store) -> None:
    _tries(store, "orders", "load", ["success"] * 17 + ["failed", "up_for_retry", "skipped"])
    _tries(store, "orders", "old", ["failed"] * 5, start=NOW - 7200)  # outside the window
    _tries(store, "users", "load", ["failed"] * 3)
    c = _check(ErrorRate(dag_id="orders", window="15m", threshold_percent=5))
    (obs,) = observe(c, StoreAlertSource(store), NOW)  # type: ignore[arg-type]
    assert obs.labels == {"dag_id": "orders"}
    assert obs.value == pytest.approx(100 * 2 / 19) and obs.breach is True  # skipped is not a try
    per_dag = _check(ErrorRate(window="15m", threshold_percent=50, by=["dag_id"]))
    got = {
        o.labels["dag_id"]: (round(o.value or 0), o.breach)
        for o in observe(per_dag, StoreAlertSource(store), NOW)
    }  # type: ignore[arg-type]
    assert got == {"orders": (11, False), "users": (100, True)}
    quiet = _check(ErrorRate(dag_id="nobody", window="15m", threshold_percent=5))
    assert [(o.value, o.breach) for o in observe(quiet, StoreAlertSource(store), NOW)] == [(None, None)]  # type: ignore[arg-type]


def test_pipeline_failure_counts_consecutive_failed_runs_or_tries(store: Store) -> None:
    for i, state in enumerate(["failed", "success", "failed", "failed", "failed"]):
        store.dag_runs.record(DagRunOutcome("orders", f"run{i}", state, end_ts=NOW - 500 + i * 10))
    for i, state in enumerate(["failed", "success"]):
        store.dag_runs.record(DagRunOutcome("users", f"run{i}", state, end_ts=NOW - 500 + i * 10))
    c = _check(PipelineFailure(dag_id="orders", consecutive=3))
    (obs,) = observe(c, StoreAlertSource(store), NOW)  # type: ignore[arg-type]
    assert (obs.labels, obs.value, obs.breach) == ({"dag_id": "orders"}, 3.0, True)
    assert obs.annotations == {"run_id": "run4"}  # the latest failed run, for the link
    every = _check(PipelineFailure(consecutive=1))
    got = {o.labels["dag_id"]: o.value for o in observe(every, StoreAlertSource(store), NOW)}  # type: ignore[arg-type]
    assert got == {"orders": 3.0, "users": 0.0}
    _tries(store, "orders", "load", ["failed", "up_for_retry", "failed"])
    tries = _check(PipelineFailure(dag_id="orders", task_id="load", consecutive=3))
    (obs,) = observe(tries, StoreAlertSource(store), NOW)  # type: ignore[arg-type]
    assert (obs.labels, obs.value, obs.breach) == ({"dag_id": "orders", "task_id": "load"}, 3.0, True)


def test_data_quality_uses_the_latest_ratio(store: Store) -> None:
    labels = {"dataset": "orders", "check": "completeness"}
    store.metrics.write(
        [
            MetricPoint("data_quality_ratio", 1.0, labels, NOW - 7200),
            MetricPoint("data_quality_ratio", 0.95, labels, NOW - 60),
        ]
    )
    c = _check(DataQuality(dataset="orders", check_name="completeness", min=0.99))
    (obs,) = observe(c, StoreAlertSource(store), NOW)  # type: ignore[arg-type]
    assert (obs.labels, obs.value, obs.breach) == (labels, 0.95, True)
    store.metrics.write([MetricPoint("data_quality_ratio", 0.999, labels, NOW - 1)])
    (obs,) = observe(c, StoreAlertSource(store), NOW)  # type: ignore[arg-type]
    assert obs.breach is False


@pytest.fixture
def evaluators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user's module, and a distribution advertising it in the entry-point group."""
    (tmp_path / "my_checks.py").write_text(
        textwrap.dedent(
            """
            def lag_too_high(store, params, now):
                value = store.metric_value("lag_seconds", "max", {}, now - 900, now + 1)
                return (value is not None and value > params["max_lag_s"], value)

            def per_topic(store, params, now):
                return [{"labels": {"topic": t}, "breach": t == "b", "value": 1.0} for t in ("a", "b")]
            """
        )
    )
    dist = tmp_path / "my_checks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-checks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[etlops_airflow.alert_evaluators]\ntopics = my_checks:per_topic\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_checks", raising=False)
    return str(tmp_path)


def test_custom_evaluators_by_module_path_and_by_entry_point(store: Store, evaluators: str) -> None:
    store.metrics.write([MetricPoint("lag_seconds", 400, {}, NOW - 5)])
    by_path = _check(Custom(evaluator="my_checks:lag_too_high", params={"max_lag_s": 300}))
    (obs,) = observe(by_path, StoreAlertSource(store), NOW)  # type: ignore[arg-type]
    assert (obs.value, obs.breach) == (400.0, True)
    by_name = _check(Custom(evaluator="topics"))
    got = {o.labels["topic"]: o.breach for o in observe(by_name, StoreAlertSource(store), NOW)}  # type: ignore[arg-type]
    assert got == {"a": False, "b": True}
    with pytest.raises(RuleError, match="condition.evaluator 'nowhere:f': cannot import 'nowhere'"):
        observe(_check(Custom(evaluator="nowhere:f")), StoreAlertSource(store), NOW)  # type: ignore[arg-type]
