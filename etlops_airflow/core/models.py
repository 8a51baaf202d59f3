"""Plain data the store keeps: metric points and task outcomes, with their validation."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from etlops_airflow.exceptions import InvalidMetricError

METRIC_NAME_RE = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:.]{0,199}$")
LABEL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
MAX_LABEL_VALUE = 500
MAX_ERROR_MESSAGE = 2000

TASK_STATES = ("success", "failed", "up_for_retry", "skipped")
# Aggregates the store computes over a window (``last`` = the newest value).
AGGREGATES = ("avg", "sum", "min", "max", "count", "last")


def to_ms(seconds: float) -> int:
    """Whole milliseconds, rounded down (the epsilon absorbs float error such as 1.001 * 1000)."""
    return math.floor(seconds * 1000 + 1e-6)


def canonical_labels(labels: Mapping[str, Any] | None) -> str:
    """Labels as one canonical JSON text: sorted keys, string values. Validates names and sizes."""
    if not labels:
        return "{}"
    clean: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_NAME_RE.match(key):
            raise InvalidMetricError(
                "label name", key, "must match [A-Za-z_][A-Za-z0-9_]* and be at most 100 characters"
            )
        if value is None:
            raise InvalidMetricError(f"label {key!r} value", value, "must not be None")
        text = value if isinstance(value, str) else str(value)
        if len(text) > MAX_LABEL_VALUE:
            raise InvalidMetricError(f"label {key!r} value", text[:40] + "…", "is longer than 500 characters")
        clean[key] = text
    return json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One sample of a named, labelled metric. ``ts`` is seconds since the epoch (UTC)."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not METRIC_NAME_RE.match(self.name):
            raise InvalidMetricError(
                "name", self.name, "must match [A-Za-z_:][A-Za-z0-9_:.]* and be at most 200 characters"
            )
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise InvalidMetricError(f"{self.name} value", self.value, "must be a number")
        if not math.isfinite(self.value):
            raise InvalidMetricError(f"{self.name} value", self.value, "must be finite")
        if isinstance(self.ts, bool) or not isinstance(self.ts, (int, float)) or not math.isfinite(self.ts):
            raise InvalidMetricError(f"{self.name} ts", self.ts, "must be seconds since the epoch")
        if self.ts < 0:
            raise InvalidMetricError(f"{self.name} ts", self.ts, "must not be before 1970")
        # Validate labels eagerly so a bad point fails where it is built, not at write time.
        canonical_labels(self.labels)

    @property
    def labels_key(self) -> str:
        return canonical_labels(self.labels)

    @property
    def ts_ms(self) -> int:
        return to_ms(self.ts)


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """How one try of one task instance ended."""

    dag_id: str
    task_id: str
    run_id: str
    try_number: int
    state: str
    map_index: int = -1
    start_ts: float | None = None
    end_ts: float | None = None
    duration_s: float | None = None
    error_class: str | None = None
    error_message: str | None = None
    hostname: str | None = None

    def __post_init__(self) -> None:
        if self.state not in TASK_STATES:
            raise ValueError(f"task outcome state {self.state!r}: expected one of {', '.join(TASK_STATES)}")
        for name in ("dag_id", "task_id", "run_id"):
            if not getattr(self, name):
                raise ValueError(f"task outcome {name} {getattr(self, name)!r}: must not be empty")


def error_fields(error: BaseException | str | None) -> tuple[str | None, str | None]:
    """Error class and a bounded message for storage."""
    if error is None:
        return None, None
    if isinstance(error, BaseException):
        cls = type(error)
        name = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
        message = str(error)
    else:
        name, message = None, str(error)
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[: MAX_ERROR_MESSAGE - 1] + "…"
    return name, message
