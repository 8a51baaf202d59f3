"""Example: versioned migrations of the demo pipeline ``demo_orders`` as an Airflow DAG.

The migrations live beside this file in ``etlops_migrations/`` (``orders/1.1.0.yaml``,
``orders/1.2.0.yaml``, ``scripts/notify_downstream.sh``). They work on the ``orders`` table of
the SQLite database behind the Connection ``etlops_demo_warehouse`` (``make demo`` defines it).

- ``etlops_migration_example_seed`` creates that table with 1,000 rows (once) and the
  pipeline's config document ``{"transform": {"batch_size": 500}}``.
- ``etlops_migration_example`` migrates to the ``target_version`` Param (default: the latest,
  1.2.0; trigger it with 1.0.0 to go back down). A failed step runs the ``rollback`` tasks
  and leaves the table exactly as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from etlops_airflow.migrations import (
    TransformBatch,
    build_migration_dag,
    register_transformer,
    register_validator,
)

MIGRATIONS = Path(__file__).resolve().parent / "etlops_migrations"
WAREHOUSE = "etlops_demo_warehouse"


@register_transformer("demo_fill_usd")
def demo_fill_usd(batch: TransformBatch) -> int:
    """Orders of every third customer were paid in USD: set those, one batch at a time."""
    from sqlalchemy import text

    table = batch.quote(str(batch.params["table"]))
    statement = text(
        f"UPDATE {table} SET currency = 'USD' WHERE id IN "
        f"(SELECT id FROM {table} WHERE currency = 'EUR' AND id % 3 = 0 LIMIT :size)"
    )
    return int(batch.conn.execute(statement, {"size": batch.size}).rowcount)


@register_validator("demo_orders_ok")
def demo_orders_ok(conn: Any, params: Any) -> bool | str:
    """No order has a negative amount."""
    from sqlalchemy import text

    negative = conn.execute(text("SELECT count(*) FROM orders WHERE amount < 0")).scalar_one()
    return True if negative == 0 else f"{negative} order(s) with a negative amount"


dag = build_migration_dag(
    "etlops_migration_example",
    MIGRATIONS,
    "demo_orders",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    description="Versioned migrations of the demo orders table, with rollback tasks",
)


with DAG(
    "etlops_migration_example_seed",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["etlops", "migrations", "example"],
    description="Creates the demo orders table that etlops_migration_example migrates",
) as seed_dag:

    @task
    def seed_orders() -> dict[str, int]:
        """Create ``orders`` (id, cust, amount) with 1,000 rows in the demo warehouse, once."""
        from sqlalchemy import text

        from etlops_airflow.migrations import open_target
        from etlops_airflow.runtime import get_store

        target = open_target(WAREHOUSE)
        with target.transaction() as conn:
            conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS orders "
                    "(id INTEGER PRIMARY KEY, cust TEXT NOT NULL, amount NUMERIC)"
                )
            )
            rows = conn.execute(text("SELECT count(*) FROM orders")).scalar_one()
            if rows == 0:
                conn.execute(
                    text("INSERT INTO orders (id, cust, amount) VALUES (:id, :cust, :amount)"),
                    [{"id": i, "cust": f"c{i % 50}", "amount": round(i * 1.25, 2)} for i in range(1, 1001)],
                )
                rows = 1000
        store = get_store()
        if store.migrations.config("demo_orders") is None:
            store.migrations.set_config("demo_orders", {"transform": {"batch_size": 500}})
        return {"orders": int(rows)}

    seed_orders()
