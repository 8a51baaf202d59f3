"""What a user sees from the airflow command once the package is installed."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from etlops_airflow.store import Store

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


# -- alerts ----------------------------------------------------------------------------------------


def airflow_fails(*args: str, env: dict[str, str] | None = None) -> str:
    """Run an airflow command that must fail; returns its stderr (no traceback in it)."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=os.environ["AIRFLOW_HOME"],
        timeout=300,
    )
    assert result.returncode != 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr


@pytest.fixture
def alert_store(tmp_path: Path) -> tuple[Store, dict[str, str]]:
    """A SQLite store with one firing alert, and the env that points the airflow command at it."""
    import time

    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    store = Store.from_url(url)
    store.alerts.raise_alert(
        "orders-failing",
        {"rule_id": "orders-failing", "severity": "high", "dag_id": "orders", "table": "orders"},
        {"summary": "orders keeps failing"},
        now=time.time(),
    )
    return store, {"AIRFLOW__ETLOPS__STORE_URL": url}


def test_alerts_list_shows_alerts_and_labels(alert_store: tuple[Store, dict[str, str]]) -> None:
    store, env = alert_store
    (alert,) = store.alerts.alerts()
    text = airflow("etlops", "alerts", "list", env=env)
    (line,) = [ln for ln in text.splitlines() if ln.startswith(alert.fingerprint)]
    assert line.split()[1:3] == ["firing", "orders-failing"]
    assert "dag_id=orders" in line and "table=orders" in line
    data = _json(airflow("etlops", "alerts", "list", "-o", "json", env=env))
    assert data["silences"] == []  # type: ignore[index]
    (shown,) = data["alerts"]  # type: ignore[index]
    assert shown["fingerprint"] == alert.fingerprint
    assert (shown["rule_id"], shown["state"], shown["acked_by"]) == ("orders-failing", "firing", None)
    assert shown["labels"] == {
        "rule_id": "orders-failing",
        "severity": "high",
        "dag_id": "orders",
        "table": "orders",
    }
    assert _json(airflow("etlops", "alerts", "list", "--state", "resolved", "-o", "json", env=env)) == {
        "alerts": [],
        "silences": [],
    }


def test_alerts_ack(alert_store: tuple[Store, dict[str, str]]) -> None:
    store, env = alert_store
    (alert,) = store.alerts.alerts()
    out = airflow("etlops", "alerts", "ack", alert.fingerprint, "--by", "ann", env=env)
    assert f"acknowledged {alert.fingerprint} (orders-failing) as ann" in out
    acked = store.alerts.get(alert.fingerprint)
    assert acked is not None and acked.acked_by == "ann" and acked.acked_at is not None
    (shown,) = _json(airflow("etlops", "alerts", "list", "-o", "json", env=env))["alerts"]  # type: ignore[index]
    assert shown["acked_by"] == "ann"

    error = airflow_fails("etlops", "alerts", "ack", "no-such-alert", "--by", "ann", env=env)
    assert "fingerprint 'no-such-alert'" in error and "no such alert" in error


def test_alerts_silence_and_unsilence(alert_store: tuple[Store, dict[str, str]]) -> None:
    import time

    store, env = alert_store
    before = time.time()
    made = _json(
        airflow(
            "etlops",
            "alerts",
            "silence",
            "rule_id=x",
            "dag_id=y",
            "-d",
            "30m",
            "-c",
            "why",
            "--by",
            "ann",
            "-o",
            "json",
            env=env,
        )
    )
    assert made["matchers"] == {"rule_id": ["x"], "dag_id": ["y"]}  # type: ignore[index]
    assert before + 1800 <= made["ends_at"] <= time.time() + 1800  # type: ignore[index]
    (shown,) = _json(airflow("etlops", "alerts", "list", "-o", "json", env=env))["silences"]  # type: ignore[index]
    assert shown == {
        "id": made["id"],  # type: ignore[index]
        "matchers": {"rule_id": ["x"], "dag_id": ["y"]},
        "ends_at": made["ends_at"],  # type: ignore[index]
        "created_by": "ann",
        "comment": "why",
    }
    assert f"silence {made['id']}: dag_id=y,rule_id=x" in airflow("etlops", "alerts", "list", env=env)  # type: ignore[index]

    out = airflow("etlops", "alerts", "unsilence", made["id"], env=env)  # type: ignore[index]
    assert f"silence {made['id']} ended" in out  # type: ignore[index]
    assert store.alerts.silences() == []
    assert _json(airflow("etlops", "alerts", "list", "-o", "json", env=env))["silences"] == []  # type: ignore[index]
    error = airflow_fails("etlops", "alerts", "unsilence", made["id"], env=env)  # type: ignore[index]
    assert f"silence_id {made['id']!r}" in error  # type: ignore[index]


def test_alerts_silence_refuses_bad_input(alert_store: tuple[Store, dict[str, str]]) -> None:
    store, env = alert_store
    error = airflow_fails("etlops", "alerts", "silence", "rule_id", "-d", "30m", env=env)
    assert "matcher 'rule_id'" in error and "label=value" in error
    error = airflow_fails("etlops", "alerts", "silence", "rule_id=x", "-d", "soon", env=env)
    assert "--duration 'soon'" in error
    assert store.alerts.silences() == []


RULES = """\
rules:
  - id: rows-low
    severity: high
    condition:
      type: metric_threshold
      metric: rows_loaded
      fn: sum
      window: 1h
      op: "<"
      threshold: 100
      by: [dag_id]
"""


def test_alerts_evaluate(tmp_path: Path) -> None:
    import time

    from etlops_airflow.core.models import MetricPoint

    url = f"sqlite:///{tmp_path / 'evaluate.db'}"
    env = {"AIRFLOW__ETLOPS__STORE_URL": url}
    store = Store.from_url(url)
    store.metrics.write([MetricPoint("rows_loaded", 5, {"dag_id": "orders", "table": "t"}, time.time() - 60)])
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)

    out = airflow("etlops", "alerts", "evaluate", "-r", str(rules), env=env)
    assert "1 firing, 0 pending; 1 fired, 0 resolved; 0 queued, 0 sent, 0 failed, 0 to retry" in out
    (alert,) = store.alerts.alerts()
    assert (alert.rule_id, alert.state, alert.value) == ("rows-low", "firing", 5.0)
    assert alert.labels == {"dag_id": "orders", "rule_id": "rows-low", "severity": "high"}
    # Again: still firing, nothing new.
    summary = _json(airflow("etlops", "alerts", "evaluate", "-r", str(rules), "-o", "json", env=env))
    assert summary["firing"] == 1 and summary["fired"] == 0 and summary["errors"] == {}  # type: ignore[index]
    assert summary["skipped"] is None  # type: ignore[index]

    broken = tmp_path / "broken.yaml"
    broken.write_text(RULES.replace("window: 1h", "window: soon"))
    error = airflow_fails("etlops", "alerts", "evaluate", "-r", str(broken), env=env)
    assert f"{broken}: rule 'rows-low': condition.window 'soon'" in error
    error = airflow_fails("etlops", "alerts", "evaluate", "-r", str(tmp_path / "missing.yaml"), env=env)
    assert "missing.yaml" in error and "cannot be read" in error
