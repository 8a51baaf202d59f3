"""DAG-run outcomes, the fill-in of tries nobody recorded, failure streaks and error counts:
validation in core/models.py, SQL on SQLite and a real PostgreSQL, and the DAG-run listener."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import inspect, text

from etlops_airflow.core.models import TASK_STATES, DagRunOutcome, TaskOutcome
from etlops_airflow.exceptions import (
    InvalidDagRunOutcomeError,
    InvalidOutcomeError,
    StoreSchemaError,
    ValidationError,
)
from etlops_airflow.listeners import dag_runs as listener
from etlops_airflow.runtime import get_store
from etlops_airflow.store import Store, upgrades

T0 = 1_700_000_000.0


# -- validation ----------------------------------------------------------------------------------


def test_a_dag_run_outcome_holds_clean_values() -> None:
    run = DagRunOutcome("orders", "manual__1", "failed", "manual", T0, T0 + 2, 2)
    assert isinstance(run.start_ts, float) and isinstance(run.duration_s, float)
    assert DagRunOutcome("orders", "r", "success").run_type is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"state": "running"}, "state 'running': expected one of success, failed"),
        ({"state": "up_for_retry"}, "state 'up_for_retry'"),
        ({"dag_id": ""}, "dag_id '': must be non-empty text"),
        ({"dag_id": "d" * 251}, "longer than 250"),
        ({"run_id": "r\x00"}, "run_id"),
        ({"run_type": "Manual"}, "run_type 'Manual': must match [a-z_]+"),
        ({"run_type": "m" * 51}, "run_type"),
        ({"run_type": 3}, "run_type 3"),
        ({"end_ts": T0 * 1000}, "looks like milliseconds"),
        ({"start_ts": "today"}, "start_ts 'today': must be a number"),
        ({"duration_s": -1}, "duration_s -1: must not be negative"),
    ],
)
def test_bad_dag_run_outcomes_are_refused_naming_the_field(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"dag_id": "orders", "run_id": "r1", "state": "failed"}
    args.update(kwargs)
    with pytest.raises(InvalidDagRunOutcomeError) as info:
        DagRunOutcome(**args)
    assert message in str(info.value)
    assert str(info.value).startswith("DAG run outcome: ")
    assert isinstance(info.value, InvalidOutcomeError) and isinstance(info.value, ValueError)


def test_task_states_include_airflows_final_states_of_tasks_that_never_ran() -> None:
    assert set(TASK_STATES) == {"success", "failed", "up_for_retry", "skipped", "upstream_failed", "removed"}
    for state in ("upstream_failed", "removed"):
        assert TaskOutcome("d", "t", "r", 0, state).state == state
    for state in ("running", "none", "", None, "SUCCESS", "scheduled"):
        with pytest.raises(InvalidOutcomeError, match="state"):
            TaskOutcome("d", "t", "r", 1, state)  # type: ignore[arg-type]


# -- DAG runs in the store -------------------------------------------------------------------------


def test_upgrade_3_adds_the_dag_runs_table_and_fails_whole(store: Store) -> None:
    with store.engine.begin() as conn:
        for table in reversed(inspect(conn).get_table_names()):
            conn.execute(text(f"DROP TABLE {table}{' CASCADE' if store.dialect == 'postgresql' else ''}"))
    old = Store(store.engine)
    assert old.db.upgrade(target=2) == (0, 2)
    with store.engine.begin() as conn:  # (the store API would upgrade first)
        conn.execute(
            text(
                "INSERT INTO etlops_task_outcomes (dag_id, task_id, run_id, try_number, state, recorded_at)"
                " VALUES ('d', 't', 'r', 1, 'failed', 0)"
            )
        )
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE etlops_dag_runs (x INTEGER)"))  # in the way
    with pytest.raises(StoreSchemaError, match="upgrade to 3 failed"):
        Store(store.engine).upgrade()
    assert old.schema_version() == 2
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE etlops_dag_runs"))
    assert Store(store.engine).upgrade() == (2, upgrades.HEAD)
    fresh = Store(store.engine)
    assert [o.state for o in fresh.outcomes.query()] == ["failed"]
    fresh.dag_runs.record(_run("d", 1, "failed"))
    assert fresh.dag_runs.failure_streaks() == [({"dag_id": "d"}, 1)]


def _run(dag_id: str, n: int, state: str, end: float | None = None) -> DagRunOutcome:
    end = T0 + n * 60 if end is None else end
    return DagRunOutcome(dag_id, f"run_{n}", state, "scheduled", end - 10, end, 10)


def test_dag_run_outcomes_are_upserted_and_read_newest_first(store: Store) -> None:
    runs = store.dag_runs
    runs.record(_run("a", 1, "failed"))
    runs.record(_run("a", 2, "failed"))
    runs.record(_run("a", 1, "success", end=T0 + 300))  # run_1 cleared and run again: it ended later
    assert [(r.run_id, r.state) for r in runs.query(dag_id="a")] == [
        ("run_1", "success"),
        ("run_2", "failed"),
    ]
    assert [r.run_id for r in runs.query(states=["failed"])] == ["run_2"]
    assert runs.query(since=T0 + 200, until=T0 + 301)[0].run_type == "scheduled"
    assert runs.query(dag_ids=["b"]) == []
    with pytest.raises(ValidationError, match="states"):
        runs.query(states=["running"])
    with pytest.raises(ValidationError, match="states"):
        runs.query(states="failed")  # type: ignore[arg-type]
    with pytest.raises(InvalidDagRunOutcomeError):
        runs.record(TaskOutcome("a", "t", "r", 1, "failed"))  # type: ignore[arg-type]


def test_dag_failure_streaks_count_failed_runs_up_to_the_latest(store: Store) -> None:
    runs = store.dag_runs
    # recorded out of order: the streak follows the end times
    for n, state in [(3, "failed"), (1, "failed"), (2, "success"), (5, "failed"), (4, "failed")]:
        runs.record(_run("streak", n, state))
    for n, state in [(1, "failed"), (2, "success")]:
        runs.record(_run("healthy", n, state))
    for n in range(1, 4):
        runs.record(_run("broken", n, "failed"))
    assert runs.failure_streaks() == [
        ({"dag_id": "broken"}, 3),  # every run failed
        ({"dag_id": "healthy"}, 0),  # the latest succeeded
        ({"dag_id": "streak"}, 3),  # runs 3, 4, 5 after run 2 succeeded
    ]
    assert runs.failure_streaks("streak") == [({"dag_id": "streak"}, 3)]
    assert runs.failure_streaks("never_ran") == []  # only DAGs with runs
    assert runs.failure_streaks(dag_ids=["healthy", "nope"]) == [({"dag_id": "healthy"}, 0)]
    runs.record(_run("streak", 6, "success"))
    assert runs.failure_streaks("streak") == [({"dag_id": "streak"}, 0)]


def test_runs_ending_at_the_same_time_are_ordered_as_recorded(store: Store) -> None:
    store.dag_runs.record(_run("d", 1, "success", end=T0))
    store.dag_runs.record(_run("d", 2, "failed", end=T0))
    assert store.dag_runs.failure_streaks() == [({"dag_id": "d"}, 1)]


# -- task tries: fill-in, streaks, error counts ----------------------------------------------------


def _try(task: str, run: int, try_number: int, state: str, dag: str = "d", **kw: Any) -> TaskOutcome:
    return TaskOutcome(dag, task, f"run_{run}", try_number, state, end_ts=T0 + run * 60 + try_number, **kw)


def test_record_missing_adds_only_tries_nobody_recorded(store: Store) -> None:
    o = store.outcomes
    o.record(_try("load", 1, 1, "failed", error_class="LookupError"))  # the worker's row
    filled = [
        _try("load", 1, 1, "failed", error_message="from the DAG run"),
        _try("report", 1, 0, "upstream_failed"),
        _try("notify", 1, 0, "skipped"),
        _try("notify", 1, 0, "skipped"),  # the same try twice counts once
    ]
    assert o.record_missing(filled) == 2
    assert o.record_missing(filled) == 0
    assert o.record_missing([]) == 0
    rows = {(r.task_id, r.try_number): r for r in o.query(dag_id="d")}
    assert rows[("load", 1)].error_class == "LookupError" and rows[("load", 1)].error_message is None
    assert rows[("report", 0)].state == "upstream_failed"
    # a worker writing after the fill-in wins: its row is the better one
    o.record(_try("notify", 1, 0, "success", hostname="w1"))
    assert o.query(task_id="notify")[0].state == "success"
    # several runs at once
    assert o.record_missing([_try("load", 2, 1, "success"), _try("load", 3, 1, "success")]) == 2
    with pytest.raises(InvalidOutcomeError):
        o.record_missing([_run("d", 1, "failed")])  # type: ignore[list-item]


def test_task_failure_streaks_count_failed_and_retried_tries(store: Store) -> None:
    o = store.outcomes
    for row in [
        _try("load", 1, 1, "success"),
        _try("load", 2, 1, "up_for_retry"),
        _try("load", 2, 2, "failed"),
        _try("load", 3, 0, "upstream_failed"),  # never ran: neither breaks nor extends the streak
        _try("load", 4, 0, "skipped"),
        _try("load", 5, 1, "up_for_retry"),
        _try("report", 1, 1, "failed"),
        _try("report", 2, 1, "success"),
        _try("only_skipped", 1, 0, "skipped"),
        _try("load", 1, 1, "failed", dag="other"),
    ]:
        o.record(row)
    assert o.failure_streaks("d") == [
        ({"dag_id": "d", "task_id": "load"}, 3),
        ({"dag_id": "d", "task_id": "report"}, 0),
    ]
    assert o.failure_streaks("d", "load") == [({"dag_id": "d", "task_id": "load"}, 3)]
    assert o.failure_streaks(task_id="load") == [
        ({"dag_id": "d", "task_id": "load"}, 3),
        ({"dag_id": "other", "task_id": "load"}, 1),
    ]
    assert o.failure_streaks(task_id="load", dag_ids=["other"]) == [
        ({"dag_id": "other", "task_id": "load"}, 1)
    ]
    assert o.failure_streaks("d", "only_skipped") == []
    o.record(_try("load", 6, 1, "success"))
    assert o.failure_streaks("d", "load") == [({"dag_id": "d", "task_id": "load"}, 0)]


def test_error_counts_over_a_window_grouped_in_sql(store: Store) -> None:
    o = store.outcomes
    for row in [
        _try("load", 1, 1, "up_for_retry"),  # ends T0+61
        _try("load", 1, 2, "success"),  # T0+62
        _try("load", 2, 1, "failed"),  # T0+121
        _try("report", 1, 1, "success"),  # T0+61
        _try("report", 2, 0, "upstream_failed"),  # not a try
        _try("notify", 2, 1, "skipped"),  # not a try
        _try("load", 1, 1, "failed", dag="other"),  # T0+61
    ]:
        o.record(row)
    start, end = T0, T0 + 121  # [start, end): the failed try ending at T0+121 is outside
    assert o.error_counts(start, end) == [({}, 2, 4)]
    assert o.error_counts(start, end + 1) == [({}, 3, 5)]
    assert o.error_counts(start, end + 1, by=["dag_id"]) == [
        ({"dag_id": "d"}, 2, 4),
        ({"dag_id": "other"}, 1, 1),
    ]
    assert o.error_counts(start, end + 1, dag_id="d", by=["task_id", "dag_id"]) == [
        ({"dag_id": "d", "task_id": "load"}, 2, 3),
        ({"dag_id": "d", "task_id": "report"}, 0, 1),
    ]
    assert o.error_counts(start, end + 1, dag_id="d", task_id="load") == [({}, 2, 3)]
    assert o.error_counts(start, end + 1, by=("task_id",), dag_ids=["other"]) == [({"task_id": "load"}, 1, 1)]
    assert o.error_counts(T0 + 1000, T0 + 2000) == []  # no try in the window: no group
    assert o.error_counts(start, end + 1, task_id="notify") == []
    with pytest.raises(ValidationError, match="by"):
        o.error_counts(start, end, by=["state"])
    with pytest.raises(ValidationError, match="by"):
        o.error_counts(start, end, by="dag_id")
    with pytest.raises(ValidationError, match="start"):
        o.error_counts(float("nan"), end)


# -- the DAG-run listener ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listener, "_failed_at", None)


def _dag_run(state: str = "failed") -> SimpleNamespace:
    end = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    return SimpleNamespace(
        dag_id="orders",
        run_id="scheduled__2026-01-01",
        run_type=SimpleNamespace(value="scheduled"),
        start_date=end - timedelta(seconds=90),
        end_date=end,
        state=state,
    )


def _ti_row(
    task_id: str, state: str, try_number: int, max_tries: int = 0, ran: bool = True
) -> SimpleNamespace:
    end = datetime(2026, 1, 1, 11, 59, tzinfo=timezone.utc)
    return SimpleNamespace(
        dag_id="orders",
        task_id=task_id,
        run_id="scheduled__2026-01-01",
        map_index=-1,
        try_number=try_number,
        max_tries=max_tries,
        state=SimpleNamespace(value=state) if state else None,
        start_date=end - timedelta(seconds=5) if ran else None,
        end_date=end,
        hostname="worker-1" if ran else "",
    )


def test_tries_from_airflow_rows() -> None:
    current = [
        _ti_row("load", "failed", 2, max_tries=1),
        _ti_row("branch_b", "skipped", 0, ran=False),
        _ti_row("report", "upstream_failed", 0, ran=False),
        _ti_row("old_task", "removed", 1),
        _ti_row("stuck", "", 0, ran=False),  # no state: no outcome
        _ti_row("waiting", "scheduled", 0, ran=False),
    ]
    earlier = [
        _ti_row("load", "failed", 1, max_tries=1),  # archived for a retry
        _ti_row("cleared", "failed", 1, max_tries=0),  # failed for good, then cleared
        _ti_row("cleared", "success", 2, max_tries=2),
        _ti_row("odd", "running", 1),
    ]
    run_end = datetime(2026, 1, 1, 12, tzinfo=timezone.utc).timestamp()
    tries = {(t.task_id, t.try_number): t for t in listener.tries_from_rows(current, earlier, run_end)}
    assert {key: t.state for key, t in tries.items()} == {
        ("load", 2): "failed",
        ("load", 1): "up_for_retry",
        ("branch_b", 0): "skipped",
        ("report", 0): "upstream_failed",
        ("old_task", 1): "removed",
        ("cleared", 1): "failed",
        ("cleared", 2): "success",
    }
    assert tries[("load", 2)].error_message == listener.NO_OUTCOME_MESSAGE
    assert tries[("load", 2)].duration_s == 5 and tries[("load", 2)].hostname == "worker-1"
    assert tries[("branch_b", 0)].error_message is None and tries[("branch_b", 0)].hostname is None
    assert tries[("branch_b", 0)].start_ts is None and tries[("branch_b", 0)].duration_s is None


def test_a_finished_run_and_its_missing_tries_are_recorded(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    rows = [_ti_row("load", "failed", 1), _ti_row("report", "upstream_failed", 0, ran=False)]
    monkeypatch.setattr(
        listener, "_tries", lambda dag_run, run_end: listener.tries_from_rows(rows, [], run_end)
    )
    get_store().outcomes.record(
        TaskOutcome("orders", "load", "scheduled__2026-01-01", 1, "failed", error_class="E")
    )
    listener.on_dag_run_failed(_dag_run(), "task_failure")
    (run,) = get_store().dag_runs.query()
    assert (run.dag_id, run.state, run.run_type, run.duration_s) == ("orders", "failed", "scheduled", 90)
    tries = {o.task_id: o for o in get_store().outcomes.query(dag_id="orders")}
    assert tries["load"].error_class == "E"  # untouched
    assert tries["report"].state == "upstream_failed"
    listener.on_dag_run_success(_dag_run("success"), "success")  # cleared and run again
    assert [r.state for r in get_store().dag_runs.query()] == ["success"]


def test_the_dag_run_listener_never_raises_and_logs_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", "postgresql://etl:topsecret@127.0.0.1:1/etlops")
    monkeypatch.setattr(listener, "_tries", lambda dag_run, run_end: [])
    caplog.set_level(logging.WARNING, logger="etlops_airflow")
    listener.on_dag_run_failed(_dag_run(), "task_failure")
    listener.on_dag_run_success(_dag_run("success"), "success")  # within the back-off: no connect
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("etlops_airflow")]
    assert len(messages) == 2
    assert "DAG run orders scheduled__2026-01-01 not recorded in store" in messages[0]
    assert "run is not affected" in messages[0] and "topsecret" not in messages[0]
    assert "store unavailable" in messages[1]


def test_a_failed_read_of_airflows_db_still_records_the_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sqlite_url: str
) -> None:
    def broken(dag_run: Any, run_end: float) -> list[Any]:
        raise RuntimeError("metadata DB gone\nsecond line")

    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    monkeypatch.setattr(listener, "_tries", broken)
    caplog.set_level(logging.WARNING, logger="etlops_airflow")
    assert listener.record_dag_run(_dag_run(), "failed") is True
    assert [r.state for r in get_store().dag_runs.query()] == ["failed"]
    (message,) = [r.getMessage() for r in caplog.records if r.name.startswith("etlops_airflow")]
    assert "not read from Airflow's metadata DB: RuntimeError: metadata DB gone" in message
    assert "\n" not in message


def test_can_be_switched_off(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    monkeypatch.setenv("AIRFLOW__ETLOPS__RECORD_TASK_OUTCOMES", "False")
    assert listener.record_dag_run(_dag_run(), "failed") is False
    monkeypatch.setenv("AIRFLOW__ETLOPS__RECORD_TASK_OUTCOMES", "True")
    assert get_store().dag_runs.query() == []


def test_hook_implementations_match_airflows_hook_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    """pluggy refuses an implementation whose arguments the spec does not have."""
    from airflow._shared.listeners.listener import ListenerManager
    from airflow._shared.listeners.spec import taskinstance
    from airflow.listeners.spec import dagrun

    from etlops_airflow.listeners import outcomes
    from etlops_airflow.plugins import EtlopsPlugin

    manager = ListenerManager()
    manager.add_hookspecs(dagrun)
    manager.add_hookspecs(taskinstance)
    for module in EtlopsPlugin.listeners:
        manager.add_listener(module)
    assert {outcomes, listener} <= set(EtlopsPlugin.listeners)
    calls = []
    monkeypatch.setattr(listener, "record_dag_run", lambda dag_run, state: calls.append(state))
    manager.hook.on_dag_run_failed(dag_run=_dag_run(), msg="task_failure")
    manager.hook.on_dag_run_success(dag_run=_dag_run("success"), msg="success")
    assert calls == ["failed", "success"]
