"""The rule file contract: the documented example loads as written; bad input is refused at
load time naming the file, the rule, the field and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from etlops_airflow.core.alerts.rules import (
    Custom,
    DataQuality,
    ErrorRate,
    MetricThreshold,
    PipelineFailure,
    Receiver,
    Route,
    Rule,
    RuleSet,
    load_rules,
    parse_rules,
)
from etlops_airflow.core.durations import parse_duration
from etlops_airflow.exceptions import RuleError, ValidationError

EXAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "alert_rules_example.yaml"


def test_the_documented_example_loads_as_written() -> None:
    rules = load_rules(str(EXAMPLE))
    assert [r.id for r in rules.rules] == [
        "orders-failing",
        "slow-load",
        "error-rate",
        "orders-complete",
        "kafka-lag",
    ]
    assert [r.id for r in rules.enabled] == ["orders-failing", "slow-load", "error-rate", "orders-complete"]
    failing = rules.rule("orders-failing")
    assert failing.title == "Orders pipeline failing" and failing.severity == "critical"
    assert failing.cooldown == 1800 and failing.runbook_url == "https://wiki.example.com/runbooks/orders"
    assert failing.condition == PipelineFailure(consecutive=3, dag_id="orders")
    slow = rules.rule("slow-load").condition
    assert isinstance(slow, MetricThreshold)
    assert (slow.metric, slow.fn, slow.window, slow.op, slow.threshold) == (
        "rows_loaded",
        "sum",
        3600,
        "<",
        100,
    )
    assert (slow.for_, slow.resolve_threshold, dict(slow.labels)) == (900, 150, {"table": "orders"})
    assert rules.rule("slow-load").no_data == "keep_state"
    assert rules.rule("error-rate").condition == ErrorRate(threshold_percent=5, window=900, dag_id="orders")
    quality = rules.rule("orders-complete").condition
    assert isinstance(quality, DataQuality) and (quality.check_name, quality.min) == ("completeness", 0.99)
    lag = rules.rule("kafka-lag").condition
    assert isinstance(lag, Custom) and lag.params == {"max_lag_s": 300}
    assert rules.receivers["oncall-mail"].to == ("oncall@example.com",)
    assert rules.receivers["ops-slack"].channel == "#etl-alerts"
    first, default = rules.routes
    assert first.group_wait == 30 and first.group_interval == 300 and first.repeat_interval == 4 * 3600
    assert rules.route_for({"severity": "high", "rule_id": "x"}) is first
    assert rules.route_for({"severity": "low", "rule_id": "x"}) is default


def test_the_same_rules_built_in_python_get_the_same_validation() -> None:
    rule = Rule(
        id="slow-load",
        severity="high",
        condition=MetricThreshold(
            metric="rows_loaded",
            labels={"table": "orders"},
            fn="sum",
            window="1h",
            op="<",
            threshold=100,
            for_="15m",
            resolve_threshold=150,
        ),
    )
    assert rule == load_rules(str(EXAMPLE)).rule("slow-load")
    with pytest.raises(RuleError, match=r"rule 'x': condition.op '=>': expected one of"):
        Rule(id="x", condition=MetricThreshold(metric="m", window=60, op="=>", threshold=1))
    with pytest.raises(RuleError, match="condition.window '5 minutes'"):
        Rule(id="x", condition=ErrorRate(threshold_percent=5, window="5 minutes"))


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172800), (45, 45)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, ValueError) == seconds


BASE = """
receivers:
  ops: {type: slack, conn_id: slack_ops}
routes:
  - receivers: [ops]
rules:
"""

BAD = [
    (
        "  - {id: a, condition: {type: metric_thresold, metric: m}}",
        "rule 'a': condition.type 'metric_thresold'",
    ),
    (
        "  - {id: a, condition: {type: metric_threshold, metric: m, window: 1h, op: '=>', threshold: 1}}",
        "condition.op '=>'",
    ),
    (
        "  - {id: a, severity: urgent, condition: {type: pipeline_failure, consecutive: 3}}",
        "rule 'a': severity 'urgent'",
    ),
    (
        "  - {id: a, condition: {type: error_rate, window: 15x, threshold_percent: 5}}",
        "condition.window '15x'",
    ),
    (
        "  - {id: a, cooldown: soon, condition: {type: pipeline_failure, consecutive: 3}}",
        "rule 'a': cooldown 'soon'",
    ),
    (
        "  - {id: a, condition: {type: metric_threshold, metric: m, op: '>', threshold: 1}}",
        "condition.window None: is required",
    ),
    ("  - {condition: {type: pipeline_failure, consecutive: 3}}", "rule #1: id None: is required"),
    ("  - {id: a, condition: {type: pipeline_failure, consecutive: 0}}", "condition.consecutive 0"),
    (
        "  - {id: a, condition: {type: pipeline_failure, consecutive: 3, dag: x}}",
        "condition.dag 'x': unknown field",
    ),
    (
        "  - {id: a, condition: {type: data_quality, dataset: d, check: freshness, min: 1}}",
        "condition.check 'freshness'",
    ),
    (
        "  - {id: a, condition: {type: data_quality, dataset: d, check: validity, min: 1.5}}",
        "condition.min 1.5",
    ),
    ("  - {id: a, no_data: ignore, condition: {type: pipeline_failure, consecutive: 1}}", "no_data 'ignore'"),
    (
        "  - {id: a, runbook_url: 'wiki/page', condition: {type: pipeline_failure, consecutive: 1}}",
        "runbook_url 'wiki/page'",
    ),
    (
        "  - {id: a, description: '{{ dag_id ', condition: {type: pipeline_failure, consecutive: 1}}",
        "description '{{ dag_id ': template error",
    ),
    (
        "  - {id: a, condition: {type: metric_threshold, metric: m, window: 1h, op: '<', threshold: 100, resolve_threshold: 50}}",
        "condition.resolve_threshold 50.0: must be on the healthy side",
    ),
    ("  - {id: a, condition: {type: custom, evaluator: 'not a path'}}", "condition.evaluator 'not a path'"),
    (
        "  - {id: a, condition: {type: pipeline_failure, consecutive: 1}}\n  - {id: a, condition: {type: pipeline_failure, consecutive: 2}}",
        "rule 'a': id 'a': is used by two rules",
    ),
    (
        "  - {id: a, severity: low, colour: red, condition: {type: pipeline_failure, consecutive: 1}}",
        "rule 'a': colour 'red': unknown field",
    ),
]


@pytest.mark.parametrize(("rule", "shown"), BAD, ids=[b[1][:40] for b in BAD])
def test_bad_rules_are_refused_naming_file_rule_field_and_value(
    tmp_path: Path, rule: str, shown: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(BASE + rule + "\n")
    with pytest.raises(RuleError) as info:
        load_rules(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert shown in message, message
    assert isinstance(info.value, ValidationError)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("receivers: {ops: {type: pager, conn_id: x}}", "receiver 'ops': type 'pager'"),
        ("receivers: {ops: {type: email, conn_id: x}}", "receiver 'ops': to (): an email receiver needs"),
        (
            "receivers: {ops: {type: email, conn_id: x, to: [not-an-address]}}",
            "receiver 'ops': to ['not-an-address']",
        ),
        (
            "receivers: {ops: {type: slack, conn_id: x}}\nroutes: [{receivers: [pager]}]",
            "route 0: receivers 'pager': no such receiver",
        ),
        (
            "receivers: {ops: {type: slack, conn_id: x}}\nroutes: [{receivers: [ops], group_wait: half a minute}]",
            "route 0: group_wait 'half a minute'",
        ),
        (
            "receivers: {ops: {type: slack, conn_id: x}}\nroutes: [{receivers: [ops], match: {severity: [urgent]}}]",
            "route 0: match.severity 'urgent'",
        ),
        ("alerts: []", "alerts []: unknown section"),
        ("rules: {id: a}", "rules {'id': 'a'}: expected a list"),
        (
            "rules:\n  - id: a\n    condition: {type: pipeline_failure, consecutive: 1\n",
            "YAML syntax error at line",
        ),
    ],
)
def test_bad_files_receivers_and_routes_are_refused(tmp_path: Path, text: str, shown: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text + "\n")
    with pytest.raises(RuleError) as info:
        load_rules(str(path))
    assert str(path) in str(info.value) and shown in str(info.value), str(info.value)


def test_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r"rules_file '.*nope.yaml': cannot be read"):
        load_rules(str(tmp_path / "nope.yaml"))


def test_python_objects_are_checked_together() -> None:
    ops = Receiver(name="ops", type="slack", conn_id="slack_ops")
    with pytest.raises(RuleError, match="route 0: receivers 'mail': no such receiver"):
        RuleSet(rules=[], receivers={"ops": ops}, routes=[Route(receivers=["mail"])])
    rule = Rule(id="a", condition=PipelineFailure(consecutive=1))
    with pytest.raises(RuleError, match="is used by two rules"):
        RuleSet(rules=[rule, rule])


def test_an_empty_file_is_an_empty_rule_set(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("# nothing yet\n")
    assert parse_rules(None).rules == () and load_rules(str(path)).rules == ()


README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_block(kind: str, after: str) -> str:
    text = README.read_text()
    start = text.index(f"```{kind}\n", text.index(after)) + len(kind) + 4
    return text[start : text.index("```", start)]


def test_the_readme_rule_file_is_the_documented_example_and_loads(tmp_path: Path) -> None:
    shown = _readme_block("yaml", "### The rule file")
    assert shown == EXAMPLE.read_text()
    path = tmp_path / "rules.yaml"
    path.write_text(shown)
    assert len(load_rules(str(path)).rules) == 5


def test_the_readme_python_rules_run_as_written() -> None:
    namespace: dict[str, object] = {}
    exec(_readme_block("python", "The same rules in Python"), namespace)
    rules = namespace["rules"]
    assert isinstance(rules, RuleSet) and rules.rules[0] == load_rules(str(EXAMPLE)).rule("slow-load")
