"""Bottleneck rules: stage figures in, findings with a severity and a suggested fix out.

Rules (thresholds from :class:`~.model.Thresholds`, overridable per call):

* ``memory`` — peak RSS (process and children) above ``memory_bytes``; high from twice that.
* ``cpu`` — CPU above ``cpu_percent`` of one core over a stage of at least ``min_stage_s``;
  high when the stage keeps 90 % of all the cores busy.
* ``throughput`` — records/s below ``min_records_per_s`` over a stage with records of at
  least ``min_stage_s``; high below a tenth of it, low above half of it.
* ``io_bound`` — CPU below ``io_bound_cpu_percent`` over a stage of at least
  ``io_bound_min_s`` while at least ``io_bound_min_bytes`` went through reads and writes
  (the stage waits on IO). Not judged where the OS gives no IO counters.
* ``regression`` (:func:`regressions`) — slower than the median of the last
  ``regression_runs`` runs by more than ``regression_factor`` *and* by more than
  ``regression_floor_s`` seconds (a 2 s stage taking 3 s is noise); high from twice the median.
  Too little history (fewer runs than ``regression_runs``) gives no finding.

A stage that ran several times gives one finding per kind (its worst run); a finding of a
stage is left out when a stage nested in it has the same kind (the nested one says where).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from etlops_airflow.core.profiling.model import (
    FINDING_SEVERITIES,
    Finding,
    SessionReport,
    StageFigures,
    Thresholds,
)
from etlops_airflow.exceptions import ValidationError

__all__ = [
    "SUGGESTIONS",
    "durations_by_path",
    "findings",
    "recommendations",
    "regressions",
    "stage_findings",
]

SUGGESTIONS = {
    "memory": (
        "Process the data in chunks instead of all at once (stream rows with a server-side cursor "
        "or fetchmany, read files in chunks or batches), keep only the columns you need and drop "
        "references to large intermediates; or run the task on a worker with more memory."
    ),
    "cpu": (
        "The stage is CPU-bound: vectorise per-row Python work (pandas, NumPy, pyarrow), push joins "
        "and aggregations into the database, or split the input and process the parts in parallel "
        "(dynamic task mapping, a process pool)."
    ),
    "cpu_all_cores": (
        "The stage keeps every core of the worker busy: give it a bigger worker, or run fewer tasks "
        "at once on this worker (pools, max_active_tis_per_dag)."
    ),
    "throughput": (
        "Per-record overhead dominates: batch the work (bulk inserts, COPY, executemany, paged "
        "fetches, vectorised transforms) instead of one call per record, and cache repeated lookups."
    ),
    "io_bound": (
        "The stage waits on IO: read and write in larger batches, run independent requests "
        "concurrently (a thread pool, an async client, mapped tasks), compress transfers and filter "
        "at the source; for a database, check the query plan and its indexes."
    ),
    "regression": (
        "Compare this run with the previous ones: input size (records in), data skew, the load on "
        "the source and target systems, and recent code or query changes; the stage's records/s, "
        "CPU and IO figures show which one moved."
    ),
}

_KIND_LABEL = {
    "memory": "Memory",
    "cpu": "CPU-bound",
    "throughput": "Low throughput",
    "io_bound": "IO-bound",
    "regression": "Regression",
}


def _mib(n: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _secs(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min"


def _rate(stage: StageFigures) -> float | None:
    return stage.records_per_s


def stage_findings(stage: StageFigures, thresholds: Thresholds | None = None) -> list[Finding]:
    """The findings of one stage run (no de-duplication, no regression)."""
    t = thresholds or Thresholds()
    found: list[Finding] = []
    dur = stage.duration_s
    if stage.peak_rss_bytes > t.memory_bytes:
        found.append(
            Finding(
                kind="memory",
                severity="high" if stage.peak_rss_bytes >= 2 * t.memory_bytes else "medium",
                stage=stage.path,
                message=(
                    f"peak memory {_mib(stage.peak_rss_bytes)} (process and child processes) is above "
                    f"{_mib(t.memory_bytes)}"
                ),
                suggestion=SUGGESTIONS["memory"],
                value=float(stage.peak_rss_bytes),
                threshold=float(t.memory_bytes),
            )
        )
    long_enough = dur >= t.min_stage_s
    if long_enough and stage.cpu_percent > t.cpu_percent:
        all_cores = stage.cpu_percent_machine >= 90.0
        cores = round(stage.cpu_percent / stage.cpu_percent_machine) if stage.cpu_percent_machine else 0
        of_machine = f" ({stage.cpu_percent_machine:.0f} % of {cores} cores)" if cores else ""
        found.append(
            Finding(
                kind="cpu",
                severity="high" if all_cores else "medium",
                stage=stage.path,
                message=(
                    f"CPU {stage.cpu_percent:.0f} % of one core{of_machine} over {_secs(dur)} is above "
                    f"{t.cpu_percent:.0f} %"
                ),
                suggestion=SUGGESTIONS["cpu_all_cores" if all_cores else "cpu"],
                value=float(stage.cpu_percent),
                threshold=float(t.cpu_percent),
            )
        )
    rate = _rate(stage)
    if long_enough and rate is not None and rate < t.min_records_per_s:
        severity = (
            "high"
            if rate < t.min_records_per_s / 10
            else "low"
            if rate >= t.min_records_per_s / 2
            else "medium"
        )
        found.append(
            Finding(
                kind="throughput",
                severity=severity,
                stage=stage.path,
                message=f"{rate:.1f} records/s over {_secs(dur)} is below {t.min_records_per_s:g} records/s",
                suggestion=SUGGESTIONS["throughput"],
                value=float(rate),
                threshold=float(t.min_records_per_s),
            )
        )
    if (
        dur >= t.io_bound_min_s
        and stage.cpu_percent < t.io_bound_cpu_percent
        and stage.io_read_bytes is not None
        and stage.io_write_bytes is not None
    ):
        moved = stage.io_read_bytes + stage.io_write_bytes
        if moved >= t.io_bound_min_bytes:
            found.append(
                Finding(
                    kind="io_bound",
                    severity="medium",
                    stage=stage.path,
                    message=(
                        f"CPU {stage.cpu_percent:.0f} % of one core over {_secs(dur)} while "
                        f"{_mib(stage.io_read_bytes)} were read and {_mib(stage.io_write_bytes)} written: "
                        "the stage waits on IO"
                    ),
                    suggestion=SUGGESTIONS["io_bound"],
                    value=float(stage.cpu_percent),
                    threshold=float(t.io_bound_cpu_percent),
                )
            )
    return found


def _excess(f: Finding) -> float:
    """How far past its threshold a finding is (larger is worse), for picking the worst run."""
    if f.kind in ("throughput", "io_bound"):  # lower is worse
        return f.threshold / f.value if f.value > 0 else math.inf
    return f.value / f.threshold if f.threshold > 0 else math.inf


def _rank(f: Finding) -> int:
    return (
        FINDING_SEVERITIES.index(f.severity) if f.severity in FINDING_SEVERITIES else len(FINDING_SEVERITIES)
    )


def _condense(found: Iterable[Finding], order: Mapping[str, int]) -> list[Finding]:
    """One finding per (kind, stage path): the worst; none for a stage when a stage nested in it
    has the same kind. Sorted by severity, then by stage order."""
    worst: dict[tuple[str, str], Finding] = {}
    runs: dict[tuple[str, str], int] = {}
    for f in found:
        key = (f.kind, f.stage)
        runs[key] = runs.get(key, 0) + 1
        if key not in worst or _excess(f) > _excess(worst[key]):
            worst[key] = f
    kept = []
    for (kind, path), f in worst.items():
        if any(k == kind and p.startswith(path + "/") for k, p in worst if p != path):
            continue
        n = runs[(kind, path)]
        if n > 1:
            f = Finding(
                f.kind,
                f.severity,
                f.stage,
                f"{f.message} (worst of {n} runs)",
                f.suggestion,
                f.value,
                f.threshold,
            )
        kept.append(f)
    kept.sort(key=lambda f: (_rank(f), order.get(f.stage, len(order)), f.kind))
    return kept


def _order(stages: Sequence[StageFigures]) -> dict[str, int]:
    order: dict[str, int] = {}
    for s in sorted(stages, key=lambda s: s.index):
        order.setdefault(s.path, len(order))
    return order


def findings(stages: Sequence[StageFigures], thresholds: Thresholds | None = None) -> list[Finding]:
    """Memory, CPU, throughput and IO-bound findings over a session's stages (see the module)."""
    t = thresholds or Thresholds()
    return _condense((f for s in stages for f in stage_findings(s, t)), _order(stages))


def durations_by_path(stages: Sequence[StageFigures]) -> dict[str, float]:
    """Total time per stage path in one session (a stage that ran several times counts with the
    sum of its runs), in the order the paths first started. This is the figure
    :func:`regressions` compares, and what a history should hold per past run."""
    total: dict[str, float] = {}
    for s in sorted(stages, key=lambda s: s.index):
        total[s.path] = total.get(s.path, 0.0) + s.duration_s
    return total


def _history_values(path: str, values: object) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValidationError(f"history[{path!r}]", values, "expected a list of durations in seconds")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValidationError(f"history[{path!r}]", v, "expected durations in seconds (finite, >= 0)")
        out.append(float(v))
    return out


def regressions(
    report: SessionReport,
    history: Mapping[str, Sequence[float]],
    thresholds: Thresholds | None = None,
) -> list[Finding]:
    """Stages of ``report`` slower than their recent past.

    ``history`` maps a stage path to its durations in earlier runs of the same task, **newest
    first** (as ``ProfilesStore.history`` returns them), each the total time of that path in
    one run (see :func:`durations_by_path`); runs in which the stage failed are best left out.
    The median of the newest ``regression_runs`` values is the baseline; a path with fewer
    values, or none, is not judged. A stage of this report that ended in an error is not judged.
    """
    t = thresholds or Thresholds()
    if not isinstance(history, Mapping):
        raise ValidationError("history", history, "expected a mapping of stage path to durations")
    failed = {s.path for s in report.stages if s.error is not None}
    found = []
    for path, current in durations_by_path(report.stages).items():
        if path in failed or path not in history:
            continue
        past = _history_values(path, history[path])[: t.regression_runs]
        if len(past) < t.regression_runs:
            continue
        ordered = sorted(past)
        mid = len(ordered) // 2
        median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        limit = max(median * t.regression_factor, median + t.regression_floor_s)
        if current <= limit:
            continue
        slower = f"+{(current / median - 1) * 100:.0f} %, " if median > 0 else ""
        found.append(
            Finding(
                kind="regression",
                severity="high" if current >= 2 * median else "medium",
                stage=path,
                message=(
                    f"took {_secs(current)} against a median of {_secs(median)} over the last "
                    f"{len(past)} runs ({slower}+{_secs(current - median)}); a regression is slower by "
                    f"more than x{t.regression_factor:g} and by more than {_secs(t.regression_floor_s)}"
                ),
                suggestion=SUGGESTIONS["regression"],
                value=current,
                threshold=limit,
            )
        )
    return _condense(found, _order(report.stages))


def recommendations(found: Sequence[Finding]) -> list[str]:
    """One line per kind of finding (worst first): which stages, and what to do."""
    by_kind: dict[str, list[Finding]] = {}
    for f in sorted(found, key=_rank):
        by_kind.setdefault(f.kind, []).append(f)
    lines = []
    for kind, items in by_kind.items():
        stages = ", ".join(dict.fromkeys(f.stage or "(whole task)" for f in items))
        suggestion = items[0].suggestion
        lines.append(f"{_KIND_LABEL.get(kind, kind)} ({stages}): {suggestion}")
    return lines
