"""Pipeline migrations, the Airflow side: the public Python API.

::

    from sqlalchemy import text

    from etlops_airflow.migrations import build_migration_dag, register_transformer

    @register_transformer("fill_currency")
    def fill_currency(batch):
        table = batch.quote(batch.params["table"])
        return batch.conn.execute(
            text(f"UPDATE {table} SET currency = 'EUR' WHERE currency IS NULL")
        ).rowcount

    dag = build_migration_dag("orders_migrations", MIGRATIONS_DIR, "orders")

Importing this module is cheap (DAG files import it at parse time): the engine, SQLAlchemy
and the store load when a task or command runs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from etlops_airflow.core.migrations.registry import (
    TransformBatch,
    register_transformer,
    register_validator,
)

if TYPE_CHECKING:
    from etlops_airflow.core.migrations.loader import MigrationSet
    from etlops_airflow.core.migrations.runner import MigrationEngine
    from etlops_airflow.core.migrations.target import Target
    from etlops_airflow.operators.migrations import MigrateOperator, build_migration_dag
    from etlops_airflow.store import Store

__all__ = [
    "MigrateOperator",
    "TransformBatch",
    "build_migration_dag",
    "engine_for",
    "open_target",
    "register_transformer",
    "register_validator",
]


def __getattr__(name: str) -> Any:
    if name == "MigrateOperator":
        from etlops_airflow.operators.migrations import MigrateOperator

        return MigrateOperator
    if name == "build_migration_dag":
        from etlops_airflow.operators.migrations import build_migration_dag

        return build_migration_dag
    raise AttributeError(f"module 'etlops_airflow.migrations' has no attribute {name!r}")


def open_target(conn_id: str) -> Target:
    """The target database of an Airflow Connection (sqlite or postgres)."""
    from sqlalchemy import create_engine

    from etlops_airflow._connections import get_connection
    from etlops_airflow.core.migrations.target import Target
    from etlops_airflow.exceptions import ValidationError
    from etlops_airflow.operators.data_quality import url_for_connection

    try:
        conn: Any = get_connection(conn_id)
    except Exception as exc:
        raise ValidationError(
            "target.conn_id", conn_id, f"connection not found or unreadable: {exc}"
        ) from None
    try:
        url = url_for_connection(conn)
    except ValueError as exc:
        raise ValidationError("target.conn_id", conn_id, str(exc)) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValidationError(
            "target.conn_id",
            conn_id,
            f"is a {url.get_backend_name()} connection; migrations support sqlite and postgres",
        )
    return Target(create_engine(url), name=conn_id)


def engine_for(
    migrations: str | os.PathLike[str] | MigrationSet,
    pipeline: str,
    *,
    store: Store | None = None,
    log: Any = None,
) -> MigrationEngine:
    """A :class:`MigrationEngine` for ``pipeline`` on the configured store, opening targets
    through Airflow Connections, with ``[etlops] migration_backup_dir`` and
    ``migration_lock_ttl``."""
    from etlops_airflow import config
    from etlops_airflow.core.migrations.loader import MigrationSet, load_migrations
    from etlops_airflow.core.migrations.runner import MigrationEngine
    from etlops_airflow.runtime import get_store

    found = migrations if isinstance(migrations, MigrationSet) else load_migrations(migrations, pipeline)
    return MigrationEngine(
        store or get_store(),
        found,
        pipeline,
        target_factory=open_target,
        backup_dir=config.migration_backup_dir(),
        lock_ttl_s=config.get_duration("migration_lock_ttl"),
        log=log,
    )
