"""etlops-airflow: the operations side of ETL for Apache Airflow 3.

The package root stays cheap to import: DAG files import it at parse time.
Public helpers are loaded on first attribute access (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

__all__ = ["MetricPoint", "__version__", "record_metric", "record_metrics"]

_LAZY = {
    "record_metric": "etlops_airflow.metrics",
    "record_metrics": "etlops_airflow.metrics",
    "MetricPoint": "etlops_airflow.metrics",
}

if TYPE_CHECKING:
    from etlops_airflow.metrics import MetricPoint, record_metric, record_metrics


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'etlops_airflow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
