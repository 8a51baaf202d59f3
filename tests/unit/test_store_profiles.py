"""store.profiles: sessions, stages and findings recorded in one transaction and upserted per
try; stage history, recent sessions and statistics in SQL; the same answers and the same refusals
on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import text

from etlops_airflow.core.profiling.model import (
    FINDING_KINDS,
    Finding,
    SessionKey,
    SessionReport,
    StageFigures,
)
from etlops_airflow.exceptions import InvalidProfileError, ValidationError
from etlops_airflow.store import Store
from etlops_airflow.store.profiles import ProfileTotals

T0 = 1_700_000_000.0


def stage(path: str, duration: float, index: int = 0, **more: Any) -> StageFigures:
    values: dict[str, Any] = {
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "index": index,
        "started_at": T0 + index,
        "duration_s": duration,
    }
    return StageFigures(**(values | more))


def report(
    task_id: str = "load",
    *,
    dag_id: str = "orders",
    run: int = 1,
    try_number: int = 1,
    started_at: float | None = None,
    stages: tuple[StageFigures, ...] = (),
    findings: tuple[Finding, ...] = (),
    **more: Any,
) -> SessionReport:
    values: dict[str, Any] = {
        "key": SessionKey(dag_id, task_id, f"run_{run}", -1, try_number),
        "started_at": T0 + 100 * run if started_at is None else started_at,
        "duration_s": 10.0,
        "stages": stages,
        "peak_rss_bytes": 100 * 2**20,
        "peak_cpu_percent": 50.0,
        "records_per_s": None,
        "findings": findings,
    }
    return SessionReport(**(values | more))


FULL_STAGE = StageFigures(
    name="enrich",
    path="transform/enrich",
    index=1,
    started_at=T0 + 0.25,
    duration_s=1.5,
    records_in=1000,
    records_out=990,
    records_per_s=660.0,
    cpu_s=1.2,
    cpu_percent=80.0,
    cpu_percent_machine=10.0,
    peak_rss_bytes=3 * 2**30,
    end_rss_bytes=2**30,
    io_read_bytes=4096,
    io_write_bytes=0,
    io_read_ops=None,
    io_write_ops=7,
    threads_peak=4,
    children_peak=1,
    samples=15,
    error="ValueError: bad row ☃",
)
FINDING = Finding(
    kind="memory",
    severity="high",
    stage="transform/enrich",
    message="peak RSS 3.0 GiB",
    suggestion="process in chunks",
    value=3 * 2**30,
    threshold=2**30,
)


def test_record_round_trips_every_field(store: Store) -> None:
    outer = stage("transform", 2.0, 0)
    original = report(
        stages=(outer, FULL_STAGE),
        findings=(FINDING, replace(FINDING, kind="regression", severity="medium", value=-1.5)),
        records_per_s=495.0,
        recommendations=("process in chunks", "Zürich ☃"),
        key=SessionKey("orders", "load", "manual__2024", 3, 2),
    )
    session_id = store.profiles.record(original)
    (stored,) = store.profiles.sessions()
    assert stored.id == session_id and stored.recorded_at > T0
    assert stored.report == original
    assert isinstance(stored.report.stages, tuple) and isinstance(stored.report.recommendations, tuple)


def test_recording_a_try_again_replaces_it_and_keeps_its_id(store: Store) -> None:
    first = store.profiles.record(report(stages=(stage("a", 1), stage("b", 2, 1)), findings=(FINDING,)))
    again = store.profiles.record(report(stages=(stage("a", 5),), duration_s=7.0))
    other_try = store.profiles.record(report(try_number=2))
    assert first == again != other_try
    sessions = {s.id: s.report for s in store.profiles.sessions()}
    assert len(sessions) == 2
    assert [g.path for g in sessions[first].stages] == ["a"] and sessions[first].findings == ()
    assert sessions[first].duration_s == 7.0
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM etlops_profile_stages")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM etlops_profile_findings")).scalar_one() == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"key": SessionKey(None, "t", "r", -1, 1)}, "key.dag_id"),
        ({"key": SessionKey("d", "", "r", -1, 1)}, "key.task_id"),
        ({"key": SessionKey("d", "t", "r" * 251, -1, 1)}, "key.run_id"),
        ({"key": SessionKey("d", "t", "r\x00", -1, 1)}, "key.run_id"),
        ({"key": SessionKey("d", "t", "r", -2, 1)}, "key.map_index"),
        ({"key": SessionKey("d", "t", "r", -1, None)}, "key.try_number"),
        ({"started_at": T0 * 1000}, "started_at"),
        ({"duration_s": math.nan}, "duration_s"),
        ({"duration_s": -1}, "duration_s"),
        ({"peak_rss_bytes": 2**63}, "peak_rss_bytes"),
        ({"peak_rss_bytes": 1.5}, "peak_rss_bytes"),
        ({"peak_cpu_percent": math.inf}, "peak_cpu_percent"),
        ({"records_per_s": "fast"}, "records_per_s"),
        ({"recommendations": "one string"}, "recommendations"),
        ({"stages": (replace(stage("p", 1), path="a" * 501),)}, "stages[0].path"),
        ({"stages": (stage("a", 1), stage("b", 1, 1, cpu_percent=math.nan))}, "stages[1].cpu_percent"),
        ({"stages": (stage("a", 1, io_read_bytes=-1),)}, "stages[0].io_read_bytes"),
        ({"stages": (stage("a", 1, samples=True),)}, "stages[0].samples"),
        ({"stages": ({"path": "a"},)}, "stages[0]"),
        ({"findings": (replace(FINDING, kind="slow"),)}, "findings[0].kind"),
        ({"findings": (replace(FINDING, severity="critical"),)}, "findings[0].severity"),
        ({"findings": (replace(FINDING, value=math.nan),)}, "findings[0].value"),
    ],
)
def test_bad_reports_are_refused_alike_and_write_nothing(
    store: Store, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidProfileError) as info:
        store.profiles.record(report(stages=(stage("a", 1),)) if not change else replace(report(), **change))
    assert info.value.field == field and str(info.value).startswith(f"profile: {field} ")
    assert store.profiles.sessions() == []


def test_free_text_is_made_storable_on_both_databases(store: Store) -> None:
    long = "x" * 10_000
    store.profiles.record(
        report(
            stages=(stage("a", 1, error="bad\x00byte " + long),),
            findings=(replace(FINDING, message="nul\x00", suggestion=long, stage=""),),
            recommendations=("r\x00",),
        )
    )
    (stored,) = store.profiles.sessions()
    assert stored.report.stages[0].error is not None
    assert (
        stored.report.stages[0].error.startswith("bad\\x00byte x")
        and len(stored.report.stages[0].error) == 4000
    )
    finding = stored.report.findings[0]
    assert (finding.message, len(finding.suggestion), finding.stage) == ("nul\\x00", 4000, "")
    assert stored.report.recommendations == ("r\\x00",)


def test_history_gives_the_last_n_durations_per_stage_newest_first(store: Store) -> None:
    for run, (a, b) in enumerate([(1.0, 10.0), (2.0, 20.0), (3.0, 30.0), (4.0, 40.0)], start=1):
        store.profiles.record(report(run=run, stages=(stage("extract", a), stage("load", b, 1))))
    # another task, another DAG, and a stage that failed: none of them counts
    store.profiles.record(report("other", run=9, stages=(stage("extract", 99.0),)))
    store.profiles.record(report(dag_id="billing", run=9, stages=(stage("extract", 99.0),)))
    store.profiles.record(
        report(run=5, stages=(stage("extract", 50.0, error="boom"), stage("load", 50.0, 1)))
    )
    h = store.profiles.history("orders", "load", ["extract", "load", "never"])
    assert h == {"extract": [4.0, 3.0, 2.0], "load": [50.0, 40.0, 30.0], "never": []}
    assert store.profiles.history("orders", "load", ["load"], runs=1) == {"load": [50.0]}
    # before: leave out the session being judged (and everything after it)
    assert store.profiles.history("orders", "load", ["extract", "load"], runs=10, before=T0 + 300) == {
        "extract": [2.0, 1.0],
        "load": [20.0, 10.0],
    }
    assert store.profiles.history("orders", "load", []) == {}


def test_history_adds_up_a_stage_run_several_times_in_a_session(store: Store) -> None:
    chunks = tuple(stage("chunk", 1.5, i) for i in range(4))
    store.profiles.record(report(run=1, stages=chunks))
    store.profiles.record(report(run=2, stages=chunks[:2]))
    assert store.profiles.history("orders", "load", ("chunk",)) == {"chunk": [3.0, 6.0]}


def test_history_refuses_bad_arguments(store: Store) -> None:
    with pytest.raises(ValidationError, match="stage_paths"):
        store.profiles.history("orders", "load", "extract")
    with pytest.raises(ValidationError, match="runs 0"):
        store.profiles.history("orders", "load", ["extract"], runs=0)
    with pytest.raises(ValidationError, match="before"):
        store.profiles.history("orders", "load", ["extract"], before=math.nan)


def test_sessions_newest_first_with_filters_before_the_limit(store: Store) -> None:
    store.profiles.record(report("extract", run=1))
    store.profiles.record(report("load", run=2, stages=(stage("s", 1),), findings=(FINDING,)))
    store.profiles.record(report("load", dag_id="billing", run=3))
    store.profiles.record(report("load", run=4, started_at=T0 + 150))  # started before run 2

    def keys(items: list[Any]) -> list[tuple[str | None, str | None, str | None]]:
        return [(s.report.key.dag_id, s.report.key.task_id, s.report.key.run_id) for s in items]

    assert keys(store.profiles.sessions()) == [
        ("billing", "load", "run_3"),
        ("orders", "load", "run_2"),
        ("orders", "load", "run_4"),
        ("orders", "extract", "run_1"),
    ]
    assert keys(store.profiles.sessions(dag_id="orders", task_id="load", limit=1)) == [
        ("orders", "load", "run_2")
    ]
    assert keys(store.profiles.sessions(dag_ids=["orders"], limit=2)) == [
        ("orders", "load", "run_2"),
        ("orders", "load", "run_4"),
    ]
    assert keys(store.profiles.sessions(run_id="run_1")) == [("orders", "extract", "run_1")]
    assert keys(store.profiles.sessions(since=T0 + 200)) == [
        ("billing", "load", "run_3"),
        ("orders", "load", "run_2"),
    ]
    assert store.profiles.sessions(dag_ids=[]) == []
    (with_children,) = store.profiles.sessions(run_id="run_2")
    assert with_children.report.findings == (FINDING,) and len(with_children.report.stages) == 1
    with pytest.raises(ValidationError, match="limit"):
        store.profiles.sessions(limit=0)


def test_stats_per_dag_and_overall_in_sql(store: Store) -> None:
    empty = store.profiles.stats()
    assert empty.overall == ProfileTotals(0, None, None, None, dict.fromkeys(FINDING_KINDS, 0))
    assert empty.by_dag == {}
    regression = replace(FINDING, kind="regression")
    store.profiles.record(report(run=1, duration_s=10, peak_rss_bytes=2**30, peak_cpu_percent=180.0,
                                 findings=(FINDING, regression, regression)))  # fmt: skip
    store.profiles.record(report(run=2, duration_s=20, peak_rss_bytes=2**20, peak_cpu_percent=10.0))
    store.profiles.record(report(dag_id="billing", run=3, duration_s=3, peak_rss_bytes=2**31,
                                 peak_cpu_percent=50.0, findings=(FINDING,)))  # fmt: skip
    stats = store.profiles.stats()
    kinds = dict.fromkeys(FINDING_KINDS, 0)
    assert stats.overall == ProfileTotals(3, 11.0, 2**31, 180.0, kinds | {"memory": 2, "regression": 2})
    assert stats.by_dag == {
        "billing": ProfileTotals(1, 3.0, 2**31, 50.0, kinds | {"memory": 1}),
        "orders": ProfileTotals(2, 15.0, 2**30, 180.0, kinds | {"memory": 1, "regression": 2}),
    }
    only_orders = store.profiles.stats(dag_ids=["orders"])
    assert only_orders.overall == stats.by_dag["orders"] and list(only_orders.by_dag) == ["orders"]
    recent = store.profiles.stats(since=T0 + 200)
    assert recent.overall == ProfileTotals(2, 11.5, 2**31, 50.0, kinds | {"memory": 1})
    assert store.profiles.stats(dag_ids=[]).overall.sessions == 0


def test_status_counts_the_profile_tables(store: Store) -> None:
    store.profiles.record(report(stages=(stage("a", 1), stage("b", 1, 1)), findings=(FINDING,)))
    rows = store.status()["rows"]
    assert (
        rows["etlops_profile_sessions"],
        rows["etlops_profile_stages"],
        rows["etlops_profile_findings"],
    ) == (
        1,
        2,
        1,
    )


def test_the_largest_accepted_values_round_trip_on_both_databases(store: Store) -> None:
    big = 2**63 - 1
    original = report(
        stages=(stage("p" * 250, 1e300, records_in=big, io_write_bytes=big, threads_peak=2**31 - 1),),
        peak_rss_bytes=big,
        peak_cpu_percent=1e308,
        key=SessionKey("d" * 250, "t" * 250, "r" * 250, 2**31 - 1, 2**31 - 1),
        recommendations=("☃" * 4000,),
    )
    store.profiles.record(original)
    assert store.profiles.sessions()[0].report == original
