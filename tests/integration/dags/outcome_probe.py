"""Test DAG: one task that succeeds, one that fails once then succeeds on retry, one after both."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, task

with DAG(dag_id="etlops_outcome_probe", schedule=None, tags=["etlops-test"]):

    @task
    def ok() -> int:
        return 1

    @task(retries=1, retry_delay=timedelta(seconds=0))
    def flaky(**context: object) -> int:
        if getattr(context["ti"], "try_number", 1) == 1:
            raise TimeoutError("upstream timed out")
        return 2

    @task
    def final(a: int, b: int) -> int:
        return a + b

    final(ok(), flaky())
