"""The alert lifecycle and notification planning: every transition, hysteresis, no-data
policies, grouping, cooldown, silences and acknowledgements (pure functions, a fake clock)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from etlops_airflow.core.alerts.engine import evaluate, plan_notifications, view_of
from etlops_airflow.core.alerts.grouping import GroupState, Silence, plan
from etlops_airflow.core.alerts.rules import MetricThreshold, PipelineFailure, Receiver, Route, Rule, RuleSet
from etlops_airflow.core.alerts.state import (
    FIRING,
    INACTIVE,
    PENDING,
    RESOLVED,
    AlertState,
    Observation,
    step,
)

T0 = 1_700_000_000.0


def _rule(**kwargs: object) -> Rule:
    condition = kwargs.pop("condition", None) or MetricThreshold(
        metric="rows",
        window=3600,
        op="<",
        threshold=100,
        for_=kwargs.pop("for_", 0),
        resolve_threshold=kwargs.pop("resolve_threshold", None),
    )
    return Rule(id=str(kwargs.pop("id", "slow")), condition=condition, **kwargs)  # type: ignore[arg-type]


def _obs(value: float | None, rule: Rule, labels: dict[str, str] | None = None) -> Observation:
    c = rule.condition
    assert isinstance(c, MetricThreshold)
    if value is None:
        return Observation(labels or {}, None, None, False)
    breach = value < c.threshold
    clear = not breach if c.resolve_threshold is None else value >= c.resolve_threshold
    return Observation(labels or {}, value, breach, clear)


def _run(
    rule: Rule, values: list[float | None], step_s: float = 60.0
) -> tuple[AlertState | None, list[tuple[str, str]]]:
    """Feed values one evaluation apart; return the final state and the transitions made."""
    state: AlertState | None = None
    moves = []
    for i, value in enumerate(values):
        state, moved = step(state, rule, _obs(value, rule), T0 + i * step_s)
        if moved:
            moves.append((moved.from_state, moved.to_state))
    return state, moves


# -- the lifecycle ---------------------------------------------------------------------------------


def test_inactive_pending_firing_resolved() -> None:
    rule = _rule(for_=900)  # 15 minutes
    state, moves = _run(rule, [50] * 16 + [200])
    assert moves == [(INACTIVE, PENDING), (PENDING, FIRING), (FIRING, RESOLVED)]
    assert state is not None and state.state == RESOLVED
    # firing exactly when the breach had held 15 minutes (evaluation 15, one minute apart)
    _, early = _run(rule, [50] * 15)
    assert early == [(INACTIVE, PENDING)]


def test_without_for_an_alert_fires_at_once() -> None:
    _, moves = _run(_rule(), [50])
    assert moves == [(INACTIVE, FIRING)]


def test_a_pending_alert_that_clears_goes_back_to_inactive_without_firing() -> None:
    state, moves = _run(_rule(for_=900), [50, 50, 200])
    assert moves == [(INACTIVE, PENDING), (PENDING, INACTIVE)]
    assert state is not None and state.state == INACTIVE


def test_a_resolved_alert_that_breaches_again_is_a_new_incident_without_its_ack() -> None:
    rule = _rule()
    state, _ = step(None, rule, _obs(50, rule), T0)
    state = replace(state, acked_by="ann", acked_at=T0 + 1)
    state, _ = step(state, rule, _obs(200, rule), T0 + 60)
    state, moved = step(state, rule, _obs(50, rule), T0 + 120)
    assert moved is not None and (moved.from_state, moved.to_state) == (RESOLVED, FIRING)
    assert state.incident == 2 and state.acked_by is None


def test_hysteresis_one_fire_and_one_resolve_per_incident() -> None:
    values = [90.0, 110.0] * 25  # oscillates across the threshold at every evaluation
    _, flapping = _run(_rule(), values)
    assert flapping.count((INACTIVE, FIRING)) + flapping.count((RESOLVED, FIRING)) == 25  # what users hate
    rule = _rule(resolve_threshold=150)
    _, moves = _run(rule, [*values, 160.0])
    assert moves == [(INACTIVE, FIRING), (FIRING, RESOLVED)]


def test_keep_firing_for_holds_a_firing_alert_through_short_recoveries() -> None:
    rule = _rule(keep_firing_for="5m")
    _, moves = _run(rule, [50, 200, 200, 50, 200, 200, 200, 200, 200, 200])
    assert moves == [(INACTIVE, FIRING), (FIRING, RESOLVED)]
    state, _ = _run(rule, [50, 200, 200, 200, 200])
    assert state is not None and state.state == FIRING  # 4 minutes clear < 5 minutes


@pytest.mark.parametrize(
    ("policy", "start", "expected"),
    [
        ("keep_state", FIRING, FIRING),
        ("keep_state", INACTIVE, INACTIVE),
        ("resolve", FIRING, RESOLVED),
        ("fire", INACTIVE, FIRING),
    ],
)
def test_no_data_policies(policy: str, start: str, expected: str) -> None:
    rule = _rule(no_data=policy)
    state = None
    if start == FIRING:
        state, _ = step(None, rule, _obs(50, rule), T0)
    state, _ = step(state, rule, _obs(None, rule), T0 + 60)
    assert state.state == expected


# -- evaluate(): many alerts per rule, vanished groups, failing and removed rules ------------------


class _Source:
    pass


def test_evaluate_keeps_one_alert_per_label_set_and_reports_failing_rules() -> None:
    rule = _rule(condition=PipelineFailure(consecutive=3))
    broken = _rule(id="broken")
    ruleset = RuleSet(rules=[rule, broken])

    def observer(r: Rule, source: object, now: float) -> list[Observation]:
        if r.id == "broken":
            raise RuntimeError("query refused")
        return [Observation({"dag_id": f"d{i}"}, 3.0, True, False) for i in range(5)]

    result = evaluate(ruleset, _Source(), {}, T0, observer)  # type: ignore[arg-type]
    assert result.count(FIRING) == 5 and len({a.labels["dag_id"] for a in result.alerts.values()}) == 5
    assert result.errors == {"broken": "RuntimeError: query refused"}

    # next time d0 is not observed at all (no data for it): keep_state keeps it firing
    def fewer(r: Rule, source: object, now: float) -> list[Observation]:
        return [Observation({"dag_id": f"d{i}"}, 0.0, False, True) for i in range(1, 5)]

    again = evaluate(RuleSet(rules=[rule]), _Source(), result.alerts, T0 + 60, fewer)  # type: ignore[arg-type]
    states = {a.labels["dag_id"]: a.state for a in again.alerts.values()}
    assert states == {"d0": FIRING, "d1": RESOLVED, "d2": RESOLVED, "d3": RESOLVED, "d4": RESOLVED}
    # the rule is removed from the file: its firing alerts resolve
    gone = evaluate(RuleSet(rules=[]), _Source(), again.alerts, T0 + 120, fewer)  # type: ignore[arg-type]
    assert [t.to_state for t in gone.transitions] == [RESOLVED]


# -- grouping, intervals, cooldown, silences, acks --------------------------------------------------


OPS = Receiver(name="ops", type="slack", conn_id="slack_ops")


def _ruleset(*rules: Rule, **route: object) -> RuleSet:
    return RuleSet(rules=list(rules), receivers={"ops": OPS}, routes=[Route(receivers=["ops"], **route)])  # type: ignore[arg-type]


def _firing(rule: Rule, dag: str, at: float = T0) -> AlertState:
    state, _ = step(None, rule, Observation({"dag_id": dag}, 3.0, True, False), at)
    return state


def test_a_new_group_waits_group_wait_and_sends_one_message_for_all_its_alerts() -> None:
    rule = _rule(id="fails", condition=PipelineFailure(consecutive=3))
    ruleset = _ruleset(rule)  # group_by rule_id, group_wait 30s
    first = [_firing(rule, "d0")]
    groups, sent = plan(ruleset, first, {}, [], T0)
    assert sent == [] and len(groups) == 1
    alerts = first + [_firing(rule, f"d{i}", T0 + 10) for i in range(1, 50)]
    groups, sent = plan(ruleset, alerts, groups, [], T0 + 29)
    assert sent == []
    groups, sent = plan(ruleset, alerts, groups, [], T0 + 30)
    assert len(sent) == 1 and len(sent[0].firing) == 50 and sent[0].reason == "initial"
    assert view_of(sent[0], ruleset).title == "[FIRING:50] fails"
    # nothing new: nothing more until the repeat interval
    assert plan(ruleset, alerts, groups, [], T0 + 3600)[1] == []


def test_changes_go_out_at_most_every_group_interval_and_resolves_are_told_once() -> None:
    rule = _rule(id="fails", condition=PipelineFailure(consecutive=3))
    ruleset = _ruleset(rule, group_wait=0, group_interval="5m")
    a0 = _firing(rule, "d0")
    groups, sent = plan(ruleset, [a0], {}, [], T0)
    assert [n.reason for n in sent] == ["initial"]
    a1 = _firing(rule, "d1", T0 + 60)
    groups, sent = plan(ruleset, [a0, a1], groups, [], T0 + 60)
    assert sent == []
    groups, sent = plan(ruleset, [a0, a1], groups, [], T0 + 300)
    assert [(n.reason, len(n.firing)) for n in sent] == [("update", 2)]
    r0 = replace(a0, state=RESOLVED, resolved_at=T0 + 400)
    r1 = replace(a1, state=RESOLVED, resolved_at=T0 + 400)
    groups, sent = plan(ruleset, [r0, r1], groups, [], T0 + 600)
    assert [(n.reason, len(n.firing), len(n.resolved)) for n in sent] == [("update", 0, 2)]
    assert groups == {}  # nothing left to say
    assert plan(ruleset, [r0, r1], groups, [], T0 + 1200) == ({}, [])


def test_repeats_follow_repeat_interval_or_the_rules_cooldown() -> None:
    plain = _rule(id="plain", condition=PipelineFailure(consecutive=1))
    ruleset = _ruleset(plain, group_wait=0, repeat_interval="4h")
    alert = _firing(plain, "d0")
    groups, _ = plan(ruleset, [alert], {}, [], T0)
    assert plan(ruleset, [alert], groups, [], T0 + 4 * 3600 - 1)[1] == []
    assert [n.reason for n in plan(ruleset, [alert], groups, [], T0 + 4 * 3600)[1]] == ["repeat"]

    cooled = _rule(id="cooled", condition=PipelineFailure(consecutive=1), cooldown="30m")
    ruleset = _ruleset(cooled, group_wait=0, repeat_interval="4h")
    alert = _firing(cooled, "d0")
    groups, _ = plan(ruleset, [alert], {}, [], T0)
    assert plan(ruleset, [alert], groups, [], T0 + 1799)[1] == []
    groups, sent = plan(ruleset, [alert], groups, [], T0 + 1800)
    assert [n.reason for n in sent] == ["repeat"]
    assert plan(ruleset, [alert], groups, [], T0 + 3599)[1] == []


def test_an_acknowledged_alert_is_not_repeated_but_its_resolve_is_sent() -> None:
    rule = _rule(id="fails", condition=PipelineFailure(consecutive=1))
    ruleset = _ruleset(rule, group_wait=0, repeat_interval="1h")
    alert = _firing(rule, "d0")
    groups, _ = plan(ruleset, [alert], {}, [], T0)
    acked = replace(alert, acked_by="ann", acked_at=T0 + 10)
    assert plan(ruleset, [acked], groups, [], T0 + 7200)[1] == []
    resolved = replace(acked, state=RESOLVED, resolved_at=T0 + 7300)
    _, sent = plan(ruleset, [resolved], groups, [], T0 + 7400)
    assert [(n.reason, [a.acked_by for a in n.resolved]) for n in sent] == [("update", ["ann"])]


def test_silenced_alerts_are_left_out_until_the_silence_ends() -> None:
    rule = _rule(id="fails", condition=PipelineFailure(consecutive=1))
    ruleset = _ruleset(rule, group_wait=0, group_interval="1m")
    loud, quiet = _firing(rule, "d0"), _firing(rule, "d1")
    silence = Silence("s1", {"dag_id": ["d1"]}, T0 - 1, T0 + 3600, "ann", "maintenance window")
    groups, sent = plan(ruleset, [loud, quiet], {}, [silence], T0)
    assert [[a.labels["dag_id"] for a in n.firing] for n in sent] == [["d0"]]
    by_rule = Silence("s2", {"rule_id": ["fails"]}, T0 - 1, T0 + 3600)
    assert plan(ruleset, [loud, quiet], {}, [by_rule], T0) == ({}, [])
    # the silence ends: d1 joins the group's next message
    _, sent = plan(ruleset, [loud, quiet], groups, [silence], T0 + 3600)
    assert [sorted(a.labels["dag_id"] for a in n.firing) for n in sent] == [["d0", "d1"]]


def test_routes_first_match_wins_and_group_by_splits_groups() -> None:
    critical = _rule(id="crit", severity="critical", condition=PipelineFailure(consecutive=1))
    low = _rule(id="low", severity="low", condition=PipelineFailure(consecutive=1))
    mail = Receiver(name="mail", type="email", conn_id="smtp_default", to=["oncall@example.com"])
    ruleset = RuleSet(
        rules=[critical, low],
        receivers={"ops": OPS, "mail": mail},
        routes=[
            Route(
                receivers=["ops", "mail"],
                match={"severity": ["critical", "high"]},
                group_by=["dag_id"],
                group_wait=0,
            ),
            Route(receivers=["ops"], group_wait=0, index=1),
        ],
    )
    alerts = [_firing(critical, "a"), _firing(critical, "b"), _firing(low, "a")]
    _, sent = plan(ruleset, alerts, {}, [], T0)
    shape = sorted((n.receivers, tuple(sorted(n.group_labels.items())), len(n.firing)) for n in sent)
    assert shape == [
        (("ops",), (("rule_id", "low"),), 1),
        (("ops", "mail"), (("dag_id", "a"),), 1),
        (("ops", "mail"), (("dag_id", "b"),), 1),
    ]


def test_the_same_notification_has_the_same_idempotency_key() -> None:
    rule = _rule(id="fails", condition=PipelineFailure(consecutive=1))
    ruleset = _ruleset(rule, group_wait=0)
    alert = _firing(rule, "d0")
    _, first = plan(ruleset, [alert], {}, [], T0)
    _, again = plan(ruleset, [alert], {}, [], T0)  # a crashed evaluation run again from the same state
    assert [n.idempotency_key for n in first] == [n.idempotency_key for n in again]
    groups, _ = plan_notifications(ruleset, {alert.fingerprint: alert}, {}, [], T0)
    assert isinstance(next(iter(groups.values())), GroupState)
