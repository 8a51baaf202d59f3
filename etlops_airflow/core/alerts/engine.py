"""One evaluation: every enabled rule observed, every alert stepped, every due notification
planned — as pure functions of the rules, the stored state, a data source and the time.

The adapter (``etlops_airflow.alerting``) loads the state from the store, calls
:func:`evaluate` and :func:`plan_notifications`, and commits what they return in one
transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from etlops_airflow.core.alerts.conditions import AlertSource, metric_windows, observe
from etlops_airflow.core.alerts.grouping import GroupState, Notification, Silence, plan
from etlops_airflow.core.alerts.rules import Rule, RuleSet
from etlops_airflow.core.alerts.state import (
    FIRING,
    INACTIVE,
    PENDING,
    RESOLVED,
    AlertState,
    Observation,
    Transition,
    alert_labels,
    fingerprint,
    step,
)
from etlops_airflow.core.alerts.templates import render
from etlops_airflow.core.alerts.views import AlertView, MessageView

_SYSTEM_LABELS = ("rule_id", "severity")


@dataclass
class Evaluation:
    """What one evaluation decided."""

    alerts: dict[str, AlertState]
    transitions: list[Transition] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # rule id -> what went wrong

    def count(self, state: str) -> int:
        return sum(1 for a in self.alerts.values() if a.state == state)


CALLBACK = "callback"  # annotations["source"] of alerts raised by EtlopsAlertNotifier


def evaluate(
    ruleset: RuleSet,
    source: AlertSource,
    previous: Mapping[str, AlertState],
    now: float,
    observer: Callable[[Rule, AlertSource, float], list[Observation]] | None = None,
    recovered: Callable[[AlertState], bool] | None = None,
) -> Evaluation:
    """Observe every enabled rule and step its alerts.

    * An alert of a rule that is not observed this time (its group vanished) gets a no-data
      observation: its rule's ``no_data`` policy decides.
    * A rule that fails (a custom evaluator raising, the store refusing a query) keeps its
      alerts as they were and is reported in ``errors``; the other rules go on.
    * Alerts of rules that were removed or disabled resolve (pending ones are dropped).
    * Alerts raised by a notifier callback (no rule in the file) resolve once ``recovered``
      says their DAG or task has succeeded since.
    """
    look = observer or (lambda rule, src, t: observe(rule.condition, src, t))
    result = Evaluation(alerts={})
    by_rule: dict[str, list[AlertState]] = {}
    for alert in previous.values():
        by_rule.setdefault(alert.rule_id, []).append(alert)

    enabled = {rule.id: rule for rule in ruleset.enabled}
    prepare = getattr(source, "prepare", None)
    if prepare is not None and observer is None:
        needs = [need for rule in enabled.values() for need in metric_windows(rule.condition, now)]
        try:
            prepare(needs)  # one batched read for every rule's metric windows
        except Exception as exc:  # the rules then read one by one (and report their own errors)
            result.errors["(prefetch)"] = f"{type(exc).__name__}: {exc}"
    for rule in enabled.values():
        mine = {a.fingerprint: a for a in by_rule.get(rule.id, [])}
        try:
            observations = look(rule, source, now)
        except Exception as exc:
            result.errors[rule.id] = f"{type(exc).__name__}: {exc}"
            result.alerts.update(mine)
            continue
        seen: set[str] = set()
        for obs in observations:
            fp = fingerprint(rule.id, alert_labels(rule, obs.labels))
            new, moved = step(mine.get(fp), rule, obs, now, fp)
            seen.add(new.fingerprint)
            _keep(result, new, moved)
        for fp, alert in mine.items():
            if fp in seen:
                continue
            if alert.state in (PENDING, FIRING):
                observed = {k: v for k, v in alert.labels.items() if k not in _SYSTEM_LABELS}
                new, moved = step(alert, rule, Observation(observed, None, None, False), now)
                _keep(result, new, moved)
            else:
                result.alerts[fp] = alert

    for rule_id, alerts in by_rule.items():
        if rule_id in enabled:
            continue
        for alert in alerts:
            if alert.annotations.get("source") == CALLBACK and alert.state == FIRING:
                try:
                    done = recovered is not None and recovered(alert)
                except Exception as exc:
                    result.errors[rule_id] = f"{type(exc).__name__}: {exc}"
                    done = False
                if not done:
                    result.alerts[alert.fingerprint] = replace(alert, last_eval_at=now)
                    continue
            if alert.state == FIRING:
                resolved = replace(alert, state=RESOLVED, resolved_at=now, last_eval_at=now)
                result.alerts[alert.fingerprint] = resolved
                result.transitions.append(
                    Transition(alert.fingerprint, rule_id, FIRING, RESOLVED, now, alert.value, alert.labels)
                )
            elif alert.state == RESOLVED:
                result.alerts[alert.fingerprint] = alert
    return result


def _keep(result: Evaluation, alert: AlertState, moved: Transition | None) -> None:
    if moved is not None:
        result.transitions.append(moved)
    if alert.state != INACTIVE:
        result.alerts[alert.fingerprint] = alert


def plan_notifications(
    ruleset: RuleSet,
    alerts: Mapping[str, AlertState],
    groups: Mapping[str, GroupState],
    silences: Sequence[Silence],
    now: float,
) -> tuple[dict[str, GroupState], list[Notification]]:
    return plan(ruleset, alerts.values(), groups, silences, now)


def view_of(
    notification: Notification,
    ruleset: RuleSet,
    links: Callable[[AlertState], dict[str, str]] | None = None,
) -> MessageView:
    """The message a notification shows (rule texts rendered, links added)."""
    rules = {rule.id: rule for rule in ruleset.rules}
    firing = [_alert_view(a, rules.get(a.rule_id), FIRING, links) for a in notification.firing]
    resolved = [_alert_view(a, rules.get(a.rule_id), RESOLVED, links) for a in notification.resolved]
    everyone = firing or resolved
    names = sorted({a.title for a in everyone})
    subject = (
        names[0] if len(names) == 1 else ", ".join(f"{k}={v}" for k, v in notification.group_labels.items())
    )
    head = f"[FIRING:{len(firing)}]" if firing else "[RESOLVED]"
    if firing and resolved:
        head += f" [RESOLVED:{len(resolved)}]"
    return MessageView(
        title=f"{head} {subject or 'alerts'}",
        reason=notification.reason,
        group_labels=dict(notification.group_labels),
        firing=firing,
        resolved=resolved,
        idempotency_key=notification.idempotency_key,
    )


def _alert_view(
    alert: AlertState,
    rule: Rule | None,
    state: str,
    links: Callable[[AlertState], dict[str, str]] | None,
) -> AlertView:
    labels = {k: v for k, v in alert.labels.items() if k not in _SYSTEM_LABELS}
    description = None
    if rule is not None and rule.description:
        context = {
            **labels,
            "labels": labels,
            "value": _number(alert.value),
            "rule_id": alert.rule_id,
            "name": rule.title,
            "severity": rule.severity,
            "state": state,
            "threshold": rule.condition.threshold_text,
        }
        description = render(rule.description, context)
    if rule is None:
        description = alert.annotations.get("description")
    return AlertView(
        fingerprint=alert.fingerprint,
        rule_id=alert.rule_id,
        title=rule.title if rule else alert.annotations.get("title") or alert.rule_id,
        severity=rule.severity if rule else alert.labels.get("severity", "info"),
        state=state,
        value=alert.value,
        threshold=rule.condition.threshold_text if rule else "",
        labels=labels,
        description=description,
        runbook_url=rule.runbook_url if rule else None,
        active_since=alert.active_since,
        resolved_at=alert.resolved_at,
        acked_by=alert.acked_by,
        links=links(alert) if links else {},
    )


def _number(value: float | None) -> str | float | int:
    if value is None:
        return "no data"
    return int(value) if float(value).is_integer() else round(value, 4)
