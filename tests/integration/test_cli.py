"""What a user sees from the airflow command once the package is installed."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def airflow(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=os.environ["AIRFLOW_HOME"],
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _json(text: str) -> object:
    start = min(i for i in (text.find("["), text.find("{")) if i >= 0)
    return json.loads(text[start:])


def test_providers_list_shows_etlops() -> None:
    import etlops_airflow

    providers = _json(airflow("providers", "list", "-o", "json"))
    (ours,) = [p for p in providers if p["package_name"] == "etlops-airflow"]  # type: ignore[union-attr]
    assert ours["version"] == etlops_airflow.__version__
    assert "alerting" in ours["description"] and "migrations" in ours["description"]


def test_plugins_lists_etlops_with_listener_and_app() -> None:
    plugins = _json(airflow("plugins", "-o", "json"))
    (etlops,) = [p for p in plugins if p["name"] == "etlops"]  # type: ignore[union-attr]
    assert "etlops_airflow.listeners.outcomes" in str(etlops["listeners"])
    assert "/etlops" in str(etlops["fastapi_apps"])


def test_config_section_is_documented() -> None:
    out = airflow("config", "list", "--section", "etlops", "--include-descriptions", "--include-examples")
    for option in ("store_conn_id", "store_url", "record_task_outcomes", "store_connect_timeout"):
        assert f"# {option} =" in out or f"{option} =" in out
    assert "Airflow Connection id of the etlops store" in out


def test_store_upgrade_and_status_commands(tmp_path: Path) -> None:
    from etlops_airflow.store.upgrades import HEAD

    env = {"AIRFLOW__ETLOPS__STORE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    # status reads only: on an empty store it reports version 0 and creates nothing
    empty = _json(airflow("etlops", "store-status", "-o", "json", env=env))
    assert empty["schema_version"] == 0 and empty["rows"] == {}  # type: ignore[index]
    tables = sqlite3.connect(tmp_path / "cli.db").execute("SELECT count(*) FROM sqlite_master").fetchone()
    assert tables == (0,)
    first = _json(airflow("etlops", "store-upgrade", "-o", "json", env=env))
    assert first == {"url": env["AIRFLOW__ETLOPS__STORE_URL"], "from": 0, "to": HEAD}
    again = _json(airflow("etlops", "store-upgrade", "-o", "json", env=env))
    assert again["from"] == again["to"] == HEAD  # type: ignore[index]
    status = _json(airflow("etlops", "store-status", "-o", "json", env=env))
    assert status["schema_version"] == HEAD and status["rows"]["etlops_task_outcomes"] == 0  # type: ignore[index]


def test_store_url_is_hidden_by_config_list(tmp_path: Path) -> None:
    env = {"AIRFLOW__ETLOPS__STORE_URL": "postgresql://etl:Sup3rS3cret@db:5432/etlops"}
    out = airflow("config", "list", "--section", "etlops", "--show-values", "--hide-sensitive", env=env)
    assert "store_url" in out and "Sup3rS3cret" not in out
    assert "record_task_outcomes = True" in out  # other values are shown


def test_store_command_with_a_bad_url_names_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "etlops", "store-status"],
        capture_output=True,
        text=True,
        env={**os.environ, "AIRFLOW__ETLOPS__STORE_URL": "oracle://scott:tiger@db/x"},
        cwd=os.environ["AIRFLOW_HOME"],
        timeout=300,
    )
    assert result.returncode != 0
    assert "store_url" in result.stderr and "unsupported database 'oracle'" in result.stderr
    assert "tiger" not in result.stderr + result.stdout


def test_store_url_can_come_from_a_command(tmp_path: Path) -> None:
    # store_url is declared sensitive, so Airflow accepts the _CMD (and _SECRET) variants
    url = f"sqlite:///{tmp_path / 'from-command.db'}"
    status = _json(
        airflow("etlops", "store-status", "-o", "json", env={"AIRFLOW__ETLOPS__STORE_URL_CMD": f"echo {url}"})
    )
    assert status["url"] == url  # type: ignore[index]
