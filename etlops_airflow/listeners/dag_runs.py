"""Listener that stores every DAG run's outcome and completes the task outcomes of the run.

Airflow calls ``on_dag_run_success`` / ``on_dag_run_failed`` where a run's state is decided:
in the scheduler (``DagRun.update_state``, run time-outs), in the API server (a run marked
by hand) and in the process running ``dag.test()``. Never in a task process: these hooks
may read Airflow's metadata DB, and they do, through the caller's own session.

When a run ends, every task instance try of the run that has no row in the store gets one,
with Airflow's final state: task instances that never ran (skipped by a branch,
``upstream_failed``, ``removed``) and tries whose task process died before its listener
could write (SIGKILL, the out-of-memory killer: Airflow then runs neither the task's
``on_failure_callback`` nor any task-instance listener). Rows already recorded (by the
worker, the scheduler or the API server) are never changed.

Like the task listener it never raises: a store that cannot be reached costs one log line,
and for 30 s the same process does not try again. ``[etlops] record_task_outcomes = False``
turns it off too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from etlops_airflow import config
from etlops_airflow._log import one_line
from etlops_airflow.listeners.outcomes import hookimpl

log = logging.getLogger("etlops_airflow.listener")

_BACKOFF_S = 30.0
_failed_at: float | None = None
_last_error = ""

# Task instance states Airflow calls finished; any other state has no outcome to record.
FINISHED_STATES = ("success", "failed", "skipped", "upstream_failed", "removed")
NO_OUTCOME_MESSAGE = (
    "the task process reported no outcome (killed, e.g. by the out-of-memory killer, or it could "
    "not reach the store); recorded from Airflow's state when the DAG run ended"
)


def _ts(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def _state_name(state: Any) -> str:
    return str(getattr(state, "value", state) or "").lower()


def dag_run_outcome(dag_run: Any, state: str) -> Any:
    from etlops_airflow.core.models import DagRunOutcome

    start = _ts(getattr(dag_run, "start_date", None))
    end = _ts(getattr(dag_run, "end_date", None)) or time.time()
    run_type = _state_name(getattr(dag_run, "run_type", None)) or None
    return DagRunOutcome(
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        state=state,
        run_type=run_type,
        start_ts=start,
        end_ts=end,
        duration_s=None if start is None else max(0.0, end - start),
    )


def _try_outcome(row: Any, state: str, run_end: float) -> Any:
    from etlops_airflow.core.models import TaskOutcome

    start = _ts(row.start_date)
    end = _ts(row.end_date)
    if end is None and start is not None:
        end = run_end
    failed = state in ("failed", "up_for_retry")
    return TaskOutcome(
        dag_id=row.dag_id,
        task_id=row.task_id,
        run_id=row.run_id,
        try_number=int(row.try_number or 0),
        state=state,
        map_index=-1 if row.map_index is None else int(row.map_index),
        start_ts=start,
        end_ts=end if end is not None else run_end,
        duration_s=None if start is None or end is None else max(0.0, end - start),
        error_message=NO_OUTCOME_MESSAGE if failed else None,
        hostname=row.hostname or None,
    )


def task_tries_of_run(dag_run: Any, session: Any, run_end: float) -> list[Any]:
    """Every finished try of the run as Airflow knows it: the current try of each task
    instance and the earlier tries kept in ``task_instance_history``."""
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.taskinstancehistory import TaskInstanceHistory as TIH
    from sqlalchemy import select

    dag_id, run_id = dag_run.dag_id, dag_run.run_id
    # The caller's session: task states changed in its open transaction (a trigger rule that
    # just set ``upstream_failed``) are seen, and nothing is flushed on our account.
    with session.no_autoflush:
        current = session.scalars(select(TI).where(TI.dag_id == dag_id, TI.run_id == run_id)).all()
        earlier = session.execute(
            select(
                TIH.dag_id,
                TIH.task_id,
                TIH.run_id,
                TIH.map_index,
                TIH.try_number,
                TIH.max_tries,
                TIH.state,
                TIH.start_date,
                TIH.end_date,
                TIH.hostname,
            ).where(TIH.dag_id == dag_id, TIH.run_id == run_id)
        ).all()
    return tries_from_rows(current, earlier, run_end)


def tries_from_rows(current: Sequence[Any], earlier: Sequence[Any], run_end: float) -> list[Any]:
    """Task outcomes from task instance rows (``current``) and their history (``earlier``).
    Rows in a state that is not finished have no outcome and are left out."""
    tries = []
    for ti in current:
        state = _state_name(ti.state)
        if state in FINISHED_STATES:
            tries.append(_try_outcome(ti, state, run_end))
    for row in earlier:
        state = _state_name(row.state)
        if state not in FINISHED_STATES:
            continue
        # Airflow archives a retried try as ``failed``; it was up for retry if tries were left.
        if state == "failed" and row.max_tries is not None and 0 < row.try_number <= row.max_tries:
            state = "up_for_retry"
        tries.append(_try_outcome(row, state, run_end))
    return tries


def _tries(dag_run: Any, run_end: float) -> list[Any]:
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is not None:
        return task_tries_of_run(dag_run, session, run_end)
    from airflow.utils.session import create_session

    with create_session() as fresh:
        return task_tries_of_run(dag_run, fresh, run_end)


def record_dag_run(dag_run: Any, state: str) -> bool:
    """Store the run's outcome and the tries nobody recorded. Returns whether the store took
    them; never raises."""
    global _failed_at, _last_error
    where = f"{getattr(dag_run, 'dag_id', '?')} {getattr(dag_run, 'run_id', '?')}"
    try:
        if not config.get_bool("record_task_outcomes"):
            return False
        if _failed_at is not None and time.monotonic() - _failed_at < _BACKOFF_S:
            log.warning(
                "etlops: outcome of DAG run %s not recorded: store unavailable (%s)", where, _last_error
            )
            return False
        outcome = dag_run_outcome(dag_run, state)
        try:
            tries = _tries(dag_run, outcome.end_ts)
        except Exception as exc:  # Airflow's DB, not the store: record the run all the same
            log.warning(
                "etlops: task instances of DAG run %s not read from Airflow's metadata DB: %s; "
                "their missing outcomes are not recorded",
                where,
                one_line(exc),
            )
            tries = []
        from etlops_airflow.runtime import get_store

        store = get_store()
        store.dag_runs.record(outcome)
        added = store.outcomes.record_missing(tries)
        if added:
            log.info(
                "etlops: DAG run %s ended %s; %d task outcome(s) recorded from Airflow's state",
                where,
                state,
                added,
            )
        _failed_at = None
        return True
    except Exception as exc:
        _failed_at = time.monotonic()
        _last_error = one_line(exc)
        from etlops_airflow.runtime import display_target

        target = display_target()
        log.warning(
            "etlops: outcome of DAG run %s not recorded in store %s: %s; the run is not affected",
            where,
            target,
            _last_error,
        )
        return False


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    record_dag_run(dag_run, "success")


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    record_dag_run(dag_run, "failed")
