"""A session's report: built from its stages, shown compact (XCom) or as a table (task log).

* :func:`build_report` — total duration, stages, peak memory, peak CPU, average throughput,
  findings (and regressions when a history is given) and recommendations.
* :func:`with_findings` — the same report with more findings (e.g. regressions found later).
* :func:`summary` — a small JSON-able dict: figures per stage path (runs of a repeated stage
  added up), findings, recommendations; no samples.
* :func:`table` — a readable table for the task log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from etlops_airflow.core.profiling import findings as rules
from etlops_airflow.core.profiling.model import Finding, SessionKey, SessionReport, StageFigures, Thresholds

__all__ = ["PathFigures", "build_report", "by_path", "summary", "table", "with_findings"]

MAX_SUMMARY_STAGES = 50  # stage paths in a summary (XCom stays small); the rest are counted
MAX_SUMMARY_FINDINGS = 20
MAX_TABLE_ERRORS = 10


def _records(stage: StageFigures) -> int | None:
    return stage.records_out if stage.records_out is not None else stage.records_in


def build_report(
    key: SessionKey,
    *,
    started_at: float,
    duration_s: float,
    stages: Sequence[StageFigures],
    peak_rss_bytes: int = 0,
    peak_cpu_percent: float = 0.0,
    thresholds: Thresholds | None = None,
    history: Mapping[str, Sequence[float]] | None = None,
    notes: Sequence[str] = (),
) -> SessionReport:
    """The report of a session. ``peak_*`` are the session's own (sampled) peaks; the stages'
    peaks count too. ``records_per_s`` is the records out (in, where no out was given) of the
    stages with records over their total time."""
    stages = tuple(sorted(stages, key=lambda s: s.index))
    with_records = [(r, s.duration_s) for s in stages if (r := _records(s)) is not None]
    total_time = sum(d for _, d in with_records)
    rate = sum(r for r, _ in with_records) / total_time if with_records and total_time > 0 else None
    report = SessionReport(
        key=key,
        started_at=started_at,
        duration_s=max(0.0, duration_s),
        stages=stages,
        peak_rss_bytes=max([int(peak_rss_bytes), *(s.peak_rss_bytes for s in stages)]),
        peak_cpu_percent=max([float(peak_cpu_percent), *(s.cpu_percent for s in stages)]),
        records_per_s=rate,
        notes=tuple(notes),
    )
    found = rules.findings(stages, thresholds)
    if history:
        found += rules.regressions(report, history, thresholds)
    return with_findings(report, found)


def with_findings(report: SessionReport, extra: Sequence[Finding]) -> SessionReport:
    """``report`` with ``extra`` findings added (a finding of the same kind and stage is
    replaced) and the recommendations rebuilt."""
    merged: dict[tuple[str, str], Finding] = {(f.kind, f.stage): f for f in report.findings}
    for f in extra:
        merged[(f.kind, f.stage)] = f
    ordered = sorted(
        merged.values(), key=lambda f: rules._rank(f)
    )  # stable: keeps stage order within a severity
    return dataclasses.replace(
        report, findings=tuple(ordered), recommendations=tuple(rules.recommendations(ordered))
    )


# -- per stage path ----------------------------------------------------------------------------------


@dataclasses.dataclass
class PathFigures:
    """The runs of one stage path added up (see :func:`by_path`)."""

    path: str
    runs: int = 0
    duration_s: float = 0.0
    records_in: int | None = None
    records_out: int | None = None
    cpu_s: float = 0.0
    peak_rss_bytes: int = 0
    end_rss_bytes: int = 0
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    io_read_ops: int | None = None
    io_write_ops: int | None = None
    threads_peak: int = 0
    children_peak: int = 0
    samples: int = 0
    errors: int = 0
    cpu_count: float = 0.0  # cores, from cpu_percent / cpu_percent_machine

    @property
    def records_per_s(self) -> float | None:
        records = self.records_out if self.records_out is not None else self.records_in
        return records / self.duration_s if records is not None and self.duration_s > 0 else None

    @property
    def cpu_percent(self) -> float:
        return self.cpu_s / self.duration_s * 100 if self.duration_s > 0 else 0.0

    @property
    def cpu_percent_machine(self) -> float:
        return self.cpu_percent / self.cpu_count if self.cpu_count else 0.0


def _add(a: int | None, b: int | None, first: bool) -> int | None:
    if first:
        return b
    return None if a is None or b is None else a + b


def by_path(stages: Sequence[StageFigures]) -> list[PathFigures]:
    """Stages grouped by path in the order they first started: runs, total time, records and
    IO added up, CPU over the total time, peaks the highest of the runs."""
    groups: dict[str, PathFigures] = {}
    for s in sorted(stages, key=lambda s: s.index):
        g = groups.get(s.path)
        first = g is None
        if g is None:
            g = groups[s.path] = PathFigures(s.path)
        g.runs += 1
        g.duration_s += s.duration_s
        g.records_in = _add(g.records_in, s.records_in, first)
        g.records_out = _add(g.records_out, s.records_out, first)
        g.cpu_s += s.cpu_s
        g.peak_rss_bytes = max(g.peak_rss_bytes, s.peak_rss_bytes)
        g.end_rss_bytes = s.end_rss_bytes
        g.io_read_bytes = _add(g.io_read_bytes, s.io_read_bytes, first)
        g.io_write_bytes = _add(g.io_write_bytes, s.io_write_bytes, first)
        g.io_read_ops = _add(g.io_read_ops, s.io_read_ops, first)
        g.io_write_ops = _add(g.io_write_ops, s.io_write_ops, first)
        g.threads_peak = max(g.threads_peak, s.threads_peak)
        g.children_peak = max(g.children_peak, s.children_peak)
        g.samples += s.samples
        g.errors += s.error is not None
        if s.cpu_percent_machine > 0:
            g.cpu_count = s.cpu_percent / s.cpu_percent_machine
    return list(groups.values())


# -- summary (XCom) ----------------------------------------------------------------------------------


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def summary(report: SessionReport) -> dict[str, Any]:
    """A compact, JSON-able view of the report for XCom: the session's figures, one entry per
    stage path (runs of a repeated stage added up; at most 50 paths), the findings (at most
    20), the recommendations and the profiler's notes. No samples."""
    k = report.key
    paths = by_path(report.stages)
    shown = paths[:MAX_SUMMARY_STAGES]
    errors: dict[str, str] = {}
    for s in report.stages:
        if s.error is not None:
            errors.setdefault(s.path, s.error)
    out: dict[str, Any] = {
        "key": {
            "dag_id": k.dag_id,
            "task_id": k.task_id,
            "run_id": k.run_id,
            "map_index": k.map_index,
            "try_number": k.try_number,
        },
        "started_at": _r(report.started_at, 3),
        "duration_s": _r(report.duration_s),
        "peak_rss_bytes": int(report.peak_rss_bytes),
        "peak_cpu_percent": _r(report.peak_cpu_percent, 1),
        "records_per_s": _r(report.records_per_s, 1),
        "stages": [
            {
                "path": g.path,
                "runs": g.runs,
                "duration_s": _r(g.duration_s),
                "records_in": g.records_in,
                "records_out": g.records_out,
                "records_per_s": _r(g.records_per_s, 1),
                "cpu_percent": _r(g.cpu_percent, 1),
                "cpu_percent_machine": _r(g.cpu_percent_machine, 1),
                "peak_rss_bytes": g.peak_rss_bytes,
                "end_rss_bytes": g.end_rss_bytes,
                "io_read_bytes": g.io_read_bytes,
                "io_write_bytes": g.io_write_bytes,
                "io_read_ops": g.io_read_ops,
                "io_write_ops": g.io_write_ops,
                "threads_peak": g.threads_peak,
                "children_peak": g.children_peak,
                "error": errors.get(g.path),
            }
            for g in shown
        ],
        "findings": [
            {
                "kind": f.kind,
                "severity": f.severity,
                "stage": f.stage,
                "message": f.message,
                "suggestion": f.suggestion,
                "value": _r(f.value),
                "threshold": _r(f.threshold),
            }
            for f in report.findings[:MAX_SUMMARY_FINDINGS]
        ],
        "recommendations": list(report.recommendations),
    }
    if len(paths) > len(shown):
        out["stages_not_shown"] = len(paths) - len(shown)
    if len(report.findings) > MAX_SUMMARY_FINDINGS:
        out["findings_not_shown"] = len(report.findings) - MAX_SUMMARY_FINDINGS
    if report.notes:
        out["notes"] = list(report.notes)
    return out


# -- table (task log) --------------------------------------------------------------------------------


def _bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}B"


def _dur(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.1f}ms"
    if s < 600:
        return f"{s:.2f}s"
    return f"{s / 60:.1f}min"


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _num(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def table(report: SessionReport) -> str:
    """The report as text for the task log: a header line, one row per stage path (nested
    stages indented), then findings and recommendations."""
    k = report.key
    who = ".".join(p for p in (k.dag_id, k.task_id) if p) or "(outside Airflow)"
    if k.run_id:
        who += f" run {k.run_id}"
    if k.map_index >= 0:
        who += f" map {k.map_index}"
    if k.try_number is not None:
        who += f" try {k.try_number}"
    rate = f", {report.records_per_s:,.1f} records/s" if report.records_per_s is not None else ""
    lines = [
        f"etlops profile {who}: {_dur(report.duration_s)}, peak memory {_bytes(report.peak_rss_bytes)}, "
        f"peak CPU {report.peak_cpu_percent:.0f}%{rate}"
    ]
    header = (
        "stage",
        "runs",
        "time",
        "rec in",
        "rec out",
        "rec/s",
        "CPU%",
        "peak RSS",
        "read",
        "written",
        "thr",
        "chld",
    )
    rows = [header]
    errors = {s.path for s in report.stages if s.error is not None}
    for g in by_path(report.stages):
        depth = g.path.count("/")
        name = "  " * depth + g.path.rsplit("/", 1)[-1] + (" !" if g.path in errors else "")
        rows.append(
            (
                name,
                str(g.runs),
                _dur(g.duration_s),
                _count(g.records_in),
                _count(g.records_out),
                _num(g.records_per_s, 1),
                _num(g.cpu_percent),
                _bytes(g.peak_rss_bytes),
                _bytes(g.io_read_bytes),
                _bytes(g.io_write_bytes),
                str(g.threads_peak),
                str(g.children_peak),
            )
        )
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
            lines.append("  " + "  ".join(cells).rstrip())
    else:
        lines.append("  (no stage ran)")
    failed = [s for s in report.stages if s.error is not None]
    for s in failed[:MAX_TABLE_ERRORS]:
        lines.append(f"  ! {s.path} (run {s.index}) ended in {s.error}")
    if len(failed) > MAX_TABLE_ERRORS:
        lines.append(f"  ! … and {len(failed) - MAX_TABLE_ERRORS} more stage runs ended in an error")
    if report.findings:
        lines.append("findings:")
        for f in report.findings:
            lines.append(f"  [{f.severity}] {f.kind} {f.stage or '(whole task)'}: {f.message}")
    if report.recommendations:
        lines.append("recommendations:")
        lines.extend(f"  - {r}" for r in report.recommendations)
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
