"""Bundled DAGs must import without errors (what Airflow's DAG processor would report)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("folder", [REPO / "dags", REPO / "tests" / "integration" / "dags"])
def test_dag_folder_imports_without_errors(folder: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    assert bag.dags, f"no DAG found in {folder}"


def test_demo_dag_shape() -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["etlops_demo_pipeline"]
    assert {t.task_id for t in dag.tasks} == {"extract", "transform", "load", "enough_rows", "publish"}
