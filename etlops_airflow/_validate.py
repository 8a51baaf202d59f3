"""Parse-time checks shared by operators, sensors and notifiers (cheap: no heavy imports).

Each raises :class:`~etlops_airflow.exceptions.ValidationError` naming the owner (e.g.
``MetricSensor 'wait'``), the field and the value.
"""

from __future__ import annotations

from typing import Any

from etlops_airflow.core.models import METRIC_NAME_RE
from etlops_airflow.exceptions import ValidationError


def is_templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def metric_name(owner: str, field: str, value: Any) -> str:
    if is_templated(value):
        return str(value)
    if not isinstance(value, str) or not METRIC_NAME_RE.fullmatch(value):
        raise ValidationError(
            field,
            value,
            "is not a metric name (letters, digits, _ : . ; not starting with a digit; "
            "at most 200 characters)",
            owner=owner,
        )
    return value


def choice(owner: str, field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValidationError(field, value, f"expected one of {', '.join(allowed)}", owner=owner)
    return str(value)


def positive_number(owner: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValidationError(field, value, "expected a positive number of seconds", owner=owner)
    return float(value)


def number(owner: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field, value, "expected a number", owner=owner)
    return float(value)
