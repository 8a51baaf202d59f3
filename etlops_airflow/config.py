"""The ``[etlops]`` configuration section, declared once and read the Airflow way.

``OPTIONS`` feeds the provider info (so ``airflow config list --section etlops`` documents
every option) and gives the fallbacks used when reading. Values come from ``airflow.cfg`` or
``AIRFLOW__ETLOPS__<OPTION>``; options declared ``sensitive`` also accept the ``_CMD`` and
``_SECRET`` variants and are hidden by ``airflow config list``.

This module only reads options. Resolving them into a store is ``etlops_airflow.runtime``.
"""

from __future__ import annotations

import os
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


def _conf() -> Any:
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # pragma: no cover - Airflow without the task SDK
        from airflow.configuration import conf
    return conf


def get(option: str) -> str:
    """Read one ``[etlops]`` option as text, falling back to the declared default.

    Airflow's parser reads ``airflow.cfg``, ``AIRFLOW__ETLOPS__<OPTION>`` and, for sensitive
    options, the ``_CMD`` / ``_SECRET`` variants.
    """
    spec = OPTIONS[option]
    default = spec["default"]
    try:
        value = _conf().get(SECTION, option, fallback=default)
    except Exception as exc:
        if spec.get("sensitive"):
            # A failing _CMD or secret backend must not silently fall back to another store.
            raise ConfigError(option, "(sensitive)", f"could not be read: {type(exc).__name__}") from None
        env = os.environ.get(f"AIRFLOW__ETLOPS__{option.upper()}")
        value = env if env is not None else default
    return str(value) if value is not None else default


def get_bool(option: str) -> bool:
    raw = get(option).strip().lower()
    if raw in ("true", "t", "1", "yes", "y", "on"):
        return True
    if raw in ("false", "f", "0", "no", "n", "off", ""):
        return False
    raise ConfigError(option, raw, "expected a boolean (True or False)")


def get_int(option: str, minimum: int = 0) -> int:
    raw = get(option).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(option, raw, "expected a whole number") from None
    if value < minimum:
        raise ConfigError(option, raw, f"must be at least {minimum}")
    return value


def get_duration(option: str, *, allow_zero: bool = False) -> float:
    """A duration option (``30s``, ``15m``, ``1h``, ``2d`` or seconds) in seconds."""
    from etlops_airflow.core.durations import parse_duration

    raw = get(option).strip()
    return parse_duration(raw, lambda reason: ConfigError(option, raw, reason), allow_zero=allow_zero)


def airflow_home() -> str:
    """Absolute, so every process finds the same store whatever its working directory."""
    home = os.environ.get("AIRFLOW_HOME")
    if not home:
        try:
            home = _conf().get("core", "airflow_home", fallback=None)
        except Exception:
            home = None
    return os.path.abspath(os.path.expanduser(home or "~/airflow"))
