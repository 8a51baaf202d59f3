"""What profiling measures and reports, as plain data (the contract between the engine, the
store, the listener and the operations view)."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from etlops_airflow.exceptions import ValidationError

FINDING_KINDS = ("memory", "cpu", "throughput", "io_bound", "regression")
FINDING_SEVERITIES = ("high", "medium", "low")
MAX_STAGE_NAME = 250  # the store's limits for a stage name and a stage path
MAX_STAGE_PATH = 500


def check_stage_name(name: object) -> str:
    """A stage name as given by task code: non-empty text without ``/`` (the path separator)."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("stage name", name, "expected non-empty text", owner="profiling")
    if "/" in name or "\x00" in name:
        raise ValidationError("stage name", name, "must not contain '/' or NUL", owner="profiling")
    if len(name) > MAX_STAGE_NAME:
        raise ValidationError("stage name", name, f"at most {MAX_STAGE_NAME} characters", owner="profiling")
    return name


def check_records(field: str, value: object, stage: str) -> int | None:
    """A record count (``records_in`` / ``records_out``): None or a whole number >= 0."""
    if value is None:
        return None
    reason = "expected a whole number of records"
    if isinstance(value, bool):
        raise ValidationError(field, value, reason, owner=f"stage {stage!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValidationError(field, value, reason, owner=f"stage {stage!r}") from None
    if number < 0:
        raise ValidationError(field, value, "must not be negative", owner=f"stage {stage!r}")
    return number


@dataclass(frozen=True)
class SessionKey:
    """Which task try a session belongs to (all None outside Airflow)."""

    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    map_index: int = -1
    try_number: int | None = None


@dataclass(frozen=True)
class Thresholds:
    """When a stage becomes a finding. Defaults are the documented ``[etlops]`` defaults."""

    memory_bytes: float = 1024**3  # peak RSS above 1 GiB
    cpu_percent: float = 90.0  # of one core, sustained over the stage
    min_records_per_s: float = 100.0  # throughput below this (stages with records only)
    io_bound_cpu_percent: float = 20.0  # CPU below this while IO moves ...
    io_bound_min_s: float = 5.0  # ... for a stage at least this long
    regression_factor: float = 1.25  # slower than the median of the last runs by 25 % ...
    regression_floor_s: float = 60.0  # ... and by at least this many seconds
    regression_runs: int = 3  # the median of the last N runs of the same stage
    min_stage_s: float = 5.0  # CPU and throughput findings only for stages at least this long
    io_bound_min_bytes: float = 1024**2  # "IO moving": at least this many bytes read + written

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValidationError(f.name, value, "expected a finite number", owner="profiling thresholds")
            if value < 0:
                raise ValidationError(f.name, value, "must not be negative", owner="profiling thresholds")
        if self.regression_factor < 1:
            raise ValidationError(
                "regression_factor",
                self.regression_factor,
                "must be at least 1",
                owner="profiling thresholds",
            )
        if not isinstance(self.regression_runs, int) or self.regression_runs < 1:
            raise ValidationError(
                "regression_runs",
                self.regression_runs,
                "expected a whole number of at least 1",
                owner="profiling thresholds",
            )


@dataclass(frozen=True)
class StageFigures:
    """Every figure of one stage run. CPU includes child processes; ``cpu_percent`` is of one
    core (may exceed 100 with threads or children), ``cpu_percent_machine`` of all cores."""

    name: str
    path: str  # "enrich" or "transform/enrich" when nested
    index: int  # order of start within the session
    started_at: float  # epoch seconds
    duration_s: float
    records_in: int | None = None
    records_out: int | None = None
    records_per_s: float | None = None
    cpu_s: float = 0.0
    cpu_percent: float = 0.0
    cpu_percent_machine: float = 0.0
    peak_rss_bytes: int = 0
    end_rss_bytes: int = 0
    io_read_bytes: int | None = None  # None where the OS does not say (macOS)
    io_write_bytes: int | None = None
    io_read_ops: int | None = None
    io_write_ops: int | None = None
    threads_peak: int = 0
    children_peak: int = 0
    samples: int = 0
    error: str | None = None  # the exception that ended the stage, if any


@dataclass(frozen=True)
class Finding:
    kind: str  # one of FINDING_KINDS
    severity: str  # one of FINDING_SEVERITIES
    stage: str  # the stage's path
    message: str  # what was seen, with the numbers
    suggestion: str  # what to do about it
    value: float
    threshold: float


@dataclass(frozen=True)
class SessionReport:
    """One task try (or one in-memory session outside Airflow)."""

    key: SessionKey
    started_at: float
    duration_s: float
    stages: Sequence[StageFigures]
    peak_rss_bytes: int
    peak_cpu_percent: float
    records_per_s: float | None  # total records out / total stage time, over stages with records
    findings: Sequence[Finding] = field(default_factory=tuple)
    recommendations: Sequence[str] = field(default_factory=tuple)
    # What the profiler itself could not do (a reader that failed, stages left out past the cap):
    # the figures are incomplete when this is not empty. Not stored; shown by summary() and table().
    notes: Sequence[str] = field(default_factory=tuple)
