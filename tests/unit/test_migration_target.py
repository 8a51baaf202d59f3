"""The target-database layer of migrations on SQLite and on a real PostgreSQL: every schema
change, SQLite's table rebuild, fingerprints, backup and restore after every kind of damage,
identifier fuzzing, the validations, and PostgreSQL's dry-run warnings."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from etlops_airflow.core.migrations import checks, registry
from etlops_airflow.core.migrations.model import (
    CustomValidation,
    DataIntegrity,
    PerformanceBenchmark,
    RecordCount,
    SchemaChange,
    SchemaCompliance,
)
from etlops_airflow.core.migrations.target import Target, TargetError, render_literal
from etlops_airflow.core.migrations.types import reflected_type, type_matches
from etlops_airflow.exceptions import EtlopsError, ValidationError

ROWS = 60


def _sqlite_engine(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _fk_on(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA foreign_keys = ON")

    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, empty target database: a SQLite file (foreign keys on), or a new database on
    the real server."""
    if request.param == "sqlite":
        eng = _sqlite_engine(tmp_path / "target.db")
    else:
        server = request.getfixturevalue("postgres_server")
        name = "tgt_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:20]
        eng = create_engine(server.create_database(name), poolclass=NullPool)
    yield eng
    eng.dispose()


@pytest.fixture
def target(engine: Engine) -> Target:
    seed(engine)
    return Target(engine, name="warehouse")


def seed(engine: Engine) -> None:
    """customers <- orders (FK), orders with a primary key, a UNIQUE pair, a CHECK, a default,
    an index, and a sentinel table nothing may touch."""
    pg = engine.dialect.name == "postgresql"
    pk = "serial PRIMARY KEY" if pg else "INTEGER PRIMARY KEY AUTOINCREMENT"
    with engine.begin() as c:
        c.exec_driver_sql(f"CREATE TABLE customers (id {pk}, name TEXT UNIQUE)")
        c.exec_driver_sql(
            f"CREATE TABLE orders (id {pk}, cust TEXT NOT NULL, amount NUMERIC(12,2) CHECK (amount >= 0), "
            "customer_id INTEGER REFERENCES customers(id), note VARCHAR(10) DEFAULT 'n/a', "
            "UNIQUE (cust, note))"
        )
        c.exec_driver_sql("CREATE INDEX ix_orders_amount ON orders (amount)")
        c.exec_driver_sql("CREATE TABLE sentinel (id INTEGER PRIMARY KEY, v TEXT)")
        c.exec_driver_sql("INSERT INTO sentinel (id, v) VALUES (1, 'still here')")
        c.exec_driver_sql("INSERT INTO customers (name) VALUES ('alice'), ('bob')")
        for i in range(ROWS):
            c.exec_driver_sql(
                "INSERT INTO orders (cust, amount, customer_id, note) "
                f"VALUES ('c{i % 7}', {i}.25, {1 + i % 2}, 'n{i}')"
            )
        if pg:
            c.exec_driver_sql("ANALYZE")


def rows(target: Target, sql: str) -> list[tuple[Any, ...]]:
    with target.read_only() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


def columns(target: Target, table: str = "orders") -> dict[str, str]:
    with target.read_only() as conn:
        return target.column_types(conn, table)


def apply(target: Target, change: SchemaChange) -> list[str]:
    with target.transaction() as conn:
        return target.apply_change(conn, change)


def indexes(target: Target, table: str = "orders") -> dict[str, tuple[list[str], bool]]:
    fp = target.fingerprint([table])[table]
    return {name: (cols, unique) for name, cols, unique in fp.schema["indexes"]}


@pytest.fixture
def recorded(engine: Engine) -> Iterator[list[str]]:
    """Every statement sent through SQLAlchemy while the test runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


# -- each operation on both databases ----------------------------------------------------------------


def test_add_column_with_default_fills_existing_rows(target: Target) -> None:
    apply(target, SchemaChange("orders", "add_column", column="currency", type="varchar(3)", default="EUR"))
    assert list(columns(target)) == ["id", "cust", "amount", "customer_id", "note", "currency"]
    assert columns(target)["currency"] == "varchar(3)"
    assert rows(target, "SELECT DISTINCT currency FROM orders") == [("EUR",)]
    assert target.fingerprint(["orders"])["orders"].rows == ROWS


def test_add_not_null_column_with_quote_in_default(target: Target) -> None:
    change = SchemaChange("orders", "add_column", column="tag", type="text", default="it's", nullable=False)
    apply(target, change)
    assert rows(target, "SELECT DISTINCT tag FROM orders") == [("it's",)]
    fp = target.fingerprint(["orders"])["orders"]
    assert ["tag", "text", False] == fp.schema["columns"][-1][:3]


def test_drop_column_keeps_other_columns_and_rows(target: Target) -> None:
    before = rows(target, "SELECT id, cust, amount, customer_id FROM orders ORDER BY id")
    apply(target, SchemaChange("orders", "drop_column", column="customer_id"))
    assert list(columns(target)) == ["id", "cust", "amount", "note"]
    assert rows(target, "SELECT id, cust, amount FROM orders ORDER BY id") == [r[:3] for r in before]


def test_drop_indexed_column_drops_its_index_and_unique_pair(target: Target) -> None:
    apply(target, SchemaChange("orders", "drop_column", column="amount"))
    assert "amount" not in columns(target)
    assert "ix_orders_amount" not in indexes(target)
    apply(target, SchemaChange("orders", "drop_column", column="note"))
    # the UNIQUE (cust, note) constraint went with note, as PostgreSQL does it
    assert all(cols != ["cust", "note"] for cols, _u in indexes(target).values())
    assert list(columns(target)) == ["id", "cust", "customer_id"]
    assert target.fingerprint(["orders"])["orders"].rows == ROWS


def test_rename_column_keeps_data_and_index(target: Target) -> None:
    before = rows(target, "SELECT id, cust FROM orders ORDER BY id")
    apply(target, SchemaChange("orders", "rename_column", column="amount", new_name="total"))
    assert list(columns(target)) == ["id", "cust", "total", "customer_id", "note"]
    assert indexes(target)["ix_orders_amount"][0] == ["total"]
    assert rows(target, "SELECT id, cust FROM orders ORDER BY id") == before


def test_change_column_type_keeps_values_position_and_index(target: Target) -> None:
    before = rows(target, "SELECT id, CAST(amount AS TEXT) FROM orders ORDER BY id")
    apply(target, SchemaChange("orders", "change_column_type", column="amount", type="numeric(14,2)"))
    assert list(columns(target)) == ["id", "cust", "amount", "customer_id", "note"]
    assert columns(target)["amount"] == "numeric(14,2)"
    assert "ix_orders_amount" in indexes(target)
    assert rows(target, "SELECT id, CAST(amount AS TEXT) FROM orders ORDER BY id") == before


def test_add_and_drop_index(target: Target) -> None:
    apply(target, SchemaChange("orders", "add_index", index="ix_cust", columns=("cust", "id"), unique=True))
    assert indexes(target)["ix_cust"] == (["cust", "id"], True)
    apply(target, SchemaChange("orders", "drop_index", index="ix_cust"))
    assert "ix_cust" not in indexes(target)


def test_a_failing_transaction_leaves_no_schema_change(target: Target) -> None:
    before = target.fingerprint(["orders"])
    with pytest.raises(RuntimeError, match="boom"), target.transaction() as conn:
        target.apply_change(conn, SchemaChange("orders", "add_column", column="x", type="integer"))
        target.apply_change(conn, SchemaChange("orders", "change_column_type", column="note", type="text"))
        target.apply_change(conn, SchemaChange("orders", "drop_column", column="cust"))
        raise RuntimeError("boom")
    assert target.fingerprint(["orders"]) == before


def test_read_only_refuses_writes(target: Target) -> None:
    with pytest.raises(Exception, match="(?i)read.?only|readonly"), target.read_only() as conn:
        conn.exec_driver_sql("DELETE FROM sentinel")
    assert rows(target, "SELECT v FROM sentinel") == [("still here",)]


def test_plan_does_not_change_anything(target: Target) -> None:
    before = target.fingerprint(["orders"])
    plan = target.plan_change(SchemaChange("orders", "change_column_type", column="amount", type="text"))
    assert plan.statements and plan.rewrites_table  # SQLite rebuilds; PostgreSQL rewrites numeric -> text
    assert target.fingerprint(["orders"]) == before


# -- errors name the step field ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "value"),
    [
        (SchemaChange("nope", "drop_column", column="x"), "schema_change.table", "nope"),
        (
            SchemaChange("orders", "rename_column", column="gone", new_name="x"),
            "schema_change.rename_column.from",
            "gone",
        ),
        (
            SchemaChange("orders", "rename_column", column="cust", new_name="note"),
            "schema_change.rename_column.to",
            "note",
        ),
        (
            SchemaChange("orders", "add_column", column="cust", type="text"),
            "schema_change.add_column.name",
            "cust",
        ),
        (
            SchemaChange("orders", "add_column", column="x", type="blob"),
            "schema_change.add_column.type",
            "blob",
        ),
        (
            SchemaChange("orders", "add_column", column="x", type="real", default=float("nan")),
            "schema_change.add_column.default",
            None,
        ),
        (
            SchemaChange("orders", "add_column", column="x", type="text", default="a\x00b"),
            "schema_change.add_column.default",
            "a\x00b",
        ),
        (
            SchemaChange("orders", "add_column", column="x", type="text", default=[1]),
            "schema_change.add_column.default",
            [1],
        ),
        (SchemaChange("orders", "drop_column", column="gone"), "schema_change.drop_column.name", "gone"),
        (
            SchemaChange("orders", "change_column_type", column="gone", type="text"),
            "schema_change.change_column_type.name",
            "gone",
        ),
        (
            SchemaChange("orders", "change_column_type", column="cust", type="text; DROP TABLE sentinel"),
            "schema_change.change_column_type.type",
            None,
        ),
        (
            SchemaChange("orders", "add_index", index="ix_orders_amount", columns=("cust",)),
            "schema_change.add_index.name",
            "ix_orders_amount",
        ),
        (
            SchemaChange("orders", "add_index", index="sentinel", columns=("cust",)),
            "schema_change.add_index.name",
            "sentinel",
        ),
        (
            SchemaChange("orders", "add_index", index="ix_new", columns=("cust", "gone")),
            "schema_change.add_index.columns",
            "gone",
        ),
        (SchemaChange("orders", "drop_index", index="gone"), "schema_change.drop_index.name", "gone"),
        (
            SchemaChange("customers", "drop_index", index="ix_orders_amount"),
            "schema_change.drop_index.name",
            "ix_orders_amount",
        ),
    ],
)
def test_wrong_steps_are_refused_naming_the_field(
    target: Target, change: SchemaChange, field: str, value: Any, recorded: list[str]
) -> None:
    before = target.fingerprint(["orders", "sentinel"])
    with pytest.raises(ValidationError) as err:
        apply(target, change)
    assert err.value.field == field
    if value is not None:
        assert err.value.value == value
    assert "warehouse" in str(err.value)
    assert not any(s.lstrip().upper().startswith(("ALTER", "CREATE", "DROP")) for s in recorded)
    assert target.fingerprint(["orders", "sentinel"]) == before


def test_unsupported_dialect_is_refused_naming_the_target() -> None:
    from sqlalchemy import create_mock_engine

    engine = create_mock_engine("mssql://", lambda *a, **k: None)
    with pytest.raises(ValidationError, match="lake"):
        Target(engine, name="lake")  # type: ignore[arg-type]


def test_render_literal() -> None:
    assert render_literal("a'b", "sqlite", "f") == "'a''b'"
    assert render_literal("a\\'", "postgresql", "f") == "E'a\\\\'''"
    assert render_literal(True, "sqlite", "f") == "TRUE"
    assert render_literal(-3, "sqlite", "f") == "-3"
    assert render_literal(None, "sqlite", "f") == "NULL"
    for bad in (float("inf"), "x\x00", b"x", {"a": 1}):
        with pytest.raises(ValidationError):
            render_literal(bad, "sqlite", "f")


def test_backslash_default_round_trips(target: Target) -> None:
    value = "C:\\temp\\'x'"
    apply(target, SchemaChange("orders", "add_column", column="path", type="text", default=value))
    assert rows(target, "SELECT DISTINCT path FROM orders") == [(value,)]


# -- undo_needed -------------------------------------------------------------------------------------


def test_undo_needed_is_false_when_the_rollback_is_already_in_effect(target: Target) -> None:
    with target.read_only() as conn:
        u = target.undo_needed
        assert u(conn, SchemaChange("orders", "drop_index", index="ix_absent")) is False
        assert u(conn, SchemaChange("orders", "drop_index", index="ix_orders_amount")) is True
        assert u(conn, SchemaChange("orders", "drop_column", column="absent")) is False
        assert u(conn, SchemaChange("orders", "drop_column", column="note")) is True
        assert u(conn, SchemaChange("orders", "rename_column", column="absent", new_name="cust")) is False
        assert u(conn, SchemaChange("orders", "rename_column", column="cust", new_name="absent")) is True
        assert u(conn, SchemaChange("orders", "add_column", column="note", type="varchar(10)")) is False
        assert u(conn, SchemaChange("orders", "add_column", column="note", type="text")) is True
        assert u(conn, SchemaChange("orders", "add_column", column="absent", type="text")) is True
        assert (
            u(conn, SchemaChange("orders", "add_index", index="ix_orders_amount", columns=("amount",)))
            is False
        )
        assert u(conn, SchemaChange("orders", "add_index", index="ix_absent", columns=("amount",))) is True


# -- SQLite's rebuild --------------------------------------------------------------------------------


@pytest.fixture
def sqlite_target(tmp_path: Path) -> Iterator[Target]:
    engine = _sqlite_engine(tmp_path / "rebuild.db")
    seed(engine)
    with engine.begin() as c:
        c.exec_driver_sql(
            "CREATE TABLE order_lines (id INTEGER PRIMARY KEY, order_id INTEGER "
            "REFERENCES orders(id) ON DELETE CASCADE, qty INTEGER)"
        )
        c.exec_driver_sql("INSERT INTO order_lines (order_id, qty) SELECT id, 1 FROM orders")
        c.exec_driver_sql(
            "CREATE TRIGGER orders_audit AFTER UPDATE ON orders BEGIN "
            "UPDATE sentinel SET v = 'touched' WHERE id = 2; END"
        )
        c.exec_driver_sql("CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE amount > 10")
        c.exec_driver_sql("DELETE FROM orders WHERE id = 3")  # a gap in the AUTOINCREMENT ids
        c.exec_driver_sql("DELETE FROM order_lines WHERE order_id = 3")
        c.exec_driver_sql("INSERT INTO sentinel VALUES (2, 'never')")
    yield Target(engine, name="warehouse")
    engine.dispose()


def test_sqlite_move_and_copy_keeps_order_constraints_indexes_triggers_and_rows(
    sqlite_target: Target,
) -> None:
    t = sqlite_target
    before = t.fingerprint(["orders", "order_lines"])
    seq = rows(t, "SELECT seq FROM sqlite_sequence WHERE name = 'orders'")
    plan = t.plan_change(SchemaChange("orders", "change_column_type", column="note", type="varchar(40)"))
    assert plan.rewrites_table and any("rebuilt" in w for w in plan.warnings)
    ran = apply(t, SchemaChange("orders", "change_column_type", column="note", type="varchar(40)"))
    assert ran == plan.statements
    after = t.fingerprint(["orders", "order_lines"])
    # only the type changed: same column order, keys, indexes (by name and columns), FK, trigger
    expected = before["orders"].schema
    expected["columns"][4][1] = "varchar(40)"
    assert after["orders"].schema == expected
    assert after["orders"].checksum == before["orders"].checksum
    assert after["order_lines"] == before["order_lines"]  # ON DELETE CASCADE did not fire
    assert rows(t, "SELECT seq FROM sqlite_sequence WHERE name = 'orders'") == seq
    assert rows(t, "SELECT count(*) FROM big_orders")[0][0] > 0  # the view still works
    with t.transaction() as conn:  # constraints still enforced
        with pytest.raises(Exception, match="(?i)check"):
            with conn.begin_nested():
                conn.exec_driver_sql("INSERT INTO orders (cust, amount) VALUES ('neg', -1)")
        with pytest.raises(Exception, match="(?i)unique"):
            with conn.begin_nested():
                conn.exec_driver_sql("INSERT INTO orders (cust, note) VALUES ('c0', 'n0')")
        conn.exec_driver_sql("UPDATE orders SET cust = cust WHERE id = 1")  # the trigger fires
    assert rows(t, "SELECT v FROM sentinel WHERE id = 2") == [("touched",)]


def test_sqlite_drop_of_a_plain_column_is_native(sqlite_target: Target) -> None:
    plan = sqlite_target.plan_change(SchemaChange("orders", "drop_column", column="customer_id"))
    # customer_id is in a foreign key: rebuilt; a column in nothing is dropped in place
    assert plan.rewrites_table
    apply(sqlite_target, SchemaChange("orders", "add_column", column="memo", type="text"))
    plan = sqlite_target.plan_change(SchemaChange("orders", "drop_column", column="memo"))
    assert plan.statements == ['ALTER TABLE "orders" DROP COLUMN "memo"'] and not plan.rewrites_table


def test_sqlite_rebuild_refused_outside_our_transaction(sqlite_target: Target) -> None:
    with sqlite_target.engine.begin() as conn, pytest.raises(TargetError, match="foreign keys off"):
        sqlite_target.apply_change(
            conn, SchemaChange("orders", "change_column_type", column="note", type="text")
        )


def test_sqlite_commit_refused_when_foreign_keys_break(sqlite_target: Target) -> None:
    before = sqlite_target.fingerprint(["order_lines"])
    with pytest.raises(TargetError, match="foreign key"), sqlite_target.transaction() as conn:
        conn.exec_driver_sql("INSERT INTO order_lines (order_id, qty) VALUES (99999, 1)")
    assert sqlite_target.fingerprint(["order_lines"]) == before


def test_sqlite_transaction_on_a_store_style_engine(tmp_path: Path) -> None:
    """An engine that begins its own transactions (BEGIN IMMEDIATE in a listener) works too."""
    from etlops_airflow.store.engine import create_store_engine

    engine = create_store_engine(f"sqlite:///{tmp_path / 'store_style.db'}")
    seed(engine)
    t = Target(engine)
    before = t.fingerprint(["orders"])
    with pytest.raises(RuntimeError), t.transaction() as conn:
        t.apply_change(conn, SchemaChange("orders", "change_column_type", column="note", type="text"))
        raise RuntimeError("undo")
    assert t.fingerprint(["orders"]) == before
    apply(t, SchemaChange("orders", "change_column_type", column="note", type="text"))
    assert columns(t)["note"] == "text"
    engine.dispose()


# -- backup and restore after every kind of damage --------------------------------------------------

DAMAGE: dict[str, Callable[[Target], object]] = {
    "added_column": lambda t: apply(
        t, SchemaChange("orders", "add_column", column="x", type="integer", default=1)
    ),
    "dropped_column": lambda t: apply(t, SchemaChange("orders", "drop_column", column="note")),
    "dropped_pk_column": lambda t: apply(t, SchemaChange("orders", "drop_column", column="id")),
    "renamed_column": lambda t: apply(
        t, SchemaChange("orders", "rename_column", column="cust", new_name="c2")
    ),
    "retyped_column": lambda t: apply(
        t, SchemaChange("orders", "change_column_type", column="note", type="text")
    ),
    "added_index": lambda t: apply(t, SchemaChange("orders", "add_index", index="ix_x", columns=("cust",))),
    "dropped_index": lambda t: apply(t, SchemaChange("orders", "drop_index", index="ix_orders_amount")),
    "changed_rows": lambda t: _sql(t, "UPDATE orders SET amount = amount + 1 WHERE id IN (3, 6, 9, 12)"),
    "deleted_rows": lambda t: _sql(t, "DELETE FROM orders WHERE id > 10"),
    "inserted_rows": lambda t: _sql(t, "INSERT INTO orders (cust, amount) VALUES ('new', 1), ('new2', 2)"),
    "dropped_table": lambda t: _sql(t, "DROP TABLE orders"),
    "everything": lambda t: [
        DAMAGE[k](t)
        for k in (
            "changed_rows",
            "deleted_rows",
            "inserted_rows",
            "added_column",
            "retyped_column",
            "added_index",
            "dropped_index",
            "renamed_column",
            "dropped_column",
        )
    ],
}


def _sql(target: Target, sql: str) -> None:
    with target.transaction() as conn:
        conn.exec_driver_sql(sql)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_restore_after_damage_equals_the_backup(target: Target, damage: str, tmp_path: Path) -> None:
    tables = ["orders", "customers"]
    info = target.backup(tables, label=f"run/{damage}", backup_dir=tmp_path / "backups")
    recorded = {t: fp for t, fp in info["fingerprints"].items()}
    assert {t: fp.as_dict() for t, fp in target.fingerprint(tables).items()} == recorded
    DAMAGE[damage](target)
    try:
        assert target.fingerprint(["orders"])["orders"].as_dict() != recorded["orders"]
    except ValidationError:
        assert damage == "dropped_table"
    done = target.restore(info)
    assert done
    assert {t: fp.as_dict() for t, fp in target.fingerprint(tables).items()} == recorded
    # the restored table works: sequences continue after the restored ids, FKs hold
    _sql(target, "INSERT INTO orders (cust, amount) VALUES ('after-restore', 5)")
    assert rows(target, "SELECT max(id) FROM orders")[0][0] > ROWS
    with target.read_only() as conn:
        assert target.foreign_key_violations(conn, "orders") == []
    assert rows(target, "SELECT v FROM sentinel") == [("still here",)]
    target.discard_backup(info)


# -- differences from a backup, in SQL ---------------------------------------------------------------

# what differences() says after each damage (a line of it contains this)
SAID = {
    "added_column": "orders: column x is not in the backup",
    "dropped_column": "orders: column note of the backup is missing",
    "dropped_pk_column": "orders: column id of the backup is missing",
    "renamed_column": "orders: column cust of the backup is now named c2",
    "retyped_column": "orders: column note is text, the backup has varchar(10)",
    "added_index": "orders: index ix_x (cust) is not in the backup",
    "dropped_index": "orders: index ix_orders_amount of the backup is missing",
    "changed_rows": "orders: 4 row(s) differ from the backup",
    "deleted_rows": f"orders: 10 row(s), the backup has {ROWS}",
    "inserted_rows": f"orders: {ROWS + 2} row(s), the backup has {ROWS}",
    "dropped_table": "orders: missing (dropped?)",
    "everything": "orders: column c2 is not in the backup",
}


@pytest.mark.parametrize("checksums", [False, True], ids=["cheap", "checksums"])
def test_differences_is_empty_right_after_backup(target: Target, tmp_path: Path, checksums: bool) -> None:
    info = target.backup(
        ["orders", "customers", "sentinel"], label="d", backup_dir=tmp_path, checksums=checksums
    )
    assert target.differences(info) == []
    assert target.differences(info) == []  # it changed nothing, on either side


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_differences_say_what_each_damage_did_and_vanish_after_restore(
    target: Target, damage: str, tmp_path: Path
) -> None:
    info = target.backup(
        ["orders", "customers"], label=f"diff/{damage}", backup_dir=tmp_path, checksums=False
    )
    DAMAGE[damage](target)
    said = target.differences(info)
    assert any(SAID[damage] in line for line in said), said
    for line in said:
        # customers changed in nothing but the foreign key into it, gone with a dropped orders
        assert line.startswith("orders: ") or (
            damage == "dropped_table" and "orders_customer_id_fkey" in line
        )
    target.restore(info)
    assert target.differences(info) == []


def test_differences_name_the_schema_change_and_skip_the_rows(target: Target, tmp_path: Path) -> None:
    info = target.backup(["orders"], label="schema", backup_dir=tmp_path, checksums=False)
    apply(target, SchemaChange("orders", "add_column", column="currency", type="varchar(3)", default="EUR"))
    _sql(target, "DELETE FROM orders WHERE id > 50")
    assert target.differences(info) == ["orders: column currency is not in the backup"]
    apply(target, SchemaChange("orders", "drop_column", column="currency"))
    assert target.differences(info) == [f"orders: 50 row(s), the backup has {ROWS}"]
    target.restore(info)
    assert target.differences(info) == []


def test_differences_see_a_swap_that_keeps_the_row_count(target: Target, tmp_path: Path) -> None:
    info = target.backup(["orders"], label="swap", backup_dir=tmp_path, checksums=False)
    _sql(target, "UPDATE orders SET note = 'n1 ' WHERE id = 2")  # a trailing space
    assert target.differences(info) == ["orders: 1 row(s) differ from the backup"]
    _sql(target, "UPDATE orders SET note = 'n1' WHERE id = 2")
    _sql(target, "UPDATE orders SET cust = 'C0' WHERE cust = 'c0'")  # case only
    assert target.differences(info) == [f"orders: {len(range(0, ROWS, 7))} row(s) differ from the backup"]
    _sql(target, "UPDATE orders SET cust = 'c0' WHERE cust = 'C0'")
    assert target.differences(info) == []  # put back by hand: identical again, no restore needed


def test_sqlite_differences_tell_10_from_10_0_and_from_text(tmp_path: Path) -> None:
    """An untyped column keeps 10, 10.0 and '10' apart; so must the comparison. Tables keyed by
    INTEGER PRIMARY KEY, by rowid, and with every rowid name taken (compared as a multiset)."""
    engine = _sqlite_engine(tmp_path / "values.db")
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE keyed (id INTEGER PRIMARY KEY, v, s TEXT COLLATE NOCASE)")
        c.exec_driver_sql("INSERT INTO keyed VALUES (1, 10, 'a'), (2, x'00', 'b'), (3, NULL, NULL)")
        c.exec_driver_sql("CREATE TABLE bag (v)")  # no key: the rowid tells rows apart
        c.exec_driver_sql("INSERT INTO bag VALUES (10), (10), (2.5)")
        c.exec_driver_sql('CREATE TABLE "odd" (rowid, _rowid_, oid)')  # no rowid name left
        c.exec_driver_sql("INSERT INTO odd VALUES (10, 1, 1), (10, 1, 1), (2, 2, 2)")
    t = Target(engine, name="warehouse")
    info = t.backup(["keyed", "bag", "odd"], label="values", backup_dir=tmp_path / "b", checksums=False)
    assert t.differences(info) == []
    for change, said in [
        ("UPDATE keyed SET v = 10.0 WHERE id = 1", "keyed: 1 row(s) differ"),
        ("UPDATE keyed SET v = '10' WHERE id = 1", "keyed: 1 row(s) differ"),
        ("UPDATE keyed SET s = 'A' WHERE id = 1", "keyed: 1 row(s) differ"),  # NOCASE-equal, not equal
        ("UPDATE keyed SET v = '' WHERE id = 3", "keyed: 1 row(s) differ"),
        ("UPDATE keyed SET v = x'0000' WHERE id = 2", "keyed: 1 row(s) differ"),
        ("UPDATE bag SET v = 10.0 WHERE rowid = 1", "bag: 1 row(s) differ"),
        ("INSERT INTO bag VALUES (10)", "bag: 4 row(s), the backup has 3"),  # a duplicate
        ("UPDATE odd SET rowid = 2, _rowid_ = 2, oid = 2 WHERE rowid = 10 LIMIT 1", "odd: 1 row(s) differ"),
        ("UPDATE odd SET rowid = 10.0 WHERE rowid = 10 LIMIT 1", "odd: 1 row(s) differ"),
        ("INSERT INTO odd VALUES (2, 2, 2)", "odd: 4 row(s), the backup has 3"),
    ]:
        _sql(t, change)
        got = t.differences(info)
        assert len(got) == 1 and got[0].startswith(said), (change, got)
        t.restore(info)
        assert t.differences(info) == [], change
    # the same rows at other rowids: a rowid-keyed table is compared by rowid, as restored
    _sql(t, "DELETE FROM bag WHERE rowid = 1")
    _sql(t, "INSERT INTO bag (rowid, v) VALUES (9, 10)")
    assert t.differences(info) == ["bag: 1 row(s) differ from the backup"]
    engine.dispose()


def test_sqlite_differences_see_the_autoincrement_counter(target: Target, tmp_path: Path) -> None:
    if target.dialect != "sqlite":
        pytest.skip("SQLite's AUTOINCREMENT")
    info = target.backup(["orders"], label="counter", backup_dir=tmp_path, checksums=False)
    _sql(target, "INSERT INTO orders (cust, amount) VALUES ('late', 1)")
    _sql(target, "DELETE FROM orders WHERE cust = 'late'")
    assert target.differences(info) == [f"orders: AUTOINCREMENT counter is {ROWS + 1}, the backup has {ROWS}"]
    target.restore(info)
    assert target.differences(info) == []


def test_sqlite_differences_attach_the_backup_read_only(target: Target, tmp_path: Path) -> None:
    if target.dialect != "sqlite":
        pytest.skip("SQLite's backup file")
    info = target.backup(["orders"], label="ro", backup_dir=tmp_path, checksums=False)
    digest = hashlib.sha256(Path(info["path"]).read_bytes()).hexdigest()
    _sql(target, "UPDATE orders SET amount = 0 WHERE id = 1")
    assert target.differences(info) == ["orders: 1 row(s) differ from the backup"]
    assert hashlib.sha256(Path(info["path"]).read_bytes()).hexdigest() == digest
    with target.engine.connect() as conn:  # detached again
        assert [r[1] for r in conn.exec_driver_sql("PRAGMA database_list")] == ["main"]


def test_sqlite_differences_on_a_store_style_engine(tmp_path: Path) -> None:
    from etlops_airflow.store.engine import create_store_engine

    engine = create_store_engine(f"sqlite:///{tmp_path / 'store_style.db'}")
    seed(engine)
    t = Target(engine)
    info = t.backup(["orders"], label="store", backup_dir=tmp_path / "b", checksums=False)
    assert t.differences(info) == []
    _sql(t, "DELETE FROM orders WHERE id = 1")
    assert t.differences(info) == [f"orders: {ROWS - 1} row(s), the backup has {ROWS}"]
    engine.dispose()


@pytest.mark.postgres
def test_postgres_differences_tell_1_0_from_1_00(target: Target, tmp_path: Path) -> None:
    if target.dialect != "postgresql":
        pytest.skip("PostgreSQL's types")
    _sql(
        target,
        "CREATE TABLE vals (id integer PRIMARY KEY, m numeric, f float8, t text, c char(3), j jsonb)",
    )
    _sql(
        target,
        "INSERT INTO vals VALUES (1, 1.0, 0, 'a', 'x', '{\"a\": 1.0}'), (2, NULL, 0.1, 'b', 'y', '[]')",
    )
    _sql(target, "CREATE TABLE bag (m numeric, t text)")  # no key: compared with EXCEPT ALL
    _sql(target, "INSERT INTO bag VALUES (1.0, 'x'), (1.0, 'x'), (2, 'y')")
    info = target.backup(["vals", "bag"], label="values", backup_dir=tmp_path, checksums=False)
    assert target.differences(info) == []
    for change, said in [
        ("UPDATE vals SET m = 1.00 WHERE id = 1", "vals: 1 row(s) differ"),
        ("UPDATE vals SET f = '-0' WHERE id = 1", "vals: 1 row(s) differ"),
        ("UPDATE vals SET f = 0.1 + 1e-17 WHERE id = 2", None),  # the same float8: no difference
        ("UPDATE vals SET f = 0.30000000000000004 WHERE id = 2", "vals: 1 row(s) differ"),
        ("UPDATE vals SET j = '{\"a\": 1.00}' WHERE id = 1", "vals: 1 row(s) differ"),
        ("UPDATE vals SET t = 'a' COLLATE \"C\" WHERE id = 1", None),
        ("UPDATE vals SET c = 'x ' WHERE id = 1", None),  # char(3) pads either way
        ("UPDATE bag SET m = 1.00 WHERE ctid = (SELECT min(ctid) FROM bag)", "bag: 1 row(s) differ"),
        ("UPDATE bag SET m = 2, t = 'y' WHERE ctid = (SELECT min(ctid) FROM bag)", "bag: 1 row(s) differ"),
        ("INSERT INTO bag VALUES (2, 'y')", "bag: 4 row(s), the backup has 3"),
    ]:
        _sql(target, change)
        got = target.differences(info)
        if said is None:
            assert got == [], (change, got)
            continue
        assert len(got) == 1 and got[0].startswith(said), (change, got)
        target.restore(info)
        assert target.differences(info) == [], change


@pytest.mark.postgres
def test_postgres_differences_see_index_definitions_and_sequences(target: Target, tmp_path: Path) -> None:
    if target.dialect != "postgresql":
        pytest.skip("PostgreSQL's definitions")
    info = target.backup(["orders"], label="defs", backup_dir=tmp_path, checksums=False)
    _sql(target, "DROP INDEX ix_orders_amount")
    _sql(target, "CREATE INDEX ix_orders_amount ON orders (amount DESC)")  # same name, same column
    said = target.differences(info)
    assert len(said) == 1 and "index ix_orders_amount is CREATE INDEX" in said[0] and "DESC" in said[0], said
    target.restore(info)
    assert target.differences(info) == []
    _sql(target, "SELECT nextval('orders_id_seq')")
    assert target.differences(info) == [
        f"orders: sequence orders_id_seq is at {ROWS + 1}, the backup has {ROWS}"
    ]
    target.restore(info)
    assert target.differences(info) == []


def test_differences_refuse_a_missing_backup_or_another_dialect(target: Target, tmp_path: Path) -> None:
    info = target.backup(["orders"], label="gone", backup_dir=tmp_path, checksums=False)
    with pytest.raises(ValidationError):
        target.differences({**info, "dialect": "sqlite" if target.dialect == "postgresql" else "postgresql"})
    target.discard_backup(info)
    with pytest.raises(TargetError, match="missing"):
        target.differences(info)


def test_restore_keeps_changes_to_other_tables(target: Target, tmp_path: Path) -> None:
    info = target.backup(["orders"], label="keep-others", backup_dir=tmp_path)
    expected = info["fingerprints"]["orders"]
    apply(target, SchemaChange("orders", "drop_column", column="note"))
    _sql(target, "UPDATE sentinel SET v = 'changed after the backup'")
    done = target.restore(info)
    assert target.fingerprint(["orders"])["orders"].as_dict() == expected
    assert rows(target, "SELECT v FROM sentinel") == [("changed after the backup",)]
    if target.dialect == "sqlite":
        assert not any("whole database file" in d for d in done)


def test_sqlite_restore_copies_the_whole_file_when_nothing_else_changed(
    target: Target, tmp_path: Path
) -> None:
    if target.dialect != "sqlite":
        pytest.skip("the whole-file path is SQLite's")
    info = target.backup(["orders"], label="whole", backup_dir=tmp_path)
    apply(target, SchemaChange("orders", "drop_column", column="note"))
    done = target.restore(info)
    assert any("whole database file" in d for d in done)
    assert target.fingerprint(["orders"])["orders"].as_dict() == info["fingerprints"]["orders"]


def test_restore_that_cannot_finish_changes_nothing(target: Target, tmp_path: Path) -> None:
    """A view on the table stops PostgreSQL from dropping it for a rebuild; on SQLite a
    row that breaks a foreign key into a restored table. Either way the restore fails and
    leaves every table as it was."""
    info = target.backup(["orders", "customers"], label="atomic", backup_dir=tmp_path)
    apply(target, SchemaChange("orders", "add_column", column="x", type="integer"))
    _sql(target, "DELETE FROM orders WHERE id > 5")
    if target.dialect == "postgresql":
        _sql(target, "CREATE VIEW v_orders AS SELECT id, x FROM orders")
    else:
        _sql(
            target,
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id))",
        )
        _sql(target, "INSERT INTO notes (customer_id) VALUES (1)")
        info = dict(info)
        _sql(target, "UPDATE sentinel SET v = 'forces the per-table path'")
        # the backup knows no customer 77; a note pointing at it would break after the restore
        _sql(target, "INSERT INTO customers (id, name) VALUES (77, 'late')")
        _sql(target, "INSERT INTO notes (customer_id) VALUES (77)")
    damaged = target.fingerprint(["orders", "customers"])
    with pytest.raises((EtlopsError, Exception)):
        target.restore(info)
    assert target.fingerprint(["orders", "customers"]) == damaged


def test_restore_refuses_a_missing_backup(target: Target, tmp_path: Path) -> None:
    info = target.backup(["orders"], label="gone", backup_dir=tmp_path)
    target.discard_backup(info)
    before = target.fingerprint(["orders"])
    with pytest.raises(TargetError, match="missing"):
        target.restore(info)
    assert target.fingerprint(["orders"]) == before


def test_backup_file_name_is_sanitised(tmp_path: Path) -> None:
    engine = _sqlite_engine(tmp_path / "db.sqlite")
    seed(engine)
    t = Target(engine)
    info = t.backup(["orders"], label="../../etc/passwd; rm -rf /", backup_dir=tmp_path / "b")
    path = Path(info["path"])
    assert path.parent == (tmp_path / "b").resolve() and path.exists()
    assert "/" not in path.name and ";" not in path.name and " " not in path.name
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM orders").fetchone()[0] == ROWS
    engine.dispose()


def test_fingerprint_sees_every_difference(target: Target) -> None:
    base = target.fingerprint(["orders"])["orders"]
    _sql(target, "UPDATE orders SET note = 'n1 ' WHERE id = 2")
    assert target.fingerprint(["orders"])["orders"].checksum != base.checksum
    _sql(target, "UPDATE orders SET note = 'n1' WHERE id = 2")
    assert target.fingerprint(["orders"])["orders"] == base
    apply(target, SchemaChange("orders", "rename_column", column="cust", new_name="c"))
    apply(target, SchemaChange("orders", "rename_column", column="c", new_name="cust"))
    assert target.fingerprint(["orders"])["orders"] == base


# -- identifier fuzzing ------------------------------------------------------------------------------

HOSTILE = [
    'quo"te',
    "apo'strophe",
    "semi;colon",
    "back`tick",
    "brack]et[",
    "ünïcødé_名前",
    "with space",
    "DROP TABLE sentinel; --",
    '"; DROP TABLE sentinel; --',
    "'); DROP TABLE sentinel; --",
    "percent%s%(x)s",
    "colon :name",
    "x" * 63,
    "é" * 32,  # 64 bytes
    "y" * 64,
    "-- comment",
    "/* c */",
    "nul\x00byte",
    "",
    "Cust",  # differs from an existing column by case only
]


def _fuzz_outcome(target: Target, change: SchemaChange, recorded: list[str]) -> str:
    recorded.clear()
    try:
        plan = target.plan_change(change)
        ran = apply(target, change)
    except ValidationError:
        ddl = [s for s in recorded if s.lstrip().upper().startswith(("ALTER", "CREATE", "DROP", "INSERT"))]
        assert ddl == [], f"{change}: a refused change ran {ddl}"
        return "refused"
    assert ran == plan.statements

    def writes(statements: list[str]) -> list[str]:
        reads = ("SELECT", "PRAGMA", "BEGIN", "SET", "SAVEPOINT", "RELEASE")
        return [s for s in statements if not s.lstrip().upper().startswith(reads)]

    assert writes(recorded) == writes(plan.statements), f"{change}: extra statements ran: {recorded}"
    return "ran"


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: n.encode("unicode_escape").decode()[:30] or "empty")
def test_hostile_identifiers_are_refused_or_round_trip(
    target: Target, recorded: list[str], name: str
) -> None:
    sentinel = rows(target, "SELECT * FROM sentinel")
    column_outcome = _fuzz_outcome(
        target,
        SchemaChange("orders", "add_column", column=name, type="text", default=name[:5] or None),
        recorded,
    )
    if column_outcome == "ran":
        assert name in columns(target), f"{name!r} did not round-trip: {list(columns(target))}"
        with target.read_only() as conn:
            assert target.null_counts(conn, "orders", [name]) == {name: 0 if name[:5] else ROWS}
        index_name = name[:-1] + "i" if len(name.encode()) >= 63 else name + "i"
        if (
            _fuzz_outcome(
                target, SchemaChange("orders", "add_index", index=index_name, columns=(name,)), recorded
            )
            == "ran"
        ):
            assert indexes(target)[index_name] == ([name], False)
            assert (
                _fuzz_outcome(target, SchemaChange("orders", "drop_index", index=index_name), recorded)
                == "ran"
            )
        renamed = name[:-1] + "2" if len(name.encode()) >= 63 else name + "2"
        assert (
            _fuzz_outcome(
                target, SchemaChange("orders", "rename_column", column=name, new_name=renamed), recorded
            )
            == "ran"
        )
        assert renamed in columns(target) and name not in columns(target)
        assert (
            _fuzz_outcome(
                target,
                SchemaChange("orders", "change_column_type", column=renamed, type="varchar(20)"),
                recorded,
            )
            == "ran"
        )
        assert _fuzz_outcome(target, SchemaChange("orders", "drop_column", column=renamed), recorded) == "ran"
        assert renamed not in columns(target)
    else:
        assert name not in columns(target)
    # as a table name or an existing-column name it is looked up, never spliced in
    for change in (
        SchemaChange(name, "drop_column", column="id"),
        SchemaChange("orders", "drop_column", column=name),
        SchemaChange("orders", "rename_column", column=name, new_name="z"),
        SchemaChange("orders", "drop_index", index=name),
    ):
        assert _fuzz_outcome(target, change, recorded) == "refused"
    with target.read_only() as conn:
        with pytest.raises(ValidationError):
            target.count_rows(conn, name)
    assert rows(target, "SELECT * FROM sentinel") == sentinel
    assert list(columns(target)) == ["id", "cust", "amount", "customer_id", "note"]


def test_hostile_table_name_round_trips(target: Target, tmp_path: Path) -> None:
    """A table whose name is hostile is reachable exactly, backed up and restored."""
    name = "o\"r'd;e`r s -- ü"
    q = target.quote(name)
    _sql(target, f"CREATE TABLE {q} (id INTEGER PRIMARY KEY, {target.quote('v;')} TEXT)")
    _sql(target, f"INSERT INTO {q} (id) VALUES (1), (2)")
    apply(target, SchemaChange(name, "add_column", column="w'", type="integer", default=3))
    apply(target, SchemaChange(name, "change_column_type", column="v;", type="varchar(5)"))
    assert columns(target, name) == {"id": "integer", "v;": "varchar(5)", "w'": "integer"}
    info = target.backup([name], label=name, backup_dir=tmp_path)
    assert target.differences(info) == []
    _sql(target, f"UPDATE {q} SET {target.quote('w' + chr(39))} = 4 WHERE id = 2")
    assert target.differences(info) == [f"{name}: 1 row(s) differ from the backup"]
    apply(target, SchemaChange(name, "drop_column", column="w'"))
    assert target.differences(info) == [f"{name}: column w' of the backup is missing (dropped?)"]
    target.restore(info)
    assert target.differences(info) == []
    assert target.fingerprint([name])[name].as_dict() == info["fingerprints"][name]
    assert rows(target, "SELECT v FROM sentinel") == [("still here",)]


# -- validation primitives and checks ----------------------------------------------------------------


def test_record_count_check(target: Target) -> None:
    v = RecordCount("orders", tolerance_percent=0)
    before = checks.capture(target, v)
    assert before == {"rows": ROWS}
    ok = checks.check(target, v, before)
    assert ok.ok and ok.message == f"orders: {ROWS} rows after, {ROWS} before (tolerance 0%)"
    _sql(target, "DELETE FROM orders WHERE id <= 2")
    bad = checks.check(target, v, before)
    assert not bad.ok and bad.message == f"orders: {ROWS - 2} rows after, {ROWS} before (tolerance 0%)"
    assert checks.check(target, RecordCount("orders", tolerance_percent=5), before).ok
    assert not checks.check(target, v, None).ok


def test_data_integrity_check(target: Target) -> None:
    query = "SELECT id, cust FROM orders ORDER BY id"
    v = DataIntegrity("orders", not_null=("cust", "note"), foreign_keys=True, checksum_query=query)
    before = checks.capture(target, v)
    assert before is not None and len(before["checksum"]) == 64
    result = checks.check(target, v, before)
    assert result.ok, result.message
    _sql(target, "UPDATE orders SET note = NULL WHERE id IN (1, 2, 3)")
    result = checks.check(target, v, before)
    assert not result.ok and "3 NULL(s) in note" in result.message
    assert result.figures["nulls"] == {"cust": 0, "note": 3}
    _sql(target, "UPDATE orders SET note = 'x' WHERE note IS NULL")
    _sql(target, "UPDATE orders SET cust = 'changed' WHERE id = 4")
    result = checks.check(target, v, before)
    assert not result.ok and "checksum query rows changed" in result.message


def test_foreign_key_violations_are_found(target: Target) -> None:
    if target.dialect == "postgresql":
        _sql(target, "ALTER TABLE orders DROP CONSTRAINT orders_customer_id_fkey")
        _sql(target, "UPDATE orders SET customer_id = 42 WHERE id IN (1, 2)")
        _sql(
            target,
            "ALTER TABLE orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) "
            "REFERENCES customers(id) NOT VALID",
        )
    else:
        with target.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
            conn.exec_driver_sql("UPDATE orders SET customer_id = 42 WHERE id IN (1, 2)")
            conn.commit()
    result = checks.check(target, DataIntegrity("orders", foreign_keys=True), None)
    assert not result.ok
    assert "foreign key violation" in result.message and "customers" in result.message


def test_schema_compliance_check(target: Target) -> None:
    declared = {
        "id": "integer",
        "cust": "text",
        "amount": "numeric",
        "customer_id": "int",
        "note": "varchar(10)",
    }
    result = checks.check(target, SchemaCompliance("orders", declared), None)
    assert result.ok, result.message
    result = checks.check(target, SchemaCompliance("orders", {**declared, "amount": "numeric(10,2)"}), None)
    assert not result.ok and "amount is numeric(12,2), declared numeric(10,2)" in result.message
    missing = {k: v for k, v in declared.items() if k != "note"}
    result = checks.check(target, SchemaCompliance("orders", {**missing, "currency": "varchar(3)"}), None)
    assert not result.ok
    assert "missing column(s) currency" in result.message and "undeclared column(s) note" in result.message


def test_performance_benchmark_check(target: Target) -> None:
    query = "SELECT count(*) FROM orders WHERE cust = 'c1'"
    fast = checks.check(target, PerformanceBenchmark(query, max_ms=10_000, runs=3), None)
    assert fast.ok and len(fast.figures["runs_ms"]) == 3
    slow = checks.check(target, PerformanceBenchmark(query, max_ms=0.0, runs=3), None)
    assert not slow.ok and "over the limit of 0 ms" in slow.message


def test_queries_are_one_read_only_statement(target: Target, recorded: list[str]) -> None:
    for sql in (
        "SELECT 1; DROP TABLE sentinel",
        "DELETE FROM sentinel",
        "SELECT 1; DELETE FROM sentinel",
    ):
        result = checks.check(target, PerformanceBenchmark(sql, max_ms=10_000, runs=1), None)
        assert not result.ok and "could not check" in result.message
        with pytest.raises(TargetError):
            target.query_digest(sql)
    assert rows(target, "SELECT v FROM sentinel") == [("still here",)]


def test_custom_validation_check(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    answers: dict[str, Any] = {}

    def validator(conn: Any, params: dict[str, Any]) -> Any:
        n = conn.exec_driver_sql("SELECT count(*) FROM orders").scalar_one()
        answers["n"] = n
        return params["answer"]

    def raising(conn: Any, params: dict[str, Any]) -> Any:
        conn.exec_driver_sql("DELETE FROM sentinel")  # read-only: refused
        return True

    monkeypatch.setitem(registry._validators, "orders_ok", validator)
    monkeypatch.setitem(registry._validators, "writer", raising)
    assert checks.check(target, CustomValidation("orders_ok", {"answer": None}), None).ok
    assert checks.check(target, CustomValidation("orders_ok", {"answer": True}), None).ok
    assert answers["n"] == ROWS
    failed = checks.check(target, CustomValidation("orders_ok", {"answer": False}), None)
    assert not failed.ok and failed.message == "validator orders_ok: failed"
    told = checks.check(target, CustomValidation("orders_ok", {"answer": "3 orders without customer"}), None)
    assert not told.ok and told.message == "validator orders_ok: 3 orders without customer"
    raised = checks.check(target, CustomValidation("writer"), None)
    assert not raised.ok and "raised" in raised.message
    assert rows(target, "SELECT v FROM sentinel") == [("still here",)]
    unknown = checks.check(target, CustomValidation("no_such_validator"), None)
    assert not unknown.ok and "no_such_validator" in unknown.message


def test_types_helpers() -> None:
    assert reflected_type("character varying(3)") == "varchar(3)"
    assert reflected_type("timestamp with time zone") == "timestamptz"
    assert reflected_type("JSONB") == "jsonb"
    assert type_matches("numeric", "numeric(12,2)") and not type_matches("numeric(10,2)", "numeric(12,2)")
    assert type_matches("int", "integer") and not type_matches("text", "varchar(3)")


# -- PostgreSQL dry-run warnings ---------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_dry_run_warns_of_rewrites_and_locks(target: Target) -> None:
    if target.dialect != "postgresql":
        pytest.skip("PostgreSQL warnings")
    rewrite = target.plan_change(
        SchemaChange("orders", "change_column_type", column="customer_id", type="bigint")
    )
    assert rewrite.rewrites_table
    assert any("rewrites the whole table" in w and "ACCESS EXCLUSIVE" in w for w in rewrite.warnings)
    assert any(f"~{ROWS} rows" in w for w in rewrite.warnings)
    widen = target.plan_change(
        SchemaChange("orders", "change_column_type", column="note", type="varchar(40)")
    )
    assert not widen.rewrites_table and any("no table rewrite" in w for w in widen.warnings)
    index = target.plan_change(SchemaChange("orders", "add_index", index="ix_c", columns=("cust",)))
    assert any("blocks writes" in w and "pg_class.reltuples" in w for w in index.warnings)
    add = target.plan_change(SchemaChange("orders", "add_column", column="c", type="text", default="x"))
    assert any("ACCESS EXCLUSIVE" in w for w in add.warnings) and not add.rewrites_table
    with target.read_only() as conn:
        assert target.undo_needed(conn, SchemaChange("orders", "drop_index", index="ix_c")) is False


@pytest.mark.postgres
def test_postgres_lock_timeout_bounds_the_wait(target: Target) -> None:
    if target.dialect != "postgresql":
        pytest.skip("lock_timeout is PostgreSQL's")
    import time

    quick = Target(target.engine, name="warehouse", lock_timeout_s=0.3)
    with target.engine.connect() as holder:
        holder.exec_driver_sql("LOCK TABLE orders IN ACCESS SHARE MODE")
        start = time.monotonic()
        with pytest.raises(Exception, match="lock timeout"), quick.transaction() as conn:
            quick.apply_change(conn, SchemaChange("orders", "add_column", column="late", type="text"))
        assert time.monotonic() - start < 5
        holder.rollback()
    assert "late" not in columns(target)


def test_sqlite_rebuild_keeps_rowids_of_a_table_without_integer_key(tmp_path: Path) -> None:
    engine = _sqlite_engine(tmp_path / "rowids.db")
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE events (code TEXT PRIMARY KEY, at TEXT, n INT)")
        c.exec_driver_sql(
            "INSERT INTO events (rowid, code, at, n) VALUES (10, 'a', 'x', 1), (20, 'b', 'y', 2)"
        )
    t = Target(engine)
    apply(t, SchemaChange("events", "change_column_type", column="n", type="bigint"))
    assert rows(t, "SELECT rowid, code, n FROM events ORDER BY rowid") == [(10, "a", 1), (20, "b", 2)]
    assert columns(t, "events") == {"code": "text", "at": "text", "n": "bigint"}
    assert indexes(t, "events") == {"sqlite_autoindex_events_1": (["code"], True)}
    engine.dispose()


def test_sqlite_read_only_on_a_store_style_engine_takes_no_write_lock(tmp_path: Path) -> None:
    from etlops_airflow.store.engine import create_store_engine

    engine = create_store_engine(f"sqlite:///{tmp_path / 'store_style.db'}")
    seed(engine)
    t = Target(engine)
    with t.read_only() as conn:
        assert t.count_rows(conn, "orders") == ROWS
        other = sqlite3.connect(tmp_path / "store_style.db", timeout=0.1, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # would fail with "database is locked" under a write lock
        other.execute("ROLLBACK")
        other.close()
    engine.dispose()


@pytest.mark.postgres
def test_postgres_rebuild_keeps_views_grants_and_comment(target: Target, tmp_path: Path) -> None:
    if target.dialect != "postgresql":
        pytest.skip("PostgreSQL's rebuild")
    _sql(target, "CREATE VIEW v_orders AS SELECT id, cust FROM orders")
    _sql(target, "CREATE ROLE etlops_reader_" + target.engine.url.database[-8:])  # type: ignore[index]
    role = "etlops_reader_" + target.engine.url.database[-8:]  # type: ignore[index]
    _sql(target, f"GRANT SELECT, UPDATE ON orders TO {role}")
    _sql(target, "COMMENT ON TABLE orders IS 'the orders, it''s said'")
    info = target.backup(["orders"], label="access", backup_dir=tmp_path)
    apply(target, SchemaChange("orders", "drop_column", column="note"))
    _sql(target, "REVOKE ALL ON orders FROM " + role)
    done = target.restore(info)
    assert any("rebuilt" in d for d in done) and any("v_orders" in d for d in done)
    assert target.fingerprint(["orders"])["orders"].as_dict() == info["fingerprints"]["orders"]
    assert rows(target, "SELECT count(*) FROM v_orders") == [(ROWS,)]
    grants = rows(
        target,
        "SELECT privilege_type FROM information_schema.role_table_grants "
        f"WHERE table_name = 'orders' AND grantee = '{role}' ORDER BY 1",
    )
    assert grants == [("SELECT",), ("UPDATE",)]
    assert rows(target, "SELECT obj_description('orders'::regclass, 'pg_class')") == [
        ("the orders, it's said",)
    ]
    _sql(target, f"DROP OWNED BY {role}")
    _sql(target, f"DROP ROLE {role}")
