"""What Airflow itself knows and the store cannot: DAG runs in progress and the tasks running in
them, read from Airflow's metadata database in the API server (never from task code), limited
in SQL to the DAGs the user may read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ACTIVE_RUN_STATES = ("queued", "running")
ACTIVE_TASK_STATES = ("queued", "scheduled", "running", "deferred", "up_for_retry", "up_for_reschedule")


def _ts(value: Any) -> float | None:
    return None if value is None else float(value.timestamp())


def _state(value: Any) -> str:
    return str(getattr(value, "value", value))


def active_runs(dag_ids: Sequence[str], *, per_dag: int = 5) -> dict[str, list[dict[str, Any]]]:
    """``{dag_id: [{run_id, state, start_ts, tasks: [{task_id, map_index, state, start_ts}]}]}``
    for the queued and running DAG runs of ``dag_ids`` (newest first, ``per_dag`` at most)."""
    if not dag_ids:
        return {}
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    allowed = list(dag_ids)
    runs_stmt = (
        select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.start_date, DagRun.queued_at)
        .where(DagRun.state.in_(ACTIVE_RUN_STATES), DagRun.dag_id.in_(allowed))
        .order_by(DagRun.dag_id, DagRun.id.desc())
    )
    tasks_stmt = (
        select(
            TaskInstance.dag_id,
            TaskInstance.run_id,
            TaskInstance.task_id,
            TaskInstance.map_index,
            TaskInstance.state,
            TaskInstance.start_date,
        )
        .join(
            DagRun,
            (DagRun.dag_id == TaskInstance.dag_id) & (DagRun.run_id == TaskInstance.run_id),
        )
        .where(
            DagRun.state.in_(ACTIVE_RUN_STATES),
            DagRun.dag_id.in_(allowed),
            TaskInstance.state.in_(ACTIVE_TASK_STATES),
        )
        .order_by(TaskInstance.start_date.is_(None), TaskInstance.start_date, TaskInstance.task_id)
    )
    result: dict[str, list[dict[str, Any]]] = {}
    with create_session() as session:
        by_run: dict[tuple[str, str], dict[str, Any]] = {}
        for dag_id, run_id, state, start, queued in session.execute(runs_stmt):
            runs = result.setdefault(dag_id, [])
            if len(runs) >= per_dag:
                continue
            run = {
                "run_id": run_id,
                "state": _state(state),
                "start_ts": _ts(start),
                "queued_ts": _ts(queued),
                "tasks": [],
            }
            runs.append(run)
            by_run[(dag_id, run_id)] = run
        for dag_id, run_id, task_id, map_index, state, start in session.execute(tasks_stmt):
            found = by_run.get((dag_id, run_id))
            if found is not None:
                task = {"task_id": task_id, "map_index": map_index, "state": _state(state)}
                found["tasks"].append(task | {"start_ts": _ts(start)})
    return result
