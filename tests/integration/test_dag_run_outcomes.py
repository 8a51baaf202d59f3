"""DAG-run outcomes and the fill-in of task instances that never ran, with Airflow's own
example DAGs (branching, short-circuit, skips) run by ``dag.test()`` in a fresh process: after
each run the store holds one outcome per task instance with Airflow's final state, so the
per-state counts equal those of Airflow's metadata DB (read here, after the run)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from etlops_airflow.store import Store
from tests.fixtures.airflow import run_dags

REPO = Path(__file__).resolve().parents[2]
TEST_DAGS = REPO / "tests" / "integration" / "dags"

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AIRFLOW = Path(__import__("airflow").__file__).parent
EXAMPLES = {
    # dag_id: file in Airflow's example_dags folders. (example_branch_operator is left out: it
    # builds a virtualenv and installs numpy from the package index at run time.)
    "example_nested_branch_dag": AIRFLOW / "example_dags/example_nested_branch_dag.py",
    "example_skip_dag": AIRFLOW / "example_dags/example_skip_dag.py",
    "example_short_circuit_operator": AIRFLOW
    / "providers/standard/example_dags/example_short_circuit_operator.py",
    "example_branch_dop_operator_v3": AIRFLOW / "example_dags/example_branch_python_dop_operator_3.py",
}


def _airflow_states(home: str, dag_id: str, run_id: str) -> dict[tuple[str, int], str]:
    """Task instance states straight from Airflow's metadata DB (SQLite in the session's home)."""
    with sqlite3.connect(os.path.join(home, "airflow.db")) as conn:
        rows = conn.execute(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
            (dag_id, run_id),
        ).fetchall()
    return {(task_id, map_index): state for task_id, map_index, state in rows}


def _store_states(store: Store, dag_id: str, run_id: str) -> dict[tuple[str, int], str]:
    """The latest try of each task instance in our store."""
    latest: dict[tuple[str, int], tuple[int, str]] = {}
    for o in store.outcomes.query(dag_id=dag_id, run_id=run_id):
        key = (o.task_id, o.map_index)
        if key not in latest or o.try_number > latest[key][0]:
            latest[key] = (o.try_number, o.state)
    return {key: state for key, (_, state) in latest.items()}


def test_example_dags_with_branching_leave_the_same_state_counts_as_airflow(
    airflow_db: str, tmp_path: Path
) -> None:
    folder = tmp_path / "examples"
    folder.mkdir()
    for source in EXAMPLES.values():
        shutil.copy(source, folder / source.name)
    store_url = f"sqlite:///{tmp_path / 'etlops.db'}"
    runs, output = run_dags(folder, list(EXAMPLES), {"AIRFLOW__ETLOPS__STORE_URL": store_url})
    store = Store.from_url(store_url)
    seen_states: Counter[str] = Counter()
    for dag_id, run in runs.items():
        airflow = _airflow_states(airflow_db, dag_id, run.run_id)
        ours = _store_states(store, dag_id, run.run_id)
        assert Counter(ours.values()) == Counter(airflow.values()), (dag_id, output[-3000:])
        assert ours == airflow, dag_id
        seen_states.update(airflow.values())
        (recorded,) = store.dag_runs.query(dag_id=dag_id)
        assert (recorded.run_id, recorded.state) == (run.run_id, run.state)
        assert recorded.run_type == "manual" and recorded.duration_s is not None
    # the examples exercise the task instances that never ran
    assert seen_states["skipped"] >= 5 and seen_states["success"] >= 10, seen_states
    assert "etlops: outcome of" not in output  # nothing failed to record


def test_failed_run_records_upstream_failed_and_keeps_the_workers_rows(
    airflow_db: str, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'etlops.db'}"
    runs, output = run_dags(TEST_DAGS, ["etlops_never_ran"], {"AIRFLOW__ETLOPS__STORE_URL": store_url})
    run = runs["etlops_never_ran"]
    assert run.state == "failed", output[-4000:]
    store = Store.from_url(store_url)
    airflow = _airflow_states(airflow_db, "etlops_never_ran", run.run_id)
    ours = _store_states(store, "etlops_never_ran", run.run_id)
    assert ours == airflow
    assert Counter(ours.values()) == {"success": 5, "failed": 1, "upstream_failed": 1, "skipped": 2}
    tries = {
        (o.task_id, o.map_index, o.try_number): o for o in store.outcomes.query(dag_id="etlops_never_ran")
    }
    # the worker's rows, with their errors, are not replaced by the fill-in
    assert tries[("broken", -1, 1)].state == "up_for_retry"
    assert tries[("broken", -1, 2)].state == "failed"
    assert tries[("broken", -1, 2)].error_class == "LookupError"
    assert tries[("shard", 1, 1)].state == "skipped"  # skipped itself: recorded by the worker
    assert tries[("not_taken", -1, 0)].state == "skipped"  # never ran: try 0, from Airflow's state
    assert tries[("after_broken", -1, 0)].state == "upstream_failed"
    assert store.dag_runs.failure_streaks("etlops_never_ran") == [({"dag_id": "etlops_never_ran"}, 1)]
    assert store.outcomes.failure_streaks("etlops_never_ran", "broken") == [
        ({"dag_id": "etlops_never_ran", "task_id": "broken"}, 2)
    ]
    assert store.outcomes.error_counts(0, 2**32, dag_id="etlops_never_ran", by=["task_id"]) == [
        ({"task_id": "broken"}, 2, 2),
        ({"task_id": "choose"}, 0, 1),
        ({"task_id": "cleanup"}, 0, 1),
        ({"task_id": "shard"}, 0, 2),
        ({"task_id": "taken"}, 0, 1),
    ]
