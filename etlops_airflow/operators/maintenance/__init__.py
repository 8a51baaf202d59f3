"""The seven maintenance operators. Each records its run in the store (what it looked at, what
it changed, what it freed, how long, the errors), writes its key figures as metrics
(``maintenance_freed_bytes{task}``, …), plans without changing anything with ``dry_run=True``,
never runs twice at once on one host, and fails its task when it could not do its job."""

from etlops_airflow.exceptions import MaintenanceFailed
from etlops_airflow.operators.maintenance.base import MaintenanceOperator
from etlops_airflow.operators.maintenance.database import (
    DatabaseOptimizationOperator,
    MetricsAggregationOperator,
)
from etlops_airflow.operators.maintenance.files import (
    CacheCleanupOperator,
    CheckpointCleanupOperator,
    LogRotationOperator,
)
from etlops_airflow.operators.maintenance.health import HealthCheckOperator
from etlops_airflow.operators.maintenance.report import PerformanceAnalysisOperator

__all__ = [
    "CacheCleanupOperator",
    "CheckpointCleanupOperator",
    "DatabaseOptimizationOperator",
    "HealthCheckOperator",
    "LogRotationOperator",
    "MaintenanceFailed",
    "MaintenanceOperator",
    "MetricsAggregationOperator",
    "PerformanceAnalysisOperator",
]
