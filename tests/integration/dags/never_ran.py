"""Test DAG: task instances that end without running (branch-skipped, upstream_failed, a skipped
mapped index) next to ones that ran, failed and were retried."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, TriggerRule, task

with DAG(dag_id="etlops_never_ran", schedule=None, tags=["etlops-test"]):

    @task.branch
    def choose() -> str:
        return "taken"

    @task
    def taken() -> None:
        pass

    @task
    def not_taken() -> None:
        pass

    @task(retries=1, retry_delay=timedelta(seconds=0))
    def broken() -> None:
        raise LookupError("no such partition")

    @task
    def after_broken() -> None:
        pass

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def cleanup() -> None:
        pass

    @task
    def shard(n: int) -> int:
        if n == 2:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException("nothing to do")
        return n

    choose() >> [taken(), not_taken()]
    b = broken()
    b >> after_broken()
    b >> cleanup()
    shard.expand(n=[1, 2, 3])
