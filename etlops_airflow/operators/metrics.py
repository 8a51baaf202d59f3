"""Operator that writes metric points into the etlops store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from etlops_airflow._validate import metric_name
from etlops_airflow.exceptions import ValidationError


class RecordMetricsOperator(BaseOperator):
    """Write metric points into the etlops store in one transaction.

    :param metrics: list of ``{"name": ..., "value": ..., "labels": {...}}``. Templated, so a
        value can come from XCom: ``"{{ ti.xcom_pull('load')['rows'] }}"``. Values are
        converted with ``float()`` when the task runs.
    :param add_run_labels: add ``dag_id`` and ``task_id`` labels of the producing DAG run.
    :param etlops_conn_id: store connection; default the ``[etlops]`` store.
    """

    template_fields: Sequence[str] = ("metrics",)
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        metrics: list[dict[str, Any]],
        add_run_labels: bool = True,
        etlops_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        owner = f"RecordMetricsOperator {kwargs.get('task_id', '?')!r}"
        if not isinstance(metrics, list) or not metrics:
            raise ValidationError("metrics", metrics, "expected a non-empty list of dicts", owner=owner)
        for i, item in enumerate(metrics):
            if not isinstance(item, dict) or "name" not in item or "value" not in item:
                raise ValidationError(
                    f"metrics[{i}]", item, "expected a dict with name and value", owner=owner
                )
            extra = set(item) - {"name", "value", "labels"}
            if extra:
                raise ValidationError(
                    f"metrics[{i}]",
                    item,
                    f"unknown keys {sorted(extra)!r}; expected name, value, labels",
                    owner=owner,
                )
            labels = item.get("labels")
            if labels is not None and not isinstance(labels, dict) and not isinstance(labels, str):
                raise ValidationError(f"metrics[{i}].labels", labels, "expected a dict", owner=owner)
            metric_name(owner, f"metrics[{i}].name", item["name"])
        self.metrics = metrics
        self.add_run_labels = add_run_labels
        self.etlops_conn_id = etlops_conn_id

    def execute(self, context: Any) -> int:
        from etlops_airflow.core.models import MetricPoint
        from etlops_airflow.hooks.store import EtlopsStoreHook

        owner = f"RecordMetricsOperator {self.task_id!r}"
        points = []
        for i, item in enumerate(self.metrics):
            raw = item["value"]
            try:
                value = float(raw)
            except (TypeError, ValueError, OverflowError):
                raise ValidationError(
                    f"metrics[{i}].value", raw, f"is not a number (metric {item['name']!r})", owner=owner
                ) from None
            labels = item.get("labels") or {}
            if not isinstance(labels, dict):
                raise ValidationError(f"metrics[{i}].labels", labels, "expected a dict", owner=owner)
            labels = dict(labels)
            if self.add_run_labels:
                labels.setdefault("dag_id", self.dag_id)
                labels.setdefault("task_id", self.task_id)
            points.append(MetricPoint(item["name"], value, labels))
        written: int = EtlopsStoreHook(self.etlops_conn_id).store.metrics.write(points)
        self.log.info("Recorded %d metric point(s): %s", written, ", ".join(p.name for p in points))
        return written
