"""Transformers and validators resolve by registered name, entry point or module:function; a
transformer's quoted names reach the database exactly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from etlops_airflow.core.migrations.registry import (
    TransformBatch,
    register_transformer,
    register_validator,
    resolve_transformer,
    resolve_validator,
)
from etlops_airflow.exceptions import ValidationError

ODD_NAMES = ["pct%name", 'quote"d', "semi;colon -- x", "ünïcode 表", "'single'"]


def test_registered_names_resolve_and_unknown_ones_say_what_is_known() -> None:
    @register_transformer("registry_test_double")
    def double(batch: TransformBatch) -> int:
        return 0

    @register_validator("registry_test_ok")
    def ok(conn: object, params: object) -> bool:
        return True

    assert resolve_transformer("registry_test_double") is double
    assert resolve_validator("registry_test_ok") is ok
    assert resolve_validator("os.path:exists").__name__ == "exists"  # module:function
    with pytest.raises(ValidationError, match=r"transformer 'nope': unknown.*registry_test_double"):
        resolve_transformer("nope")
    with pytest.raises(ValidationError, match=r"validator 'no_such_module_x:f': cannot import it"):
        resolve_validator("no_such_module_x:f")
    with pytest.raises(ValidationError, match=r"transformer 'bad name!'"):
        register_transformer("bad name!")


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_batch_quote_reaches_the_database_as_exactly_that_name(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if dialect == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'q.db'}", poolclass=NullPool)
    else:
        server = request.getfixturevalue("postgres_server")
        name = "reg_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
        engine = create_engine(server.create_database(name), poolclass=NullPool)
    with engine.begin() as conn:
        for name in ODD_NAMES:
            batch = TransformBatch(conn, {}, 10, 0, dialect)
            conn.execute(text(f"CREATE TABLE {batch.quote(name)} (x integer)"))
            conn.execute(text(f"INSERT INTO {batch.quote(name)} (x) VALUES (:v)"), {"v": 7})
    assert sorted(inspect(engine).get_table_names()) == sorted(ODD_NAMES)
    engine.dispose()


def test_a_second_function_under_a_name_replaces_the_first_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @register_transformer("registry_test_twice")
    def first(batch: TransformBatch) -> int:
        return 1

    with caplog.at_level("WARNING"):

        @register_transformer("registry_test_twice")
        def second(batch: TransformBatch) -> int:
            return 2

    assert resolve_transformer("registry_test_twice") is second
    assert "transformer 'registry_test_twice' was" in caplog.text and "last registration wins" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        register_transformer("registry_test_twice")(second)  # the same function again: quiet
    assert caplog.text == ""
