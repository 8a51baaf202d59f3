from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etlops_airflow import runtime
from etlops_airflow.store import Store


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, upgraded store on each backend: SQLite file, and a new database on the real server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.create_database(f"etlops_{request.node.name.split('[')[0][-40:]}".lower())
    s = Store.from_url(url)
    s.upgrade()
    yield s
    s.dispose()


@pytest.fixture(autouse=True)
def _fresh_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("STORE_URL", "STORE_CONN_ID", "RECORD_TASK_OUTCOMES"):
        monkeypatch.delenv(f"AIRFLOW__ETLOPS__{name}", raising=False)
    runtime.reset()
    yield
    runtime.reset()


@pytest.fixture(autouse=True)
def _no_processes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit tier starts no process: what needs one (a server, a CLI, an interpreter) is an
    integration test. Tests that use the PostgreSQL server are marked ``postgres``."""
    if request.node.get_closest_marker("postgres"):
        return

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"unit tests must not start processes: {args[1:2]}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
