"""The performance report: slowest tasks and stages, regressions and findings, failure rates per
DAG and the trend against the previous period, from the etlops store; kept with the run in the
store, written to the task log and e-mailed. Assembly is in
:mod:`etlops_airflow.core.maintenance.report`.

Imported by DAG files: the store and the e-mail machinery load inside ``run_maintenance()``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from etlops_airflow.core.durations import format_duration, parse_duration
from etlops_airflow.core.maintenance.model import MaintenanceRun
from etlops_airflow.exceptions import ValidationError
from etlops_airflow.operators.data_quality import _conn_id
from etlops_airflow.operators.maintenance.base import MaintenanceOperator
from etlops_airflow.operators.maintenance.database import data_interval, is_dry_run

MAX_PERIOD_S = 366 * 86400
PROFILE_SESSIONS_LIMIT = 5000  # profiled tries of the period the stage ranking reads (newest first)
EMAIL_BUDGET_S = 60.0


def _recipients(owner: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ValidationError(
            "email_recipients",
            value,
            "expected a list of e-mail addresses (or a comma-separated text)",
            owner=owner,
        )
    from etlops_airflow.notifications.email import EmailSender

    try:
        return EmailSender("smtp_default", to=list(value)).to
    except ValidationError as exc:
        raise ValidationError("email_recipients", value, exc.reason, owner=owner) from None


class PerformanceAnalysisOperator(MaintenanceOperator):
    """Report on the last ``period`` (ending at the data interval's end; now outside a DAG run)
    from the etlops store, against the period before it:

    * slowest tasks: average and longest duration of the tries that ran, and the previous
      period's average;
    * slowest stages, from the store's profiling data (``store.profiles``) when the store has
      it; otherwise the report says that it is missing;
    * regressions and findings: tasks at least 25 % and 60 s slower on average than in the
      previous period, DAGs whose task-failure rate grew by 10 points or more, and the profiling
      findings of the period;
    * failure rates per DAG: task tries and DAG runs that failed, this period and the previous;
    * what data is not available (no outcomes recorded, no previous period, no profiling …).

    The report (Markdown and HTML) is kept in the store as the run's details
    (``store.maintenance.runs("performance_report")``), written to the task log, and e-mailed
    (HTML with a plain-text part) through ``smtp_conn_id`` to ``email_recipients`` when given;
    an e-mail that cannot be delivered fails the task after the report is recorded.
    """

    maintenance_task = "performance_report"

    def __init__(
        self,
        *,
        period: str | float = "1d",
        email_recipients: Sequence[str] | str | None = None,
        smtp_conn_id: str = "smtp_default",
        top: int = 10,
        **kwargs: Any,
    ) -> None:
        owner = f"PerformanceAnalysisOperator {kwargs.get('task_id', '?')!r}"
        period_s = parse_duration(
            period, lambda reason: ValidationError("period", period, reason, owner=owner)
        )
        if period_s > MAX_PERIOD_S:
            raise ValidationError("period", period, "at most 366 days", owner=owner)
        recipients = _recipients(owner, email_recipients)
        _conn_id(owner, "smtp_conn_id", smtp_conn_id)
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 1000:
            raise ValidationError("top", top, "expected a whole number from 1 to 1000", owner=owner)
        super().__init__(**kwargs)
        self.period = period
        self.period_s = period_s
        self.email_recipients = recipients
        self.smtp_conn_id = smtp_conn_id
        self.top = top

    def run_maintenance(self, context: Any) -> MaintenanceRun:
        from etlops_airflow.core.maintenance.report import ReportInputs, build_report
        from etlops_airflow.runtime import store_for

        started = time.time()
        _start, end = data_interval(context)
        start = end - self.period_s
        previous = start - self.period_s
        store = store_for(self.etlops_conn_id)
        tasks = store.maintenance.task_durations(start, end, previous)
        dags = store.maintenance.dag_failures(start, end, previous)
        stages, findings, sessions_read = self._profiles(store, start, end)
        report = build_report(
            ReportInputs(
                start=start,
                end=end,
                tasks=tasks,
                dags=dags,
                stages=stages,
                findings=findings,
                sessions_read=sessions_read,
                sessions_limit=PROFILE_SESSIONS_LIMIT if stages is not None else None,
            ),
            top=self.top,
        )
        markdown, html = report.markdown, report.html
        self.log.info("Performance report:\n%s", markdown)
        for gap in report.missing:
            self.log.warning("Data not available: %s", gap)
        errors: list[str] = []
        email: dict[str, Any] = {"sent": False}
        if self.email_recipients and not is_dry_run(self):
            email = self._send(report.title, html, markdown)
            if not email["sent"]:
                errors.append(f"the report was not e-mailed: {email['error']}")
        elif self.email_recipients:
            email["note"] = "dry run: not e-mailed"
        summary = report.summary
        return MaintenanceRun(
            task=self.maintenance_task,
            target=f"{store.display_url}: the last {format_duration(self.period_s)}",
            started_at=started,
            duration_s=0.0,
            looked_at=int(summary["tries"]) + int(summary["previous_tries"]) + int(summary["dag_runs"]),
            changed=1 if email.get("sent") else 0,
            errors=tuple(errors),
            details={
                "title": report.title,
                "summary": summary,
                "missing": list(report.missing),
                "regressions": list(report.regressions),
                "email": email,
                "markdown": markdown,
                "html": html,
            },
        )

    def _profiles(
        self, store: Any, start: float, end: float
    ) -> tuple[list[Any] | None, list[Any] | None, int]:
        """Slowest stages and findings of the period from ``store.profiles`` (None, None when the
        store has no profiling concern). A stage run more than once in a try counts with its
        total time there."""
        from etlops_airflow.core.maintenance.report import FindingLine, StageDurations

        profiles = getattr(store, "profiles", None)
        if profiles is None or not hasattr(profiles, "sessions"):
            return None, None, 0
        sessions = [
            s
            for s in profiles.sessions(since=start, limit=PROFILE_SESSIONS_LIMIT)
            if s.report.started_at < end
        ]
        per_stage: dict[tuple[str, str, str], list[float]] = {}
        findings: list[FindingLine] = []
        for stored in sessions:
            report = stored.report
            dag_id, task_id = report.key.dag_id or "?", report.key.task_id or "?"
            totals: dict[str, float] = {}
            for stage in report.stages:
                totals[stage.path] = totals.get(stage.path, 0.0) + float(stage.duration_s)
            for path, seconds in totals.items():
                per_stage.setdefault((dag_id, task_id, path), []).append(seconds)
            findings += [
                FindingLine(dag_id, task_id, f.kind, f.severity, f.stage, f.message, f.suggestion)
                for f in report.findings
            ]
        stages = [
            StageDurations(dag_id, task_id, path, len(times), sum(times) / len(times), max(times))
            for (dag_id, task_id, path), times in per_stage.items()
        ]
        return stages, findings, len(sessions)

    def _send(self, subject: str, html: str, text: str) -> dict[str, Any]:
        from etlops_airflow.notifications.email import EmailSender

        assert self.email_recipients is not None
        sender = EmailSender(self.smtp_conn_id, to=list(self.email_recipients))
        attempts: list[dict[str, Any]] = []
        result = sender.send(
            subject,
            html,
            text,
            deadline=time.monotonic() + EMAIL_BUDGET_S,
            on_attempt=lambda a: attempts.append({"at": a.at, "status": a.status, "error": a.error}),
        )
        if result.ok:
            self.log.info("Report e-mailed to %s (%s)", ", ".join(self.email_recipients), result.external_id)
        else:
            self.log.error("Report not e-mailed: %s", result.error)
        return {
            "sent": result.ok,
            "to": list(self.email_recipients),
            "message_id": result.external_id,
            "error": result.error,
            "attempts": attempts,
        }
