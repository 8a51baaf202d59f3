"""The store reads behind the Operations view, on SQLite and PostgreSQL: latest metric values and
several metrics' history in one read, the newest runs per DAG, window counts per DAG (from the
rollups or the raw rows, with the same answer), records per pipeline, maintenance totals."""

from __future__ import annotations

import time

import pytest

from etlops_airflow.core.maintenance.model import MaintenanceRun
from etlops_airflow.core.models import DagRunOutcome, MetricPoint, TaskOutcome
from etlops_airflow.core.profiling.model import SessionKey, SessionReport, StageFigures
from etlops_airflow.exceptions import ValidationError
from etlops_airflow.store import Store

HOUR = 3600.0
DAY = 86400.0


def test_latest_is_the_newest_point_of_each_visible_series(store: Store) -> None:
    t = time.time() - 1000
    store.metrics.write(
        [
            MetricPoint("rows", 1, {"dag_id": "a", "table": "x"}, t),
            MetricPoint("rows", 2, {"dag_id": "a", "table": "x"}, t + 10),
            MetricPoint("rows", 3, {"dag_id": "b", "table": "x"}, t + 20),
            MetricPoint("cpu", 7, {"host": "w1"}, t + 5),
            MetricPoint("other", 9, {}, t),
        ]
    )
    found = store.metrics.latest(["rows", "cpu"])
    assert [(v.name, v.labels, v.value) for v in found] == [
        ("cpu", {"host": "w1"}, 7.0),
        ("rows", {"dag_id": "a", "table": "x"}, 2.0),
        ("rows", {"dag_id": "b", "table": "x"}, 3.0),
    ]
    assert found[1].ts == pytest.approx(t + 10, abs=0.001)
    assert [v.value for v in store.metrics.latest(["rows"], dag_ids=["a"])] == [2.0]
    assert [v.value for v in store.metrics.latest(["rows"], before=t + 5)] == [1.0]
    assert store.metrics.latest(["rows"], labels={"table": "y"}) == []
    assert store.metrics.latest([]) == []


def test_history_matches_series_and_uses_each_metrics_step(store: Store) -> None:
    end = time.time()
    store.metrics.write(
        [MetricPoint("rows", i, {"t": str(s)}, end - 3000 + i * 60) for s in range(3) for i in range(40)]
        + [MetricPoint("cpu", i, {"h": "w1"}, end - 3000 + i * 60) for i in range(40)]
    )
    asked = []

    def step_for(name: str, n_series: int) -> float:
        asked.append((name, n_series))
        return 300.0 * n_series

    found = store.metrics.history(
        ["rows", "cpu", "none"], step_for=step_for, start=end - 3600, end=end, fn="sum"
    )
    assert asked == [("rows", 3), ("cpu", 1), ("none", 1)]
    assert found["none"] == (300.0, [])
    step, series = found["rows"]
    assert step == 900.0
    expected = store.metrics.series("rows", step=900, start=end - 3600, end=end, fn="sum")
    assert sorted((s.labels["t"], s.points) for s in series) == sorted(
        (s.labels["t"], s.points) for s in expected
    )
    assert sum(v for s in series for _, v in s.points) == 3 * sum(range(40))
    with pytest.raises(ValidationError, match="^step 1"):
        store.metrics.history(["rows"], step_for=lambda n, k: 1, start=end - 3600, end=end, max_points=100)


def test_latest_runs_per_dag_newest_first_open_ended_last(store: Store) -> None:
    t = time.time() - DAY
    for i in range(5):
        store.dag_runs.record(DagRunOutcome("a", f"r{i}", "success", end_ts=t + i, duration_s=1.0))
    store.dag_runs.record(DagRunOutcome("a", "open", "failed"))
    store.dag_runs.record(DagRunOutcome("b", "only", "failed", end_ts=t))
    runs = store.dag_runs.latest_per_dag(per_dag=3)
    assert {k: [r.run_id for r in v] for k, v in runs.items()} == {"a": ["r4", "r3", "r2"], "b": ["only"]}
    runs = store.dag_runs.latest_per_dag(per_dag=7, dag_ids=["a"])
    assert [r.run_id for r in runs["a"]] == ["r4", "r3", "r2", "r1", "r0", "open"]
    assert set(runs) == {"a"}
    with pytest.raises(ValidationError, match="^per_dag 0"):
        store.dag_runs.latest_per_dag(per_dag=0)


def test_pipeline_counts_from_rollups_equal_the_raw_counts(store: Store) -> None:
    day0 = (time.time() // DAY - 4) * DAY  # midnight four days ago
    for i in range(96):  # one run of two tries every hour for four days, every fifth failed
        end = day0 + i * HOUR + 1800
        state = "failed" if i % 5 == 0 else "success"
        dag = ("a", "b")[i % 2]
        store.dag_runs.record(DagRunOutcome(dag, f"r{i}", state, end_ts=end, duration_s=10.0 + i))
        store.outcomes.record(TaskOutcome(dag, "t1", f"r{i}", 1, "success", end_ts=end - 60))
        store.outcomes.record(TaskOutcome(dag, "t2", f"r{i}", 1, state, end_ts=end))
    since, until = day0 + 5 * HOUR + 900, day0 + 3 * DAY + 7 * HOUR + 100
    raw = store.maintenance.pipeline_counts(since, until)
    for granularity in ("hourly", "daily"):
        store.maintenance.rollup(granularity, day0, day0 + 4 * DAY)
        rolled = store.maintenance.pipeline_counts(since, until)
        assert rolled == raw, granularity
    a = raw["a"]
    in_window = [i for i in range(96) if since <= day0 + i * HOUR + 1800 < until and i % 2 == 0]
    assert sum(a.runs.values()) == len(in_window)
    assert a.runs.get("failed", 0) == len([i for i in in_window if i % 5 == 0])
    assert a.avg_duration_s == pytest.approx(sum(10.0 + i for i in in_window) / len(in_window))
    assert a.duration_max == 10.0 + max(in_window)
    ends = [day0 + i * HOUR + 1800 + shift for i in range(0, 96, 2) for shift in (-60, 0)]
    assert sum(a.tries.values()) == len([e for e in ends if since <= e < until])
    assert set(store.maintenance.pipeline_counts(since, until, dag_ids=["b"])) == {"b"}
    with pytest.raises(ValidationError, match="^since"):
        store.maintenance.pipeline_counts(until, since)


def _stage(path: str, index: int, start: float, records_out: int | None) -> StageFigures:
    return StageFigures(
        name=path.rsplit("/", 1)[-1],
        path=path,
        index=index,
        started_at=start,
        duration_s=1.0,
        records_out=records_out,
    )


def test_pipeline_records_count_the_last_top_level_stage(store: Store) -> None:
    t = time.time() - HOUR
    for run, records in ((1, 100), (2, 300)):
        store.profiles.record(
            SessionReport(
                key=SessionKey("a", "etl", f"r{run}", -1, 1),
                started_at=t + run * 100,
                duration_s=10.0,
                stages=(
                    _stage("extract", 0, t, records * 2),
                    _stage("load", 1, t + 1, records),
                    _stage("load/write", 2, t + 2, records * 5),  # nested: not counted
                ),
                peak_rss_bytes=1,
                peak_cpu_percent=1.0,
                records_per_s=None,
            )
        )
    store.profiles.record(
        SessionReport(SessionKey("b", "x", "r", -1, 1), t, 4.0, (), 1, 1.0, None)  # no stage: no records
    )
    found = store.profiles.pipeline_records(since=t - 1)
    a = found["a"]
    assert (a.sessions, a.records, a.profiled_s, a.records_per_s) == (2, 400, 20.0, 20.0)
    assert (a.last_run_id, a.last_stage) == ("r2", "load")
    b = found["b"]
    assert (b.sessions, b.records, b.records_per_s, b.last_stage) == (1, None, None, None)
    assert set(store.profiles.pipeline_records(since=t - 1, dag_ids=["b"])) == {"b"}
    assert store.profiles.pipeline_records(since=t + 1000) == {}
    one = store.profiles.get(store.profiles.sessions(dag_id="a", limit=1)[0].id)
    assert one is not None and [s.path for s in one.report.stages] == ["extract", "load", "load/write"]
    assert store.profiles.get(one.id, dag_ids=["b"]) is None


def test_maintenance_totals_and_runs_by_readable_dag(store: Store) -> None:
    t = time.time() - HOUR

    def run(task: str, dag: str | None, freed: int, **more: object) -> None:
        store.maintenance.record(
            MaintenanceRun(
                task=task, target="/x", started_at=t, duration_s=1.0, freed_bytes=freed, dag_id=dag, **more
            )
        )

    run("cache_cleanup", "m1", 100)
    run("cache_cleanup", "m1", 50, dry_run=True)
    run("cache_cleanup", None, 7, errors=("disk gone",))
    run("log_rotation", "m2", 1000)
    totals = {x.task: x for x in store.maintenance.totals()}
    cache = totals["cache_cleanup"]
    assert (cache.runs, cache.failed, cache.dry_runs, cache.freed_bytes) == (3, 1, 1, 107)
    assert totals["log_rotation"].freed_bytes == 1000
    mine = store.maintenance.totals(dag_ids=["m1"])
    assert [(x.task, x.runs) for x in mine] == [("cache_cleanup", 3)]
    assert len(store.maintenance.runs(dag_ids=["m2"])) == 2  # its own, and the run from no DAG
    assert store.maintenance.totals(since=t + 1) == []


def test_partly_rolled_up_windows_read_the_rest_raw(store: Store) -> None:
    """The newest hours are rolled up only after they end (and rollups may start after the
    window): the rolled-up stretch comes from the rollups, the rest raw, the answer unchanged."""
    from etlops_airflow.store.maintenance import rollup_history_statement

    day0 = (time.time() // DAY - 3) * DAY
    store.metrics.write(
        [
            MetricPoint("rows", i % 7, {"t": str(s)}, day0 + i * 600 + 1)
            for s in range(2)
            for i in range(3 * 144)
        ]
    )
    for i in range(72):
        store.dag_runs.record(
            DagRunOutcome("a", f"r{i}", "success", end_ts=day0 + i * HOUR + 5, duration_s=1.0)
        )
    start, end = day0 + 1800, day0 + 3 * DAY - 1800
    raw_series = store.metrics.history(
        ["rows"], step_for=lambda n, k: 2 * HOUR, start=start, end=end, fn="sum"
    )
    raw_counts = store.maintenance.pipeline_counts(start, end)
    store.maintenance.rollup("hourly", day0 + 5 * HOUR, day0 + 2 * DAY)  # neither end of the window
    with store.db.read("test") as conn:
        matching = store.metrics._matching("rows", None, None)
        step_ms = int(2 * HOUR * 1000)
        statement = rollup_history_statement(
            conn, matching, "sum", step_ms, int(start * 1000), int(end * 1000)
        )
        assert statement is not None
    rolled = store.metrics.history(["rows"], step_for=lambda n, k: 2 * HOUR, start=start, end=end, fn="sum")
    assert sorted((s.labels["t"], s.points) for s in rolled["rows"][1]) == sorted(
        (s.labels["t"], s.points) for s in raw_series["rows"][1]
    )
    assert store.maintenance.pipeline_counts(start, end) == raw_counts
    assert raw_counts["a"].runs == {"success": 71}  # the first run ended before the window
