"""The migration engine against real databases (SQLite and PostgreSQL), with the example
migration of issue 9 exactly as written (tests/fixtures/migrations/orders/1.1.0.yaml).

What a user relies on, each checked with a comparison computed here (tests/fixtures/
migration_engine.py: reflected schema + ordered SHA-256 of every row), not with the engine's
own fingerprints:

- ``apply()`` brings orders to 1.1.0 and ``apply("1.0.0")`` back to exactly the original;
- a failure at any step (before it did anything, or after its work committed), in any
  validation, or inside any rollback step leaves the target and the config document exactly as
  before, the ledger ``rolled_back``, ``MigrationFailed`` raised and the lock free;
- concurrent runs in separate processes: one proceeds, the others fail fast with "locked by";
- a run SIGKILLed mid-step is refused ("locked by", then "recover") until ``recover()``, which
  brings the target back to the before state;
- a changed applied migration is refused until ``repair()``;
- hostile identifiers in migration files are refused naming the field, or round-trip exactly
  and run no extra statement.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, create_engine, event, inspect

from etlops_airflow.core.migrations import checks
from etlops_airflow.core.migrations.loader import load_migrations
from etlops_airflow.core.migrations.runner import MigrationEngine, lock_name
from etlops_airflow.exceptions import MigrationFailed, MigrationFileError, MigrationRefused
from etlops_airflow.store import Store
from tests.fixtures.migration_engine import (
    CONFIG,
    MIGRATIONS,
    PIPELINE,
    REPO,
    ROWS,
    SLEEP_ENV,
    VALIDATORS,
    child_command,
    customer,
    make_engine,
    quote,
    seed_orders,
    snapshot,
)

pytestmark = pytest.mark.integration

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
FORWARD_STEPS = range(1, 7)  # the example has six steps ...
VALIDATIONS = range(1, 6)  # ... five validations ...
ROLLBACK_STEPS = range(1, 5)  # ... and four rollback steps


@dataclass
class World:
    """A store, a target with the seeded orders table, and a private copy of the migrations."""

    backend: str
    store: Store
    store_url: str
    target: Engine
    target_url: str
    root: Path
    backup_dir: Path
    tmp: Path

    def engine(self, **kwargs: Any) -> MigrationEngine:
        return make_engine(self.store, self.target, self.root, self.backup_dir, **kwargs)

    def snapshot(self) -> dict[str, Any]:
        return snapshot(self.target)

    def config(self) -> dict[str, Any] | None:
        return self.store.migrations.config(PIPELINE)

    def lease(self) -> Any:
        return self.store.locks.holder(lock_name(PIPELINE))

    def spec(self, tag: str, **extra: Any) -> dict[str, Any]:
        """What a child process needs (tests/fixtures/migration_engine.py ``_child``)."""
        return {
            "store_url": self.store_url,
            "target_url": self.target_url,
            "root": str(self.root),
            "backup_dir": str(self.backup_dir),
            "lock_ttl_s": 30.0,
            "ready": str(self.tmp / f"ready-{tag}"),
            "go": str(self.tmp / "go"),
            **extra,
        }


def _admin(server: Any) -> Any:
    import psycopg

    return psycopg.connect(server.url().replace("+psycopg", ""), autocommit=True)


@pytest.fixture(scope="session")
def pg_store_template(postgres_server: Any) -> str:
    """An upgraded store database to copy per test (CREATE DATABASE … TEMPLATE is much faster
    than upgrading a fresh store each time)."""
    name = f"mig_store_template_{uuid.uuid4().hex[:8]}"
    store = Store.from_url(postgres_server.create_database(name))
    store.upgrade()
    store.dispose()
    return name


def _pg_databases(request: pytest.FixtureRequest) -> tuple[Any, str, str]:
    server = request.getfixturevalue("postgres_server")
    template = request.getfixturevalue("pg_store_template")
    tag = uuid.uuid4().hex[:10]
    with _admin(server) as conn:
        conn.execute(f'CREATE DATABASE "mig_store_{tag}" TEMPLATE "{template}"')
        conn.execute(f'CREATE DATABASE "mig_target_{tag}"')
    return server, server.url(f"mig_store_{tag}"), server.url(f"mig_target_{tag}")


def _drop_database(server: Any, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with _admin(server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.syspath_prepend(str(VALIDATORS))
    monkeypatch.setenv("NOTIFY_LOG", str(tmp_path / "notify.log"))
    monkeypatch.delenv(SLEEP_ENV, raising=False)
    root = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, root)
    server = None
    if request.param == "sqlite":
        store_url = f"sqlite:///{tmp_path / 'store.db'}"
        target_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    else:
        server, store_url, target_url = _pg_databases(request)
    store = Store.from_url(store_url)
    store.upgrade()
    store.migrations.set_config(PIPELINE, CONFIG)
    target = create_engine(target_url)
    seed_orders(target)
    yield World(request.param, store, store_url, target, target_url, root, tmp_path / "backups", tmp_path)
    store.dispose()
    target.dispose()
    if server is not None:
        _drop_database(server, store_url)
        _drop_database(server, target_url)


@pytest.fixture
def my_company_checks(world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    import my_company.checks  # type: ignore[import-not-found]  # tests/fixtures/my_company

    monkeypatch.setattr(my_company.checks, "REFUSE", None)
    return my_company.checks


def _assert_lock_free(world: World) -> None:
    lease = world.lease()
    assert lease is None, f"the lock is still held by {lease}"
    # and a newcomer can take it at once
    assert world.store.locks.acquire(lock_name(PIPELINE), "probe", 5.0)
    assert world.store.locks.release(lock_name(PIPELINE), "probe")


def _assert_as_before(
    world: World, before: dict[str, Any], config_before: Any, failed: MigrationFailed, injected: str
) -> None:
    """What a user checks after a failed run: the target and the config document exactly as
    before, the ledger rolled_back, the error saying why, the lock free."""
    assert failed.state == "rolled_back", str(failed)
    assert injected in str(failed)
    assert world.snapshot() == before
    assert world.config() == config_before
    runs = world.store.migrations.runs(PIPELINE)
    assert [(r.id, r.state) for r in runs] == [(failed.run_id, "rolled_back")]
    assert injected in (runs[0].error or "")
    assert world.store.migrations.version(PIPELINE) is None
    assert world.store.migrations.applied(PIPELINE) == []
    _assert_lock_free(world)
    status = world.engine().status()
    assert (status["current_version"], status["crashed_run"], status["locked_by"]) == ("1.0.0", None, None)
    # no backup left behind (files for SQLite, snapshot tables for PostgreSQL: in the snapshot)
    assert not world.backup_dir.exists() or list(world.backup_dir.iterdir()) == []


class Injected(RuntimeError):
    """The failure a test injects."""


def _inject_into_steps(monkeypatch: pytest.MonkeyPatch, phase: str, k: int, when: str) -> str:
    """Make the k-th forward step (``phase="step"``) or rollback step (``"rollback"``) of the
    run fail: ``before`` it does anything, or ``after`` its work committed."""
    original = MigrationEngine._do
    seen = {"step": 0, "rollback": 0}
    message = f"injected failure {when} {phase} {k}"

    def wrapped(self: MigrationEngine, *args: Any, undo: bool) -> Any:
        which = "rollback" if undo else "step"
        seen[which] += 1
        hit = which == phase and seen[which] == k
        if hit and when == "before":
            raise Injected(message)
        result = original(self, *args, undo=undo)
        if hit and when == "after":
            raise Injected(message)
        return result

    monkeypatch.setattr(MigrationEngine, "_do", wrapped)
    return message


# -- 1. the happy path, up and down --------------------------------------------------------------


def test_apply_brings_orders_to_1_1_0_and_back(world: World, my_company_checks: Any) -> None:
    before = world.snapshot()
    engine = world.engine()
    migration = load_migrations(world.root).migrations[0]
    status = engine.status()
    assert (status["current_version"], status["latest_version"], status["pending"]) == (
        "1.0.0",
        "1.1.0",
        ["1.0.0->1.1.0"],
    )

    run = engine.apply()

    assert run is not None
    assert (run.state, run.from_version, run.to_version, run.direction) == ("success", "1.0.0", "1.1.0", "up")
    insp = inspect(world.target)
    columns = {c["name"]: c for c in insp.get_columns("orders")}
    assert list(columns) == ["id", "customer", "amount", "currency"]
    assert str(columns["currency"]["type"]).lower().replace(" ", "") in ("varchar(3)", "charactervarying(3)")
    assert "EUR" in str(columns["currency"]["default"])
    assert [(i["name"], i["column_names"]) for i in insp.get_indexes("orders")] == [
        ("ix_orders_customer", ["customer"])
    ]
    with world.target.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, customer, currency FROM orders ORDER BY id").all()
    assert [(r[0], r[1]) for r in rows] == [(i, customer(i)) for i in range(1, ROWS + 1)]
    assert {r[2] for r in rows if r[1].startswith("us-")} == {"USD"}  # the transformer's backfill
    assert {r[2] for r in rows if not r[1].startswith("us-")} == {"EUR"}  # the column's default
    assert world.config() == {"transform": {"batch_size": 1000}}
    assert (world.tmp / "notify.log").read_text() == "orders 1.1.0\n"

    # the ledger, the step log with the SQL that ran, the applied migration and its checksum
    assert [(r.id, r.state) for r in world.store.migrations.runs(PIPELINE)] == [(run.id, "success")]
    log = world.store.migrations.steps(run.id)
    forward = [e for e in log if e.phase == "step"]
    assert [(e.index, e.kind, e.state) for e in forward] == [
        (1, "config_update", "success"),
        (2, "schema_change", "success"),
        (3, "schema_change", "success"),
        (4, "schema_change", "success"),
        (5, "data_transformation", "success"),
        (6, "custom_script", "success"),
    ]
    assert all(e.ended_at is not None and e.ended_at >= e.started_at for e in log)
    sql = {e.index: " ".join(e.sql) for e in forward}
    assert "RENAME COLUMN" in sql[2] and '"cust"' in sql[2] and '"customer"' in sql[2]
    assert "ADD COLUMN" in sql[3] and '"currency"' in sql[3] and "'EUR'" in sql[3]
    assert "CREATE INDEX" in sql[4] and '"ix_orders_customer"' in sql[4]
    assert "UPDATE" in sql[5]
    assert [(e.index, e.kind, e.state) for e in log if e.phase == "validation"] == [
        (1, "record_count", "success"),
        (2, "data_integrity", "success"),
        (3, "schema_compliance", "success"),
        (4, "performance_benchmark", "success"),
        (5, "custom_validation", "success"),
    ]
    assert [e.state for e in log if e.phase == "backup"] == ["success"]
    applied = world.store.migrations.applied(PIPELINE)
    assert [(a.key, a.checksum, a.source, a.run_id) for a in applied] == [
        ("1.0.0->1.1.0", migration.checksum, "orders/1.1.0.yaml", run.id)
    ]
    version = world.store.migrations.version(PIPELINE)
    assert version is not None and version.version == "1.1.0"
    _assert_lock_free(world)
    assert not world.backup_dir.exists() or list(world.backup_dir.iterdir()) == []
    status = engine.status()
    assert (status["current_version"], status["pending"], status["changed"]) == ("1.1.0", [], [])
    assert engine.apply() is None  # already there

    down = engine.apply("1.0.0")

    assert down is not None
    assert (down.state, down.direction, down.to_version) == ("success", "down", "1.0.0")
    assert world.snapshot() == before
    assert world.config() == CONFIG
    assert world.store.migrations.applied(PIPELINE) == []
    assert engine.status()["current_version"] == "1.0.0"
    assert [e.kind for e in world.store.migrations.steps(down.id) if e.phase == "step"] == [
        "schema_change",
        "schema_change",
        "schema_change",
        "config_update",
    ]
    _assert_lock_free(world)


def test_dry_run_shows_the_sql_and_changes_nothing(world: World) -> None:
    before = world.snapshot()
    plan, views = world.engine().dry_run()
    assert [m.key for m in plan.migrations] == ["1.0.0->1.1.0"]
    assert [(v.index, v.kind) for v in views] == [
        (1, "config_update"),
        (2, "schema_change"),
        (3, "schema_change"),
        (4, "schema_change"),
        (5, "data_transformation"),
        (6, "custom_script"),
    ]
    assert "RENAME COLUMN" in " ".join(views[1].sql)
    if world.backend == "postgresql":
        assert any("ACCESS EXCLUSIVE" in w for w in views[1].warnings)
    assert world.snapshot() == before
    assert world.config() == CONFIG
    assert world.store.migrations.runs(PIPELINE) == []


# -- 2. failures at every position leave the target as it was ---------------------------------------


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("k", FORWARD_STEPS)
def test_failure_at_step_k_leaves_the_target_as_before(
    world: World, my_company_checks: Any, monkeypatch: pytest.MonkeyPatch, k: int, when: str
) -> None:
    before, config_before = world.snapshot(), world.config()
    injected = _inject_into_steps(monkeypatch, "step", k, when)

    with pytest.raises(MigrationFailed) as failed:
        world.engine().apply()

    _assert_as_before(world, before, config_before, failed.value, injected)
    log = world.store.migrations.steps(failed.value.run_id)
    forward = {e.index: e for e in log if e.phase == "step"}
    assert sorted(forward) == list(range(1, k + 1))  # nothing ran after the failing step
    assert forward[k].state == "error" and injected in (forward[k].error or "")
    assert all(forward[i].state == "rolled_back" for i in range(1, k))
    assert [e.index for e in log if e.phase == "rollback"] == list(ROLLBACK_STEPS)
    assert [e for e in log if e.phase == "validation"] == []

    monkeypatch.undo()  # the failure is gone: the next run goes through
    monkeypatch.syspath_prepend(str(VALIDATORS))
    run = world.engine().apply()
    assert run is not None and run.state == "success"
    assert world.config() == {"transform": {"batch_size": 1000}}


@pytest.mark.parametrize("k", VALIDATIONS)
def test_failing_validation_k_leaves_the_target_as_before(
    world: World, my_company_checks: Any, monkeypatch: pytest.MonkeyPatch, k: int
) -> None:
    before, config_before = world.snapshot(), world.config()
    original = checks.check
    calls = []
    injected = f"injected failure of validation {k}"

    def check(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1].kind)
        if len(calls) == k:
            raise Injected(injected)
        return original(*args, **kwargs)

    monkeypatch.setattr(checks, "check", check)

    with pytest.raises(MigrationFailed) as failed:
        world.engine().apply()

    _assert_as_before(world, before, config_before, failed.value, injected)
    log = world.store.migrations.steps(failed.value.run_id)
    assert [e.state for e in log if e.phase == "step"] == ["rolled_back"] * 6
    validations = [(e.index, e.state) for e in log if e.phase == "validation"]
    assert validations == [(i, "error" if i == k else "success") for i in VALIDATIONS]


def test_a_validator_saying_no_rolls_back(world: World, my_company_checks: Any) -> None:
    before, config_before = world.snapshot(), world.config()
    my_company_checks.REFUSE = "orders of c1 lost their amounts"
    with pytest.raises(MigrationFailed) as failed:
        world.engine().apply()
    _assert_as_before(world, before, config_before, failed.value, "orders of c1 lost their amounts")
    assert "my_company.checks:orders_ok" in str(failed.value) or "custom_validation" in str(failed.value)


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("j", ROLLBACK_STEPS)
def test_failure_inside_rollback_step_j_restores_the_backup(
    world: World, my_company_checks: Any, monkeypatch: pytest.MonkeyPatch, j: int, when: str
) -> None:
    before, config_before = world.snapshot(), world.config()
    # every forward step has done its work when the last one fails; then rollback step j fails
    _inject_into_steps(monkeypatch, "step", 6, "after")
    original = MigrationEngine._do
    seen = []
    injected = f"injected failure {when} rollback {j}"

    def rollback_fails(self: MigrationEngine, *args: Any, undo: bool) -> Any:
        if undo:
            seen.append(1)
            if len(seen) == j and when == "before":
                raise Injected(injected)
        result = original(self, *args, undo=undo)
        if undo and len(seen) == j and when == "after":
            raise Injected(injected)
        return result

    monkeypatch.setattr(MigrationEngine, "_do", rollback_fails)

    with pytest.raises(MigrationFailed) as failed:
        world.engine().apply()

    _assert_as_before(world, before, config_before, failed.value, "injected failure after step 6")
    log = world.store.migrations.steps(failed.value.run_id)
    rollback = {e.index: e for e in log if e.phase == "rollback"}
    assert sorted(rollback) == list(range(1, j + 1))  # the later rollback steps did not run ...
    assert rollback[j].state == "error" and injected in (rollback[j].error or "")
    restore = [e for e in log if e.phase == "restore"]
    assert [e.state for e in restore] == ["success"]  # ... the backup was restored instead
    assert injected in (world.store.migrations.runs(PIPELINE)[0].error or "")


def test_failure_in_the_second_migration_of_a_plan_undoes_the_first_too(
    world: World, my_company_checks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (world.root / "orders" / "1.2.0.yaml").write_text(
        "pipeline: orders\nfrom_version: 1.1.0\nto_version: 1.2.0\ntarget: {conn_id: warehouse}\n"
        "steps:\n"
        "  - schema_change: {table: orders, add_column: {name: note, type: text}}\n"
        "  - config_update: {path: transform.batch_size, old: 1000, new: 2000}\n"
    )
    before, config_before = world.snapshot(), world.config()
    injected = _inject_into_steps(monkeypatch, "step", 8, "after")  # the second step of 1.2.0

    with pytest.raises(MigrationFailed) as failed:
        world.engine().apply()

    _assert_as_before(world, before, config_before, failed.value, injected)
    log = world.store.migrations.steps(failed.value.run_id)
    assert [(e.migration, e.index) for e in log if e.phase == "rollback"] == [
        ("1.1.0->1.2.0", 1),
        ("1.1.0->1.2.0", 2),
        *[("1.0.0->1.1.0", i) for i in ROLLBACK_STEPS],
    ]


def test_failure_right_after_the_backup_leaves_no_backup_behind(
    world: World, my_company_checks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etlops_airflow.store.migrations import MigrationsStore

    before, config_before = world.snapshot(), world.config()
    original = MigrationsStore.config
    calls: list[int] = []

    def config(self: MigrationsStore, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # the runner reads the config document right after target.backup()
            raise Injected("injected failure after the backup")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MigrationsStore, "config", config)

    with pytest.raises(MigrationFailed) as failed:
        world.engine().apply()

    _assert_as_before(world, before, config_before, failed.value, "injected failure after the backup")


def test_config_not_at_old_value_is_refused_by_compare_and_set(world: World, my_company_checks: Any) -> None:
    world.store.migrations.set_config(PIPELINE, {"transform": {"batch_size": 600}})
    before, config_before = world.snapshot(), world.config()
    with pytest.raises(MigrationFailed) as failed:
        world.engine().apply()
    _assert_as_before(world, before, config_before, failed.value, "is 600, expected 500")
    assert "compare-and-set" in str(failed.value)


def test_custom_script_past_its_timeout_is_killed_and_rolled_back(
    world: World, my_company_checks: Any
) -> None:
    script = world.root / "scripts" / "slow.sh"
    late = world.tmp / "late-write"
    # what the script does after its timeout must not happen: the run was rolled back by then
    # (a program the script runs, as a real script would run psql or python)
    script.write_text(f"#!/bin/sh\necho starting\nsh -c \"sleep 2; echo late > '{late}'\"\necho done\n")
    script.chmod(0o755)
    path = world.root / "orders" / "1.1.0.yaml"
    path.write_text(
        path.read_text().replace(
            'custom_script: {argv: [scripts/notify_downstream.sh, "1.1.0"], timeout: 5m}',
            "custom_script: {argv: [scripts/slow.sh], timeout: 1s}",
        )
    )
    before, config_before = world.snapshot(), world.config()
    started = time.monotonic()
    with pytest.raises(MigrationFailed) as failed:
        world.engine().apply()
    took = time.monotonic() - started
    _assert_as_before(world, before, config_before, failed.value, "did not finish within 1s")
    assert took < 10, f"the run took {took:.1f}s"
    time.sleep(max(0.0, 3.0 - took))
    assert not late.exists(), "the script went on running after its timeout and the rollback"


@pytest.mark.parametrize("when", ["after drop", "at the end"])
def test_rollback_that_cannot_bring_back_dropped_data_restores_the_backup(
    world: World, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """The written rollback re-adds a dropped column, but at the end of the table and empty:
    the engine sees the difference and restores the backup (on SQLite the drop is a rebuild,
    since the column is indexed)."""
    shutil.rmtree(world.root / "orders")
    (world.root / "orders").mkdir()
    (world.root / "orders" / "1.1.0.yaml").write_text(
        "pipeline: orders\nfrom_version: 1.0.0\nto_version: 1.1.0\ntarget: {conn_id: warehouse}\n"
        "steps:\n"
        "  - schema_change: {table: orders, add_index: {name: ix_orders_amount, columns: [amount]}}\n"
        "  - schema_change: {table: orders, drop_column: {name: amount}}\n"
        "  - schema_change: {table: orders, add_column: {name: note, type: text, default: x}}\n"
        "rollback:\n"
        "  - schema_change: {table: orders, drop_column: {name: note}}\n"
        "  - schema_change: {table: orders, add_column: {name: amount, type: numeric}}\n"
        "  - schema_change: {table: orders, drop_index: {name: ix_orders_amount}}\n"
    )
    before, config_before = world.snapshot(), world.config()
    injected = _inject_into_steps(monkeypatch, "step", 2 if when == "after drop" else 3, "after")

    with pytest.raises(MigrationFailed) as failed:
        world.engine().apply()

    _assert_as_before(world, before, config_before, failed.value, injected)
    log = world.store.migrations.steps(failed.value.run_id)
    assert [e.state for e in log if e.phase == "restore"] == ["success"]
    with world.target.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM orders WHERE amount IS NULL").scalar_one() == 0


def _at_1_1_0(world: World) -> MigrationEngine:
    engine = world.engine()
    run = engine.apply()
    assert run is not None and run.state == "success"
    return engine


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("k", ROLLBACK_STEPS)
def test_failure_of_a_downward_run_restores_the_state_it_started_from(
    world: World, my_company_checks: Any, monkeypatch: pytest.MonkeyPatch, k: int, when: str
) -> None:
    engine = _at_1_1_0(world)
    before, config_before = world.snapshot(), world.config()
    # a downward run's steps are the rollback steps, run forward (undo=True in _do)
    injected = _inject_into_steps(monkeypatch, "rollback", k, when)

    with pytest.raises(MigrationFailed) as failed:
        engine.apply("1.0.0")

    assert failed.value.state == "rolled_back", str(failed.value)
    assert injected in str(failed.value)
    assert world.snapshot() == before
    assert world.config() == config_before
    assert [r.state for r in world.store.migrations.runs(PIPELINE)] == ["rolled_back", "success"]
    version = world.store.migrations.version(PIPELINE)
    assert version is not None and version.version == "1.1.0"
    assert [a.key for a in world.store.migrations.applied(PIPELINE)] == ["1.0.0->1.1.0"]
    _assert_lock_free(world)
    monkeypatch.undo()
    monkeypatch.syspath_prepend(str(VALIDATORS))
    down = world.engine().apply("1.0.0")
    assert down is not None and down.state == "success"


def test_the_lease_is_renewed_while_a_long_step_runs(
    world: World, my_company_checks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ttl, pause = 1.0, 2.5
    monkeypatch.setenv(SLEEP_ENV, str(pause))
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["run"] = world.engine(lock_ttl_s=ttl).apply()
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    import threading

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not world.store.migrations.runs(PIPELINE, states=["running"]):
        assert time.monotonic() < deadline and thread.is_alive(), outcome
        time.sleep(0.02)
    time.sleep(ttl * 1.8)  # past the first lease: it lives only if the heartbeat renewed it
    with pytest.raises(MigrationRefused, match="locked by"):
        world.engine(lock_ttl_s=ttl).apply()
    thread.join(timeout=60)
    assert "error" not in outcome, outcome
    assert outcome["run"].state == "success"
    assert [r.state for r in world.store.migrations.runs(PIPELINE)] == ["success"]


# -- 3. concurrent runs ------------------------------------------------------------------------------


def _results(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        lines = [line for line in out.splitlines() if line.startswith("RESULT=")]
        assert lines, f"exit {proc.returncode}\n{out[-2000:]}\n{err[-3000:]}"
        results.append(json.loads(lines[-1].removeprefix("RESULT=")))
    return results


def _start_children(
    world: World, specs: list[dict[str, Any]], env: dict[str, str]
) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen(
            child_command(spec), cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for spec in specs
    ]
    deadline = time.monotonic() + 90
    while not all(Path(spec["ready"]).exists() for spec in specs):
        for proc in procs:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"a child exited early ({proc.returncode}):\n{out[-2000:]}\n{err[-3000:]}")
        assert time.monotonic() < deadline, "children never got ready"
        time.sleep(0.02)
    return procs


@pytest.mark.parametrize("n", [2, 8])
def test_concurrent_runs_one_proceeds_the_others_fail_fast(world: World, n: int) -> None:
    pause = 3.0
    env = {**os.environ, SLEEP_ENV: str(pause), "PYTHONPATH": str(REPO)}
    procs = _start_children(world, [world.spec(str(i)) for i in range(n)], env)
    Path(world.spec("x")["go"]).write_text("go")
    results = _results(procs)

    winners = [r for r in results if r["outcome"] == "success"]
    losers = [r for r in results if r["outcome"] != "success"]
    assert len(winners) == 1, results
    winner = winners[0]
    assert winner["state"] == "success"
    took = winner["ended"] - winner["started"]
    assert took >= pause
    for loser in losers:
        assert loser["outcome"] == "refused", loser
        assert "locked by" in loser["error"], loser
        assert f":{winner['pid']}:" in loser["error"], loser  # names the winner's process
        assert loser["ended"] - loser["started"] < min(2.0, took / 2), loser
    runs = world.store.migrations.runs(PIPELINE)
    assert [r.state for r in runs] == ["success"]
    assert world.config() == {"transform": {"batch_size": 1000}}
    version = world.store.migrations.version(PIPELINE)
    assert version is not None and version.version == "1.1.0"
    _assert_lock_free(world)


# -- 4. a run killed mid-step ------------------------------------------------------------------------


def test_sigkilled_run_is_refused_until_recover_restores_the_before_state(
    world: World, my_company_checks: Any
) -> None:
    ttl = 2.0
    before, config_before = world.snapshot(), world.config()
    env = {**os.environ, SLEEP_ENV: "60", "PYTHONPATH": str(REPO)}
    (proc,) = _start_children(world, [world.spec("killed", lock_ttl_s=ttl)], env)
    Path(world.spec("x")["go"]).write_text("go")

    # wait until the transformation step (5) runs: steps 1-4 have committed, its update is in flight
    deadline = time.monotonic() + 60
    run_id = None
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the child never reached step 5"
        running = world.store.migrations.runs(PIPELINE, states=["running"])
        if running:
            run_id = running[0].id
            log = world.store.migrations.steps(run_id)
            if any(e.phase == "step" and e.index == 5 and e.state == "started" for e in log):
                break
        time.sleep(0.05)
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert world.config() == {"transform": {"batch_size": 1000}}  # the steps before did commit

    engine = world.engine(lock_ttl_s=ttl)
    # while the dead run's lease lives: locked
    with pytest.raises(MigrationRefused, match="locked by"):
        engine.apply()
    with pytest.raises(MigrationRefused, match="still holds its lock"):
        engine.recover()
    # once it expired: refused, naming recover
    lease = world.lease()
    assert lease is not None
    time.sleep(max(0.0, lease.expires_at - time.time()) + 0.2)
    with pytest.raises(MigrationRefused) as refused:
        engine.apply()
    assert "recover" in str(refused.value) and run_id in str(refused.value)
    status = engine.status()
    assert status["crashed_run"] == run_id
    assert [r.state for r in world.store.migrations.runs(PIPELINE)] == ["running"]

    recovered = engine.recover()

    assert recovered is not None and recovered.id == run_id
    assert recovered.state == "recovered"
    assert world.snapshot() == before
    assert world.config() == config_before
    _assert_lock_free(world)
    assert engine.status()["crashed_run"] is None
    assert engine.recover() is None  # nothing left to recover

    run = engine.apply()
    assert run is not None and run.state == "success"
    assert [r.state for r in world.store.migrations.runs(PIPELINE)] == ["success", "recovered"]


def _run_killed(world: World, die_at: str, ttl: float) -> str:
    """A child process that SIGKILLs itself at ``die_at``; returns its run id once it is dead."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    (proc,) = _start_children(world, [world.spec("killed", lock_ttl_s=ttl, die_at=die_at)], env)
    Path(world.spec("x")["go"]).write_text("go")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (out[-2000:], err[-3000:])
    (running,) = world.store.migrations.runs(PIPELINE, states=["running"])
    return running.id


@pytest.mark.parametrize("k", [1, 4])
def test_killed_after_a_step_committed_recover_restores_the_before_state(
    world: World, my_company_checks: Any, k: int
) -> None:
    ttl = 1.0
    before, config_before = world.snapshot(), world.config()
    run_id = _run_killed(world, f"after step {k}", ttl)
    assert world.snapshot() != before or world.config() != config_before  # step k's work is there
    engine = world.engine(lock_ttl_s=ttl)
    lease = world.lease()
    assert lease is not None
    time.sleep(max(0.0, lease.expires_at - time.time()) + 0.1)
    with pytest.raises(MigrationRefused, match="recover"):
        engine.apply()

    recovered = engine.recover()

    assert recovered is not None and (recovered.id, recovered.state) == (run_id, "recovered")
    assert world.snapshot() == before
    assert world.config() == config_before
    assert world.store.migrations.version(PIPELINE) is None
    _assert_lock_free(world)
    run = engine.apply()
    assert run is not None and run.state == "success"


def test_killed_after_every_step_and_validation_recover_records_the_run(
    world: World, my_company_checks: Any
) -> None:
    ttl = 1.0
    run_id = _run_killed(world, "before complete", ttl)
    # the dead run's backup is still there (a file, or snapshot tables in etlops_backup)
    after = {name: table for name, table in world.snapshot().items() if not name.startswith("etlops_backup.")}
    engine = world.engine(lock_ttl_s=ttl)
    lease = world.lease()
    assert lease is not None
    time.sleep(max(0.0, lease.expires_at - time.time()) + 0.1)

    recovered = engine.recover()

    assert recovered is not None and (recovered.id, recovered.state) == (run_id, "success")
    assert world.snapshot() == after  # finished forward: nothing undone, the backup dropped
    assert not world.backup_dir.exists() or list(world.backup_dir.iterdir()) == []
    assert world.config() == {"transform": {"batch_size": 1000}}
    version = world.store.migrations.version(PIPELINE)
    assert version is not None and version.version == "1.1.0"
    assert [a.key for a in world.store.migrations.applied(PIPELINE)] == ["1.0.0->1.1.0"]
    _assert_lock_free(world)
    assert engine.apply() is None


# -- 5. a changed applied migration ------------------------------------------------------------------


def test_changed_applied_migration_is_refused_until_repair(world: World, my_company_checks: Any) -> None:
    first = world.engine().apply()
    assert first is not None and first.state == "success"
    path = world.root / "orders" / "1.1.0.yaml"

    # comments and layout are not a change
    path.write_text("# reviewed by ops\n" + path.read_text())
    assert world.engine().status()["changed"] == []

    path.write_text(path.read_text().replace("backfill it", "backfill it (EUR unless US)"))
    engine = world.engine()
    changed = engine.status()["changed"]
    assert len(changed) == 1 and "1.0.0->1.1.0" in changed[0] and "changed since it was applied" in changed[0]
    with pytest.raises(MigrationRefused) as refused:
        engine.apply("1.0.0")
    assert "repair" in str(refused.value) and "1.0.0->1.1.0" in str(refused.value)
    assert [r.id for r in world.store.migrations.runs(PIPELINE)] == [first.id]  # no run recorded
    _assert_lock_free(world)

    assert engine.repair() == ["1.0.0->1.1.0"]

    assert engine.status()["changed"] == []
    (applied,) = world.store.migrations.applied(PIPELINE)
    assert applied.checksum == load_migrations(world.root).migrations[0].checksum
    assert applied.repaired_at is not None
    assert engine.repair() == []  # nothing more to accept
    down = engine.apply("1.0.0")
    assert down is not None and down.state == "success"


# -- 6. identifier fuzzing ---------------------------------------------------------------------------

ACCEPTED = [
    'double"quote',
    "single'quote",
    "semi;colon",
    "back`tick",
    "ünïcødé_名前",
    "with space",
    'x"; DROP TABLE sentinel; --',
    "DROP TABLE sentinel; --",
    "'); DROP TABLE sentinel; --",
    "MixedCase",
    "pct%s",
    "%(x)s",
    "col:param",
    "q?",
    "back\\slash",
    "new\nline",
    "b" * 63,
    "é" * 31 + "x",  # 63 bytes
]
REJECTED = ["a" * 64, "é" * 32, "名" * 22, "", "nul\x00byte"]


def _fuzz_doc(
    table: str, column: str, index: str, renamed: str, default: str | None = None
) -> dict[str, Any]:
    default = column if default is None else default
    return {
        "pipeline": "fuzz",
        "from_version": "1.0.0",
        "to_version": "1.1.0",
        "description": "hostile names",
        "target": {"conn_id": "warehouse"},
        "steps": [
            {
                "schema_change": {
                    "table": table,
                    "add_column": {"name": column, "type": "text", "default": default},
                }
            },
            {"schema_change": {"table": table, "add_index": {"name": index, "columns": [column]}}},
            {"schema_change": {"table": table, "rename_column": {"from": "v", "to": renamed}}},
        ],
    }


def _write_fuzz(root: Path, doc: dict[str, Any]) -> None:
    shutil.rmtree(root, ignore_errors=True)
    (root / "fuzz").mkdir(parents=True)
    (root / "fuzz" / "1.1.0.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


def _unquoted(statement: str) -> str:
    """``statement`` with its quoted identifiers and string literals taken out: what is left is
    what the database reads as SQL keywords."""
    out = []
    i = 0
    while i < len(statement):
        ch = statement[i]
        if ch in "\"'" or (ch in "eE" and statement[i + 1 : i + 2] == "'"):
            escaped = ch in "eE"
            quote = "'" if escaped else ch
            i += 2 if escaped else 1
            while i < len(statement):
                if escaped and statement[i] == "\\":
                    i += 2
                    continue
                if statement[i] == quote:
                    if statement[i + 1 : i + 2] == quote:
                        i += 2
                        continue
                    break
                i += 1
            i += 1
            out.append(" ")
            continue
        out.append(ch)
        i += 1
    return "".join(out)


@pytest.mark.parametrize("name", ACCEPTED, ids=lambda n: repr(n)[1:-1][:24])
def test_hostile_identifier_round_trips_exactly(world: World, name: str) -> None:
    index, renamed = "i" + name[1:], "r" + name[1:]
    quoted = quote(name)
    with world.target.begin() as conn:
        conn.execution_options(no_parameters=True).exec_driver_sql(
            f"CREATE TABLE {quoted} (id integer primary key, v text)"
        )
        conn.execution_options(no_parameters=True).exec_driver_sql(
            f"INSERT INTO {quoted} (id, v) VALUES (1, 'one'), (2, 'two')"
        )
    before = world.snapshot()
    assert f"{'main' if world.backend == 'sqlite' else 'public'}.{name}" in before
    _write_fuzz(world.root, _fuzz_doc(name, name, index, renamed))
    statements: list[str] = []
    event.listen(world.target, "before_cursor_execute", lambda *a: statements.append(a[2]))

    engine = world.engine(pipeline="fuzz")
    run = engine.apply()

    assert run is not None and run.state == "success"
    insp = inspect(world.target)
    assert name in insp.get_table_names()
    assert [c["name"] for c in insp.get_columns(name)] == ["id", renamed, name]
    assert [(i["name"], i["column_names"]) for i in insp.get_indexes(name)] == [(index, [name])]
    with world.target.connect() as conn:
        values = conn.execution_options(no_parameters=True).exec_driver_sql(
            f"SELECT {quoted} FROM {quoted} ORDER BY id"
        )
        assert [v[0] for v in values] == [name, name]  # the default literal round-trips too
    assert "sentinel" in {t.split(".", 1)[1] for t in world.snapshot()}
    for statement in statements:
        bare = _unquoted(statement).lower()
        assert "sentinel" not in bare, statement
        if "sentinel" in statement.lower() or name in statement:
            assert ";" not in bare and "--" not in bare, statement

    down = engine.apply("1.0.0")
    assert down is not None and down.state == "success"
    assert world.snapshot() == before


@pytest.mark.parametrize("name", REJECTED, ids=lambda n: repr(n)[1:-1][:12] + f"-{len(n.encode())}b")
@pytest.mark.parametrize(
    "field",
    ["schema_change.table", "schema_change.add_column.name", "schema_change.add_index.name"],
)
def test_hostile_identifier_is_rejected_naming_the_field(tmp_path: Path, name: str, field: str) -> None:
    """Refused when the folder loads, before any database is touched (so the same on both)."""
    doc = _fuzz_doc(
        name if field == "schema_change.table" else "orders",
        name if field == "schema_change.add_column.name" else "note",
        name if field == "schema_change.add_index.name" else "ix_note",
        "vv",
        default="plain",
    )
    _write_fuzz(tmp_path / "migrations", doc)
    with pytest.raises(MigrationFileError) as refused:
        load_migrations(tmp_path / "migrations")
    assert refused.value.field == field, str(refused.value)
    assert field in str(refused.value) and "fuzz/1.1.0.yaml" in str(refused.value)


@pytest.mark.parametrize("name", ['x"; DROP TABLE sentinel; --', "pct%s", "col:param", "ünïcødé 名前"])
def test_transformer_quoting_round_trips_hostile_table_names(world: World, name: str) -> None:
    """A transformer written as the registry's docstring shows (``batch.quote`` in ``text()``)."""
    quoted = quote(name)
    with world.target.begin() as conn:
        conn.execution_options(no_parameters=True).exec_driver_sql(
            f"CREATE TABLE {quoted} (id integer primary key, v text)"
        )
        conn.execution_options(no_parameters=True).exec_driver_sql(
            f"INSERT INTO {quoted} (id, v) VALUES (1, 'one'), (2, 'two')"
        )
    doc = _fuzz_doc(name, "note", "ix_note", "vv")
    doc["steps"] = [{"data_transformation": {"transformer": "touch_rows", "params": {"table": name}}}]
    _write_fuzz(world.root, doc)

    run = world.engine(pipeline="fuzz").apply()

    assert run is not None and run.state == "success"
    with world.target.connect() as conn:
        values = conn.execution_options(no_parameters=True).exec_driver_sql(
            f"SELECT v FROM {quoted} ORDER BY id"
        )
        assert [v[0] for v in values] == ["one!", "two!"]
    assert "sentinel" in {t.split(".", 1)[1] for t in world.snapshot()}


def test_unknown_table_is_refused_by_the_catalogue_check(world: World) -> None:
    before = world.snapshot()
    _write_fuzz(world.root, _fuzz_doc("orders; DROP TABLE sentinel", "note", "ix_note", "vv"))
    engine = world.engine(pipeline="fuzz")
    with pytest.raises(MigrationRefused) as refused:  # checked before anything runs
        engine.apply()
    assert "step 1 would fail" in str(refused.value)
    assert "'orders; DROP TABLE sentinel': no such table" in str(refused.value)
    assert engine.store.migrations.runs("fuzz") == []
    assert world.snapshot() == before
