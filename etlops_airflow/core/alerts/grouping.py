"""Routing, grouping, silences and acknowledgements: which notifications are due, and when.

Alertmanager's model, on stored state:

* each alert goes to the first route that matches its labels; alerts of one route with the
  same ``group_by`` label values form a group, and a group is one notification;
* a new group waits ``group_wait`` (more alerts may join) before its first notification;
* later changes (an alert starts firing, or one that was notified resolves) go out at most
  every ``group_interval``;
* with nothing changed, a group that still has firing alerts repeats after
  ``repeat_interval`` — or after the ``cooldown`` of its rules when they set one;
* a silenced alert is left out of notifications altogether; an acknowledged alert is not
  repeated, but its resolve notice is still sent.

:func:`plan` is pure: it takes the alerts, the stored group states and the silences and
returns the new group states and the notifications to put in the outbox.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from etlops_airflow.core.alerts.rules import Route, RuleSet
from etlops_airflow.core.alerts.state import FIRING, RESOLVED, AlertState


@dataclass(frozen=True)
class Silence:
    """Mutes alerts whose labels match every matcher (``rule_id`` and ``severity`` are labels),
    from ``starts_at`` to ``ends_at``."""

    id: str
    matchers: Mapping[str, Sequence[str]]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) in values for key, values in self.matchers.items())


def is_silenced(labels: Mapping[str, str], silences: Iterable[Silence], now: float) -> bool:
    return any(s.active(now) and s.matches(labels) for s in silences)


@dataclass(frozen=True)
class GroupState:
    """What the receivers of one group were last told, and when."""

    key: str
    route_index: int
    labels: Mapping[str, str]
    created_at: float
    last_flush_at: float | None = None
    notified: Mapping[str, str] = field(default_factory=dict)  # fingerprint -> "firing"
    sequence: int = 0  # notifications sent for this group: with the key, the outbox's idempotency key


@dataclass(frozen=True)
class Notification:
    """One message to every receiver of a route about one group."""

    group_key: str
    sequence: int
    route_index: int
    receivers: tuple[str, ...]
    group_labels: Mapping[str, str]
    firing: tuple[AlertState, ...]
    resolved: tuple[AlertState, ...]
    reason: str  # "initial", "update" or "repeat"
    at: float
    incarnation: int = 0  # the group's creation time in ms: a group formed again starts anew

    @property
    def idempotency_key(self) -> str:
        """The same notification always has the same key (the outbox refuses a second row)."""
        return f"{self.group_key}:{self.incarnation}:{self.sequence}"

    @property
    def root_key(self) -> str:
        """The key of this group's first notification: replies thread under it."""
        return f"{self.group_key}:{self.incarnation}:1"


def group_of(route: Route, labels: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The group key of an alert under a route, and the group's labels."""
    group_labels = {name: labels.get(name, "") for name in route.group_by}
    text = json.dumps([route.index, group_labels], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24], group_labels


def plan(
    ruleset: RuleSet,
    alerts: Iterable[AlertState],
    groups: Mapping[str, GroupState],
    silences: Sequence[Silence],
    now: float,
) -> tuple[dict[str, GroupState], list[Notification]]:
    """New group states (groups with nothing left to say are dropped) and due notifications."""
    members: dict[str, list[AlertState]] = {}
    routes: dict[str, Route] = {}
    group_labels: dict[str, dict[str, str]] = {}
    for alert in alerts:
        if alert.state not in (FIRING, RESOLVED) or is_silenced(alert.labels, silences, now):
            continue
        route = ruleset.route_for(alert.labels)
        if route is None:
            continue
        key, labels = group_of(route, alert.labels)
        members.setdefault(key, []).append(alert)
        routes[key] = route
        group_labels[key] = labels

    cooldowns = {rule.id: rule.cooldown for rule in ruleset.rules if rule.cooldown is not None}
    new_groups: dict[str, GroupState] = {}
    notifications: list[Notification] = []
    for key in sorted(set(members) | set(groups)):
        group = groups.get(key)
        route = routes.get(key)
        if route is None:  # nothing of this group is routed any more (resolved and told, or rules changed)
            if group is not None and group.route_index < len(ruleset.routes):
                route = ruleset.routes[group.route_index]
            else:
                continue
        alerts_here = sorted(members.get(key, []), key=lambda a: (a.rule_id, a.fingerprint))
        firing = [a for a in alerts_here if a.state == FIRING]
        # Alerts gone from the store, or silenced since, drop out without a resolve notice.
        present = {a.fingerprint for a in alerts_here}
        told = {fp: s for fp, s in (group.notified if group else {}).items() if fp in present}
        newly_resolved = [a for a in alerts_here if a.state == RESOLVED and told.get(a.fingerprint) == FIRING]
        if group is None:
            if not firing:
                continue
            group = GroupState(key=key, route_index=route.index, labels=group_labels[key], created_at=now)

        changed = bool(newly_resolved) or any(told.get(a.fingerprint) != FIRING for a in firing)
        repeatable = [a for a in firing if a.acked_at is None]
        due, reason, shown = False, "", firing
        if group.last_flush_at is None:
            due, reason = bool(firing) and now >= group.created_at + float(route.group_wait), "initial"
        elif changed:
            due, reason = now >= group.last_flush_at + float(route.group_interval), "update"
        elif repeatable:
            set_cooldowns = [float(cooldowns[a.rule_id]) for a in repeatable if a.rule_id in cooldowns]  # type: ignore[arg-type]
            interval = max(set_cooldowns) if set_cooldowns else float(route.repeat_interval)
            due, reason, shown = now >= group.last_flush_at + interval, "repeat", repeatable

        if due:
            sequence = group.sequence + 1
            notifications.append(
                Notification(
                    group_key=key,
                    sequence=sequence,
                    route_index=route.index,
                    receivers=tuple(route.receivers),
                    group_labels=dict(group.labels),
                    firing=tuple(shown),
                    resolved=tuple(newly_resolved),
                    reason=reason,
                    at=now,
                    incarnation=int(group.created_at * 1000),
                )
            )
            group = replace(
                group, last_flush_at=now, notified={a.fingerprint: FIRING for a in firing}, sequence=sequence
            )
        else:
            group = replace(group, notified=told)
        # Kept while something fires or a resolve notice still waits for group_interval.
        if firing or group.notified:
            new_groups[key] = group
    return new_groups, notifications
