"""PerformanceAnalysisOperator on SQLite and a real PostgreSQL: a report built from seeded task
outcomes, DAG runs and profiles (sections, regressions, trend, failure rates), what is missing
said plainly, the report kept in the store and e-mailed through a real SMTP server."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from etlops_airflow.core.maintenance.report import (
    DagFailures,
    ReportInputs,
    TaskDurations,
    build_report,
)
from etlops_airflow.core.models import DagRunOutcome, TaskOutcome
from etlops_airflow.core.profiling.model import Finding, SessionKey, SessionReport, StageFigures
from etlops_airflow.exceptions import ValidationError
from etlops_airflow.operators.maintenance.base import MaintenanceFailed
from etlops_airflow.operators.maintenance.report import PerformanceAnalysisOperator
from etlops_airflow.runtime import get_store
from etlops_airflow.store import Store
from tests.fixtures.smtp_server import SmtpServer

END = 1_704_326_400.0  # 2024-01-04 00:00 UTC
DAY = 86400.0
SECTIONS = (
    "Summary",
    "Slowest tasks",
    "Slowest stages",
    "Regressions and findings",
    "Failure rates per DAG",
    "Data not available",
)


def _try(dag: str, task: str, n: int, end: float, seconds: float, state: str = "success") -> TaskOutcome:
    return TaskOutcome(dag, task, f"r{n}", 1, state, start_ts=end - seconds, end_ts=end, duration_s=seconds)


def _seed(store: Store, *, profiles: bool = True) -> None:
    """Yesterday (the period) and the day before: ``orders.extract`` got twice as slow,
    ``billing`` fails more often; DAG runs; one profiled try of ``orders.extract``."""
    for day, start in (("prev", END - 2 * DAY), ("now", END - DAY)):
        slow = 240.0 if day == "now" else 120.0
        for i in range(4):
            at = start + 3600 * (i + 1)
            store.outcomes.record(_try("orders", "extract", i + (10 if day == "now" else 0), at, slow + i))
            store.outcomes.record(_try("orders", "load", i + (10 if day == "now" else 0), at, 30.0))
            failed = i < (3 if day == "now" else 1)
            store.outcomes.record(
                _try(
                    "billing",
                    "charge",
                    i + (10 if day == "now" else 0),
                    at,
                    5.0,
                    "failed" if failed else "success",
                )
            )
            store.dag_runs.record(
                DagRunOutcome(
                    "billing", f"{day}{i}", "failed" if failed else "success", "scheduled", at - 10, at, 10.0
                )
            )
    if profiles:
        stages = (
            StageFigures("read", "read", 0, END - DAY + 100, 200.0),
            StageFigures("parse", "parse", 1, END - DAY + 300, 35.5),
            StageFigures("parse", "parse", 2, END - DAY + 340, 4.5),  # a stage run twice: 40 s in all
        )
        finding = Finding(
            "regression", "high", "read", "read took 200 s, 2x its median", "look at the source", 200, 100
        )
        store.profiles.record(
            SessionReport(
                SessionKey("orders", "extract", "r10", -1, 1),
                END - DAY + 100,
                240.0,
                stages,
                2**30,
                80.0,
                None,
                (finding,),
            )
        )


@pytest.fixture
def configured(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", store.engine.url.render_as_string(hide_password=False))
    return store


def _smtp(monkeypatch: pytest.MonkeyPatch, server: SmtpServer) -> str:
    extra = {
        "disable_ssl": True,
        "disable_tls": True,
        "from_email": "etlops@example.com",
        "timeout": 5,
        "retry_limit": 1,
    }
    conn = {"conn_type": "smtp", "host": server.host, "port": server.port, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_REPORTS", json.dumps(conn))
    return "smtp_reports"


def _context() -> dict[str, Any]:
    end = dt.datetime.fromtimestamp(END, dt.UTC)
    return {"data_interval_start": end - dt.timedelta(days=1), "data_interval_end": end}


def _op(tmp_path: Any, **kwargs: Any) -> PerformanceAnalysisOperator:
    return PerformanceAnalysisOperator(task_id="report", lock_dir=str(tmp_path / "locks"), **kwargs)


def test_the_report_from_seeded_outcomes_and_profiles_is_kept_and_emailed(
    configured: Store, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, smtp_server: SmtpServer
) -> None:
    _seed(configured)
    conn_id = _smtp(monkeypatch, smtp_server)
    summary = _op(
        tmp_path, email_recipients="ops@example.com, lead@example.com", smtp_conn_id=conn_id
    ).execute(_context())
    assert summary["errors"] == [] and summary["changed"] == 1
    (stored,) = get_store().maintenance.runs("performance_report")
    details = stored.run.details
    markdown, html = details["markdown"], details["html"]
    for title in SECTIONS:
        assert f"## {title}" in markdown and f"<h2>{title}</h2>" in html
    # slowest task first, with the previous period's average and the change
    rows = [line for line in markdown.splitlines() if line.startswith("| orders | extract | 4")]
    assert rows == ["| orders | extract | 4 | 4m2s (242 s) | 4m3s (243 s) | 2m2s (122 s) | +99 % |"]
    assert "| orders | extract | read | 1 | 3m20s (200 s) | 3m20s (200 s) |" in markdown
    assert "| orders | extract | parse | 1 | 40.00 s | 40.00 s |" in markdown
    assert "orders.extract is slower: 4m2s (242 s) on average against 2m2s (122 s)" in markdown
    assert "billing fails more often: 75.0 % of task tries failed against 25.0 % before." in markdown
    assert (
        "[high] orders.extract stage read (regression): read took 200 s, 2x its median. "
        "Suggestion: look at the source" in markdown
    )
    assert "| billing | 4 | 3 | 75.0 % | 25.0 % | 4 | 3 | 75.0 % |" in markdown
    assert "Nothing: every section has data." in markdown
    assert details["summary"]["tries"] == 12 and details["summary"]["regressions"] == 2
    assert stored.run.looked_at == 12 + 12 + 4
    (mail,) = smtp_server.wait_for(1)
    assert set(mail.rcpt_tos) == {"ops@example.com", "lead@example.com"}
    assert str(mail.message["Subject"]).strip() == details["title"]
    parts = {p.get_content_type(): p.get_content() for p in mail.message.iter_parts()}
    assert "<h2>Slowest tasks</h2>" in parts["text/html"] and "## Slowest tasks" in parts["text/plain"]
    assert details["email"]["sent"] and details["email"]["message_id"] == mail.message["Message-ID"]


def test_missing_data_is_said_plainly(configured: Store, tmp_path: Any) -> None:
    summary = _op(tmp_path).execute(_context())
    assert summary["errors"] == []
    details = get_store().maintenance.runs("performance_report")[0].run.details
    missing = " ".join(details["missing"])
    assert "No task tries were recorded from 2024-01-03 00:00 UTC to 2024-01-04 00:00 UTC" in missing
    assert "No finished DAG runs were recorded" in missing
    assert "No task was profiled in the period" in missing
    assert "No task with a recorded duration in the period." in details["markdown"]
    assert details["email"] == {"sent": False}


def test_without_a_profiles_concern_and_without_a_previous_period(
    configured: Store, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configured.outcomes.record(_try("orders", "load", 1, END - 3600, 30.0))
    monkeypatch.delattr(get_store(), "profiles")  # a store of an etlops-airflow without profiling
    _op(tmp_path, period="12h").execute(_context())
    details = get_store().maintenance.runs("performance_report")[0].run.details
    missing = " ".join(details["missing"])
    assert "This store has no profiling data (no profiles concern" in missing
    assert "No task tries were recorded in the previous period" in missing
    assert "Not available: this store has no profiling data." in details["markdown"]
    assert "No regression found (no previous period to compare with)." in details["markdown"]


def test_an_email_that_cannot_be_delivered_fails_the_task_after_recording(
    configured: Store, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, smtp_server: SmtpServer
) -> None:
    conn_id = _smtp(monkeypatch, smtp_server)
    smtp_server.fail_next(3, 550)
    with pytest.raises(MaintenanceFailed, match="the report was not e-mailed: .*550"):
        _op(tmp_path, email_recipients=["nobody@example.com"], smtp_conn_id=conn_id).execute(_context())
    (stored,) = get_store().maintenance.runs("performance_report")
    assert not stored.run.ok and "## Summary" in stored.run.details["markdown"]


def test_report_assembly_in_plain_python() -> None:
    inputs = ReportInputs(
        start=END - DAY,
        end=END,
        tasks=[
            TaskDurations("d", "t|pipe", 2, 10.0, 12.0, 2, 9.0),
            TaskDurations("d", "gone", 0, None, None, 3, 5.0),
        ],
        dags=[DagFailures("d", tries=2, prev_tries=5)],
        stages=None,
        findings=None,
    )
    report = build_report(inputs)
    assert [s.title for s in report.sections] == list(SECTIONS)
    assert "| d | t\\|pipe | 2 | 10.00 s | 12.00 s | 9.00 s | +11 % |" in report.markdown  # cells escaped
    assert "gone" not in report.markdown  # no try in the period: not ranked
    assert report.regressions == ()  # +11 % and +1 s: under the thresholds
    assert "<td" in report.html and "t|pipe" in report.html and "<script" not in report.html


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"period": "yesterday"}, "period 'yesterday'"),
        ({"period": "400d"}, "at most 366 days"),
        ({"email_recipients": ["not an address"]}, "email_recipients"),
        ({"email_recipients": []}, "email_recipients []"),
        ({"smtp_conn_id": ""}, "smtp_conn_id ''"),
        ({"top": 0}, "top 0"),
    ],
)
def test_checks_its_arguments_when_built(kwargs: dict[str, Any], shown: str) -> None:
    with pytest.raises(ValidationError, match="PerformanceAnalysisOperator 'report'") as info:
        PerformanceAnalysisOperator(task_id="report", **kwargs)
    assert shown in str(info.value)
