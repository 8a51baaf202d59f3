"""Notifier that turns a callback into a metric point in the etlops store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseNotifier

from etlops_airflow._validate import metric_name, number


class RecordMetricNotifier(BaseNotifier):
    """Record a metric point whenever the callback fires.

    ``on_failure_callback=RecordMetricNotifier("dag_run_failures")`` counts failed runs per DAG
    (labels ``dag_id``, and ``task_id`` for task callbacks). Like every etlops notifier it never
    fails the task or the DAG run: a store error is logged.
    """

    template_fields: Sequence[str] = ("name", "labels")

    def __init__(
        self,
        name: str,
        value: float = 1.0,
        labels: dict[str, str] | None = None,
        etlops_conn_id: str | None = None,
    ) -> None:
        super().__init__()
        self.name = metric_name("RecordMetricNotifier", "name", name)
        self.value = number("RecordMetricNotifier", "value", value)
        self.labels = dict(labels or {})
        self.etlops_conn_id = etlops_conn_id

    def notify(self, context: Any) -> None:
        try:
            from etlops_airflow.hooks.store import EtlopsStoreHook

            labels = {str(k): str(v) for k, v in self.labels.items()}
            dag = context.get("dag")
            ti = context.get("ti") or context.get("task_instance")
            dag_id = getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None)
            if dag_id:
                labels.setdefault("dag_id", dag_id)
            task_id = getattr(ti, "task_id", None)
            if task_id:
                labels.setdefault("task_id", task_id)
            EtlopsStoreHook(self.etlops_conn_id).store.metrics.write_point(self.name, self.value, labels)
        except Exception as exc:
            from etlops_airflow._log import log, one_line

            log.warning(
                "etlops: metric %r not recorded: %s; the run is not affected", self.name, one_line(exc)
            )
