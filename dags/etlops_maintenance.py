"""Maintenance of the etlops store, the cache, the logs and the checkpoints: seven DAGs on cron
schedules from ``[etlops]`` (every option documented in ``airflow config list --section
etlops``). All paused on creation; two runs of one maintenance task never overlap on a host
(a ``flock`` the kernel releases if a run crashes). A DAG whose options are invalid is an
import error naming the option.

==========================================  ==================  ===================================
DAG                                         default schedule    what
==========================================  ==================  ===================================
etlops_maintenance_cache_cleanup            daily 02:00         maintenance_cache_path: age, then size
etlops_maintenance_log_rotation             weekly Sun 03:00    Airflow's logs: compress, rotate, delete
etlops_maintenance_health_check             hourly              database, cache, filesystem, store, system
etlops_maintenance_checkpoint_cleanup       daily 02:30         maintenance_checkpoint_path: keep newest
etlops_maintenance_metrics_aggregation      hourly              rollups, then retention of raw data
etlops_maintenance_db_optimization          weekly Sun 04:00    VACUUM / ANALYZE / REINDEX, integrity
etlops_maintenance_performance_report       daily 06:00         report from the store, e-mailed
==========================================  ==================  ===================================
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from etlops_airflow import config
from etlops_airflow.operators.maintenance import (
    CacheCleanupOperator,
    CheckpointCleanupOperator,
    DatabaseOptimizationOperator,
    HealthCheckOperator,
    LogRotationOperator,
    MetricsAggregationOperator,
    PerformanceAnalysisOperator,
)

START = datetime(2024, 1, 1)
COMMON = {"start_date": START, "catchup": False, "max_active_runs": 1, "is_paused_upon_creation": True}


def _skip_unset(option: str) -> None:
    """A task that says which option to set, instead of guessing a path to delete in."""

    @task(task_id=f"set_{option}")
    def unset() -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"nothing to do: set [etlops] {option}")

    unset()


with DAG(
    "etlops_maintenance_cache_cleanup",
    schedule=config.get_schedule("maintenance_cache_schedule"),
    tags=["etlops", "maintenance"],
    doc_md="Delete cache files older than `maintenance_cache_max_age_hours`, then the least "
    "recently used until the tree is under `maintenance_cache_target_size_gb`.",
    **COMMON,
):
    cache_path = config.get("maintenance_cache_path").strip()
    # Read every option even when the path is unset: a bad value is an import error either way.
    max_age_hours = config.get_float("maintenance_cache_max_age_hours", minimum=0.001)
    target_size_gb = config.get_float("maintenance_cache_target_size_gb", minimum=0.001)
    if cache_path:
        CacheCleanupOperator(
            task_id="cache_cleanup",
            path=cache_path,
            max_age_hours=max_age_hours,
            target_size_gb=target_size_gb,
        )
    else:
        _skip_unset("maintenance_cache_path")

with DAG(
    "etlops_maintenance_log_rotation",
    schedule=config.get_schedule("maintenance_log_schedule"),
    tags=["etlops", "maintenance"],
    doc_md="Compress and delete closed task-attempt logs; rotate component logs (copytruncate).",
    **COMMON,
):
    LogRotationOperator(
        task_id="log_rotation",
        path=config.get("maintenance_log_path").strip() or None,
        max_files=config.get_int("maintenance_log_max_files", minimum=1),
        max_size_mb=config.get_int("maintenance_log_max_size_mb", minimum=1),
        max_age_days=config.get_int("maintenance_log_max_age_days", minimum=1),
    )

with DAG(
    "etlops_maintenance_health_check",
    schedule=config.get_schedule("maintenance_health_schedule"),
    tags=["etlops", "maintenance"],
    doc_md="Health of the database, the cache, the filesystem, the store and the system, as metrics.",
    **COMMON,
):
    HealthCheckOperator(
        task_id="health_check",
        components=config.get_list("maintenance_health_components"),
        database_conn_id=config.get("maintenance_db_conn_id").strip() or None,
        cache_path=config.get("maintenance_cache_path").strip() or None,
    )

with DAG(
    "etlops_maintenance_checkpoint_cleanup",
    schedule=config.get_schedule("maintenance_checkpoint_schedule"),
    tags=["etlops", "maintenance"],
    doc_md="Remove checkpoints older than the retention, keeping the newest per pipeline.",
    **COMMON,
):
    checkpoint_path = config.get("maintenance_checkpoint_path").strip()
    retention_days = config.get_int("maintenance_checkpoint_retention_days", minimum=1)
    keep_last = config.get_int("maintenance_checkpoint_keep_last", minimum=0)
    if checkpoint_path:
        CheckpointCleanupOperator(
            task_id="checkpoint_cleanup",
            path=checkpoint_path,
            retention_days=retention_days,
            keep_last=keep_last,
        )
    else:
        _skip_unset("maintenance_checkpoint_path")

with DAG(
    "etlops_maintenance_metrics_aggregation",
    schedule=config.get_schedule("maintenance_aggregation_schedule"),
    tags=["etlops", "maintenance"],
    doc_md="Hourly rollups of the store's metric points, the daily ones, and retention of raw data.",
    **COMMON,
):
    hourly = MetricsAggregationOperator(task_id="rollup_hourly", granularity="hourly")
    daily = MetricsAggregationOperator(
        task_id="rollup_daily_and_retention",
        granularity="daily",
        retention_days=config.get_int("maintenance_raw_retention_days", minimum=1),
    )
    hourly >> daily

with DAG(
    "etlops_maintenance_db_optimization",
    schedule=config.get_schedule("maintenance_db_schedule"),
    tags=["etlops", "maintenance"],
    doc_md="VACUUM (ANALYZE) / REINDEX on PostgreSQL; VACUUM, REINDEX, PRAGMA optimize and "
    "quick_check on SQLite.",
    **COMMON,
):
    DatabaseOptimizationOperator(
        task_id="db_optimization",
        conn_id=config.get("maintenance_db_conn_id").strip() or None,
        tables=config.get_list("maintenance_db_tables") or None,
    )

with DAG(
    "etlops_maintenance_performance_report",
    schedule=config.get_schedule("maintenance_report_schedule"),
    tags=["etlops", "maintenance"],
    doc_md="Slowest tasks and stages, regressions, failure rates and the trend, from the store.",
    **COMMON,
):
    PerformanceAnalysisOperator(
        task_id="performance_report",
        period="1d",
        email_recipients=config.get_list("maintenance_report_recipients") or None,
    )
