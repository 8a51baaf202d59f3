"""Health verdicts: what an operator measured about a component (a :class:`Probe`) becomes
``healthy``, ``degraded`` or ``unhealthy`` with the reasons, by fixed rules. Plain Python; the
health-check operator takes the measurements.

Rules (``Thresholds`` holds the numbers):

* any component: not measured within its timeout, or the measurement failed: unhealthy;
* ``database`` / ``store``: an answer slower than half the timeout: degraded; the store's
  schema older than this package's: degraded (the next write upgrades it), newer: unhealthy;
* ``filesystem``: free space or free inodes under ``min_free_percent``: unhealthy; under twice
  that: degraded; the test write (write, fsync, unlink) failed: unhealthy;
* ``cache``: not writable: unhealthy; larger than ``cache_max_bytes`` (when set): degraded;
* ``system``: memory use at or over 98 %: unhealthy, over 90 %: degraded; CPU over 95 %, or a
  1-minute load over twice the CPU count: degraded.

A component that is not configured (no cache path nor cache connection) is ``skipped``: it is
reported, but has no status metric and does not fail the task.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from etlops_airflow.exceptions import ValidationError

COMPONENTS = ("database", "cache", "filesystem", "store", "system")
HEALTHY, DEGRADED, UNHEALTHY, SKIPPED = "healthy", "degraded", "unhealthy", "skipped"
STATUSES = (HEALTHY, DEGRADED, UNHEALTHY, SKIPPED)
STATUS_VALUE = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}  # the health_status metric
MAX_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Thresholds:
    min_free_percent: float = 10.0
    degraded_free_factor: float = 2.0  # free under min_free_percent * this: degraded
    slow_fraction: float = 0.5  # latency over timeout * this: degraded
    memory_degraded_percent: float = 90.0
    memory_unhealthy_percent: float = 98.0
    cpu_degraded_percent: float = 95.0
    load_degraded_per_cpu: float = 2.0
    cache_max_bytes: float | None = None


@dataclass(frozen=True)
class Probe:
    """What was measured about one component. ``figures`` are named as the metrics they become
    (``system_memory_percent``, ``filesystem_free_percent`` …); ``error`` says why the
    measurement failed; ``skipped`` why it was not taken; ``facts`` holds text worth showing
    (a path, a server version)."""

    component: str
    figures: Mapping[str, float] = field(default_factory=dict)
    latency_s: float | None = None
    error: str | None = None
    timed_out: bool = False
    skipped: str | None = None
    facts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ComponentHealth:
    component: str
    status: str
    reasons: tuple[str, ...] = ()
    latency_s: float | None = None
    figures: Mapping[str, float] = field(default_factory=dict)
    facts: Mapping[str, str] = field(default_factory=dict)

    def as_details(self) -> dict[str, Any]:
        """The JSON form kept in a maintenance run's details (``details["components"]``)."""
        return {
            "component": self.component,
            "status": self.status,
            "reasons": list(self.reasons),
            "latency_s": self.latency_s,
            "figures": dict(self.figures),
            "facts": dict(self.facts),
        }


def check_components(value: Any, owner: str | None = None) -> tuple[str, ...]:
    """A non-empty list of known component names, without repeats (order kept)."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValidationError(
            "components", value, f"expected a non-empty list of {', '.join(COMPONENTS)}", owner=owner
        )
    for item in value:
        if item not in COMPONENTS:
            raise ValidationError(
                "components",
                item,
                f"unknown component; expected some of {', '.join(COMPONENTS)}",
                owner=owner,
            )
    return tuple(dict.fromkeys(value))


def check_timeout(value: Any, owner: str | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT_S:
        raise ValidationError(
            "timeout_s", value, f"expected seconds, more than 0 and at most {MAX_TIMEOUT_S:g}", owner=owner
        )
    return float(value)


def check_percent(field_name: str, value: Any, owner: str | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 100:
        raise ValidationError(field_name, value, "expected a percentage from 0 to under 100", owner=owner)
    return float(value)


def _pct(value: float) -> str:
    return f"{value:.1f} %"


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def verdict(probe: Probe, timeout_s: float, thresholds: Thresholds | None = None) -> ComponentHealth:
    """The component's status and the reasons for it."""
    t = thresholds or Thresholds()
    figures = {
        k: float(v) for k, v in probe.figures.items() if isinstance(v, (int, float)) and math.isfinite(v)
    }

    def result(status: str, reasons: Sequence[str]) -> ComponentHealth:
        return ComponentHealth(
            probe.component, status, tuple(reasons), probe.latency_s, figures, dict(probe.facts)
        )

    if probe.skipped is not None:
        return result(SKIPPED, [probe.skipped])
    if probe.timed_out:
        return result(UNHEALTHY, [f"no answer within its timeout of {timeout_s:g} s"])
    if probe.error is not None:
        return result(UNHEALTHY, [probe.error])

    bad: list[str] = []
    weak: list[str] = []
    c = probe.component
    if (
        c in ("database", "store")
        and probe.latency_s is not None
        and probe.latency_s > timeout_s * t.slow_fraction
    ):
        weak.append(f"slow: answered in {probe.latency_s:.2f} s (timeout {timeout_s:g} s)")
    if c == "store":
        found, head = figures.get("store_schema_version"), figures.get("store_schema_head")
        if found is not None and head is not None:
            if found > head:
                bad.append(
                    f"schema version {found:g} is newer than this package's {head:g}: upgrade etlops-airflow"
                )
            elif found < head:
                weak.append(f"schema version {found:g} is older than {head:g}: the next write upgrades it")
    if c == "filesystem":
        low, factor = t.min_free_percent, t.degraded_free_factor
        for key, what in (
            ("filesystem_free_percent", "free space"),
            ("filesystem_free_inodes_percent", "free inodes"),
        ):
            value = figures.get(key)
            if value is None:
                continue
            if value < low:
                bad.append(f"{what} {_pct(value)} is under {low:g} %")
            elif value < low * factor:
                weak.append(f"{what} {_pct(value)} is under {low * factor:g} %")
        if figures.get("filesystem_write_ok", 1.0) < 1:
            bad.append("the test write (write, fsync, unlink) failed")
    if c == "cache":
        if figures.get("cache_writable", 1.0) < 1:
            bad.append("the cache directory is not writable")
        size = figures.get("cache_size_bytes")
        if t.cache_max_bytes is not None and size is not None and size > t.cache_max_bytes:
            weak.append(f"cache holds {_bytes(size)}, over {_bytes(t.cache_max_bytes)}")
    if c == "system":
        memory = figures.get("system_memory_percent")
        if memory is not None:
            if memory >= t.memory_unhealthy_percent:
                bad.append(f"memory use {_pct(memory)} (at or over {t.memory_unhealthy_percent:g} %)")
            elif memory >= t.memory_degraded_percent:
                weak.append(f"memory use {_pct(memory)} (at or over {t.memory_degraded_percent:g} %)")
        cpu = figures.get("system_cpu_percent")
        if cpu is not None and cpu >= t.cpu_degraded_percent:
            weak.append(f"CPU use {_pct(cpu)} (at or over {t.cpu_degraded_percent:g} %)")
        load, cpus = figures.get("system_load_1m"), figures.get("system_cpu_count")
        if load is not None and cpus and load >= cpus * t.load_degraded_per_cpu:
            weak.append(
                f"1-minute load {load:.2f} on {cpus:g} CPUs (at or over {t.load_degraded_per_cpu:g} per CPU)"
            )
    if bad:
        return result(UNHEALTHY, bad + weak)
    if weak:
        return result(DEGRADED, weak)
    return result(HEALTHY, [])


def worst(components: Sequence[ComponentHealth]) -> str:
    """The overall status: the worst of the checked components (skipped ones do not count)."""
    statuses = [c.status for c in components if c.status != SKIPPED]
    if not statuses:
        return SKIPPED
    return max(statuses, key=lambda s: STATUS_VALUE[s])


def health_points(
    components: Sequence[ComponentHealth], host: str
) -> list[tuple[str, float, dict[str, str]]]:
    """``(metric, value, labels)`` for each checked component: ``health_status`` (0 healthy,
    1 degraded, 2 unhealthy), ``health_latency_seconds`` when measured, and every figure under
    its own name, all labelled ``component`` and ``host``."""
    points: list[tuple[str, float, dict[str, str]]] = []
    for c in components:
        if c.status == SKIPPED:
            continue
        labels = {"component": c.component, "host": host}
        points.append(("health_status", float(STATUS_VALUE[c.status]), labels))
        if c.latency_s is not None:
            points.append(("health_latency_seconds", float(c.latency_s), labels))
        for name, value in sorted(c.figures.items()):
            points.append((name, float(value), labels))
    return points
