"""Parse-time checks shared by operators, sensors and notifiers (cheap: no heavy imports)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from etlops_airflow.core.models import METRIC_NAME_RE

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
COMPARISONS = tuple(_OPS)


def is_templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def metric_name(owner: str, field: str, value: Any) -> str:
    if is_templated(value):
        return str(value)
    if not isinstance(value, str) or not METRIC_NAME_RE.match(value):
        raise ValueError(
            f"{owner}: {field} {value!r} is not a metric name "
            "(letters, digits, _ : . ; not starting with a digit; at most 200 characters)"
        )
    return value


def choice(owner: str, field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{owner}: {field} {value!r}: expected one of {', '.join(allowed)}")
    return str(value)


def positive_number(owner: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{owner}: {field} {value!r}: expected a positive number of seconds")
    return float(value)


def compare(left: float, op: str, right: float) -> bool:
    return _OPS[op](left, right)
