"""Plain data the store keeps: metric points and task outcomes, with their validation.

Every check that decides whether a value may be stored lives here, so that SQLite and
PostgreSQL are given only values both accept: a bad value is refused with an error naming
the field and the value before any database sees it.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from etlops_airflow.exceptions import InvalidDagRunOutcomeError, InvalidMetricError, InvalidOutcomeError

METRIC_NAME_RE = re.compile(r"[A-Za-z_:][A-Za-z0-9_:.]{0,199}")
LABEL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
MAX_LABEL_VALUE = 500  # characters of one label value
MAX_LABELS = 32  # labels on one point
MAX_LABELS_TEXT = 8192  # characters of the canonical labels text of one series
MAX_IDENTIFIER = 250  # dag_id, task_id, run_id, hostname, error class (the columns' width)
MAX_ERROR_MESSAGE = 2000
MAX_INT32 = 2**31 - 1
# Timestamps are seconds since the epoch. 1 Jan 2200 is far enough for any pipeline and far
# below a timestamp in milliseconds (1.7e12 today), so a unit mistake cannot slip through.
MAX_TS = 7_258_118_400.0

# How a task try ended: the first four are reported by the task (or by Airflow for it); the
# last two are Airflow's final state of a task instance that never ran, recorded when its DAG
# run ends (``upstream_failed`` by a trigger rule, ``removed`` when the task left the DAG).
TASK_STATES = ("success", "failed", "up_for_retry", "skipped", "upstream_failed", "removed")
# Tries that count for error rates and failure streaks: those that ran, and how they ended.
FAILED_TRY_STATES = ("failed", "up_for_retry")
RAN_TRY_STATES = ("success", *FAILED_TRY_STATES)
DAG_RUN_STATES = ("success", "failed")
MAX_RUN_TYPE = 50
RUN_TYPE_RE = re.compile(r"[a-z_]{1,50}")
# Aggregates the store computes over a window (``last`` = the newest value).
AGGREGATES = ("avg", "sum", "min", "max", "count", "last")


def to_ms(seconds: float) -> int:
    """Whole milliseconds, rounded down (the epsilon absorbs float error such as 1.001 * 1000)."""
    return math.floor(seconds * 1000 + 1e-6)


def _unit_hint(value: float) -> str:
    for unit, factor in (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9)):
        if value / factor <= MAX_TS:
            return f"looks like {unit} since the epoch; pass seconds (divide by {factor:,.0f})"
    return "is beyond the year 2200; pass seconds since the epoch"


def check_number(
    field_name: str, value: Any, error: type[InvalidMetricError] | type[InvalidOutcomeError]
) -> float:
    """A finite real number (not a bool, not a string) as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(field_name, value, f"must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except (OverflowError, ValueError):
        raise error(field_name, value, "does not fit a 64-bit float") from None
    if not math.isfinite(number):
        raise error(field_name, value, "must be finite")
    return number


def check_timestamp(
    field_name: str, value: Any, error: type[InvalidMetricError] | type[InvalidOutcomeError]
) -> float:
    """Seconds since the epoch, between 1970 and 2200."""
    ts = check_number(field_name, value, error)
    if ts < 0:
        raise error(field_name, value, "must not be before 1970 (seconds since the epoch)")
    if ts > MAX_TS:
        raise error(field_name, value, _unit_hint(ts))
    return ts


def _is_text(value: str) -> bool:
    """Text both databases store as given: no NUL character, encodable as UTF-8."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(value: str) -> str:
    """Free text (messages) made storable: NUL shown as ``\\x00``, unencodable characters replaced."""
    text = value.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def label_value(key: str, value: Any) -> str:
    """A label value as stored: text, or an int/float/bool written with ``str()``."""
    field_name = f"label {key!r} value"
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool) or isinstance(value, numbers.Integral):
        text = str(value)
    elif isinstance(value, numbers.Real):
        text = str(check_number(field_name, value, InvalidMetricError))
    else:
        raise InvalidMetricError(field_name, value, f"must be text or a number, not {type(value).__name__}")
    if len(text) > MAX_LABEL_VALUE:
        raise InvalidMetricError(field_name, text[:40] + "…", f"is longer than {MAX_LABEL_VALUE} characters")
    if not _is_text(text):
        raise InvalidMetricError(field_name, text, "must be text without NUL characters, encodable as UTF-8")
    return text


def clean_labels(labels: Any) -> dict[str, str]:
    """Validated labels with text values. ``None`` means no labels."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidMetricError(
            "labels", labels, f"must be a mapping of names to values, not {type(labels).__name__}"
        )
    if len(labels) > MAX_LABELS:
        raise InvalidMetricError("labels", f"{len(labels)} labels", f"at most {MAX_LABELS} labels per point")
    clean: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_NAME_RE.fullmatch(key):
            raise InvalidMetricError(
                "label name", key, "must match [A-Za-z_][A-Za-z0-9_]* and be at most 100 characters"
            )
        clean[key] = label_value(key, value)
    return clean


def canonical_labels(labels: Mapping[str, Any] | None) -> str:
    """Labels as one canonical JSON text: sorted keys, text values. Validates names and sizes."""
    clean = clean_labels(labels)
    if not clean:
        return "{}"
    text = json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if len(text) > MAX_LABELS_TEXT:
        raise InvalidMetricError(
            "labels",
            f"{len(text)} characters",
            f"all labels together must be at most {MAX_LABELS_TEXT} characters",
        )
    return text


def check_metric_name(name: Any, field_name: str = "name") -> str:
    if not isinstance(name, str) or not METRIC_NAME_RE.fullmatch(name):
        raise InvalidMetricError(
            field_name, name, "must match [A-Za-z_:][A-Za-z0-9_:.]* and be at most 200 characters"
        )
    return name


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One sample of a named, labelled metric. ``ts`` is seconds since the epoch (UTC).

    Built points are valid: the name, every label, the value and the timestamp are checked
    here, so a batch is refused before anything is written.
    """

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    labels_key: str = field(init=False, repr=False, compare=False, default="{}")
    ts_ms: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        check_metric_name(self.name)
        value = check_number(f"{self.name} value", self.value, InvalidMetricError)
        ts = check_timestamp(f"{self.name} ts", self.ts, InvalidMetricError)
        key = canonical_labels(self.labels)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "labels", json.loads(key) if key != "{}" else {})
        object.__setattr__(self, "labels_key", key)
        object.__setattr__(self, "ts_ms", to_ms(ts))


def _identifier(field_name: str, value: Any, error: type[InvalidOutcomeError] = InvalidOutcomeError) -> str:
    if not isinstance(value, str) or not value:
        raise error(field_name, value, "must be non-empty text")
    if len(value) > MAX_IDENTIFIER:
        raise error(field_name, value, f"is longer than {MAX_IDENTIFIER} characters")
    if not _is_text(value):
        raise error(field_name, value, "must be text without NUL characters, encodable as UTF-8")
    return value


def _whole(field_name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidOutcomeError(field_name, value, f"must be a whole number, not {type(value).__name__}")
    number = int(value)
    if not minimum <= number <= MAX_INT32:
        raise InvalidOutcomeError(field_name, value, f"must be between {minimum} and {MAX_INT32}")
    return number


def _bounded_text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = clean_text(value if isinstance(value, str) else str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """How one try of one task instance ended.

    Identifiers are checked (refused when empty, too long for their column, or holding NUL);
    free text (error class and message, host) is made storable: NUL shown as ``\\x00`` and
    cut to its column's size.
    """

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
        for name in ("dag_id", "task_id", "run_id"):
            _identifier(name, getattr(self, name))
        if self.state not in TASK_STATES:
            raise InvalidOutcomeError("state", self.state, f"expected one of {', '.join(TASK_STATES)}")
        object.__setattr__(self, "try_number", _whole("try_number", self.try_number, 0))
        object.__setattr__(self, "map_index", _whole("map_index", self.map_index, -1))
        for name in ("start_ts", "end_ts"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_timestamp(name, value, InvalidOutcomeError))
        if self.duration_s is not None:
            duration = check_number("duration_s", self.duration_s, InvalidOutcomeError)
            if duration < 0:
                raise InvalidOutcomeError("duration_s", self.duration_s, "must not be negative")
            object.__setattr__(self, "duration_s", duration)
        object.__setattr__(self, "error_class", _bounded_text(self.error_class, MAX_IDENTIFIER))
        object.__setattr__(self, "error_message", _bounded_text(self.error_message, MAX_ERROR_MESSAGE))
        object.__setattr__(self, "hostname", _bounded_text(self.hostname, MAX_IDENTIFIER))


def _timestamps(owner: Any, error: type[InvalidOutcomeError]) -> None:
    """Check (and make floats of) ``start_ts``, ``end_ts`` and ``duration_s`` of a frozen record."""
    for name in ("start_ts", "end_ts"):
        value = getattr(owner, name)
        if value is not None:
            object.__setattr__(owner, name, check_timestamp(name, value, error))
    if owner.duration_s is not None:
        duration = check_number("duration_s", owner.duration_s, error)
        if duration < 0:
            raise error("duration_s", owner.duration_s, "must not be negative")
        object.__setattr__(owner, "duration_s", duration)


@dataclass(frozen=True, slots=True)
class DagRunOutcome:
    """How one DAG run ended (``success`` or ``failed``), validated like :class:`TaskOutcome`:
    identifiers are refused when empty, too long for their column or holding NUL; ``run_type``
    is Airflow's (``manual``, ``scheduled``, ``backfill``, ``asset_triggered``…), at most 50
    characters of ``[a-z_]``."""

    dag_id: str
    run_id: str
    state: str
    run_type: str | None = None
    start_ts: float | None = None
    end_ts: float | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("dag_id", "run_id"):
            _identifier(name, getattr(self, name), InvalidDagRunOutcomeError)
        if self.state not in DAG_RUN_STATES:
            raise InvalidDagRunOutcomeError(
                "state", self.state, f"expected one of {', '.join(DAG_RUN_STATES)}"
            )
        if self.run_type is not None and not (
            isinstance(self.run_type, str) and RUN_TYPE_RE.fullmatch(self.run_type)
        ):
            raise InvalidDagRunOutcomeError(
                "run_type", self.run_type, f"must match [a-z_]+ and be at most {MAX_RUN_TYPE} characters"
            )
        _timestamps(self, InvalidDagRunOutcomeError)


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
