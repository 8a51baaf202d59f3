"""Logging helpers: errors reported on one line, never with a password."""

from __future__ import annotations

import logging

log = logging.getLogger("etlops_airflow")


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``ErrorClass: first line of the message`` (SQLAlchemy adds a second "Background" line)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if len(first) > limit:
        first = first[: limit - 1] + "…"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
