from __future__ import annotations

import math

import pytest

from etlops_airflow.core.compare import COMPARISONS, compare
from etlops_airflow.core.models import MetricPoint, TaskOutcome, canonical_labels, error_fields
from etlops_airflow.exceptions import InvalidMetricError, InvalidOutcomeError, ValidationError


def test_labels_are_canonical_whatever_the_order() -> None:
    assert (
        canonical_labels({"b": "2", "a": 1}) == canonical_labels({"a": "1", "b": "2"}) == '{"a":"1","b":"2"}'
    )
    assert canonical_labels(None) == "{}"


def test_a_built_point_holds_clean_values() -> None:
    point = MetricPoint("rows", 3, {"n": 1, "table": "orders"}, 1_700_000_000)
    assert point.labels == {"n": "1", "table": "orders"}
    assert point.labels_key == '{"n":"1","table":"orders"}'
    assert isinstance(point.value, float) and isinstance(point.ts, float)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "1bad"}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "rows\n"}, "name"),
        ({"value": math.nan}, "value"),
        ({"value": math.inf}, "value"),
        ({"value": "12"}, "value"),
        ({"value": True}, "value"),
        ({"labels": {"bad-key": "x"}}, "label name"),
        ({"labels": {"k": None}}, "label 'k' value"),
        ({"labels": {"k": "x" * 501}}, "label 'k' value"),
        ({"labels": "k=v"}, "labels"),
        ({"ts": -1}, "ts"),
        ({"ts": 1_700_000_000_000}, "ts"),
    ],
)
def test_bad_points_are_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"name": "rows_loaded", "value": 1.0, "labels": {}, "ts": 1_700_000_000.0}
    args.update(kwargs)
    with pytest.raises(InvalidMetricError) as info:
        MetricPoint(**args)  # type: ignore[arg-type]
    assert field in str(info.value)
    assert isinstance(info.value, ValidationError) and isinstance(info.value, ValueError)


def test_milliseconds_are_named_as_such() -> None:
    with pytest.raises(InvalidMetricError, match=r"looks like milliseconds since the epoch; pass seconds"):
        MetricPoint("rows", 1, {}, 1_700_000_000_123)


def test_point_timestamp_in_milliseconds() -> None:
    assert MetricPoint("x", 1, {}, 1_700_000_000.1234).ts_ms == 1_700_000_000_123


def test_outcome_rejects_unknown_state() -> None:
    with pytest.raises(InvalidOutcomeError, match="state 'running'"):
        TaskOutcome("d", "t", "r", 1, "running")


def test_outcome_free_text_is_made_storable() -> None:
    outcome = TaskOutcome("d", "t", "r", 1, "failed", error_message="a\x00b", hostname="h" * 300)
    assert outcome.error_message == "a\\x00b"
    assert outcome.hostname is not None and len(outcome.hostname) == 250


def test_error_fields_bound_the_message_and_name_the_class() -> None:
    cls, msg = error_fields(ConnectionError("x" * 5000))
    assert cls == "ConnectionError"
    assert msg is not None and len(msg) == 2000 and msg.endswith("…")

    class Custom(Exception):
        pass

    cls, _ = error_fields(Custom("boom"))
    assert cls is not None and cls.endswith("Custom") and "." in cls
    assert error_fields(None) == (None, None)


@pytest.mark.parametrize(
    ("op", "expected"), [(">", False), (">=", True), ("<", False), ("<=", True), ("==", True), ("!=", False)]
)
def test_comparisons(op: str, expected: bool) -> None:
    assert op in COMPARISONS
    assert compare(2.0, op, 2.0) is expected
