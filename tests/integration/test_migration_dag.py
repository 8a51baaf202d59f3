"""The example migration DAG under ``airflow dags test``: the upgrade succeeds; with a failing step
the rollback tasks run, the ledger says rolled_back and the table is exactly as before. Also the
``airflow etlops migrations`` commands on the same set-up, and parse-time errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from etlops_airflow.store import Store

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = "etlops_migration_example"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _airflow(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env={**os.environ, **env},
        cwd=os.environ["AIRFLOW_HOME"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _snapshot(db: Path) -> tuple[list[Any], str]:
    """The table's reflected schema (columns in order, indexes, foreign keys) and a hash of
    every row in id order."""
    conn = sqlite3.connect(db)
    try:
        schema: list[Any] = [tuple(row) for row in conn.execute("PRAGMA table_xinfo(orders)")]
        for index in sorted(conn.execute("PRAGMA index_list(orders)"), key=lambda r: r[1]):
            columns = [r[2] for r in conn.execute(f"PRAGMA index_info({json.dumps(index[1])})")]
            schema.append(("index", index[1], index[2], columns))
        schema += [("fk", *row) for row in conn.execute("PRAGMA foreign_key_list(orders)")]
        digest = hashlib.sha256()
        for row in conn.execute("SELECT * FROM orders ORDER BY id"):
            digest.update(repr(row).encode())
        return schema, digest.hexdigest()
    finally:
        conn.close()


def _setup(tmp_path: Path, folder: Path) -> tuple[dict[str, str], Path, str]:
    warehouse = tmp_path / "warehouse.db"
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    env = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(folder),
        "AIRFLOW__ETLOPS__STORE_URL": store_url,
        "AIRFLOW__ETLOPS__MIGRATION_BACKUP_DIR": str(tmp_path / "backups"),
        "AIRFLOW_CONN_ETLOPS_DEMO_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
    }
    seeded = _airflow(["dags", "test", f"{EXAMPLE}_seed"], env)
    assert seeded.returncode == 0, seeded.stdout[-3000:] + seeded.stderr[-3000:]
    return env, warehouse, store_url


def test_example_migration_dag_upgrades_then_goes_back_down(airflow_db: str, tmp_path: Path) -> None:
    env, warehouse, store_url = _setup(tmp_path, REPO / "dags")
    before = _snapshot(warehouse)

    up = _airflow(["dags", "test", EXAMPLE], env)
    out = up.stdout + up.stderr
    store = Store.from_url(store_url)
    runs = store.migrations.runs("demo_orders")
    assert [(r.state, r.from_version, r.to_version) for r in runs] == [("success", "1.0.0", "1.2.0")], out[
        -5000:
    ]
    assert store.migrations.version("demo_orders").version == "1.2.0"  # type: ignore[union-attr]
    assert store.migrations.config("demo_orders") == {"transform": {"batch_size": 1000}}
    conn = sqlite3.connect(warehouse)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(orders)")]
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(orders)")}
    usd = conn.execute("SELECT count(*) FROM orders WHERE currency = 'USD'").fetchone()[0]
    conn.close()
    assert columns == ["id", "customer", "amount", "currency"]
    assert {"ix_orders_customer", "ix_orders_currency"} <= indexes
    assert usd == 333  # demo_fill_usd: every third order, in batches
    log = store.migrations.steps(runs[0].id)
    steps = [(e.migration, e.index, e.state) for e in log if e.phase == "step"]
    assert steps == [("1.0.0->1.1.0", i, "success") for i in range(1, 7)] + [
        ("1.1.0->1.2.0", 1, "success"),
        ("1.1.0->1.2.0", 2, "success"),
    ]
    rename = next(e for e in log if e.phase == "step" and e.index == 2)
    assert any('RENAME COLUMN "cust" TO "customer"' in s for s in rename.sql)  # the SQL that ran
    script = next(e for e in log if e.kind == "custom_script")
    assert "demo_orders is now at version 1.1.0" in script.detail["stdout"]
    assert not [e for e in log if e.phase == "rollback"]

    down = _airflow(["dags", "test", EXAMPLE, "-c", json.dumps({"target_version": "1.0.0"})], env)
    runs = store.migrations.runs("demo_orders")
    assert runs[0].state == "success" and runs[0].direction == "down", (down.stdout + down.stderr)[-5000:]
    assert store.migrations.version("demo_orders").version == "1.0.0"  # type: ignore[union-attr]
    assert store.migrations.config("demo_orders") == {"transform": {"batch_size": 500}}
    after = _snapshot(warehouse)
    assert after[0] == before[0]  # same table and index definitions as before the upgrade
    # the data went through a type change and back: the rows are the same except USD currency,
    # which dropping the column took away again
    assert after[1] == before[1]


def test_a_failing_step_runs_the_rollback_tasks_and_leaves_the_table_as_it_was(
    airflow_db: str, tmp_path: Path
) -> None:
    folder = tmp_path / "dags"
    shutil.copytree(REPO / "dags" / "etlops_migrations", folder / "etlops_migrations")
    shutil.copy(REPO / "dags" / f"{EXAMPLE}.py", folder / f"{EXAMPLE}.py")
    failing = folder / "etlops_migrations" / "scripts" / "fail.sh"
    failing.write_text("#!/bin/sh\necho 'downstream refused the change' >&2\nexit 3\n")
    failing.chmod(0o755)
    second = folder / "etlops_migrations" / "orders" / "1.2.0.yaml"
    second.write_text(
        second.read_text().replace(
            "rollback:\n", "  - custom_script: {argv: [scripts/fail.sh]}\nrollback:\n", 1
        )
    )
    env, warehouse, store_url = _setup(tmp_path, folder)
    before = _snapshot(warehouse)

    result = _airflow(["dags", "test", EXAMPLE], env)
    out = result.stdout + result.stderr
    store = Store.from_url(store_url)
    runs = store.migrations.runs("demo_orders")
    assert len(runs) == 1 and runs[0].state == "rolled_back", out[-6000:]
    assert "downstream refused the change" in (runs[0].error or "")
    log = store.migrations.steps(runs[0].id)
    failed = [(e.migration, e.index) for e in log if e.phase == "step" and e.state == "error"]
    assert failed == [("1.1.0->1.2.0", 3)]
    rollback = [(e.migration, e.index, e.state) for e in log if e.phase == "rollback"]
    # newest migration first, each rollback step once: all of them ran (or had nothing to undo)
    assert [(m, i) for m, i, _ in rollback] == [("1.1.0->1.2.0", 1), ("1.1.0->1.2.0", 2)] + [
        ("1.0.0->1.1.0", i) for i in range(1, 5)
    ]
    assert {s for _, _, s in rollback} <= {"success", "skipped"}
    undone = {(e.migration, e.index) for e in log if e.phase == "step" and e.state == "rolled_back"}
    assert ("1.0.0->1.1.0", 2) in undone
    assert _snapshot(warehouse) == before
    assert store.migrations.config("demo_orders") == {"transform": {"batch_size": 500}}
    assert store.migrations.version("demo_orders") is None  # still at the start version
    assert store.locks.holder("migration:demo_orders") is None  # the teardown released it


def test_migrations_cli_plan_apply_status_and_a_changed_file(airflow_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    shutil.copytree(REPO / "dags" / "etlops_migrations", folder / "etlops_migrations")
    shutil.copy(REPO / "dags" / f"{EXAMPLE}.py", folder / f"{EXAMPLE}.py")
    env, warehouse, store_url = _setup(tmp_path, folder)
    # The CLI imports the module that registers the transformer and validator.
    migrations = str(folder / "etlops_migrations")
    env = {
        **env,
        "PYTHONPATH": f"{folder}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "AIRFLOW__ETLOPS__MIGRATION_MODULES": EXAMPLE,
    }

    plan = _airflow(["etlops", "migrations", "plan", "demo_orders", "-d", migrations, "-o", "json"], env)
    assert plan.returncode == 0, plan.stderr[-3000:]
    data = json.loads(plan.stdout.strip().splitlines()[-1])
    assert (data["from_version"], data["to_version"], data["direction"]) == ("1.0.0", "1.2.0", "up")
    rename = next(s for s in data["steps"] if s["description"] == "orders: rename column cust to customer")
    assert rename["sql"] == ['ALTER TABLE "orders" RENAME COLUMN "cust" TO "customer"']
    assert [column[1] for column in _snapshot(warehouse)[0]] == ["id", "cust", "amount"]  # nothing ran

    applied = _airflow(
        ["etlops", "migrations", "apply", "demo_orders", "-d", migrations, "--target", "1.1.0"],
        env,
    )
    assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr[-3000:]
    assert "1.0.0 -> 1.1.0: success" in applied.stdout

    (folder / "etlops_migrations" / "orders" / "1.1.0.yaml").write_text(
        (folder / "etlops_migrations" / "orders" / "1.1.0.yaml")
        .read_text()
        .replace("backfill it", "backfill it (edited)")
    )
    status = _airflow(["etlops", "migrations", "status", "demo_orders", "-d", migrations], env)
    assert "CHANGED: 1.0.0->1.1.0" in status.stdout, status.stdout + status.stderr[-2000:]
    refused = _airflow(["etlops", "migrations", "apply", "demo_orders", "-d", migrations], env)
    assert refused.returncode != 0 and "repair" in refused.stderr, refused.stderr[-2000:]
    repaired = _airflow(["etlops", "migrations", "repair", "demo_orders", "-d", migrations], env)
    assert "accepted the current file of 1.0.0->1.1.0" in repaired.stdout, repaired.stderr[-2000:]
    status = _airflow(["etlops", "migrations", "status", "demo_orders", "-d", migrations, "-o", "json"], env)
    data = json.loads(status.stdout.strip().splitlines()[-1])
    assert (
        data["changed"] == [] and data["current_version"] == "1.1.0" and data["pending"] == ["1.1.0->1.2.0"]
    )
    assert Store.from_url(store_url).migrations.version("demo_orders").version == "1.1.0"  # type: ignore[union-attr]


def test_a_broken_migration_file_is_a_dag_import_error_naming_file_step_and_field(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    folder = tmp_path / "dags"
    shutil.copytree(REPO / "dags" / "etlops_migrations", folder / "etlops_migrations")
    shutil.copy(REPO / "dags" / f"{EXAMPLE}.py", folder / f"{EXAMPLE}.py")
    first = folder / "etlops_migrations" / "orders" / "1.1.0.yaml"
    first.write_text(
        first.read_text().replace('type: "varchar(3)"', 'type: "varchar(3); DROP TABLE orders"', 1)
    )
    bag = DagBag(dag_folder=str(folder))
    errors = "\n".join(bag.import_errors.values())
    assert "orders/1.1.0.yaml" in errors
    assert "step 3 (schema_change)" in errors
    assert "schema_change.add_column.type" in errors and "DROP TABLE" in errors


OPERATOR_DAG = """
from pathlib import Path

import pendulum
from airflow.sdk import DAG

from etlops_airflow.migrations import MigrateOperator, register_transformer, register_validator


@register_transformer("demo_fill_usd")
def demo_fill_usd(batch):
    return 0  # nothing to fill in this DAG's runs


@register_validator("demo_orders_ok")
def demo_orders_ok(conn, params):
    return True


with DAG("migrate_in_one_task", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    MigrateOperator(
        task_id="migrate",
        migrations_dir=Path(__file__).parent / "etlops_migrations",
        pipeline="demo_orders",
        target_version="{{ params.get('to') or '' }}",  # empty: the latest
    )
"""


def test_migrate_operator_runs_the_whole_path_in_one_task_and_rolls_back_in_it(
    airflow_db: str, tmp_path: Path
) -> None:
    from tests.fixtures.airflow import run_dag

    folder = tmp_path / "dags"
    shutil.copytree(REPO / "dags" / "etlops_migrations", folder / "etlops_migrations")
    shutil.copy(REPO / "dags" / f"{EXAMPLE}.py", folder / f"{EXAMPLE}.py")
    (folder / "migrate_in_one_task.py").write_text(OPERATOR_DAG)
    env, warehouse, store_url = _setup(tmp_path, folder)
    before = _snapshot(warehouse)

    result = run_dag(folder, "migrate_in_one_task", env)
    store = Store.from_url(store_url)
    assert result.state == "success", result.output[-5000:]
    runs = store.migrations.runs("demo_orders")
    assert [(r.state, r.to_version, r.dag_id) for r in runs] == [("success", "1.2.0", "migrate_in_one_task")]

    # A next migration whose step names a column that does not exist: refused before anything
    # runs (every schema change is planned first), so the task fails and no run is recorded.
    next_file = folder / "etlops_migrations" / "orders" / "1.3.0.yaml"
    head = (
        "pipeline: demo_orders\nfrom_version: 1.2.0\nto_version: 1.3.0\n"
        "target: {conn_id: etlops_demo_warehouse}\n"
        "steps:\n"
        "  - schema_change: {table: orders, add_column: {name: region, type: text, default: eu}}\n"
    )
    next_file.write_text(
        head + "  - schema_change: {table: orders, rename_column: {from: no_such_column, to: x}}\n"
    )
    migrated = _snapshot(warehouse)
    assert migrated != before
    result = run_dag(folder, "migrate_in_one_task", env)
    assert result.state == "failed"
    assert "1.3.0.yaml: step 2 would fail" in result.output and "no_such_column" in result.output
    assert len(store.migrations.runs("demo_orders")) == 1

    # One whose script fails after the column was added: the task rolls back and fails.
    failing = folder / "etlops_migrations" / "scripts" / "fail.sh"
    failing.write_text("#!/bin/sh\necho 'downstream refused the change' >&2\nexit 3\n")
    failing.chmod(0o755)
    next_file.write_text(head + "  - custom_script: {argv: [scripts/fail.sh]}\n")
    result = run_dag(folder, "migrate_in_one_task", env)
    assert result.state == "failed"
    assert "downstream refused the change" in result.output and "rolled back" in result.output
    runs = store.migrations.runs("demo_orders")
    assert runs[0].state == "rolled_back" and runs[0].to_version == "1.3.0"
    assert _snapshot(warehouse) == migrated
    assert store.migrations.version("demo_orders").version == "1.2.0"  # type: ignore[union-attr]


def test_operator_and_factory_arguments_are_checked_at_parse_time(tmp_path: Path) -> None:
    from etlops_airflow.exceptions import ValidationError
    from etlops_airflow.migrations import MigrateOperator, build_migration_dag

    folder = REPO / "dags" / "etlops_migrations"
    with pytest.raises(ValidationError, match=r"MigrateOperator 'm': target_version '9.9.9'"):
        MigrateOperator(task_id="m", migrations_dir=folder, pipeline="demo_orders", target_version="9.9.9")
    with pytest.raises(ValidationError, match=r"target_version '1.x': is not a semver version"):
        MigrateOperator(task_id="m", migrations_dir=folder, pipeline="demo_orders", target_version="1.x")
    with pytest.raises(ValidationError, match=r"pipeline 'nope': has no migrations"):
        build_migration_dag("d", folder, "nope")
    with pytest.raises(
        ValidationError, match=r"build_migration_dag 'd': migrations_dir .*: is not a directory"
    ):
        build_migration_dag("d", tmp_path / "missing", "demo_orders")


def test_commands_find_a_target_connection_kept_in_the_metadata_db(airflow_db: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "kept.db"
    conn = sqlite3.connect(warehouse)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, cust TEXT)")
    conn.close()
    folder = tmp_path / "migrations" / "kept"
    folder.mkdir(parents=True)
    (folder / "1.1.0.yaml").write_text(
        "pipeline: kept\nfrom_version: 1.0.0\nto_version: 1.1.0\ntarget: {conn_id: etlops_test_kept_db}\n"
        "steps:\n  - schema_change: {table: orders, add_column: {name: region, type: text}}\n"
    )
    env = {"AIRFLOW__ETLOPS__STORE_URL": f"sqlite:///{tmp_path / 'store.db'}"}
    added = _airflow(
        [
            "connections",
            "add",
            "etlops_test_kept_db",
            "--conn-json",
            json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
        ],
        env,
    )
    assert added.returncode == 0, added.stderr[-2000:]
    try:
        plan = _airflow(["etlops", "migrations", "plan", "kept", "-d", str(tmp_path / "migrations")], env)
        assert plan.returncode == 0, plan.stderr[-2000:]
        assert 'ALTER TABLE "orders" ADD COLUMN "region" TEXT' in plan.stdout
    finally:
        _airflow(["connections", "delete", "etlops_test_kept_db"], env)
