"""The alert lifecycle: inactive → pending → firing → resolved, one alert per fingerprint.

:func:`step` is the whole state machine, a pure function of the previous state, one
observation of the rule's condition and the time. Hysteresis lives here: a firing alert
resolves only once the observation is *clear* (past the resolve threshold) and, with
``keep_firing_for``, only after it has been clear that long since the last breach.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from etlops_airflow.core.alerts.rules import Rule

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"
STATES = (INACTIVE, PENDING, FIRING, RESOLVED)


@dataclass(frozen=True)
class Observation:
    """What a condition saw for one alert's labels at one evaluation.

    ``breach``: True (the condition holds), False (it does not) or None (no data).
    ``clear``: the value is past the resolve threshold (equals ``not breach`` without one).
    """

    labels: Mapping[str, str]
    value: float | None
    breach: bool | None
    clear: bool = True
    annotations: Mapping[str, str] = field(default_factory=dict)  # shown, not identity (e.g. run_id)


@dataclass(frozen=True)
class AlertState:
    """One alert (a rule and a set of labels) as the store keeps it."""

    fingerprint: str
    rule_id: str
    labels: Mapping[str, str]
    state: str = INACTIVE
    value: float | None = None
    pending_since: float | None = None
    active_since: float | None = None  # when it started firing
    resolved_at: float | None = None
    last_breach_at: float | None = None
    last_eval_at: float | None = None
    acked_by: str | None = None
    acked_at: float | None = None
    incident: int = 0  # counts firings: a new incident clears the acknowledgement
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Transition:
    fingerprint: str
    rule_id: str
    from_state: str
    to_state: str
    at: float
    value: float | None
    labels: Mapping[str, str] = field(default_factory=dict)


def alert_labels(rule: Rule, observed: Mapping[str, str]) -> dict[str, str]:
    """The labels an alert carries: the rule's labels, what the condition observed, and
    ``rule_id`` / ``severity`` (which routes and silences match on)."""
    return {**dict(rule.labels), **dict(observed), "rule_id": rule.id, "severity": rule.severity}


def fingerprint(rule_id: str, labels: Mapping[str, str]) -> str:
    """Stable id of an alert: rule id and labels (severity excluded, so editing it keeps the alert)."""
    return _fingerprint(
        rule_id, tuple(sorted((k, v) for k, v in labels.items() if k not in ("rule_id", "severity")))
    )


@lru_cache(maxsize=65536)
def _fingerprint(rule_id: str, items: tuple[tuple[str, str], ...]) -> str:
    text = json.dumps([rule_id, dict(items)], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def step(
    previous: AlertState | None,
    rule: Rule,
    observation: Observation,
    now: float,
    fp: str | None = None,
) -> tuple[AlertState, Transition | None]:
    """The alert after one observation, and the transition it made (None if it stayed).
    ``fp`` is the alert's fingerprint when the caller has computed it already."""
    labels = alert_labels(rule, observation.labels)
    fp = fp or fingerprint(rule.id, labels)
    # One dict of fields, changed in place, one AlertState built at the end (this runs for
    # every alert of every rule at every evaluation).
    s: dict[str, Any] = (
        dict(vars(previous)) if previous is not None else {**_NEW, "fingerprint": fp, "rule_id": rule.id}
    )
    s["labels"] = labels
    s["last_eval_at"] = now
    was = s["state"]

    breach, clear = observation.breach, observation.clear
    if breach is None:  # no data
        if rule.no_data == "resolve":
            breach, clear = False, True
        elif rule.no_data == "fire":
            breach, clear = True, False
    if observation.value is not None:
        s["value"] = observation.value
    if observation.annotations:
        s["annotations"] = dict(observation.annotations)

    if breach:
        s["last_breach_at"] = now
        if was in (INACTIVE, RESOLVED):
            s["resolved_at"] = None
            s["pending_since"] = now
            s["state"] = PENDING
            if rule.condition.for_ <= 0:
                _fire(s, now)
        elif was == PENDING and now - (s["pending_since"] or now) >= rule.condition.for_:
            _fire(s, now)
    elif breach is not None:
        if was == PENDING:
            s["state"] = INACTIVE
            s["pending_since"] = None
        elif was == FIRING and clear and now - (s["last_breach_at"] or now) >= float(rule.keep_firing_for):
            s["state"] = RESOLVED
            s["resolved_at"] = now
            s["pending_since"] = None
    new = AlertState(**s)
    if new.state == was:
        return new, None
    return new, Transition(fp, rule.id, was, new.state, now, observation.value, labels)


def _fire(s: dict[str, Any], now: float) -> None:
    s["state"] = FIRING
    s["active_since"] = now
    s["resolved_at"] = None
    s["pending_since"] = s["pending_since"] or now
    s["acked_by"] = None
    s["acked_at"] = None
    s["incident"] += 1


_NEW: dict[str, Any] = {
    "state": INACTIVE,
    "value": None,
    "pending_since": None,
    "active_since": None,
    "resolved_at": None,
    "last_breach_at": None,
    "last_eval_at": None,
    "acked_by": None,
    "acked_at": None,
    "incident": 0,
    "annotations": {},
}
