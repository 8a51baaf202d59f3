"""Dry runs: each step's SQL as the earlier steps leave the target, warnings, and no change at all."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect
from sqlalchemy.pool import NullPool

from etlops_airflow.core.migrations.loader import load_migrations
from etlops_airflow.core.migrations.runner import MigrationEngine
from etlops_airflow.core.migrations.target import Target
from etlops_airflow.exceptions import MigrationRefused
from etlops_airflow.store import Store

EXAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "migrations"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}", poolclass=NullPool)
    else:
        server = request.getfixturevalue("postgres_server")
        name = "dry_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:20]
        engine = create_engine(server.create_database(name), poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE orders (id integer primary key, cust text, amount numeric)")
        conn.exec_driver_sql("CREATE INDEX ix_orders_amount ON orders (amount)")
        conn.exec_driver_sql("INSERT INTO orders (id, cust, amount) VALUES (1, 'c1', 10), (2, 'c2', 20)")
    yield engine
    engine.dispose()


def _engine(tmp_path: Path, warehouse: Engine, folder: Path = EXAMPLE) -> MigrationEngine:
    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade()
    return MigrationEngine(
        store,
        load_migrations(folder),
        "orders",
        target_factory=lambda conn_id: Target(warehouse, name=conn_id),
        backup_dir=tmp_path / "backups",
    )


def _shape(engine: Engine) -> tuple[list[str], list[str], list[str]]:
    inspector = inspect(engine)
    return (
        [c["name"] for c in inspector.get_columns("orders")],
        sorted(str(i["name"]) for i in inspector.get_indexes("orders")),
        sorted(inspector.get_schema_names()) if engine.dialect.name == "postgresql" else [],
    )


def test_each_step_is_planned_on_what_the_earlier_steps_leave(tmp_path: Path, warehouse: Engine) -> None:
    engine = _engine(tmp_path, warehouse)
    before = _shape(warehouse)

    plan, views = engine.dry_run("1.1.0")

    assert [m.key for m in plan.migrations] == ["1.0.0->1.1.0"]
    by_index = {v.index: v for v in views}
    assert [v.kind for v in views] == [
        "config_update",
        "schema_change",
        "schema_change",
        "schema_change",
        "data_transformation",
        "custom_script",
    ]
    assert any('RENAME COLUMN "cust" TO "customer"' in s for s in by_index[2].sql)
    assert any('ADD COLUMN "currency"' in s and "DEFAULT 'EUR'" in s for s in by_index[3].sql)
    # step 4 indexes a column that only step 2 creates: planned after it, not refused
    assert any('CREATE INDEX "ix_orders_customer"' in s and '"customer"' in s for s in by_index[4].sql)
    # SQL names the real table, never the scratch copy it was planned on
    assert not any("etlops_dryrun" in s for v in views for s in v.sql)
    assert _shape(warehouse) == before  # nothing changed, no scratch schema left behind
    assert engine.store.migrations.runs("orders") == []
    assert engine.store.locks.holder("migration:orders") is None


def test_a_step_that_would_fail_is_named_by_file_and_step(tmp_path: Path, warehouse: Engine) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(EXAMPLE, folder)
    path = folder / "orders" / "1.1.0.yaml"
    path.write_text(path.read_text().replace("columns: [customer]}", "columns: [customr]}", 1))
    engine = _engine(tmp_path, warehouse, folder)

    with pytest.raises(MigrationRefused) as caught:
        engine.dry_run("1.1.0")

    message = str(caught.value)
    assert "1.1.0.yaml" in message and "step 4 would fail" in message and "customr" in message
    assert _shape(warehouse)[0] == ["id", "cust", "amount"]


@pytest.mark.postgres
def test_postgres_dry_run_warns_of_rewrites_and_locks(tmp_path: Path, postgres_server: object) -> None:
    server = postgres_server
    url = server.create_database("dry_pg_warnings")  # type: ignore[attr-defined]
    warehouse = create_engine(url, poolclass=NullPool)
    with warehouse.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE orders (id integer primary key, cust text, amount numeric)")
    folder = tmp_path / "migrations"
    (folder / "orders").mkdir(parents=True)
    (folder / "orders" / "2.0.0.yaml").write_text(
        "pipeline: orders\nfrom_version: 1.0.0\nto_version: 2.0.0\ntarget: {conn_id: warehouse}\n"
        "steps:\n"
        "  - schema_change: {table: orders, change_column_type: {name: amount, type: 'numeric(12,2)'}}\n"
        "rollback:\n"
        "  - schema_change: {table: orders, change_column_type: {name: amount, type: numeric}}\n"
    )
    engine = _engine(tmp_path, warehouse, folder)

    _, views = engine.dry_run()

    assert any("ALTER TABLE" in s and "TYPE NUMERIC(12,2)" in s.upper() for s in views[0].sql), views[0].sql
    warnings = " ".join(views[0].warnings).lower()
    assert "rewrite" in warnings and "lock" in warnings, views[0].warnings
    assert [c["type"].__class__.__name__ for c in inspect(warehouse).get_columns("orders")][2] == "NUMERIC"
    assert inspect(warehouse).get_columns("orders")[2]["type"].precision is None  # unchanged
    warehouse.dispose()


def test_apply_checks_every_schema_change_before_anything_runs(tmp_path: Path, warehouse: Engine) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(EXAMPLE, folder)
    path = folder / "orders" / "1.1.0.yaml"
    # the fourth step (and its rollback) names a table that does not exist: refused before
    # step 1 (a config change) runs
    text = path.read_text().replace("{table: orders, add_index", "{table: ordres, add_index", 1)
    path.write_text(text.replace("{table: orders, drop_index", "{table: ordres, drop_index", 1))
    engine = _engine(tmp_path, warehouse, folder)
    engine.store.migrations.set_config("orders", {"transform": {"batch_size": 500}})

    refused = r"1\.1\.0\.yaml: step 4 would fail: .*'ordres'.*no such table"
    with pytest.raises(MigrationRefused, match=refused):
        engine.apply("1.1.0")

    assert engine.store.migrations.runs("orders") == []  # refused, not a failed run
    assert engine.store.migrations.config("orders") == {"transform": {"batch_size": 500}}
    assert _shape(warehouse)[0] == ["id", "cust", "amount"]
    assert engine.store.locks.holder("migration:orders") is None
