"""The outcome listener, called as Airflow's task runner calls it (hook functions, real store)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from etlops_airflow.listeners import outcomes
from etlops_airflow.runtime import get_store


def _ti(state: str = "success", try_number: int = 1, task_id: str = "load") -> SimpleNamespace:
    end = datetime.now(timezone.utc)
    return SimpleNamespace(
        dag_id="orders",
        task_id=task_id,
        run_id="scheduled__2026-01-01",
        map_index=-1,
        try_number=try_number,
        start_date=end - timedelta(seconds=2.5),
        end_date=end,
        state=state,
        hostname="worker-1",
    )


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outcomes, "_failed_at", None)


def test_success_failure_and_retry_are_recorded(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    outcomes.on_task_instance_failed(None, _ti("up_for_retry", 1), ConnectionError("refused"))
    outcomes.on_task_instance_success(None, _ti("success", 2))
    outcomes.on_task_instance_failed(None, _ti("failed", 1, task_id="report"), "zero rows")
    outcomes.on_task_instance_skipped(None, _ti("skipped", 1, task_id="notify"))
    rows = {(r.task_id, r.try_number): r for r in get_store().outcomes.query(dag_id="orders")}
    assert rows[("load", 1)].state == "up_for_retry"
    assert rows[("load", 1)].error_class == "ConnectionError"
    assert rows[("load", 1)].error_message == "refused"
    assert rows[("load", 2)].state == "success"
    assert rows[("load", 2)].duration_s == pytest.approx(2.5, abs=0.01)
    assert rows[("load", 2)].hostname == "worker-1"
    assert rows[("report", 1)].state == "failed" and rows[("report", 1)].error_message == "zero rows"
    assert rows[("notify", 1)].state == "skipped"


def test_can_be_switched_off(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    monkeypatch.setenv("AIRFLOW__ETLOPS__RECORD_TASK_OUTCOMES", "False")
    outcomes.on_task_instance_success(None, _ti())
    monkeypatch.setenv("AIRFLOW__ETLOPS__RECORD_TASK_OUTCOMES", "True")
    assert get_store().outcomes.query(dag_id="orders") == []


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://etl:topsecret@127.0.0.1:1/etlops",  # nothing listens on port 1
        "sqlite:////nonexistent-dir/etlops.db",
        "mysql://etl:topsecret@db/etlops",
    ],
)
def test_unreachable_store_logs_one_line_and_never_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", url)
    caplog.set_level(logging.WARNING, logger="etlops_airflow")
    outcomes.on_task_instance_success(None, _ti())
    lines = [r for r in caplog.records if r.name.startswith("etlops_airflow")]
    assert len(lines) == 1
    message = lines[0].getMessage()
    assert "orders.load" in message and "not recorded" in message and "task is not affected" in message
    assert "\n" not in message and "topsecret" not in message


def test_after_a_failure_later_events_skip_the_connect(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", "sqlite:////nonexistent-dir/etlops.db")
    caplog.set_level(logging.WARNING, logger="etlops_airflow")
    outcomes.on_task_instance_success(None, _ti(task_id="a"))
    outcomes.on_task_instance_success(None, _ti(task_id="b"))
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("etlops_airflow")]
    assert len(messages) == 2
    assert "orders.b" in messages[1] and "store unavailable" in messages[1]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that completes the handshake and then never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_a_store_that_never_answers_costs_the_task_the_connect_timeout_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, silent_server: int
) -> None:
    import psycopg  # noqa: F401  (imports are paid once per process, not per task: keep them out of the clock)
    import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401

    import etlops_airflow.store  # noqa: F401

    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", f"postgresql://etl:pw@127.0.0.1:{silent_server}/etlops")
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_CONNECT_TIMEOUT", "1")
    caplog.set_level(logging.WARNING, logger="etlops_airflow")
    started = time.monotonic()
    outcomes.on_task_instance_success(None, _ti())
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3, elapsed
    assert any("not recorded" in r.getMessage() for r in caplog.records)


def test_secrets_in_error_messages_are_masked_before_they_are_stored(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    from etlops_airflow._secrets import mask_secret

    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    mask_secret("tok-9f8e7d6c5b4a")  # e.g. a Connection's password the task read
    error = RuntimeError(
        "could not load with token tok-9f8e7d6c5b4a into postgresql://loader:pa55-w0rd@warehouse:5432/dw"
    )
    outcomes.on_task_instance_failed(None, _ti("failed"), error)
    (row,) = get_store().outcomes.query(dag_id="orders")
    assert row.error_message is not None
    assert "tok-9f8e7d6c5b4a" not in row.error_message and "pa55-w0rd" not in row.error_message
    assert "postgresql://loader:***@warehouse:5432/dw" in row.error_message
    assert row.error_message.startswith("could not load with token ***")
