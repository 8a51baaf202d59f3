"""Alert rules, receivers and routes: the rule file's contract, built from YAML or from Python.

Everything is validated when it is built, so a rule file that loads is a rule file that runs:
an unknown condition, operator, severity or receiver, a bad duration, a missing field, a
duplicate id or a YAML syntax error is refused at load time (at DAG parse time, when a DAG
loads the file) with a :class:`~etlops_airflow.exceptions.RuleError` naming the file, the
rule id, the field and the value.

Python users build the same objects::

    Rule(id="slow-load", severity="high",
         condition=MetricThreshold(metric="rows_loaded", labels={"table": "orders"}, fn="sum",
                                   window="1h", op="<", threshold=100, for_="15m",
                                   resolve_threshold=150))
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from etlops_airflow.core.compare import COMPARISONS
from etlops_airflow.core.durations import parse_duration
from etlops_airflow.core.models import AGGREGATES, LABEL_NAME_RE, METRIC_NAME_RE
from etlops_airflow.exceptions import RuleError

SEVERITIES = ("critical", "high", "medium", "low", "info")
NO_DATA_POLICIES = ("keep_state", "resolve", "fire")
QUALITY_CHECKS = ("completeness", "uniqueness", "validity", "consistency")
RULE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
RECEIVER_TYPES = ("slack", "email")
# Alertmanager's defaults.
DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0
DATA_QUALITY_METRIC = "data_quality_ratio"


class _Checker:
    """Builds RuleErrors that name where a value sits (file, rule, field)."""

    def __init__(self, source: str | None, item: str | None) -> None:
        self.source = source
        self.item = item

    def error(self, field_name: str, value: object, reason: str) -> RuleError:
        return RuleError(field_name, value, reason, source=self.source, item=self.item)

    def duration(self, field_name: str, value: Any, *, allow_zero: bool = False) -> float:
        return parse_duration(
            value, lambda reason: self.error(field_name, value, reason), allow_zero=allow_zero
        )

    def optional_duration(self, field_name: str, value: Any, *, allow_zero: bool = True) -> float | None:
        return None if value is None else self.duration(field_name, value, allow_zero=allow_zero)

    def number(
        self, field_name: str, value: Any, *, low: float | None = None, high: float | None = None
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(field_name, value, "expected a number")
        number = float(value)
        if (low is not None and number < low) or (high is not None and number > high):
            raise self.error(field_name, value, f"expected a number from {low:g} to {high:g}")
        return number

    def whole(self, field_name: str, value: Any, *, low: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.error(field_name, value, f"expected a whole number of at least {low}")
        return value

    def text(self, field_name: str, value: Any, *, required: bool = True) -> str:
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.error(field_name, value, "expected text")
        return value

    def choice(self, field_name: str, value: Any, allowed: Sequence[str]) -> str:
        if value not in allowed:
            raise self.error(field_name, value, f"expected one of {', '.join(allowed)}")
        return str(value)

    def labels(self, field_name: str, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(field_name, value, "expected a mapping of label names to values")
        out: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not LABEL_NAME_RE.fullmatch(key):
                raise self.error(f"{field_name}.{key}", key, "label names match [A-Za-z_][A-Za-z0-9_]*")
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise self.error(f"{field_name}.{key}", item, "label values are text or numbers")
            out[key] = str(item)
        return out

    def label_names(self, field_name: str, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise self.error(field_name, value, "expected a list of label names")
        for name in value:
            if not isinstance(name, str) or not LABEL_NAME_RE.fullmatch(name):
                raise self.error(field_name, name, "label names match [A-Za-z_][A-Za-z0-9_]*")
        if len(set(value)) != len(value):
            raise self.error(field_name, value, "names a label twice")
        return tuple(value)


# -- conditions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """Base of the five condition types. ``type`` is the name used in rule files."""

    type: ClassVar[str] = ""
    # Hysteresis and duration apply to every condition that compares a value with a threshold.
    for_: float = 0.0

    def check(self, c: _Checker) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def threshold_text(self) -> str:
        return ""


@dataclass(frozen=True)
class MetricThreshold(Condition):
    """A windowed aggregate of a metric compared with a threshold, held ``for_`` seconds.

    ``by`` makes one alert per distinct value of those labels (e.g. ``by: [dag_id]``).
    ``resolve_threshold`` (hysteresis): the alert resolves only once the value is back past
    it, e.g. ``op: "<", threshold: 100, resolve_threshold: 150``.
    """

    type: ClassVar[str] = "metric_threshold"
    metric: str = ""
    threshold: float = 0.0
    op: str = ">"
    fn: str = "avg"
    window: float | str = 300.0
    labels: Mapping[str, Any] = field(default_factory=dict)
    by: Sequence[str] = ()
    resolve_threshold: float | None = None

    def check(self, c: _Checker) -> None:
        if not isinstance(self.metric, str) or not METRIC_NAME_RE.fullmatch(self.metric):
            raise c.error("condition.metric", self.metric, "expected a metric name")
        object.__setattr__(self, "fn", c.choice("condition.fn", self.fn, AGGREGATES))
        object.__setattr__(self, "op", c.choice("condition.op", self.op, COMPARISONS))
        object.__setattr__(self, "window", c.duration("condition.window", self.window))
        object.__setattr__(self, "threshold", c.number("condition.threshold", self.threshold))
        object.__setattr__(self, "labels", c.labels("condition.labels", self.labels))
        object.__setattr__(self, "by", c.label_names("condition.by", self.by))
        if self.resolve_threshold is not None:
            value = c.number("condition.resolve_threshold", self.resolve_threshold)
            _check_hysteresis(c, self.op, self.threshold, value)
            object.__setattr__(self, "resolve_threshold", value)

    @property
    def threshold_text(self) -> str:
        return f"{self.fn}({self.metric}) {self.op} {self.threshold:g}"


def _check_hysteresis(c: _Checker, op: str, threshold: float, resolve: float) -> None:
    """The resolve threshold must lie on the healthy side of the firing threshold."""
    if op in ("<", "<=") and resolve < threshold or op in (">", ">=") and resolve > threshold:
        raise c.error(
            "condition.resolve_threshold",
            resolve,
            f"must be on the healthy side of threshold {threshold:g} (op {op!r})",
        )
    if op in ("==", "!="):
        raise c.error("condition.resolve_threshold", resolve, f"has no meaning with op {op!r}")


@dataclass(frozen=True)
class ErrorRate(Condition):
    """Failed tries / all tries in a window, in percent, scoped to a DAG, a task or everything.

    ``by: [dag_id]`` (or ``[dag_id, task_id]``) makes one alert per DAG (per task).
    """

    type: ClassVar[str] = "error_rate"
    threshold_percent: float = 0.0
    window: float | str = 900.0
    dag_id: str | None = None
    task_id: str | None = None
    by: Sequence[str] = ()
    min_tries: int = 1
    resolve_threshold_percent: float | None = None

    def check(self, c: _Checker) -> None:
        object.__setattr__(self, "window", c.duration("condition.window", self.window))
        object.__setattr__(
            self,
            "threshold_percent",
            c.number("condition.threshold_percent", self.threshold_percent, low=0, high=100),
        )
        if self.dag_id is not None:
            c.text("condition.dag_id", self.dag_id)
        if self.task_id is not None:
            c.text("condition.task_id", self.task_id)
        by = c.label_names("condition.by", self.by)
        if not set(by) <= {"dag_id", "task_id"}:
            raise c.error("condition.by", list(by), "expected dag_id and/or task_id")
        object.__setattr__(self, "by", by)
        object.__setattr__(self, "min_tries", c.whole("condition.min_tries", self.min_tries))
        if self.resolve_threshold_percent is not None:
            value = c.number(
                "condition.resolve_threshold_percent", self.resolve_threshold_percent, low=0, high=100
            )
            if value > self.threshold_percent:
                raise c.error(
                    "condition.resolve_threshold_percent",
                    value,
                    f"must be at most threshold_percent {self.threshold_percent:g}",
                )
            object.__setattr__(self, "resolve_threshold_percent", value)

    @property
    def threshold_text(self) -> str:
        return f"error rate > {self.threshold_percent:g}%"


@dataclass(frozen=True)
class PipelineFailure(Condition):
    """N consecutive failed DAG runs (or task tries, when ``task_id`` is given). Without
    ``dag_id`` every DAG is watched, one alert per DAG."""

    type: ClassVar[str] = "pipeline_failure"
    consecutive: int = 1
    dag_id: str | None = None
    task_id: str | None = None

    def check(self, c: _Checker) -> None:
        object.__setattr__(self, "consecutive", c.whole("condition.consecutive", self.consecutive))
        if self.dag_id is not None:
            c.text("condition.dag_id", self.dag_id)
        if self.task_id is not None:
            c.text("condition.task_id", self.task_id)

    @property
    def threshold_text(self) -> str:
        what = "task tries" if self.task_id else "DAG runs"
        return f">= {self.consecutive} failed {what} in a row"


@dataclass(frozen=True)
class DataQuality(Condition):
    """The latest ``data_quality_ratio{dataset, check}`` (written by DataQualityCheckOperator)
    below ``min`` (or above ``max``)."""

    type: ClassVar[str] = "data_quality"
    dataset: str = ""
    check_name: str = ""  # "check" in rule files
    min: float | None = None
    max: float | None = None
    window: float | str = 7 * 86400.0  # how old the latest ratio may be

    def check(self, c: _Checker) -> None:
        c.text("condition.dataset", self.dataset)
        object.__setattr__(self, "check_name", c.choice("condition.check", self.check_name, QUALITY_CHECKS))
        if self.min is None and self.max is None:
            raise c.error("condition.min", None, "give min and/or max (ratios from 0 to 1)")
        for name in ("min", "max"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, c.number(f"condition.{name}", value, low=0, high=1))
        object.__setattr__(self, "window", c.duration("condition.window", self.window))

    @property
    def threshold_text(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"< {self.min:g}")
        if self.max is not None:
            parts.append(f"> {self.max:g}")
        return f"{self.check_name} of {self.dataset} " + " or ".join(parts)


@dataclass(frozen=True)
class Custom(Condition):
    """An evaluator function found by ``module:function`` or by name in the entry-point group
    ``etlops_airflow.alert_evaluators``. It is called as ``evaluator(store, params, now)``
    and returns ``True``/``False`` (breach or not), a ``(breach, value)`` pair, ``None`` (no
    data) or a list of ``{"labels": {...}, "breach": bool, "value": float}``."""

    type: ClassVar[str] = "custom"
    evaluator: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    def check(self, c: _Checker) -> None:
        c.text("condition.evaluator", self.evaluator)
        if ":" in self.evaluator:
            module, _, name = self.evaluator.partition(":")
            if not re.fullmatch(r"[A-Za-z_][\w.]*", module) or not name.isidentifier():
                raise c.error(
                    "condition.evaluator",
                    self.evaluator,
                    "expected module.path:function or an entry-point name",
                )
        elif not re.fullmatch(r"[A-Za-z0-9_.-]+", self.evaluator):
            raise c.error(
                "condition.evaluator", self.evaluator, "expected module.path:function or an entry-point name"
            )
        if not isinstance(self.params, Mapping):
            raise c.error("condition.params", self.params, "expected a mapping")
        object.__setattr__(self, "params", dict(self.params))

    @property
    def threshold_text(self) -> str:
        return f"custom evaluator {self.evaluator}"


CONDITIONS: dict[str, type[Condition]] = {
    cls.type: cls for cls in (MetricThreshold, ErrorRate, PipelineFailure, DataQuality, Custom)
}
# Rule-file keys that differ from the Python attribute names.
_KEY_ALIASES = {"for": "for_", "check": "check_name"}


def _condition_from_mapping(c: _Checker, raw: Any) -> Condition:
    if not isinstance(raw, Mapping):
        raise c.error("condition", raw, "expected a mapping with a type")
    kind = raw.get("type")
    if kind not in CONDITIONS:
        raise c.error("condition.type", kind, f"expected one of {', '.join(CONDITIONS)}")
    cls = CONDITIONS[kind]
    fields = {f for f in cls.__dataclass_fields__}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "type":
            continue
        attr = _KEY_ALIASES.get(key, key)
        if attr not in fields:
            allowed = sorted(
                {k for k, v in _KEY_ALIASES.items() if v in fields} | fields - set(_KEY_ALIASES.values())
            )
            raise c.error(
                f"condition.{key}", value, f"unknown field for {kind}; expected one of {', '.join(allowed)}"
            )
        kwargs[attr] = value
    required = {
        "metric_threshold": ("metric", "window", "op", "threshold"),
        "error_rate": ("window", "threshold_percent"),
        "pipeline_failure": ("consecutive",),
        "data_quality": ("dataset", "check_name"),
        "custom": ("evaluator",),
    }[kind]
    for name in required:
        if name not in kwargs:
            shown = {v: k for k, v in _KEY_ALIASES.items()}.get(name, name)
            raise c.error(f"condition.{shown}", None, f"is required for {kind}")
    return cls(**kwargs)


def _check_condition(c: _Checker, condition: Condition) -> None:
    if not isinstance(condition, Condition) or type(condition) not in CONDITIONS.values():
        raise c.error(
            "condition",
            condition,
            f"expected one of {', '.join(cls.__name__ for cls in CONDITIONS.values())}",
        )
    object.__setattr__(condition, "for_", c.duration("condition.for", condition.for_, allow_zero=True))
    condition.check(c)


# -- rules ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One alert rule. Built objects are valid (see module docstring)."""

    id: str
    condition: Condition
    severity: str = "medium"
    name: str | None = None
    enabled: bool = True
    cooldown: float | str | None = None
    labels: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None
    runbook_url: str | None = None
    keep_firing_for: float | str = 0.0
    no_data: str = "keep_state"
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        c = _Checker(self.source, f"rule {self.id!r}" if isinstance(self.id, str) else None)
        if not isinstance(self.id, str) or not RULE_ID_RE.fullmatch(self.id):
            raise c.error("id", self.id, "expected letters, digits, - _ . : (at most 100 characters)")
        _check_condition(c, self.condition)
        c.choice("severity", self.severity, SEVERITIES)
        if self.name is not None:
            c.text("name", self.name)
        if not isinstance(self.enabled, bool):
            raise c.error("enabled", self.enabled, "expected true or false")
        object.__setattr__(self, "cooldown", c.optional_duration("cooldown", self.cooldown))
        object.__setattr__(self, "labels", c.labels("labels", self.labels))
        if self.description is not None:
            c.text("description", self.description)
            from etlops_airflow.core.alerts.templates import check_template

            check_template(self.description, lambda reason: c.error("description", self.description, reason))
        if self.runbook_url is not None and not re.fullmatch(r"https?://\S+", str(self.runbook_url)):
            raise c.error("runbook_url", self.runbook_url, "expected an http(s) URL")
        object.__setattr__(
            self, "keep_firing_for", c.duration("keep_firing_for", self.keep_firing_for, allow_zero=True)
        )
        c.choice("no_data", self.no_data, NO_DATA_POLICIES)

    @property
    def title(self) -> str:
        return self.name or self.id


@dataclass(frozen=True)
class Receiver:
    """Where notifications go: ``slack`` (a ``slack`` or ``slackwebhook`` Airflow Connection,
    optional channel) or ``email`` (an ``smtp`` Connection and recipients)."""

    name: str
    type: str
    conn_id: str
    channel: str | None = None
    to: Sequence[str] = ()
    cc: Sequence[str] = ()
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        c = _Checker(self.source, f"receiver {self.name!r}")
        if not isinstance(self.name, str) or not RULE_ID_RE.fullmatch(self.name):
            raise c.error("name", self.name, "expected letters, digits, - _ . :")
        c.choice("type", self.type, RECEIVER_TYPES)
        if not isinstance(self.conn_id, str) or not re.fullmatch(r"[\w.-]{1,250}", self.conn_id):
            raise c.error("conn_id", self.conn_id, "expected an Airflow connection id")
        if self.type == "email":
            for name in ("to", "cc"):
                value = getattr(self, name)
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, Sequence) or not all(
                    isinstance(a, str) and re.fullmatch(r"[^@\s,;]+@[^@\s,;]+", a) for a in value
                ):
                    raise c.error(name, getattr(self, name), "expected a list of e-mail addresses")
                object.__setattr__(self, name, tuple(value))
            if not self.to:
                raise c.error("to", self.to, "an email receiver needs at least one address")
            if self.channel is not None:
                raise c.error("channel", self.channel, "only slack receivers have a channel")
        else:
            if self.channel is not None and not (isinstance(self.channel, str) and self.channel.strip()):
                raise c.error("channel", self.channel, "expected a channel name such as #etl-alerts")
            if self.to or self.cc:
                raise c.error("to", self.to, "only email receivers have recipients")


@dataclass(frozen=True)
class Route:
    """Which receivers get which alerts, and how they are grouped. The first matching route
    wins; a route without ``match`` matches every alert. ``match`` keys are ``severity``,
    ``rule_id`` or any alert label; values are one value or a list."""

    receivers: Sequence[str]
    match: Mapping[str, Any] = field(default_factory=dict)
    group_by: Sequence[str] = ("rule_id",)
    group_wait: float | str = DEFAULT_GROUP_WAIT
    group_interval: float | str = DEFAULT_GROUP_INTERVAL
    repeat_interval: float | str = DEFAULT_REPEAT_INTERVAL
    index: int = 0
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        c = _Checker(self.source, f"route {self.index}")
        if isinstance(self.receivers, str) or not isinstance(self.receivers, Sequence) or not self.receivers:
            raise c.error("receivers", self.receivers, "expected a non-empty list of receiver names")
        object.__setattr__(self, "receivers", tuple(self.receivers))
        if not isinstance(self.match, Mapping):
            raise c.error(
                "match", self.match, "expected a mapping of label names to a value or a list of values"
            )
        match: dict[str, tuple[str, ...]] = {}
        for key, value in self.match.items():
            if not isinstance(key, str) or not LABEL_NAME_RE.fullmatch(key):
                raise c.error(f"match.{key}", key, "expected a label name, severity or rule_id")
            values = value if isinstance(value, list | tuple) else [value]
            if not values or not all(
                isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values
            ):
                raise c.error(f"match.{key}", value, "expected a value or a list of values")
            if key == "severity":
                for v in values:
                    c.choice("match.severity", v, SEVERITIES)
            match[key] = tuple(str(v) for v in values)
        object.__setattr__(self, "match", match)
        group_by = c.label_names("group_by", self.group_by)
        object.__setattr__(self, "group_by", group_by)
        object.__setattr__(self, "group_wait", c.duration("group_wait", self.group_wait, allow_zero=True))
        object.__setattr__(self, "group_interval", c.duration("group_interval", self.group_interval))
        object.__setattr__(self, "repeat_interval", c.duration("repeat_interval", self.repeat_interval))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) in values for key, values in self.match.items())  # type: ignore[operator]


@dataclass(frozen=True)
class RuleSet:
    """Rules, receivers and routes that were validated together (ids unique, every route's
    receivers exist)."""

    rules: Sequence[Rule]
    receivers: Mapping[str, Receiver] = field(default_factory=dict)
    routes: Sequence[Route] = ()
    source: str | None = None

    def __post_init__(self) -> None:
        c = _Checker(self.source, None)
        seen: set[str] = set()
        for rule in self.rules:
            if not isinstance(rule, Rule):
                raise c.error("rules", rule, "expected Rule objects")
            if rule.id in seen:
                raise RuleError(
                    "id", rule.id, "is used by two rules", source=self.source, item=f"rule {rule.id!r}"
                )
            seen.add(rule.id)
        for route in self.routes:
            for name in route.receivers:
                if name not in self.receivers:
                    raise RuleError(
                        "receivers",
                        name,
                        f"no such receiver; defined: {', '.join(sorted(self.receivers)) or 'none'}",
                        source=self.source,
                        item=f"route {route.index}",
                    )
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "routes", tuple(self.routes))

    @property
    def enabled(self) -> list[Rule]:
        return [r for r in self.rules if r.enabled]

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def route_for(self, labels: Mapping[str, str]) -> Route | None:
        for route in self.routes:
            if route.matches(labels):
                return route
        return None


# -- loading -------------------------------------------------------------------------------------

_TOP_KEYS = ("receivers", "routes", "rules")
_RULE_KEYS = {
    "id",
    "name",
    "severity",
    "enabled",
    "condition",
    "cooldown",
    "labels",
    "description",
    "runbook_url",
    "keep_firing_for",
    "no_data",
    "for",
}
_ROUTE_KEYS = {"receivers", "match", "group_by", "group_wait", "group_interval", "repeat_interval"}


def parse_rules(data: Any, source: str | None = None) -> RuleSet:
    """A :class:`RuleSet` from the parsed rule-file mapping (``source`` names it in errors)."""
    top = _Checker(source, None)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise top.error("(file)", type(data).__name__, "expected a mapping with receivers, routes and rules")
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise top.error(unknown[0], data[unknown[0]], f"unknown section; expected {', '.join(_TOP_KEYS)}")

    receivers: dict[str, Receiver] = {}
    raw_receivers = data.get("receivers") or {}
    if not isinstance(raw_receivers, Mapping):
        raise top.error("receivers", raw_receivers, "expected a mapping of names to receivers")
    for name, spec in raw_receivers.items():
        c = _Checker(source, f"receiver {name!r}")
        if not isinstance(spec, Mapping):
            raise c.error("(receiver)", spec, "expected a mapping with type and conn_id")
        extra = sorted(set(spec) - {"type", "conn_id", "channel", "to", "cc"})
        if extra:
            raise c.error(extra[0], spec[extra[0]], "unknown field; expected type, conn_id, channel, to, cc")
        for key in ("type", "conn_id"):
            if key not in spec:
                raise c.error(key, None, "is required")
        receivers[str(name)] = Receiver(
            name=name,
            type=spec["type"],
            conn_id=spec["conn_id"],
            channel=spec.get("channel"),
            to=spec.get("to", ()),
            cc=spec.get("cc", ()),
            source=source,
        )

    routes: list[Route] = []
    raw_routes = data.get("routes") or []
    if not isinstance(raw_routes, list):
        raise top.error("routes", raw_routes, "expected a list of routes")
    for index, spec in enumerate(raw_routes):
        c = _Checker(source, f"route {index}")
        if not isinstance(spec, Mapping):
            raise c.error("(route)", spec, "expected a mapping with receivers")
        extra = sorted(set(spec) - _ROUTE_KEYS)
        if extra:
            raise c.error(
                extra[0], spec[extra[0]], f"unknown field; expected {', '.join(sorted(_ROUTE_KEYS))}"
            )
        if "receivers" not in spec:
            raise c.error("receivers", None, "is required")
        kwargs = {k: spec[k] for k in _ROUTE_KEYS if k in spec}
        routes.append(Route(index=index, source=source, **kwargs))

    rules: list[Rule] = []
    raw_rules = data.get("rules") or []
    if not isinstance(raw_rules, list):
        raise top.error("rules", raw_rules, "expected a list of rules")
    for index, spec in enumerate(raw_rules):
        rule_id = spec.get("id") if isinstance(spec, Mapping) else None
        c = _Checker(source, f"rule {rule_id!r}" if rule_id is not None else f"rule #{index + 1}")
        if not isinstance(spec, Mapping):
            raise c.error("(rule)", spec, "expected a mapping with id, severity and condition")
        extra = sorted(set(spec) - _RULE_KEYS)
        if extra:
            raise c.error(
                extra[0], spec[extra[0]], f"unknown field; expected {', '.join(sorted(_RULE_KEYS))}"
            )
        for key in ("id", "condition"):
            if key not in spec:
                raise c.error(key, None, "is required")
        condition = _condition_from_mapping(c, spec["condition"])
        if "for" in spec:
            if "for" in spec["condition"]:
                raise c.error("for", spec["for"], "given both on the rule and in its condition")
            object.__setattr__(condition, "for_", spec["for"])
        kwargs = {k: spec[k] for k in _RULE_KEYS - {"condition", "for"} if k in spec}
        rules.append(Rule(condition=condition, source=source, **kwargs))
    return RuleSet(rules=rules, receivers=receivers, routes=routes, source=source)


def load_rules(path: str) -> RuleSet:
    """Read and validate a YAML rule file. Nothing is evaluated from a file that does not load."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise RuleError("rules_file", path, f"cannot be read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RuleError("(yaml)", path, f"YAML syntax error{where}: {problem}", source=path) from None
    return parse_rules(data, source=path)
