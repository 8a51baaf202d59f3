"""DatabaseOptimizationOperator on a real SQLite file and a real PostgreSQL: the etlops store
(conn_id=None) and a database behind an Airflow Connection; table names checked against the
catalogue and quoted (an injection attempt is refused and its victim survives), sizes before
and after, lock_timeout, a failing quick_check, and the run recorded with its metrics."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from etlops_airflow.exceptions import ValidationError
from etlops_airflow.operators.maintenance.base import MaintenanceFailed
from etlops_airflow.operators.maintenance.database import DatabaseOptimizationOperator
from etlops_airflow.runtime import get_store
from etlops_airflow.store import Store

INJECTION = 'x"; DROP TABLE y; --'
ODD = 'odd "name"; --'  # a real table whose name needs quoting


@dataclass
class Target:
    dialect: str
    engine: sa.Engine
    url: str

    def count(self, table: str) -> int:
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one())


def _load(engine: sa.Engine) -> None:
    """``orders`` (indexed, 20,000 rows of which 15,000 are then deleted: free space), the victim
    ``y`` and a table with an odd name."""
    meta = sa.MetaData()
    orders = sa.Table(
        "orders",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("note", sa.String(200)),
        sa.Index("ix_orders_note", "note"),
    )
    victim = sa.Table("y", meta, sa.Column("x", sa.Integer))
    odd = sa.Table(ODD, meta, sa.Column("x", sa.Integer))
    meta.create_all(engine)
    with engine.begin() as c:
        c.execute(orders.insert(), [{"id": i, "note": f"note {i:06d} " + "x" * 100} for i in range(20_000)])
        c.execute(orders.delete().where(orders.c.id >= 5000))
        c.execute(victim.insert(), [{"x": 1}, {"x": 2}])
        c.execute(odd.insert(), [{"x": 1}])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> Iterator[Target]:
    """A database behind ``AIRFLOW_CONN_WAREHOUSE``; the etlops store in a SQLite file."""
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    if request.param == "sqlite":
        path = tmp_path / "warehouse.db"
        url = f"sqlite:///{path}"
        conn: dict[str, Any] = {"conn_type": "sqlite", "host": str(path)}
    else:
        server = request.getfixturevalue("postgres_server")
        name = f"opt_{request.node.name.split('[')[0][-40:]}".lower()
        url = server.create_database(name)
        conn = {"conn_type": "postgres", "host": server.host, "port": server.port, "login": server.user}
        conn["schema"] = name
    engine = sa.create_engine(url)
    _load(engine)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps(conn))
    yield Target(request.param, engine, url)
    engine.dispose()


def _op(tmp_path: Path, **kwargs: Any) -> DatabaseOptimizationOperator:
    args: dict[str, Any] = {
        "task_id": "optimize",
        "conn_id": "warehouse",
        "lock_dir": str(tmp_path / "locks"),
    }
    args.update(kwargs)
    return DatabaseOptimizationOperator(**args)


def test_optimizes_the_tables_of_a_connection(target: Target, tmp_path: Path) -> None:
    summary = _op(tmp_path, tables=["orders", ODD], reindex=True).execute({})
    assert summary["errors"] == [] and summary["looked_at"] == 2 and summary["changed"] == 2
    (stored,) = get_store().maintenance.runs("db_optimization")
    details = stored.run.details
    orders = details["tables"]["orders"]
    assert orders["ok"] and details["tables"][ODD]["ok"]
    if target.dialect == "postgresql":
        assert orders["statements"] == ["VACUUM (ANALYZE) orders", "REINDEX TABLE CONCURRENTLY orders"]
        assert details["tables"][ODD]["statements"][0] == 'VACUUM (ANALYZE) "odd ""name""; --"'
        assert details["reindex_concurrently"] is True
        assert orders["after_bytes"] <= orders["before_bytes"]
    else:
        assert orders["statements"] == ["REINDEX orders", "ANALYZE orders", "VACUUM"]
        assert details["quick_check"] == ["ok"]
        assert orders["after_bytes"] < orders["before_bytes"]  # VACUUM gave back the deleted rows' pages
        assert details["size_after_bytes"] < details["size_before_bytes"]
        assert summary["freed_bytes"] == details["size_before_bytes"] - details["size_after_bytes"] > 0
    assert summary["freed_bytes"] == stored.run.freed_bytes >= 0
    assert target.count("orders") == 5000 and target.count(ODD) == 1
    freed = get_store().metrics.aggregate(
        "maintenance_freed_bytes", fn="last", labels={"task": "db_optimization"}, window=600
    )
    assert freed == summary["freed_bytes"]


def test_an_injection_attempt_is_refused_and_its_victim_survives(target: Target, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"tables 'x\"; DROP TABLE y; --': no such table") as info:
        _op(tmp_path, tables=["orders", INJECTION]).execute({})
    assert "DatabaseOptimizationOperator 'optimize'" in str(info.value)
    assert target.count("y") == 2
    assert get_store().maintenance.runs("db_optimization") == []  # refused before any statement ran


def test_a_wrongly_spelt_table_is_named_with_a_suggestion(target: Target, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such table .*did you mean 'orders'"):
        _op(tmp_path, tables=["ORDERS"]).execute({})


def test_the_etlops_store_by_default(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", store.engine.url.render_as_string(hide_password=False))
    summary = _op(tmp_path, conn_id=None, analyze=True, reindex=True).execute({})
    assert summary["errors"] == []
    (stored,) = get_store().maintenance.runs("db_optimization")
    tables = stored.run.details["tables"]
    assert {"etlops_metric_points", "etlops_maintenance_runs", "etlops_metric_rollups"} <= set(tables)
    assert all(t["ok"] for t in tables.values())
    assert stored.run.target.startswith("etlops store")
    with pytest.raises(ValidationError, match="no such table"):
        _op(tmp_path, conn_id=None, tables=[INJECTION]).execute({})


def test_a_dry_run_measures_and_runs_nothing(target: Target, tmp_path: Path) -> None:
    summary = _op(tmp_path, tables=["orders"], dry_run=True).execute({})
    assert summary["dry_run"] and summary["changed"] == 0 and summary["freed_bytes"] == 0
    (stored,) = get_store().maintenance.runs("db_optimization")
    orders = stored.run.details["tables"]["orders"]
    if target.dialect == "sqlite":
        assert stored.run.details["size_after_bytes"] == stored.run.details["size_before_bytes"]
    assert orders["statements"] and orders["freed_bytes"] == 0


@pytest.mark.postgres
def test_a_locked_table_is_reported_within_lock_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, sqlite_url: str
) -> None:
    server = request.getfixturevalue("postgres_server")
    url = server.create_database("opt_locked")
    engine = sa.create_engine(url)
    _load(engine)
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    conn = {
        "conn_type": "postgres",
        "host": server.host,
        "port": server.port,
        "login": server.user,
        "schema": "opt_locked",
    }
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps(conn))
    holder = engine.connect()
    holder.begin()
    holder.exec_driver_sql("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
    try:
        began = time.monotonic()
        with pytest.raises(MaintenanceFailed, match="lock timeout"):
            _op(tmp_path, tables=["orders", "y"], lock_timeout_s=0.5).execute({})
        assert time.monotonic() - began < 10
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
    (stored,) = get_store().maintenance.runs("db_optimization")
    assert stored.run.details["tables"]["y"]["ok"] and not stored.run.details["tables"]["orders"]["ok"]
    assert "canceling statement due to lock timeout" in stored.run.errors[0]


def test_a_failing_quick_check_fails_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    """A NOT NULL column holding NULL (made by editing the schema behind SQLite's back)."""
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    path = tmp_path / "broken.db"
    raw = sqlite3.connect(path)
    raw.executescript(
        """
        CREATE TABLE t (x INTEGER);
        INSERT INTO t VALUES (NULL);
        PRAGMA writable_schema = ON;
        UPDATE sqlite_master SET sql = 'CREATE TABLE t (x INTEGER NOT NULL)' WHERE name = 't';
        PRAGMA writable_schema = OFF;
        """
    )
    raw.close()
    monkeypatch.setenv("AIRFLOW_CONN_BROKEN", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    with pytest.raises(MaintenanceFailed, match="quick_check found problems: NULL value in t.x"):
        _op(tmp_path, conn_id="broken", vacuum=False).execute({})
    (stored,) = get_store().maintenance.runs("db_optimization")
    assert not stored.run.ok and "NULL value in t.x" in stored.run.details["quick_check"][0]


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"tables": "orders"}, "tables 'orders'"),
        ({"tables": []}, "tables []"),
        ({"tables": ["orders", ""]}, "tables[1] ''"),
        ({"tables": ["a\x00b"]}, "tables[0]"),
        ({"vacuum": False, "analyze": False}, "nothing to do"),
        ({"reindex": "yes"}, "reindex 'yes'"),
        ({"conn_id": "bad id!"}, "conn_id 'bad id!'"),
        ({"lock_timeout_s": 0}, "lock_timeout_s 0"),
    ],
)
def test_checks_its_arguments_when_built(kwargs: dict[str, Any], shown: str) -> None:
    with pytest.raises(ValidationError, match="DatabaseOptimizationOperator 'optimize'") as info:
        DatabaseOptimizationOperator(task_id="optimize", **kwargs)
    assert shown in str(info.value)
