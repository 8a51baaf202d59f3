"""Public API for task code: write metric points into the etlops store.

    from etlops_airflow import record_metric, record_metrics, MetricPoint

    record_metric("rows_loaded", 1250, labels={"table": "orders"})
    record_metrics([MetricPoint("lag_seconds", 3.2, {"source": "kafka"}), ...])

Writes go to the configured store (``[etlops] store_conn_id`` / ``store_url`` /
SQLite in AIRFLOW_HOME) unless a ``store`` is passed. A batch is written in one
transaction: all points or none.

A bad point (name, labels, value, timestamp) always raises ``InvalidMetricError`` (a
``ValidationError``) naming the field and the value before anything is written: that is a
bug in the caller. An unreachable store does not fail the pipeline:
one warning line is logged and nothing is written (the call returns 0), unless
``strict=True``, which raises instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from etlops_airflow.core.models import MetricPoint
from etlops_airflow.exceptions import InvalidMetricError

if TYPE_CHECKING:
    from etlops_airflow.store import Store

__all__ = ["MetricPoint", "record_metric", "record_metrics"]


def _as_point(item: MetricPoint | Mapping[str, Any] | tuple[Any, ...], now: float) -> MetricPoint:
    if isinstance(item, MetricPoint):
        return item
    if isinstance(item, Mapping):
        unknown = set(item) - {"name", "value", "labels", "ts"}
        if unknown or "name" not in item or "value" not in item:
            raise InvalidMetricError("point", item, "expected keys name, value and optionally labels, ts")
        ts = item.get("ts")
        return MetricPoint(item["name"], item["value"], item.get("labels"), now if ts is None else ts)  # type: ignore[arg-type]
    if isinstance(item, tuple) and 2 <= len(item) <= 4:
        name, value, *rest = item
        labels = rest[0] if rest else None
        ts = rest[1] if len(rest) > 1 and rest[1] is not None else now
        return MetricPoint(name, value, labels, ts)  # type: ignore[arg-type]
    raise InvalidMetricError(
        "point", item, "expected a MetricPoint, a mapping or a (name, value[, labels[, ts]]) tuple"
    )


def record_metric(
    name: str,
    value: float,
    labels: Mapping[str, Any] | None = None,
    *,
    ts: float | None = None,
    store: Store | None = None,
    strict: bool = False,
) -> bool:
    """Record one metric point (``ts`` in seconds since the epoch, default now).
    Returns whether it was written."""
    point = MetricPoint(name, value, labels, time.time() if ts is None else ts)  # type: ignore[arg-type]
    return record_metrics([point], store=store, strict=strict) == 1


def record_metrics(
    points: Iterable[MetricPoint | Mapping[str, Any] | tuple[Any, ...]],
    *,
    store: Store | None = None,
    strict: bool = False,
) -> int:
    """Record many points in one transaction. Returns how many were written (0 if the
    store could not be reached and ``strict`` is false)."""
    if points is None or isinstance(points, (str, bytes, Mapping, MetricPoint)):
        raise InvalidMetricError("points", points, "expected a list of points")
    now = time.time()
    batch = [_as_point(p, now) for p in points]
    if not batch:
        return 0
    try:
        if store is None:
            from etlops_airflow.runtime import get_store

            store = get_store()
        return store.metrics.write(batch)
    except InvalidMetricError:
        raise
    except Exception as exc:
        if strict:
            raise
        from etlops_airflow._log import log, one_line

        where = store.display_url if store is not None else "(configured store)"
        log.warning(
            "etlops: %d metric point(s) (%s) not recorded in store %s: %s; the task is not affected",
            len(batch),
            ", ".join(sorted({p.name for p in batch}))[:200],
            where,
            one_line(exc),
        )
        return 0
