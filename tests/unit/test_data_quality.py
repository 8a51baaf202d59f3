"""DataQualityCheckOperator against a real warehouse: a SQLite file and a real PostgreSQL.

The warehouse is reached as a task would reach it: an Airflow Connection from
``AIRFLOW_CONN_WAREHOUSE``. Neither the sqlite nor the postgres provider is installed here, so
the operator takes its SQLAlchemy fallback; one test plugs in a common-sql ``DbApiHook`` to
cover the hook path.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from airflow.providers.common.sql.hooks.sql import DbApiHook

from etlops_airflow import runtime
from etlops_airflow.exceptions import (
    DataQualityCheckFailed,
    EtlopsError,
    StoreError,
    ValidationError,
    WarehouseError,
)
from etlops_airflow.operators.data_quality import RATIO_METRIC, ROWS_METRIC, DataQualityCheckOperator
from etlops_airflow.runtime import get_store

CHECKS: dict[str, dict[str, Any]] = {
    "completeness": {"columns": ["customer", "amount"]},
    "uniqueness": {"columns": ["id"]},
    "validity": {"predicate": "amount >= 0"},
    "consistency": {"predicate": "shipped_at >= ordered_at"},
}


def _d(day: int | None) -> dt.date | None:
    return None if day is None else dt.date(2024, 1, day)


# id, customer, amount, ordered_at, shipped_at, created_at (days of January 2024)
ROWS = [
    (1, "a", 10, 1, 2, 1),
    (2, "b", None, 1, 1, 1),  # amount NULL: incomplete, not valid
    (3, None, 5, 3, 2, 2),  # customer NULL; shipped before ordered
    (4, "d", -1, 2, 3, 2),  # negative amount
    (4, "e", 7, 2, None, 3),  # duplicate id; never shipped (NULL: not consistent)
    (5, "f", 0, 4, 5, 3),
    (6, "g", -3, 4, 3, 3),
    (7, "h", 2, 5, 4, 3),
]
# 8 rows: 6 complete, 7 distinct ids, 5 amounts >= 0, 4 shipped on/after ordered
EXPECTED = {"completeness": 0.75, "uniqueness": 0.875, "validity": 0.625, "consistency": 0.5, "rows": 8}
# created_at >= 2024-01-03: the last 4 rows
EXPECTED_FROM_3RD = {"completeness": 1.0, "uniqueness": 1.0, "validity": 0.75, "consistency": 0.25, "rows": 4}

ODD_TABLE = 'odd "name"; --'  # a real table whose name needs quoting


@dataclass
class Warehouse:
    engine: sa.Engine
    conn: dict[str, Any]

    def count(self, table: str) -> int:
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one())


def _columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.Integer),
        sa.Column("customer", sa.String(20)),
        sa.Column("amount", sa.Integer),
        sa.Column("ordered_at", sa.Date),
        sa.Column("shipped_at", sa.Date),
        sa.Column("created_at", sa.Date),
    ]


def _load(engine: sa.Engine) -> None:
    """``orders`` (ROWS), ``empty_orders``, ODD_TABLE (the first 4 rows) and ``victim``."""
    meta = sa.MetaData()
    orders = sa.Table("orders", meta, *_columns())
    sa.Table("empty_orders", meta, *_columns())
    odd = sa.Table(ODD_TABLE, meta, *_columns())
    victim = sa.Table("victim", meta, sa.Column("x", sa.Integer))
    meta.create_all(engine)
    data = [
        dict(zip(["id", "customer", "amount"], r[:3], strict=True))
        | {"ordered_at": _d(r[3]), "shipped_at": _d(r[4]), "created_at": _d(r[5])}
        for r in ROWS
    ]
    with engine.begin() as c:
        c.execute(orders.insert(), data)
        c.execute(odd.insert(), data[:4])
        c.execute(victim.insert(), [{"x": 1}, {"x": 2}])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> Iterator[Warehouse]:
    """The test data in a fresh database, ``AIRFLOW_CONN_WAREHOUSE`` pointing at it, and the
    etlops store in a SQLite file."""
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    if request.param == "sqlite":
        path = tmp_path / "warehouse.db"
        engine = sa.create_engine(f"sqlite:///{path}")
        conn: dict[str, Any] = {"conn_type": "sqlite", "host": str(path)}
    else:
        server = request.getfixturevalue("postgres_server")
        name = f"dq_{request.node.name.split('[')[0][-40:]}".lower()
        engine = sa.create_engine(server.create_database(name))
        conn = {"conn_type": "postgres", "host": server.host, "port": server.port, "login": server.user}
        conn["schema"] = name
    _load(engine)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps(conn))
    yield Warehouse(engine, conn)
    engine.dispose()


def _op(**kwargs: Any) -> DataQualityCheckOperator:
    args: dict[str, Any] = {"task_id": "orders_quality", "conn_id": "warehouse", "table": "orders"}
    args["checks"] = CHECKS
    args.update(kwargs)
    return DataQualityCheckOperator(**args)


def _ratio(check: str, dataset: str = "orders") -> float | None:
    labels = {"dataset": dataset, "check": check, "task_id": "orders_quality"}
    value: float | None = get_store().metrics.aggregate(RATIO_METRIC, fn="last", labels=labels, window=600)
    return value


def _rows(dataset: str = "orders") -> float | None:
    labels = {"dataset": dataset, "task_id": "orders_quality"}
    value: float | None = get_store().metrics.aggregate(ROWS_METRIC, fn="last", labels=labels, window=600)
    return value


# ---------------------------------------------------------------- ratios


def test_exact_ratios_for_each_check(warehouse: Warehouse) -> None:
    summary = _op().execute({})
    assert summary == EXPECTED
    for check in CHECKS:
        assert _ratio(check) == EXPECTED[check]
    assert _rows() == 8
    # one batch, one point per ratio plus the row count, labelled with the run
    series = get_store().metrics.aggregate_by(RATIO_METRIC, fn="count", window=600)
    assert sorted(s.labels["check"] for s in series) == sorted(CHECKS)
    assert {s.labels["dag_id"] for s in series} == {"adhoc_airflow"}  # no DAG: Airflow's placeholder


def test_where_filter_is_templated(warehouse: Warehouse) -> None:
    op = _op(where="created_at >= '{{ ds }}'", dataset="orders_recent")
    op.render_template_fields({"ds": "2024-01-03"})
    assert op.execute({}) == EXPECTED_FROM_3RD
    assert _ratio("consistency", "orders_recent") == 0.25
    assert _rows("orders_recent") == 4


def test_dataset_defaults_to_the_table(warehouse: Warehouse) -> None:
    _op(checks={"validity": {"predicate": "amount >= 0 -- a trailing comment ends at its line"}}).execute({})
    assert _ratio("validity", "orders") == 0.625


def test_multi_column_uniqueness_and_checks_in_any_subset(warehouse: Warehouse) -> None:
    op = _op(checks={"uniqueness": {"columns": ["id", "customer"]}})
    assert op.execute({}) == {"uniqueness": 1.0, "rows": 8}


@pytest.mark.parametrize("table", ["empty_orders", "orders"])
def test_no_rows_gives_no_ratio(warehouse: Warehouse, table: str, capsys: pytest.CaptureFixture[str]) -> None:
    where = "created_at > '2030-01-01'" if table == "orders" else None
    op = _op(table=table, dataset="nothing", where=where, min_ratio={"completeness": 1})
    summary = op.execute({})  # neither 1.0 nor a division by zero, and min_ratio is not failed
    assert summary == {
        "completeness": None,
        "uniqueness": None,
        "validity": None,
        "consistency": None,
        "rows": 0,
    }
    assert get_store().metrics.aggregate_by(RATIO_METRIC, fn="count", window=600) == []
    assert _rows("nothing") == 0
    logged = capsys.readouterr().out  # the task logger (structlog) writes to stdout here
    assert "Dataset 'nothing': no rows" in logged and "no ratio for completeness" in logged


def test_min_ratio_failure_raises_after_writing_the_metrics(warehouse: Warehouse) -> None:
    op = _op(min_ratio={"completeness": 0.99, "validity": 0.5, "consistency": 0.6})
    with pytest.raises(DataQualityCheckFailed) as info:
        op.execute({})
    message = str(info.value)
    assert "'orders_quality'" in message and "'orders'" in message
    assert "completeness 0.75 < min 0.99" in message and "consistency 0.5 < min 0.6" in message
    assert "validity" not in message  # 0.625 >= 0.5
    assert info.value.failures == {"completeness": (0.75, 0.99), "consistency": (0.5, 0.6)}
    assert isinstance(info.value, EtlopsError)
    # the bad ratios are in the store, for alert rules to see
    assert _ratio("completeness") == 0.75 and _ratio("consistency") == 0.5 and _rows() == 8


def test_min_ratio_met_passes(warehouse: Warehouse) -> None:
    assert _op(min_ratio={"uniqueness": 0.875, "validity": 0}).execute({}) == EXPECTED


def test_failing_checks_are_reported_even_when_the_store_is_down(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", "sqlite:////nonexistent-dir/store.db")
    runtime.reset()
    with pytest.raises(DataQualityCheckFailed, match="completeness 0.75 < min 0.99") as info:
        _op(min_ratio={"completeness": 0.99}).execute({})
    assert isinstance(info.value.__cause__, StoreError)
    with pytest.raises(StoreError):  # no failing check: the store error is the task's error
        _op().execute({})


# ---------------------------------------------------------------- identifiers and user SQL


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"table": 'orders"; DROP TABLE victim; --'}, "table"),
        ({"table": "victim; DROP TABLE victim"}, "table"),
        (
            {"checks": {"completeness": {"columns": ['amount" IS NULL) OR 1=1; DROP TABLE victim; --']}}},
            "column",
        ),
        ({"checks": {"uniqueness": {"columns": ["id", "x FROM victim; DROP TABLE victim; --"]}}}, "column"),
        ({"schema": 'public"; DROP TABLE victim; --'}, "schema"),
    ],
)
def test_names_not_in_the_catalogue_are_refused(
    warehouse: Warehouse, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        _op(**kwargs).execute({})
    error = info.value
    assert error.field == field and "no such" in str(error)
    assert error.owner == "DataQualityCheckOperator 'orders_quality'"
    assert repr(error.value) in str(error) or str(error.value)[:40] in str(error)
    assert warehouse.count("victim") == 2
    assert get_store().metrics.aggregate_by(ROWS_METRIC, fn="count", window=600) == []  # nothing ran


def test_a_real_table_with_an_odd_name_is_quoted(warehouse: Warehouse) -> None:
    summary = _op(table=ODD_TABLE, dataset="odd").execute({})
    # rows 1-4: 2 complete, 4 distinct ids, 2 amounts >= 0, 3 shipped on/after ordered
    assert summary == {
        "completeness": 0.5,
        "uniqueness": 1.0,
        "validity": 0.5,
        "consistency": 0.75,
        "rows": 4,
    }
    assert warehouse.count("victim") == 2


def test_wrong_case_suggests_the_catalogue_name(warehouse: Warehouse) -> None:
    with pytest.raises(ValidationError, match="did you mean 'orders'"):
        _op(table="ORDERS").execute({})


def test_rendered_where_with_a_semicolon_is_refused(warehouse: Warehouse) -> None:
    op = _op(where="{{ params.filter }}")
    op.render_template_fields({"params": {"filter": "1=1; DROP TABLE victim"}})
    with pytest.raises(ValidationError, match="where '1=1; DROP TABLE victim': must be one SQL expression"):
        op.execute({})
    assert warehouse.count("victim") == 2


def test_bad_predicate_fails_naming_the_connection(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="conn_id 'warehouse'.*failed: .*amout") as info:
        _op(checks={"validity": {"predicate": "amout >= 0"}}).execute({})
    assert info.value.operation == "query"


def test_unknown_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NOWHERE", raising=False)
    with pytest.raises(WarehouseError, match="conn_id 'nowhere': connection not found"):
        _op(conn_id="nowhere").execute({})


@pytest.mark.parametrize(
    ("conn", "shown"),
    [
        ({"conn_type": "sqlite"}, "type 'sqlite'): cannot build a database engine: ValueError: the SQLite"),
        ({"conn_type": "mongo", "host": "db"}, "install the Airflow provider for this connection type"),
    ],
)
def test_a_connection_without_hook_or_engine_is_named(
    monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any], shown: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ELSEWHERE", json.dumps(conn))
    with pytest.raises(WarehouseError, match="conn_id 'elsewhere'") as info:
        _op(conn_id="elsewhere").execute({})
    assert shown in str(info.value) and info.value.operation == "connect"


# ---------------------------------------------------------------- parse time


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"checks": {}}, "checks {}"),
        ({"checks": {"freshness": {"columns": ["id"]}}}, "checks 'freshness': unknown check type"),
        ({"checks": {"completeness": {}}}, "checks['completeness'] {}: expected a dict with 'columns'"),
        ({"checks": {"completeness": {"columns": []}}}, "checks['completeness'].columns []"),
        ({"checks": {"completeness": {"columns": "id"}}}, "checks['completeness'].columns 'id'"),
        ({"checks": {"completeness": {"columns": ["id", ""]}}}, "checks['completeness'].columns[1] ''"),
        ({"checks": {"validity": {"predicate": ""}}}, "checks['validity'].predicate ''"),
        ({"checks": {"validity": {"columns": ["id"]}}}, "expected a dict with 'predicate'"),
        ({"checks": {"validity": {"predicate": "a > 0", "where": "b"}}}, "unknown keys ['where']"),
        ({"checks": {"validity": {"predicate": "1=1; DROP TABLE victim"}}}, "no ';'"),
        ({"where": "1=1; DROP TABLE victim"}, "where '1=1; DROP TABLE victim'"),
        ({"where": "  "}, "where '  '"),
        ({"min_ratio": {"validity": 0.5}}, "min_ratio 'validity': is not a configured check"),
        (
            {"min_ratio": {"completeness": 1.5}},
            "min_ratio['completeness'] 1.5: expected a number between 0 and 1",
        ),
        ({"min_ratio": {"completeness": -0.1}}, "min_ratio['completeness'] -0.1"),
        ({"min_ratio": {"completeness": True}}, "min_ratio['completeness'] True"),
        ({"min_ratio": [0.5]}, "min_ratio [0.5]"),
        ({"conn_id": "ware house"}, "conn_id 'ware house'"),
        ({"conn_id": ""}, "conn_id ''"),
        ({"etlops_conn_id": "a/b"}, "etlops_conn_id 'a/b'"),
        ({"table": ""}, "table ''"),
        ({"dataset": "x" * 501}, "dataset 'xxxx"),
    ],
)
def test_validates_at_parse_time(kwargs: dict[str, Any], shown: str) -> None:
    args: dict[str, Any] = {"checks": {"completeness": {"columns": ["id"]}}}
    args.update(kwargs)
    with pytest.raises(ValidationError) as info:
        _op(**args)
    assert str(info.value).startswith("DataQualityCheckOperator 'orders_quality': ")
    assert shown in str(info.value)


def test_templates_pass_parse_time_checks() -> None:
    op = _op(table="{{ params.table }}", where="{{ params.where }}", dataset="{{ params.table }}")
    assert op.table == "{{ params.table }}"
    assert set(op.template_fields) == {"table", "checks", "dataset", "where"}


# ---------------------------------------------------------------- through a common-sql DbApiHook


class _SqliteHook(DbApiHook):  # type: ignore[misc]
    """A minimal common-sql hook, as a provider would ship one."""

    conn_name_attr = "sqlite_conn_id"
    default_conn_name = "warehouse"
    queries: list[str] = []

    def get_conn(self) -> sqlite3.Connection:
        return sqlite3.connect(self.connection.host)

    @property
    def sqlalchemy_url(self) -> sa.URL:
        return sa.URL.create("sqlite", database=self.connection.host)

    def get_first(self, sql: Any, parameters: Any = None) -> Any:
        self.queries.append(sql)
        return super().get_first(sql, parameters)


def test_the_query_runs_through_the_connections_db_api_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    from airflow.sdk.definitions.connection import Connection

    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    path = tmp_path / "warehouse.db"
    _load(sa.create_engine(f"sqlite:///{path}"))
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    monkeypatch.setattr(Connection, "get_hook", lambda self, **kw: _SqliteHook(sqlite_conn_id=self.conn_id))
    monkeypatch.setattr(_SqliteHook, "queries", [])
    assert _op().execute({}) == EXPECTED
    assert len(_SqliteHook.queries) == 1  # one aggregate query for all checks
    assert _SqliteHook.queries[0].startswith("SELECT COUNT(*)")


# ---------------------------------------------------------------- PostgreSQL only


@pytest.mark.postgres
def test_postgres_schema_and_mixed_case_names(
    postgres_server: Any, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    engine = sa.create_engine(postgres_server.create_database("dq_schema"))
    with engine.begin() as c:
        c.exec_driver_sql('CREATE SCHEMA "Sales"')
        c.exec_driver_sql('CREATE TABLE "Sales"."Orders" ("Id" int, amount int)')
        c.exec_driver_sql('INSERT INTO "Sales"."Orders" VALUES (1, 5), (1, -1), (2, NULL), (3, 4)')
    engine.dispose()
    conn = {"conn_type": "postgres", "host": postgres_server.host, "port": postgres_server.port}
    conn |= {"login": postgres_server.user, "schema": "dq_schema"}
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps(conn))
    op = _op(
        schema="Sales",
        table="Orders",
        checks={"uniqueness": {"columns": ["Id"]}, "validity": {"predicate": "amount::int % 2 <> 0"}},
    )
    # "%" and "::" reach the server untouched: 5 and -1 are odd, NULL is not true
    assert op.execute({}) == {"uniqueness": 0.75, "validity": 0.5, "rows": 4}
    with pytest.raises(ValidationError, match="schema 'sales': no such schema.*did you mean 'Sales'"):
        _op(schema="sales", table="Orders").execute({})
