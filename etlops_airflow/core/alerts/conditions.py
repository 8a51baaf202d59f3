"""What each condition observes, through an :class:`AlertSource` (the store implements it).

One condition gives one observation per alert it watches: one for a plain rule, one per
group for ``by: [...]``, one per DAG for a ``pipeline_failure`` rule without ``dag_id``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from etlops_airflow.core.alerts.rules import (
    DATA_QUALITY_METRIC,
    Condition,
    Custom,
    DataQuality,
    ErrorRate,
    MetricThreshold,
    PipelineFailure,
)
from etlops_airflow.core.alerts.state import Observation
from etlops_airflow.core.compare import compare
from etlops_airflow.exceptions import RuleError

EVALUATOR_GROUP = "etlops_airflow.alert_evaluators"


class AlertSource(Protocol):
    """The reads conditions need. ``start``/``end`` are seconds; ``end`` is exclusive."""

    def metric_value(
        self, name: str, fn: str, labels: Mapping[str, str], start: float, end: float
    ) -> float | None: ...

    def metric_values_by(
        self, name: str, by: Sequence[str], fn: str, labels: Mapping[str, str], start: float, end: float
    ) -> list[tuple[dict[str, str], float]]: ...

    def error_counts(
        self, start: float, end: float, dag_id: str | None, task_id: str | None, by: Sequence[str]
    ) -> list[tuple[dict[str, str], int, int]]:
        """(labels, failed tries, all tries) per group."""
        ...

    def failure_streaks(self, dag_id: str | None, task_id: str | None) -> list[tuple[dict[str, str], int]]:
        """(labels, consecutive failures up to the latest) per DAG (or the task)."""
        ...

    def latest_run_id(self, dag_id: str, task_id: str | None) -> str | None:
        """The run of the DAG's (or the task's) latest recorded outcome, for links."""
        ...


def metric_windows(condition: Condition, now: float) -> list[tuple[str, dict[str, str], float, float]]:
    """The metric windows observing ``condition`` at ``now`` reads: (metric, labels, start, end).
    A source may fetch all of them for all rules at once before the rules are observed."""
    if isinstance(condition, MetricThreshold):
        return [(condition.metric, dict(condition.labels), now - float(condition.window), now + 0.001)]
    if isinstance(condition, DataQuality):
        labels = {"dataset": condition.dataset, "check": condition.check_name}
        return [(DATA_QUALITY_METRIC, labels, now - float(condition.window), now + 0.001)]
    return []


def observe(condition: Condition, source: AlertSource, now: float) -> list[Observation]:
    if isinstance(condition, MetricThreshold):
        return _metric_threshold(condition, source, now)
    if isinstance(condition, ErrorRate):
        return _error_rate(condition, source, now)
    if isinstance(condition, PipelineFailure):
        return _pipeline_failure(condition, source)
    if isinstance(condition, DataQuality):
        return _data_quality(condition, source, now)
    if isinstance(condition, Custom):
        return _custom(condition, source, now)
    raise TypeError(f"unknown condition {type(condition).__name__}")  # pragma: no cover


def _judge(value: float | None, op: str, threshold: float, resolve: float | None) -> tuple[bool | None, bool]:
    if value is None:
        return None, False
    breach = compare(value, op, threshold)
    clear = not breach if resolve is None else not compare(value, op, resolve)
    return breach, clear


def _metric_threshold(c: MetricThreshold, source: AlertSource, now: float) -> list[Observation]:
    ((_, _, start, end),) = metric_windows(c, now)  # the window includes a point written just now
    # The alert carries the rule's label filter (and its group's labels): messages, routes and
    # silences can use them ({{ table }}, match: {table: orders}).
    scope = dict(c.labels)
    if not c.by:
        value = source.metric_value(c.metric, c.fn, scope, start, end)
        return [Observation(scope, value, *_judge(value, c.op, c.threshold, c.resolve_threshold))]
    rows = source.metric_values_by(c.metric, c.by, c.fn, scope, start, end)
    return [
        Observation({**scope, **labels}, v, *_judge(v, c.op, c.threshold, c.resolve_threshold))
        for labels, v in rows
    ]


def _error_rate(c: ErrorRate, source: AlertSource, now: float) -> list[Observation]:
    rows = source.error_counts(now - float(c.window), now + 0.001, c.dag_id, c.task_id, c.by)
    scope = {k: v for k, v in (("dag_id", c.dag_id), ("task_id", c.task_id)) if v is not None}
    out = []
    if not c.by and not rows:
        rows = [(dict(scope), 0, 0)]
    for labels, failed, total in rows:
        labels = {**scope, **labels}
        if total < c.min_tries:
            out.append(Observation(labels, None, None, False))
            continue
        rate = 100.0 * failed / total
        breach = rate > c.threshold_percent
        resolve = c.resolve_threshold_percent
        clear = not breach if resolve is None else rate <= resolve
        out.append(Observation(labels, rate, breach, clear))
    return out


def _pipeline_failure(c: PipelineFailure, source: AlertSource) -> list[Observation]:
    rows = source.failure_streaks(c.dag_id, c.task_id)
    if c.dag_id is not None and not rows:
        labels = {"dag_id": c.dag_id, **({"task_id": c.task_id} if c.task_id else {})}
        return [Observation(labels, None, None, False)]
    out = []
    for labels, streak in rows:
        breach = streak >= c.consecutive
        annotations: dict[str, str] = {}
        if breach and labels.get("dag_id"):
            run_id = source.latest_run_id(labels["dag_id"], labels.get("task_id"))
            if run_id:
                annotations["run_id"] = run_id
        out.append(Observation(labels, float(streak), breach, not breach, annotations))
    return out


def _data_quality(c: DataQuality, source: AlertSource, now: float) -> list[Observation]:
    ((name, labels, start, end),) = metric_windows(c, now)
    value = source.metric_value(name, "last", labels, start, end)
    if value is None:
        return [Observation(labels, None, None, False)]
    breach = (c.min is not None and value < c.min) or (c.max is not None and value > c.max)
    return [Observation(labels, value, breach, not breach)]


def resolve_evaluator(spec: str) -> Callable[..., Any]:
    """``module:function`` or an entry-point name in ``etlops_airflow.alert_evaluators``."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise RuleError("condition.evaluator", spec, f"cannot import {module_name!r}: {exc}") from None
        function = getattr(module, attr, None)
    else:
        from importlib.metadata import entry_points

        found = [ep for ep in entry_points(group=EVALUATOR_GROUP) if ep.name == spec]
        if not found:
            raise RuleError(
                "condition.evaluator", spec, f"no entry point of that name in group {EVALUATOR_GROUP}"
            )
        function = found[0].load()
    if not callable(function):
        raise RuleError("condition.evaluator", spec, "is not a callable")
    return function  # type: ignore[no-any-return]


def _custom(c: Custom, source: AlertSource, now: float) -> list[Observation]:
    result = resolve_evaluator(c.evaluator)(source, dict(c.params), now)
    if result is None:
        return [Observation({}, None, None, False)]
    if isinstance(result, bool):
        return [Observation({}, None, result, not result)]
    if isinstance(result, tuple) and len(result) == 2:
        breach, value = result
        return [Observation({}, None if value is None else float(value), bool(breach), not breach)]
    if isinstance(result, list):
        out = []
        for item in result:
            if not isinstance(item, Mapping) or "breach" not in item:
                raise RuleError(
                    "condition.evaluator",
                    c.evaluator,
                    f"returned {item!r}; expected {{labels, breach, value}}",
                )
            labels = {str(k): str(v) for k, v in dict(item.get("labels") or {}).items()}
            value = item.get("value")
            breach = item["breach"]
            out.append(
                Observation(
                    labels,
                    None if value is None else float(value),
                    None if breach is None else bool(breach),
                    not breach,
                )
            )
        return out
    raise RuleError(
        "condition.evaluator",
        c.evaluator,
        f"returned {type(result).__name__}; expected bool, (bool, value), None or a list",
    )
