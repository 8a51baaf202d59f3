"""Durations as users write them: ``30s``, ``15m``, ``1h``, ``2d`` (or a number of seconds)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(
    value: object,
    fail: Callable[[str], Exception],
    *,
    allow_zero: bool = False,
) -> float:
    """Seconds for ``value``; ``fail(reason)`` builds the error to raise (it names the field).

    Accepts a number of seconds or text such as ``90s``, ``15m``, ``1h30m``, ``2d``.
    """
    if isinstance(value, bool):
        raise fail("expected a duration such as 30s, 15m, 1h or 2d")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _DURATION.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise fail("expected a duration such as 30s, 15m, 1h or 2d")
        seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    else:
        raise fail("expected a duration such as 30s, 15m, 1h or 2d")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise fail("must be a positive duration" if not allow_zero else "must not be negative")
    return seconds


def format_duration(seconds: float) -> str:
    """``5400`` → ``1h30m``; ``45`` → ``45s``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    out = []
    rest = int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out) or "0s"
