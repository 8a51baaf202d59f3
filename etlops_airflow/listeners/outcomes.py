"""Listener that stores every task instance outcome (success, failed, up_for_retry, skipped).
(Task instances that end without a try of their own are recorded when their DAG run ends:
``listeners/dag_runs.py``.)

Registered by the ``etlops`` plugin, so it works with zero configuration. It runs in the
task's own process after the task finished; it never raises, and when the store is
unreachable it logs one line per task and the task carries on. Turn it off with
``[etlops] record_task_outcomes = False``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

import pluggy

from etlops_airflow import config
from etlops_airflow._log import one_line

log = logging.getLogger("etlops_airflow.listener")

# Same project name as Airflow's own hook specs.
hookimpl = pluggy.HookimplMarker("airflow")

# After a failure, skip store attempts for this long in this process (API server and scheduler
# processes are long-lived: do not pay a connect timeout for every event while the store is down).
_BACKOFF_S = 30.0
_failed_at: float | None = None
_last_error = ""


def _ts(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    return None


def _state_name(state: Any) -> str:
    return str(getattr(state, "value", state) or "").lower()


def outcome_from_ti(ti: Any, state: str, error: BaseException | str | None) -> Any:
    from etlops_airflow.core.models import TaskOutcome, error_fields

    start = _ts(getattr(ti, "start_date", None))
    end = _ts(getattr(ti, "end_date", None)) or time.time()
    map_index = getattr(ti, "map_index", None)
    error_class, error_message = error_fields(error)
    if error_message:
        # The API shows messages to every viewer: a DSN or token in an exception must not reach it.
        from etlops_airflow._secrets import redact

        error_message = redact(error_message)
    return TaskOutcome(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        try_number=int(getattr(ti, "try_number", 0) or 0),
        state=state,
        map_index=-1 if map_index is None else int(map_index),
        start_ts=start,
        end_ts=end,
        duration_s=None if start is None else max(0.0, end - start),
        error_class=error_class,
        error_message=error_message,
        hostname=getattr(ti, "hostname", None) or None,
    )


def record_task_instance(ti: Any, state: str, error: BaseException | str | None = None) -> bool:
    """Store one outcome. Returns whether it was stored; never raises."""
    global _failed_at, _last_error
    try:
        if not config.get_bool("record_task_outcomes"):
            return False
        where = (
            f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')} try {getattr(ti, 'try_number', '?')}"
        )
        if _failed_at is not None and time.monotonic() - _failed_at < _BACKOFF_S:
            log.warning("etlops: outcome of %s not recorded: store unavailable (%s)", where, _last_error)
            return False
        outcome = outcome_from_ti(ti, state, error)
        from etlops_airflow.runtime import get_store

        get_store().outcomes.record(outcome)
        _failed_at = None
        return True
    except Exception as exc:
        _failed_at = time.monotonic()
        _last_error = one_line(exc)
        from etlops_airflow.runtime import display_target

        target = display_target()
        log.warning(
            "etlops: outcome of %s.%s not recorded in store %s: %s; the task is not affected",
            getattr(ti, "dag_id", "?"),
            getattr(ti, "task_id", "?"),
            target,
            _last_error,
        )
        return False


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    record_task_instance(task_instance, "success")


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    state = (
        "up_for_retry" if _state_name(getattr(task_instance, "state", None)) == "up_for_retry" else "failed"
    )
    record_task_instance(task_instance, state, error)


@hookimpl
def on_task_instance_skipped(previous_state: Any, task_instance: Any) -> None:
    record_task_instance(task_instance, "skipped")
