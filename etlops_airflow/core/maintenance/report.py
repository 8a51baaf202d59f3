"""The performance report: figures read from the store (this period and the one before) become
sections in Markdown and HTML, with regressions found and every gap in the data said plainly.
Plain Python; the operator reads the store and delivers the result.

Sections: summary; slowest tasks (average duration of their tries, with the previous period's);
slowest stages (from profiling, when the store has it); regressions and findings (tasks slower
than ``regression_factor`` times their previous average, and by ``regression_floor_s`` seconds;
DAGs whose failure rate grew by ``failure_rate_step`` or more; profiling findings); failure
rates per DAG (tries and DAG runs, this period against the previous); data not available.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from etlops_airflow.core.durations import format_duration


@dataclass(frozen=True)
class TaskDurations:
    """Tries of one task that ran (success, failed, up_for_retry) with a duration, per period."""

    dag_id: str
    task_id: str
    tries: int
    avg_s: float | None
    max_s: float | None
    prev_tries: int = 0
    prev_avg_s: float | None = None


@dataclass(frozen=True)
class DagFailures:
    """Task tries (ran) and DAG runs of one DAG, and how many failed, per period."""

    dag_id: str
    tries: int = 0
    failed_tries: int = 0
    runs: int = 0
    failed_runs: int = 0
    prev_tries: int = 0
    prev_failed_tries: int = 0
    prev_runs: int = 0
    prev_failed_runs: int = 0

    @property
    def try_failure_rate(self) -> float | None:
        return self.failed_tries / self.tries if self.tries else None

    @property
    def prev_try_failure_rate(self) -> float | None:
        return self.prev_failed_tries / self.prev_tries if self.prev_tries else None

    @property
    def run_failure_rate(self) -> float | None:
        return self.failed_runs / self.runs if self.runs else None


@dataclass(frozen=True)
class StageDurations:
    dag_id: str
    task_id: str
    path: str
    runs: int
    avg_s: float
    max_s: float


@dataclass(frozen=True)
class FindingLine:
    dag_id: str
    task_id: str
    kind: str
    severity: str
    stage: str
    message: str
    suggestion: str


@dataclass(frozen=True)
class ReportInputs:
    """What the store holds for ``[start, end)`` and the period before it.

    ``stages`` / ``findings`` are None when the store has no profiling concern at all (as
    opposed to an empty list: profiling is there, nothing was profiled in the period)."""

    start: float
    end: float
    tasks: Sequence[TaskDurations]
    dags: Sequence[DagFailures]
    stages: Sequence[StageDurations] | None
    findings: Sequence[FindingLine] | None
    sessions_read: int = 0
    sessions_limit: int | None = None


@dataclass(frozen=True)
class Section:
    title: str
    lines: tuple[str, ...] = ()  # paragraphs (plain text)
    header: tuple[str, ...] = ()  # a table, when given
    rows: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class PerformanceReport:
    title: str
    sections: tuple[Section, ...]
    missing: tuple[str, ...]
    regressions: tuple[str, ...]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def markdown(self) -> str:
        return render_markdown(self)

    @property
    def html(self) -> str:
        return render_html(self)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _secs(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f} s" if value < 60 else f"{format_duration(value)} ({value:,.0f} s)"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _change(now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return "no previous data" if before is None else "–"
    if before == 0:
        return "new" if now else "0 %"
    return f"{(now - before) / before * 100:+.0f} %"


def build_report(
    inputs: ReportInputs,
    *,
    top: int = 10,
    regression_factor: float = 1.25,
    regression_floor_s: float = 60.0,
    failure_rate_step: float = 0.1,
) -> PerformanceReport:
    period = inputs.end - inputs.start
    title = f"etlops performance report, {_when(inputs.start)} to {_when(inputs.end)}"
    missing: list[str] = []
    sections: list[Section] = []

    ran = [t for t in inputs.tasks if t.tries]
    total_tries = sum(d.tries for d in inputs.dags)
    failed_tries = sum(d.failed_tries for d in inputs.dags)
    prev_tries = sum(d.prev_tries for d in inputs.dags)
    prev_failed = sum(d.prev_failed_tries for d in inputs.dags)
    runs = sum(d.runs for d in inputs.dags)
    failed_runs = sum(d.failed_runs for d in inputs.dags)

    if not total_tries:
        missing.append(
            f"No task tries were recorded from {_when(inputs.start)} to {_when(inputs.end)}: nothing to "
            "rank. Tries are recorded by the etlops outcome listener ([etlops] record_task_outcomes)."
        )
    if total_tries and not prev_tries:
        missing.append(
            f"No task tries were recorded in the previous period ({_when(inputs.start - period)} to "
            f"{_when(inputs.start)}): no trend against it."
        )
    if not runs:
        missing.append(
            "No finished DAG runs were recorded in the period: DAG-run failure rates are not shown."
        )
    if inputs.stages is None:
        missing.append(
            "This store has no profiling data (no profiles concern in this etlops-airflow): no slowest "
            "stages and no profiling findings."
        )
    elif not inputs.stages:
        missing.append(
            "No task was profiled in the period: no slowest stages. Mark stages with the etlops profiler "
            "to see them."
        )
    if inputs.sessions_limit is not None and inputs.sessions_read >= inputs.sessions_limit:
        missing.append(
            f"Stages are ranked over the newest {inputs.sessions_limit} profiled tries of the period only."
        )

    summary_lines = [
        f"Period: {format_duration(period)}, {_when(inputs.start)} to {_when(inputs.end)}.",
        f"Task tries: {total_tries} ({failed_tries} failed, {_rate(_ratio(failed_tries, total_tries))}); "
        f"previous period: {prev_tries} ({prev_failed} failed, {_rate(_ratio(prev_failed, prev_tries))}).",
        f"DAG runs: {runs} ({failed_runs} failed).",
    ]
    sections.append(Section("Summary", tuple(summary_lines)))

    slow = sorted(
        (t for t in ran if t.avg_s is not None), key=lambda t: (-(t.avg_s or 0), t.dag_id, t.task_id)
    )[:top]
    sections.append(
        Section(
            "Slowest tasks",
            () if slow else ("No task with a recorded duration in the period.",),
            ("DAG", "task", "tries", "average", "longest", "previous average", "change"),
            tuple(
                (
                    t.dag_id,
                    t.task_id,
                    str(t.tries),
                    _secs(t.avg_s),
                    _secs(t.max_s),
                    _secs(t.prev_avg_s),
                    _change(t.avg_s, t.prev_avg_s),
                )
                for t in slow
            ),
        )
    )

    if inputs.stages is None:
        sections.append(Section("Slowest stages", ("Not available: this store has no profiling data.",)))
    else:
        stages = sorted(inputs.stages, key=lambda s: (-s.avg_s, s.dag_id, s.task_id, s.path))[:top]
        sections.append(
            Section(
                "Slowest stages",
                () if stages else ("No profiled stage in the period.",),
                ("DAG", "task", "stage", "runs", "average", "longest"),
                tuple(
                    (s.dag_id, s.task_id, s.path, str(s.runs), _secs(s.avg_s), _secs(s.max_s)) for s in stages
                ),
            )
        )

    regressions: list[str] = []
    for t in sorted(ran, key=lambda t: (t.dag_id, t.task_id)):
        if t.avg_s is None or t.prev_avg_s is None:
            continue
        if t.avg_s > t.prev_avg_s * regression_factor and t.avg_s - t.prev_avg_s >= regression_floor_s:
            regressions.append(
                f"{t.dag_id}.{t.task_id} is slower: {_secs(t.avg_s)} on average against "
                f"{_secs(t.prev_avg_s)} in the previous period ({_change(t.avg_s, t.prev_avg_s)})."
            )
    for d in sorted(inputs.dags, key=lambda d: d.dag_id):
        now, before = d.try_failure_rate, d.prev_try_failure_rate
        if now is not None and before is not None and now - before >= failure_rate_step:
            regressions.append(
                f"{d.dag_id} fails more often: {_rate(now)} of task tries failed against "
                f"{_rate(before)} before."
            )
    finding_lines = [
        f"[{f.severity}] {f.dag_id}.{f.task_id} stage {f.stage} ({f.kind}): {f.message.rstrip('. ')}. "
        f"Suggestion: {f.suggestion}"
        for f in sorted(
            inputs.findings or (),
            key=lambda f: (
                {"high": 0, "medium": 1, "low": 2}.get(f.severity, 3),
                f.dag_id,
                f.task_id,
                f.stage,
            ),
        )
    ][: top * 2]
    body = regressions + finding_lines
    if not body:
        body = ["No regression found" + ("" if prev_tries else " (no previous period to compare with)") + "."]
    sections.append(Section("Regressions and findings", tuple(body)))

    dags = sorted(inputs.dags, key=lambda d: (-(d.try_failure_rate or 0), d.dag_id))
    sections.append(
        Section(
            "Failure rates per DAG",
            () if dags else ("No DAG with recorded tries or runs in the period.",),
            ("DAG", "tries", "failed tries", "rate", "previous rate", "DAG runs", "failed runs", "run rate"),
            tuple(
                (
                    d.dag_id,
                    str(d.tries),
                    str(d.failed_tries),
                    _rate(d.try_failure_rate),
                    _rate(d.prev_try_failure_rate),
                    str(d.runs),
                    str(d.failed_runs),
                    _rate(d.run_failure_rate),
                )
                for d in dags
            ),
        )
    )
    sections.append(Section("Data not available", tuple(missing) or ("Nothing: every section has data.",)))
    summary = {
        "start": inputs.start,
        "end": inputs.end,
        "tries": total_tries,
        "failed_tries": failed_tries,
        "previous_tries": prev_tries,
        "dag_runs": runs,
        "failed_dag_runs": failed_runs,
        "tasks": len(ran),
        "profiled_stages": None if inputs.stages is None else len(inputs.stages),
        "findings": None if inputs.findings is None else len(inputs.findings),
        "regressions": len(regressions),
    }
    return PerformanceReport(title, tuple(sections), tuple(missing), tuple(regressions), summary)


_LISTS = ("Regressions and findings", "Data not available")


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(report: PerformanceReport) -> str:
    out = [f"# {report.title}", ""]
    for section in report.sections:
        out += [f"## {section.title}", ""]
        if section.title in _LISTS:
            out += [f"- {line}" for line in section.lines] + ([""] if section.lines else [])
        else:
            for line in section.lines:
                out += [line, ""]
        if section.rows:
            out.append("| " + " | ".join(map(_md_cell, section.header)) + " |")
            out.append("|" + "---|" * len(section.header))
            out += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in section.rows]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_html(report: PerformanceReport) -> str:
    e = html.escape
    cell = 'style="border:1px solid #ccc;padding:4px 8px;text-align:left"'
    out = [
        "<!DOCTYPE html>",
        f'<html><head><meta charset="utf-8"><title>{e(report.title)}</title></head>',
        '<body style="font-family:sans-serif">',
        f"<h1>{e(report.title)}</h1>",
    ]
    for section in report.sections:
        out.append(f"<h2>{e(section.title)}</h2>")
        if section.title in _LISTS:
            out.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in section.lines) + "</ul>")
        else:
            out += [f"<p>{e(line)}</p>" for line in section.lines]
        if section.rows:
            out.append('<table style="border-collapse:collapse">')
            out.append("<tr>" + "".join(f"<th {cell}>{e(h)}</th>" for h in section.header) + "</tr>")
            out += [
                "<tr>" + "".join(f"<td {cell}>{e(v)}</td>" for v in row) + "</tr>" for row in section.rows
            ]
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
