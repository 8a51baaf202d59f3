"""The ``[etlops]`` configuration section, declared once and read the Airflow way.

``OPTIONS`` feeds the provider info (so ``airflow config list --section etlops`` documents
every option) and gives the fallbacks used when reading. Values come from ``airflow.cfg`` or
``AIRFLOW__ETLOPS__<OPTION>``; options declared ``sensitive`` also accept the ``_CMD`` and
``_SECRET`` variants and are hidden by ``airflow config list``.

This module only reads options. Resolving them into a store is ``etlops_airflow.runtime``.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

from etlops_airflow.exceptions import ConfigError

SECTION = "etlops"

OPTIONS: dict[str, dict[str, Any]] = {
    "store_conn_id": {
        "description": (
            "Airflow Connection id of the etlops store (types: postgres, sqlite or etlops_store). "
            "When set it wins over store_url. Use it for PostgreSQL in production."
        ),
        "version_added": "0.1.0",
        "type": "string",
        "example": "etlops_store",
        "default": "",
    },
    "store_url": {
        "description": (
            "SQLAlchemy URL of the etlops store, used when store_conn_id is empty. Empty means a SQLite "
            "file etlops.db in AIRFLOW_HOME (WAL mode). Sensitive: hidden by airflow config list, and "
            "can be given as AIRFLOW__ETLOPS__STORE_URL_CMD or _SECRET."
        ),
        "version_added": "0.1.0",
        "type": "string",
        "sensitive": True,
        "example": "postgresql+psycopg://etlops:secret@db:5432/etlops",
        "default": "",
    },
    "record_task_outcomes": {
        "description": (
            "Record every task instance outcome (success, failed, up_for_retry, skipped; and, when a "
            "DAG run ends, the final state of task instances nobody recorded, e.g. upstream_failed) "
            "and every DAG run outcome in the store through the etlops listeners. Failing to record "
            "never fails the task or the run."
        ),
        "version_added": "0.1.0",
        "type": "boolean",
        "example": "False",
        "default": "True",
    },
    "store_connect_timeout": {
        "description": "Seconds to wait for a connection to a store server before giving up.",
        "version_added": "0.1.0",
        "type": "integer",
        "example": "10",
        "default": "5",
    },
    "sqlite_busy_timeout": {
        "description": "Seconds a SQLite store write waits for another process's write to finish.",
        "version_added": "0.1.0",
        "type": "integer",
        "example": "60",
        "default": "30",
    },
    "alert_rules_file": {
        "description": (
            "Path of the YAML alert rule file the bundled etlops_alerting DAG evaluates (receivers, "
            "routes, rules). Empty: the DAG has nothing to evaluate and says so. A file that does not "
            "load is an import error of the DAG naming the file, the rule, the field and the value."
        ),
        "version_added": "0.2.0",
        "type": "string",
        "example": "/opt/airflow/config/alert_rules.yaml",
        "default": "",
    },
    "alert_evaluation_schedule": {
        "description": (
            "Schedule of the etlops_alerting DAG. Each run evaluates the rules every "
            "alert_evaluation_interval until the next run is due (waiting in the triggerer in between), "
            "so rules are evaluated every minute while Airflow records one DAG run per hour."
        ),
        "version_added": "0.2.0",
        "type": "string",
        "example": "*/30 * * * *",
        "default": "@hourly",
    },
    "alert_evaluation_interval": {
        "description": "How often the etlops_alerting DAG evaluates the rules (30s, 1m, 5m …).",
        "version_added": "0.2.0",
        "type": "string",
        "example": "30s",
        "default": "1m",
    },
    "alert_delivery_budget": {
        "description": (
            "How long one evaluation may spend delivering notifications (retries and Slack's Retry-After "
            "included). What is not delivered stays in the outbox for the next evaluation."
        ),
        "version_added": "0.2.0",
        "type": "string",
        "example": "1m",
        "default": "30s",
    },
    "alert_max_delivery_attempts": {
        "description": "Attempts after which an undeliverable notification is marked failed.",
        "version_added": "0.2.0",
        "type": "integer",
        "example": "20",
        "default": "10",
    },
}

# Maintenance: paths, limits and schedules of the bundled maintenance DAGs.
OPTIONS.update(
    {
        "migrations_dir": {
            "description": (
                "Default migrations folder of `airflow etlops migrations` commands (their "
                "--migrations-dir wins)."
            ),
            "version_added": "0.3.0",
            "type": "string",
            "example": "/opt/airflow/dags/migrations",
            "default": "",
        },
        "migration_modules": {
            "description": (
                "Comma-separated Python modules that `airflow etlops migrations` commands import "
                "first: those that register transformers and validators with "
                "register_transformer() / register_validator() (tasks get them from their DAG file)."
            ),
            "version_added": "0.3.0",
            "type": "string",
            "example": "my_company.migrations",
            "default": "",
        },
        "migration_backup_dir": {
            "description": (
                "Directory of the backup files that migration runs take of SQLite targets "
                "(PostgreSQL targets are backed up inside the database). Empty: "
                "AIRFLOW_HOME/etlops_migration_backups. A backup is removed when its run ends "
                "cleanly; one whose restore failed is kept."
            ),
            "version_added": "0.3.0",
            "type": "string",
            "example": "/var/backups/etlops",
            "default": "",
        },
        "migration_lock_ttl": {
            "description": (
                "Lease of a migration run's lock. The run renews it while it works; a run whose "
                "process died blocks its pipeline until the lease expires, then waits for "
                "`airflow etlops migrations recover`."
            ),
            "version_added": "0.3.0",
            "type": "string",
            "example": "2m",
            "default": "5m",
        },
        "maintenance_lock_dir": {
            "description": (
                "Directory of the per-host lock files of maintenance tasks (flock: released when a "
                "run exits or crashes). Empty: AIRFLOW_HOME/etlops_locks."
            ),
            "version_added": "0.2.0",
            "type": "string",
            "example": "/var/lock/etlops",
            "default": "",
        },
        "maintenance_cache_path": {
            "description": (
                "Root of the cache tree that etlops_maintenance_cache_cleanup cleans. Empty: the "
                "DAG's task is skipped, saying which option to set."
            ),
            "version_added": "0.2.0",
            "type": "string",
            "example": "/data/cache",
            "default": "",
        },
        "maintenance_cache_max_age_hours": {
            "description": "Cache files older than this are deleted.",
            "version_added": "0.2.0",
            "type": "integer",
            "example": "48",
            "default": "24",
        },
        "maintenance_cache_target_size_gb": {
            "description": (
                "After the age rule, the oldest cache files are deleted until the tree is below this "
                "size (GB)."
            ),
            "version_added": "0.2.0",
            "type": "float",
            "example": "50",
            "default": "10",
        },
        "maintenance_cache_schedule": {
            "description": "Schedule of etlops_maintenance_cache_cleanup.",
            "version_added": "0.2.0",
            "type": "string",
            "example": "0 1 * * *",
            "default": "0 2 * * *",
        },
        "maintenance_log_path": {
            "description": (
                "Root of the logs etlops_maintenance_log_rotation rotates. Empty: Airflow's [logging]"
                " base_log_folder."
            ),
            "version_added": "0.2.0",
            "type": "string",
            "example": "/opt/airflow/logs",
            "default": "",
        },
        "maintenance_log_max_files": {
            "description": (
                "Closed task-attempt logs kept per task (the newest); rotated copies kept per component log."
            ),
            "version_added": "0.2.0",
            "type": "integer",
            "example": "20",
            "default": "10",
        },
        "maintenance_log_max_size_mb": {
            "description": (
                "Total size the task-attempt logs may take (MB); the oldest closed ones go first beyond it."
            ),
            "version_added": "0.2.0",
            "type": "integer",
            "example": "1000",
            "default": "100",
        },
        "maintenance_log_max_age_days": {
            "description": "Closed task-attempt logs older than this are deleted.",
            "version_added": "0.2.0",
            "type": "integer",
            "example": "14",
            "default": "30",
        },
        "maintenance_log_schedule": {
            "description": "Schedule of etlops_maintenance_log_rotation.",
            "version_added": "0.2.0",
            "type": "string",
            "example": "0 3 * * *",
            "default": "0 3 * * 0",
        },
        "maintenance_health_components": {
            "description": (
                "Components etlops_maintenance_health_check checks (database, cache, filesystem, "
                "store, system)."
            ),
            "version_added": "0.2.0",
            "type": "string",
            "example": "store,filesystem,system",
            "default": "database,cache,filesystem,store,system",
        },
        "maintenance_health_schedule": {
            "description": "Schedule of etlops_maintenance_health_check.",
            "version_added": "0.2.0",
            "type": "string",
            "example": "*/15 * * * *",
            "default": "0 * * * *",
        },
        "maintenance_checkpoint_path": {
            "description": (
                "Root of the checkpoints (one folder per pipeline) "
                "etlops_maintenance_checkpoint_cleanup cleans. Empty: the task is skipped, saying "
                "which option to set."
            ),
            "version_added": "0.2.0",
            "type": "string",
            "example": "/data/checkpoints",
            "default": "",
        },
        "maintenance_checkpoint_retention_days": {
            "description": (
                "Checkpoints older than this are removed (the newest keep_last per pipeline always stay)."
            ),
            "version_added": "0.2.0",
            "type": "integer",
            "example": "14",
            "default": "7",
        },
        "maintenance_checkpoint_keep_last": {
            "description": "Checkpoints always kept per pipeline, whatever their age.",
            "version_added": "0.2.0",
            "type": "integer",
            "example": "5",
            "default": "3",
        },
        "maintenance_checkpoint_schedule": {
            "description": "Schedule of etlops_maintenance_checkpoint_cleanup.",
            "version_added": "0.2.0",
            "type": "string",
            "example": "0 4 * * *",
            "default": "30 2 * * *",
        },
        "maintenance_aggregation_schedule": {
            "description": (
                "Schedule of etlops_maintenance_metrics_aggregation (hourly rollups; the daily, "
                "weekly and monthly rollups and retention run at the first run after midnight)."
            ),
            "version_added": "0.2.0",
            "type": "string",
            "example": "15 * * * *",
            "default": "5 * * * *",
        },
        "maintenance_raw_retention_days": {
            "description": (
                "Raw metric points, task outcomes and maintenance runs older than this are deleted "
                "once rolled up."
            ),
            "version_added": "0.2.0",
            "type": "integer",
            "example": "90",
            "default": "30",
        },
        "maintenance_db_conn_id": {
            "description": (
                "Connection of the database etlops_maintenance_db_optimization optimises. Empty: the "
                "etlops store."
            ),
            "version_added": "0.2.0",
            "type": "string",
            "example": "warehouse",
            "default": "",
        },
        "maintenance_db_tables": {
            "description": (
                "Comma-separated tables to optimise. Empty: every etlops table of the store (or every"
                " table of the connection's database)."
            ),
            "version_added": "0.2.0",
            "type": "string",
            "example": "orders,customers",
            "default": "",
        },
        "maintenance_db_schedule": {
            "description": "Schedule of etlops_maintenance_db_optimization.",
            "version_added": "0.2.0",
            "type": "string",
            "example": "0 5 * * 6",
            "default": "0 4 * * 0",
        },
        "maintenance_report_schedule": {
            "description": "Schedule of etlops_maintenance_performance_report.",
            "version_added": "0.2.0",
            "type": "string",
            "example": "0 7 * * 1-5",
            "default": "0 6 * * *",
        },
        "maintenance_report_recipients": {
            "description": (
                "Comma-separated e-mail addresses the daily performance report is sent to (through "
                "the smtp_default connection). Empty: the report is kept in the store and the task "
                "log only."
            ),
            "version_added": "0.2.0",
            "type": "string",
            "example": "data-team@example.com",
            "default": "",
        },
    }
)


# Profiling: the sampler and the thresholds of the findings (etlops_airflow.profiling).
OPTIONS.update(
    {
        "profile_all_tasks": {
            "description": (
                "Profile every task as one stage (named after the task) through the etlops listener: "
                "wall time, CPU, peak memory, IO, threads, including the task's child processes (SQL "
                "clients, Bash commands, pod launchers). Stages the task marks itself with "
                "profile_stage / @profiled nest inside it. Off: only tasks that mark stages are "
                "profiled. Profiling never fails a task."
            ),
            "version_added": "0.2.0",
            "type": "boolean",
            "example": "True",
            "default": "False",
        },
        "profile_sample_interval": {
            "description": (
                "How often the profiler's sampler thread reads the task process while a stage runs "
                "(peak memory, threads, child processes between a stage's start and end): 500ms, 1s, "
                "5s … 0 turns the thread off (only stage starts and ends are read); at least 10ms "
                "otherwise. A sample costs tens of microseconds."
            ),
            "version_added": "0.2.0",
            "type": "string",
            "example": "5s",
            "default": "1s",
        },
        "profile_memory_threshold_mb": {
            "description": (
                "A stage whose peak resident memory (the task process and its child processes) goes "
                "above this many MiB gets a memory finding (high from twice this)."
            ),
            "version_added": "0.2.0",
            "type": "integer",
            "example": "4096",
            "default": "1024",
        },
        "profile_cpu_threshold_percent": {
            "description": (
                "A stage of at least 5 s whose CPU use, averaged over the stage, is above this "
                "percentage of one core gets a CPU-bound finding (threads and child processes count, "
                "so more than 100 is possible)."
            ),
            "version_added": "0.2.0",
            "type": "integer",
            "example": "150",
            "default": "90",
        },
        "profile_min_records_per_second": {
            "description": (
                "A stage of at least 5 s that reports records (records_out, else records_in) and "
                "handles fewer than this many per second gets a throughput finding. 0 turns the rule "
                "off."
            ),
            "version_added": "0.2.0",
            "type": "integer",
            "example": "1000",
            "default": "100",
        },
        "profile_regression_factor": {
            "description": (
                "A stage is a regression when it is slower than the median of its last "
                "profile_regression_runs runs by more than this factor AND by more than "
                "profile_regression_floor (so a 2 s stage taking 3 s is not one). At least 1."
            ),
            "version_added": "0.2.0",
            "type": "float",
            "example": "1.5",
            "default": "1.25",
        },
        "profile_regression_floor": {
            "description": (
                "The absolute part of the regression rule: a stage must be slower than the median of "
                "its last runs by more than this duration (30s, 1m, 5m …; 0 leaves only the factor)."
            ),
            "version_added": "0.2.0",
            "type": "string",
            "example": "5m",
            "default": "60s",
        },
        "profile_regression_runs": {
            "description": (
                "How many of a stage's last successful runs make its median for the regression rule. "
                "A stage with fewer recorded runs is not judged."
            ),
            "version_added": "0.2.0",
            "type": "integer",
            "example": "5",
            "default": "3",
        },
    }
)


def _conf() -> Any:
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # pragma: no cover - Airflow without the task SDK
        from airflow.configuration import conf
    return conf


def get(option: str, *, load_airflow: bool = True) -> str:
    """Read one ``[etlops]`` option as text, falling back to the declared default.

    Airflow's parser reads ``airflow.cfg``, ``AIRFLOW__ETLOPS__<OPTION>`` and, for sensitive
    options, the ``_CMD`` / ``_SECRET`` variants. With ``load_airflow=False`` and Airflow not
    imported yet (plain Python, e.g. profiling outside a task), only the environment variable
    and the default are read: importing Airflow's configuration costs most of a second.
    """
    spec = OPTIONS[option]
    default = spec["default"]
    if not load_airflow and "airflow" not in sys.modules:
        env = os.environ.get(f"AIRFLOW__ETLOPS__{option.upper()}")
        return env if env is not None else default
    try:
        value = _conf().get(SECTION, option, fallback=default)
    except Exception as exc:
        if spec.get("sensitive"):
            # A failing _CMD or secret backend must not silently fall back to another store.
            raise ConfigError(option, "(sensitive)", f"could not be read: {type(exc).__name__}") from None
        env = os.environ.get(f"AIRFLOW__ETLOPS__{option.upper()}")
        value = env if env is not None else default
    return str(value) if value is not None else default


def get_bool(option: str, *, load_airflow: bool = True) -> bool:
    raw = get(option, load_airflow=load_airflow).strip().lower()
    if raw in ("true", "t", "1", "yes", "y", "on"):
        return True
    if raw in ("false", "f", "0", "no", "n", "off", ""):
        return False
    raise ConfigError(option, raw, "expected a boolean (True or False)")


def get_int(option: str, minimum: int = 0, *, load_airflow: bool = True) -> int:
    raw = get(option, load_airflow=load_airflow).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(option, raw, "expected a whole number") from None
    if value < minimum:
        raise ConfigError(option, raw, f"must be at least {minimum}")
    return value


def get_duration(option: str, *, allow_zero: bool = False, load_airflow: bool = True) -> float:
    """A duration option (``30s``, ``15m``, ``1h``, ``2d`` or a number of seconds) in seconds."""
    from etlops_airflow.core.durations import parse_duration

    raw = get(option, load_airflow=load_airflow).strip()
    value: object = raw
    try:
        value = float(raw)  # plain seconds, e.g. 0 or 90
    except ValueError:
        pass
    return parse_duration(value, lambda reason: ConfigError(option, raw, reason), allow_zero=allow_zero)


def get_float(option: str, minimum: float = 0.0, *, load_airflow: bool = True) -> float:
    raw = get(option, load_airflow=load_airflow).strip()
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(option, raw, "expected a number") from None
    if not math.isfinite(value):
        raise ConfigError(option, raw, "expected a finite number")
    if not value >= minimum:
        raise ConfigError(option, raw, f"must be at least {minimum:g}")
    return value


_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


def get_schedule(option: str) -> str:
    """A cron schedule option (five fields or a preset such as ``@hourly``), checked."""
    from croniter import croniter

    raw = get(option).strip()
    if not croniter.is_valid(_PRESETS.get(raw, raw)):
        raise ConfigError(option, raw, "expected a cron expression (five fields) or @hourly/@daily/@weekly")
    return raw


def schedule_period_s(schedule: str) -> float:
    """Seconds between two runs of a valid cron schedule (the first two after 2024-01-01)."""
    from datetime import datetime

    from croniter import croniter

    runs = croniter(_PRESETS.get(schedule, schedule), datetime(2024, 1, 1))
    first = runs.get_next(datetime)
    return float((runs.get_next(datetime) - first).total_seconds())


def get_list(option: str) -> list[str]:
    """A comma-separated option as a list (empty items dropped)."""
    return [item.strip() for item in get(option).split(",") if item.strip()]


def migration_backup_dir() -> str:
    return get("migration_backup_dir").strip() or os.path.join(airflow_home(), "etlops_migration_backups")


def maintenance_lock_dir() -> str:
    return get("maintenance_lock_dir").strip() or os.path.join(airflow_home(), "etlops_locks")


def airflow_home() -> str:
    """Absolute, so every process finds the same store whatever its working directory."""
    home = os.environ.get("AIRFLOW_HOME")
    if not home:
        try:
            home = _conf().get("core", "airflow_home", fallback=None)
        except Exception:
            home = None
    return os.path.abspath(os.path.expanduser(home or "~/airflow"))
