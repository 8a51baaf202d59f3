"""Sensor that waits until a metric aggregated over a window meets a condition."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator

from etlops_airflow._validate import choice, metric_name, number, positive_number
from etlops_airflow.core.compare import COMPARISONS, compare
from etlops_airflow.core.models import AGGREGATES


class MetricSensor(BaseSensorOperator):
    """Succeed when ``fn(metric over the last window seconds) <op> threshold``.

    Example: wait until at least 1000 rows were loaded into ``orders`` in the last hour::

        MetricSensor(task_id="enough_rows", metric="rows_loaded", labels={"table": "orders"},
                     fn="sum", window=3600, op=">=", threshold=1000)

    No data, no success: with no point in the window the condition is not met, whatever
    ``fn`` and ``op`` are (``fn="count", op="<", threshold=1`` does not succeed on an empty
    window). To wait for a metric to go quiet, wait on an alert rule with ``no_data``.
    """

    template_fields: Sequence[str] = ("metric", "labels")

    def __init__(
        self,
        *,
        metric: str,
        threshold: float,
        op: str = ">=",
        fn: str = "avg",
        window: float = 300,
        labels: dict[str, str] | None = None,
        etlops_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        owner = f"MetricSensor {kwargs.get('task_id', '?')!r}"
        self.metric = metric_name(owner, "metric", metric)
        self.op = choice(owner, "op", op, COMPARISONS)
        self.fn = choice(owner, "fn", fn, AGGREGATES)
        self.window = positive_number(owner, "window", window)
        self.threshold = number(owner, "threshold", threshold)
        self.labels = dict(labels or {})
        self.etlops_conn_id = etlops_conn_id

    def poke(self, context: Any) -> bool:
        from etlops_airflow.hooks.store import EtlopsStoreHook

        store = EtlopsStoreHook(self.etlops_conn_id).store
        value = store.metrics.aggregate(self.metric, fn=self.fn, labels=self.labels, window=self.window)
        met = value is not None and compare(value, self.op, self.threshold)
        self.log.info(
            "%s(%s%s) over %ss = %s; condition %s %s: %s",
            self.fn,
            self.metric,
            self.labels or "",
            self.window,
            value,
            self.op,
            self.threshold,
            "met" if met else "not met",
        )
        return met
