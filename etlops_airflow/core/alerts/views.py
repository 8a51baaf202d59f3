"""What a notification says, as plain data for the renderers (Slack Block Kit, e-mail).

The engine builds a :class:`MessageView` from a due notification; ``slack_format`` and
``email_format`` turn it into a message. Every text field here may hold user-provided text
(rule names, descriptions, label values, error messages): renderers escape it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AlertView:
    fingerprint: str
    rule_id: str
    title: str  # the rule's name, or its id
    severity: str  # critical, high, medium, low, info
    state: str  # "firing" or "resolved"
    value: float | None  # what the condition observed last
    threshold: str  # e.g. "sum(rows_loaded) < 100", ">= 3 failed DAG runs in a row"
    labels: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None  # rendered from the rule's template
    runbook_url: str | None = None
    active_since: float | None = None  # epoch seconds it started firing
    resolved_at: float | None = None
    acked_by: str | None = None
    links: Mapping[str, str] = field(default_factory=dict)  # e.g. {"DAG run": "https://airflow/…"}


@dataclass(frozen=True)
class MessageView:
    """One notification: a group's firing alerts and those that resolved since the last one."""

    title: str  # e.g. "[FIRING:2] Orders pipeline failing"
    reason: str  # "initial", "update", "repeat" (or "callback" from a notifier)
    group_labels: Mapping[str, str]
    firing: Sequence[AlertView]
    resolved: Sequence[AlertView]
    idempotency_key: str  # group key and sequence: the same notification has the same key

    @property
    def worst_severity(self) -> str:
        order = ("critical", "high", "medium", "low", "info")
        severities = [a.severity for a in (*self.firing, *self.resolved)]
        return min(severities, key=order.index) if severities else "info"
