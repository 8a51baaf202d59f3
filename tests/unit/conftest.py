from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from etlops_airflow.store import Store, reset_store_cache


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
def _fresh_store_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("STORE_URL", "STORE_CONN_ID", "RECORD_TASK_OUTCOMES"):
        monkeypatch.delenv(f"AIRFLOW__ETLOPS__{name}", raising=False)
    reset_store_cache()
    yield
    reset_store_cache()
