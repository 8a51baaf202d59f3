"""Schema upgrades: upgrade 1 is frozen as shipped, stores written by 0.1.0 upgrade to HEAD with
their data, an upgraded store looks exactly like a new one, and a failed upgrade changes nothing."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from etlops_airflow.core.models import MetricPoint
from etlops_airflow.exceptions import StoreSchemaError
from etlops_airflow.store import Store, upgrades

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v1.sql"
T0 = 1_700_000_000.0


def _load_v1_file(path: Path) -> Store:
    conn = sqlite3.connect(path)
    conn.executescript(FIXTURE.read_text())
    conn.close()
    return Store.from_url(f"sqlite:///{path}")


def _normalise(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


def test_upgrade_1_builds_exactly_what_0_1_0_shipped(tmp_path: Path) -> None:
    shipped = sorted(_normalise(s) for s in re.findall(r"^CREATE [^;]+;", FIXTURE.read_text(), re.M))
    store = Store.from_url(f"sqlite:///{tmp_path / 'v1.db'}")
    assert store.db.upgrade(target=1) == (0, 1)
    with store.engine.connect() as conn:
        built = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).scalars()
        assert sorted(_normalise(s) + ";" for s in built) == shipped


def test_a_store_written_by_0_1_0_upgrades_with_its_data(tmp_path: Path) -> None:
    store = _load_v1_file(tmp_path / "old.db")
    assert store.status()["schema_version"] == 1
    assert store.upgrade() == (1, upgrades.HEAD)
    rows = store.status()["rows"]
    assert {name: rows[name] for name in ("etlops_metric_series", "etlops_metric_labels")} == {
        "etlops_metric_series": 7,
        "etlops_metric_labels": 11,
    }
    assert (rows["etlops_metric_points"], rows["etlops_task_outcomes"]) == (92, 3)
    m = store.metrics
    window = {"start": T0, "end": T0 + 86400}
    assert m.aggregate("rows_loaded", fn="sum", labels={"table": "orders"}, **window) == 900
    assert m.aggregate("lag_seconds", fn="count", labels={"topic": "t1"}, **window) == 10
    assert m.aggregate("unicode", fn="last", labels={"city": "Zürich ☃"}, **window) == 1.0
    # new points for an old series land in that series, not in a duplicate
    m.write([MetricPoint("rows_loaded", 1000, {"dag_id": "orders", "table": "orders"}, T0 + 4000)])
    assert store.status()["rows"]["etlops_metric_series"] == 7
    assert m.aggregate("rows_loaded", fn="sum", labels={"table": "orders"}, **window) == 1900
    outcomes = store.outcomes.query(dag_id="orders")
    assert [(o.task_id, o.try_number, o.state) for o in outcomes] == [
        ("load", 2, "success"),
        ("load", 1, "up_for_retry"),
        ("report", 1, "failed"),  # no end time: last
    ]
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []


def _shape(store: Store) -> dict[str, Any]:
    """Tables as the database reports them: columns, keys, unique constraints, indexes, FKs."""
    with store.engine.connect() as conn:
        insp = inspect(conn)
        shape = {}
        for table in sorted(insp.get_table_names()):
            shape[table] = {
                "columns": [
                    (c["name"], str(c["type"]).split("(")[0], c["nullable"]) for c in insp.get_columns(table)
                ],
                "pk": insp.get_pk_constraint(table)["constrained_columns"],
                "unique": sorted(
                    (u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table)
                ),
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in insp.get_indexes(table)
                    if not str(i["name"]).startswith("sqlite_autoindex")
                ),
                "fks": sorted(
                    (
                        tuple(f["constrained_columns"]),
                        f["referred_table"],
                        (f.get("options") or {}).get("ondelete"),
                    )
                    for f in insp.get_foreign_keys(table)
                ),
            }
        if store.dialect == "sqlite":
            sql = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'etlops_metric_series'"
            ).scalar_one()
            shape["series_autoincrement"] = "AUTOINCREMENT" in sql
    return shape


def _as_version_1_with_a_point(store: Store) -> Store:
    """Empty the store's database and rebuild it at version 1 holding one series and point."""
    with store.engine.begin() as conn:
        for table in reversed(inspect(conn).get_table_names()):
            cascade = " CASCADE" if store.dialect == "postgresql" else ""
            conn.execute(text(f"DROP TABLE {table}{cascade}"))
    old = Store(store.engine)
    assert old.db.upgrade(target=1) == (0, 1)
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO etlops_metric_series (name, labels) VALUES ('m', '{\"a\":\"1\"}')"))
        conn.execute(
            text(
                "INSERT INTO etlops_metric_points (series_id, ts_ms, value) "
                "SELECT id, 1, 2.5 FROM etlops_metric_series"
            )
        )
    return old


def test_an_upgraded_store_looks_like_a_new_one(store: Store) -> None:
    new_shape = _shape(store)
    old = _as_version_1_with_a_point(store)
    assert Store(store.engine).upgrade() == (1, upgrades.HEAD)
    assert _shape(old) == new_shape
    assert Store(store.engine).metrics.aggregate("m", fn="sum", labels={"a": "1"}, start=0, end=1) == 2.5


def test_a_failed_upgrade_changes_nothing(store: Store) -> None:
    old = _as_version_1_with_a_point(store)
    with store.engine.begin() as conn:
        # something in the way of upgrade 2: it must fail, and fail whole
        conn.execute(text("CREATE TABLE etlops_metric_labels (x INTEGER)"))
    before = _shape(old)
    with pytest.raises(StoreSchemaError, match="upgrade to 2 failed"):
        old.upgrade()
    assert old.schema_version() == 1
    assert _shape(old) == before
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM etlops_metric_points")).scalar_one() == 1
        if store.dialect == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_schema_py_describes_what_the_upgrades_build(store: Store) -> None:
    """schema.py (what queries run against) and the frozen upgrades agree, table by table."""
    from etlops_airflow.store import schema

    upgraded = _shape(store)
    with store.engine.begin() as conn:
        for table in reversed(inspect(conn).get_table_names()):
            cascade = " CASCADE" if store.dialect == "postgresql" else ""
            conn.execute(text(f"DROP TABLE {table}{cascade}"))
        schema.metadata.create_all(conn)
    assert _shape(Store(store.engine)) == upgraded
