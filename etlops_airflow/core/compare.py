"""Comparisons shared by sensors and alert rules: one table, one function."""

from __future__ import annotations

import operator
from collections.abc import Callable

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
COMPARISONS: tuple[str, ...] = tuple(_OPS)


def compare(left: float, op: str, right: float) -> bool:
    """``left <op> right``; ``op`` must be one of :data:`COMPARISONS` (a KeyError otherwise)."""
    return _OPS[op](left, right)
