"""Demo pipeline: its task outcomes and metrics land in the etlops store.

* every task outcome is recorded by the etlops listener (no code needed);
* ``transform`` records metrics from task code with ``record_metric``;
* ``load`` records metrics with ``RecordMetricsOperator``, values pulled from XCom;
* ``publish`` fails on its first try and succeeds on the retry (a retry in the store);
* ``enough_rows`` waits until the store shows rows were loaded in the last hour.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, task

from etlops_airflow.notifications.metric import RecordMetricNotifier
from etlops_airflow.operators.metrics import RecordMetricsOperator
from etlops_airflow.sensors.metric import MetricSensor

with DAG(
    dag_id="etlops_demo_pipeline",
    schedule="@hourly",
    tags=["etlops", "example"],
    default_args={"retries": 0},
    on_failure_callback=RecordMetricNotifier("dag_run_failures"),
    doc_md=__doc__,
):

    @task
    def extract() -> list[dict[str, int]]:
        return [{"id": i, "amount": i * 10} for i in range(250)]

    @task
    def transform(rows: list[dict[str, int]]) -> dict[str, int]:
        from etlops_airflow import record_metric

        kept = [r for r in rows if r["amount"] % 3]
        record_metric("rows_dropped", len(rows) - len(kept), {"table": "orders"})
        return {"rows": len(kept)}

    load = RecordMetricsOperator(
        task_id="load",
        metrics=[
            {
                "name": "rows_loaded",
                "value": "{{ ti.xcom_pull(task_ids='transform')['rows'] }}",
                "labels": {"table": "orders"},
            }
        ],
    )

    @task(retries=1, retry_delay=timedelta(seconds=1))
    def publish(**context: object) -> str:
        ti = context["ti"]
        if getattr(ti, "try_number", 1) == 1:
            raise ConnectionError("downstream API not ready yet (first try always fails in the demo)")
        return "published"

    enough_rows = MetricSensor(
        task_id="enough_rows",
        metric="rows_loaded",
        labels={"table": "orders"},
        fn="sum",
        window=3600,
        op=">=",
        threshold=100,
        poke_interval=5,
        timeout=120,
        mode="reschedule",
    )

    transform(extract()) >> load >> enough_rows >> publish()
