"""Public API for task code: write metric points into the etlops store.

    from etlops_airflow import record_metric, record_metrics, MetricPoint

    record_metric("rows_loaded", 1250, labels={"table": "orders"})
    record_metrics([MetricPoint("lag_seconds", 3.2, {"source": "kafka"}), ...])

Writes go to the configured store (``[etlops] store_conn_id`` / ``store_url`` /
SQLite in AIRFLOW_HOME) unless a ``store`` is passed. A batch is written in one
transaction: all points or none.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from etlops_airflow.core.models import MetricPoint

if TYPE_CHECKING:
    from etlops_airflow.store.store import Store

__all__ = ["MetricPoint", "record_metric", "record_metrics"]


def _as_point(item: MetricPoint | Mapping[str, Any] | tuple[Any, ...]) -> MetricPoint:
    if isinstance(item, MetricPoint):
        return item
    if isinstance(item, Mapping):
        unknown = set(item) - {"name", "value", "labels", "ts"}
        if unknown:
            raise TypeError(f"metric point keys {sorted(unknown)!r}: expected name, value, labels, ts")
        return MetricPoint(
            item["name"],
            item["value"],
            dict(item.get("labels") or {}),
            time.time() if item.get("ts") is None else item["ts"],
        )
    if isinstance(item, tuple) and 2 <= len(item) <= 4:
        name, value, *rest = item
        labels = dict(rest[0] or {}) if rest else {}
        ts = rest[1] if len(rest) > 1 and rest[1] is not None else time.time()
        return MetricPoint(name, value, labels, ts)
    raise TypeError(
        f"metric point {item!r}: expected MetricPoint, a mapping or a (name, value[, labels[, ts]]) tuple"
    )


def record_metric(
    name: str,
    value: float,
    labels: Mapping[str, Any] | None = None,
    *,
    ts: float | None = None,
    store: Store | None = None,
) -> None:
    """Record one metric point (``ts`` in seconds since the epoch, default now)."""
    record_metrics(
        [MetricPoint(name, value, dict(labels or {}), time.time() if ts is None else ts)], store=store
    )


def record_metrics(
    points: Iterable[MetricPoint | Mapping[str, Any] | tuple[Any, ...]], *, store: Store | None = None
) -> int:
    """Record many points in one transaction. Returns how many were written."""
    batch = [_as_point(p) for p in points]
    if store is None:
        from etlops_airflow.store import get_store

        store = get_store()
    return store.write_points(batch)
