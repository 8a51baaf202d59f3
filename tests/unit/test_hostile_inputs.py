"""Hostile inputs, one table, run against SQLite and PostgreSQL: each is either stored and read
back exactly as the table says, or refused with the same ValidationError naming the field —
never stored as wrong data, never a raw driver error, never different on the two databases."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from etlops_airflow import record_metrics
from etlops_airflow.core.models import MAX_LABELS_TEXT, DagRunOutcome, MetricPoint, TaskOutcome
from etlops_airflow.exceptions import InvalidDagRunOutcomeError, InvalidMetricError, InvalidOutcomeError
from etlops_airflow.store import Store

T0 = 1_700_000_000.0
RNG = random.Random(7)


def _random_text(n: int) -> str:
    return "".join(RNG.choices(string.ascii_letters + string.digits + "äöü€☃", k=n))


def _metric(value: Any = 1.0, labels: Any = None, ts: Any = T0, name: Any = "rows") -> Callable[[Store], Any]:
    """Write one point; read back (labels, value) of the series."""

    def run(store: Store) -> Any:
        store.metrics.write([MetricPoint(name, value, labels, ts)])
        (only,) = store.metrics.aggregate_by(name, fn="last", start=0, end=T0 + 10)
        return only.labels, only.value

    return run


def _outcome(**kwargs: Any) -> Callable[[Store], Any]:
    """Record one outcome; read back the fields named in ``kwargs`` (or all of them)."""
    fields = {"dag_id": "d", "task_id": "t", "run_id": "r", "try_number": 1, "state": "failed", "end_ts": T0}
    fields.update(kwargs)

    def run(store: Store) -> Any:
        store.outcomes.record(TaskOutcome(**fields))
        (row,) = store.outcomes.query()
        return {name: getattr(row, name) for name in kwargs}

    return run


def _dag_run(**kwargs: Any) -> Callable[[Store], Any]:
    """Record one DAG-run outcome; read back the fields named in ``kwargs``."""
    fields = {"dag_id": "d", "run_id": "r", "state": "failed", "end_ts": T0}
    fields.update(kwargs)

    def run(store: Store) -> Any:
        store.dag_runs.record(DagRunOutcome(**fields))
        (row,) = store.dag_runs.query()
        return {name: getattr(row, name) for name in kwargs}

    return run


@dataclass
class Case:
    id: str
    action: Callable[[Store], Any]
    expect: Any = None  # the value read back
    refused: tuple[type[Exception], str] | None = None  # or: the error and a part of its message


BIG_LABELS = {f"k{i:02d}": _random_text(500) for i in range(15)}  # random text: no TOAST compression
# 17 labels whose canonical text is exactly the limit: {"k00":"…500…",…,"k16":"…38…"}
EDGE_LABELS = {
    f"k{i:02d}": "".join(RNG.choices(string.ascii_letters, k=500 if i < 16 else 38)) for i in range(17)
}
OVER_LABELS = {**EDGE_LABELS, "k16": EDGE_LABELS["k16"] + "x"}

CASES = [
    # timestamps in the wrong unit are refused, not stored in the year 57,000
    Case("ts_in_ms", _metric(ts=T0 * 1000), refused=(InvalidMetricError, "looks like milliseconds")),
    Case("ts_in_us", _metric(ts=T0 * 1e6), refused=(InvalidMetricError, "looks like microseconds")),
    Case("ts_in_ns", _metric(ts=T0 * 1e9), refused=(InvalidMetricError, "looks like nanoseconds")),
    Case("ts_huge_int", _metric(ts=2**70), refused=(InvalidMetricError, "rows ts")),
    Case("ts_string", _metric(ts="2023-11-14"), refused=(InvalidMetricError, "rows ts")),
    Case("ts_negative", _metric(ts=-1), refused=(InvalidMetricError, "before 1970")),
    # names
    Case("name_trailing_newline", _metric(name="rows\n"), refused=(InvalidMetricError, "name 'rows\\n'")),
    Case("name_nul", _metric(name="ro\x00ws"), refused=(InvalidMetricError, "name")),
    Case("name_201_chars", _metric(name="r" * 201), refused=(InvalidMetricError, "at most 200")),
    # values
    Case("value_overflows_float", _metric(value=10**400), refused=(InvalidMetricError, "64-bit float")),
    Case("value_string", _metric(value="12"), refused=(InvalidMetricError, "must be a number, not str")),
    Case("value_bool", _metric(value=True), refused=(InvalidMetricError, "not bool")),
    Case("value_nan", _metric(value=float("nan")), refused=(InvalidMetricError, "finite")),
    Case("value_big_int", _metric(value=2**63), expect=({}, float(2**63))),
    Case("value_max_float", _metric(value=1.7976931348623157e308), expect=({}, 1.7976931348623157e308)),
    # labels
    Case(
        "labels_string", _metric(labels="table=orders"), refused=(InvalidMetricError, "labels 'table=orders'")
    ),
    Case(
        "labels_list",
        _metric(labels=[("table", "orders")]),
        refused=(InvalidMetricError, "must be a mapping"),
    ),
    Case(
        "label_dict_value", _metric(labels={"k": {"a": 1}}), refused=(InvalidMetricError, "label 'k' value")
    ),
    Case("label_list_value", _metric(labels={"k": [1]}), refused=(InvalidMetricError, "label 'k' value")),
    Case("label_none_value", _metric(labels={"k": None}), refused=(InvalidMetricError, "label 'k' value")),
    Case("label_nul_value", _metric(labels={"k": "a\x00b"}), refused=(InvalidMetricError, "NUL")),
    Case("label_surrogate", _metric(labels={"k": "a\ud800"}), refused=(InvalidMetricError, "UTF-8")),
    Case("label_bad_name", _metric(labels={"bad-key": "x"}), refused=(InvalidMetricError, "label name")),
    Case(
        "label_501_chars", _metric(labels={"k": "x" * 501}), refused=(InvalidMetricError, "longer than 500")
    ),
    Case("labels_33", _metric(labels={f"k{i}": "v" for i in range(33)}), refused=(InvalidMetricError, "32")),
    Case(
        "label_scalars",
        _metric(labels={"n": 3, "f": 0.5, "b": True}),
        expect=({"b": "True", "f": "0.5", "n": "3"}, 1.0),
    ),
    Case("label_unicode", _metric(labels={"city": "Zürich ☃"}), expect=({"city": "Zürich ☃"}, 1.0)),
    Case("labels_random_500_x15", _metric(labels=BIG_LABELS), expect=(BIG_LABELS, 1.0)),
    Case("labels_text_at_limit", _metric(labels=EDGE_LABELS), expect=(EDGE_LABELS, 1.0)),
    Case(
        "labels_text_over_limit",
        _metric(labels=OVER_LABELS),
        refused=(InvalidMetricError, f"at most {MAX_LABELS_TEXT} characters"),
    ),
    Case(
        "points_none",
        lambda store: record_metrics(None, store=store),  # type: ignore[arg-type]
        refused=(InvalidMetricError, "points None"),
    ),
    # task outcomes: identifiers refused, free text made storable
    Case("dag_id_251", _outcome(dag_id="d" * 251), refused=(InvalidOutcomeError, "longer than 250")),
    Case("dag_id_250", _outcome(dag_id="d" * 250), expect={"dag_id": "d" * 250}),
    Case("dag_id_nul", _outcome(dag_id="d\x00"), refused=(InvalidOutcomeError, "dag_id")),
    Case("run_id_surrogate", _outcome(run_id="r\udfff"), refused=(InvalidOutcomeError, "run_id")),
    Case("try_number_str", _outcome(try_number="1"), refused=(InvalidOutcomeError, "try_number '1'")),
    Case("try_number_float", _outcome(try_number=1.5), refused=(InvalidOutcomeError, "try_number 1.5")),
    Case("try_number_bool", _outcome(try_number=True), refused=(InvalidOutcomeError, "try_number True")),
    Case("try_number_int64", _outcome(try_number=2**40), refused=(InvalidOutcomeError, "between 0 and")),
    Case("map_index_minus_2", _outcome(map_index=-2), refused=(InvalidOutcomeError, "map_index -2")),
    Case(
        "end_ts_in_ms", _outcome(end_ts=T0 * 1000), refused=(InvalidOutcomeError, "looks like milliseconds")
    ),
    Case("state_running", _outcome(state="running"), refused=(InvalidOutcomeError, "state 'running'")),
    Case("message_nul", _outcome(error_message="bad\x00byte"), expect={"error_message": "bad\\x00byte"}),
    Case("message_surrogate", _outcome(error_message="x\ud800"), expect={"error_message": "x\\ud800"}),
    Case("message_5000", _outcome(error_message="m" * 5000), expect={"error_message": "m" * 1999 + "…"}),
    Case("hostname_300", _outcome(hostname="h" * 300), expect={"hostname": "h" * 249 + "…"}),
    Case("error_class_nul", _outcome(error_class="Err\x00"), expect={"error_class": "Err\\x00"}),
    Case(
        "upstream_failed",
        _outcome(state="upstream_failed", try_number=0),
        expect={"state": "upstream_failed", "try_number": 0},
    ),
    # DAG-run outcomes
    Case("run_dag_id_250", _dag_run(dag_id="d" * 250), expect={"dag_id": "d" * 250}),
    Case(
        "run_dag_id_251", _dag_run(dag_id="d" * 251), refused=(InvalidDagRunOutcomeError, "longer than 250")
    ),
    Case("run_id_nul", _dag_run(run_id="r\x00"), refused=(InvalidDagRunOutcomeError, "run_id")),
    Case("run_state_queued", _dag_run(state="queued"), refused=(InvalidDagRunOutcomeError, "state 'queued'")),
    Case("run_type_50", _dag_run(run_type="a" * 50), expect={"run_type": "a" * 50}),
    Case("run_type_51", _dag_run(run_type="a" * 51), refused=(InvalidDagRunOutcomeError, "run_type")),
    Case("run_type_sql", _dag_run(run_type="x'; --"), refused=(InvalidDagRunOutcomeError, "run_type")),
    Case("run_end_in_ms", _dag_run(end_ts=T0 * 1000), refused=(InvalidDagRunOutcomeError, "milliseconds")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_has_the_same_outcome_on_both_databases(store: Store, case: Case) -> None:
    if case.refused is not None:
        error, shown = case.refused
        with pytest.raises(error) as info:
            case.action(store)
        assert shown in str(info.value)
        status = store.status()["rows"]
        assert status["etlops_metric_points"] == 0 and status["etlops_task_outcomes"] == 0
        assert status["etlops_dag_runs"] == 0
    else:
        assert case.action(store) == case.expect
