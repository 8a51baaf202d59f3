"""Rollups and retention of the store (store.maintenance) and MetricsAggregationOperator, on SQLite
and a real PostgreSQL: the buckets a data interval rolls up, rollups equal to a hand-written
GROUP BY over the same rows, re-runs that give identical rows, retention that deletes only what
the rollups hold, and series() answered from the rollups with the raw answer."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy import text

from etlops_airflow.core.maintenance.model import MaintenanceRun
from etlops_airflow.core.maintenance.rollup import (
    DAY_MS,
    HOUR_MS,
    bucket_start,
    deletable_ranges,
    plan_rollup,
    read_splits,
)
from etlops_airflow.core.models import DagRunOutcome, MetricPoint, TaskOutcome
from etlops_airflow.exceptions import ValidationError
from etlops_airflow.operators.maintenance.database import MetricsAggregationOperator
from etlops_airflow.store import Store
from etlops_airflow.store.maintenance import rollup_series_statement

T0 = 1_704_067_200.0  # Monday 2024-01-01 00:00 UTC
DAY = 86400.0
HOUR = 3600.0
ROLLUP_TABLES = (
    "etlops_metric_rollups",
    "etlops_outcome_rollups",
    "etlops_dag_run_rollups",
    "etlops_rollup_buckets",
)


def _close(a: Any, b: Any) -> bool:
    """Equal, numbers up to float rounding (an average computed as sum / count), at any depth."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return bool(a == pytest.approx(b, rel=1e-12, abs=1e-9))
    return bool(a == b)


def _utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


# ------------------------------------------------------------------------------ buckets (plain Python)


def test_an_hourly_run_rolls_up_the_hours_that_ended_in_its_interval() -> None:
    plan = plan_rollup("hourly", T0 + 300, T0 + HOUR + 300)  # "5 * * * *": [00:05, 01:05)
    assert [(b.start_ms, b.end_ms) for b in plan.buckets] == [(int(T0 * 1000), int((T0 + HOUR) * 1000))]
    day = plan_rollup("hourly", T0, T0 + DAY)
    assert len(day.buckets) == 24 and day.span == (int(T0 * 1000), int((T0 + DAY) * 1000))
    assert plan_rollup("hourly", T0 + 60, T0 + 120).buckets == ()  # no hour ended


def test_a_zero_width_interval_is_the_last_bucket_width() -> None:
    # CronTriggerTimetable: start == end == the run's time
    plan = plan_rollup("hourly", T0 + 7500, T0 + 7500)
    assert [b.start_ms for b in plan.buckets] == [int((T0 + HOUR) * 1000)]
    assert plan_rollup("daily", None, T0 + DAY + 300).buckets[0].start_ms == int(T0 * 1000)


def test_daily_weekly_and_monthly_buckets() -> None:
    # an hourly schedule: the day rolls up in the run whose interval holds midnight
    assert plan_rollup("daily", T0 + 22 * HOUR, T0 + 23 * HOUR).buckets == ()
    assert [b.start_ms for b in plan_rollup("daily", T0 + 23.5 * HOUR, T0 + 24.5 * HOUR).buckets] == [
        int(T0 * 1000)
    ]
    wednesday = T0 + 2 * DAY + 5 * HOUR
    assert bucket_start("weekly", int(wednesday * 1000)) == int(T0 * 1000)  # weeks start on Monday
    weeks = plan_rollup("weekly", T0, T0 + 14 * DAY).buckets
    assert [(b.end_ms - b.start_ms) // DAY_MS for b in weeks] == [7, 7]
    months = plan_rollup("monthly", _utc(2024, 1, 15), _utc(2024, 4, 2)).buckets
    assert [
        (dt.datetime.fromtimestamp(b.start_ms / 1000, dt.UTC).month, (b.end_ms - b.start_ms) // DAY_MS)
        for b in months
    ] == [
        (1, 31),
        (2, 29),  # 2024 is a leap year
        (3, 31),
    ]
    assert [b.start_ms for b in plan_rollup("monthly", None, _utc(2024, 3, 1)).buckets] == [
        int(_utc(2024, 2, 1) * 1000)
    ]


def test_bad_granularity_and_interval() -> None:
    with pytest.raises(ValidationError, match="granularity 'minutely'"):
        plan_rollup("minutely", None, T0)
    with pytest.raises(ValidationError, match="more than 100,000 hourly buckets"):
        plan_rollup("hourly", 0, T0)


def test_retention_waits_for_every_granularity_in_use() -> None:
    h = HOUR_MS
    hourly = [(i * h, (i + 1) * h) for i in range(48)]
    assert deletable_ranges({}, 100 * h) == []
    assert deletable_ranges({"hourly": hourly}, 30 * h) == [(0, 30 * h)]
    # daily rolled up only the first day: the second day waits for it
    assert deletable_ranges({"hourly": hourly, "daily": [(0, 24 * h)]}, 100 * h) == [(0, 24 * h)]
    # a granularity first used later does not hold back what came before it
    assert deletable_ranges({"hourly": hourly, "daily": [(24 * h, 48 * h)]}, 100 * h) == [(0, 48 * h)]
    # a hole in the hourly rollups stays
    holed = [r for r in hourly if r[0] != 5 * h]
    assert deletable_ranges({"hourly": holed}, 100 * h) == [(0, 5 * h), (6 * h, 48 * h)]


def test_reads_split_into_raw_edges_and_whole_rollup_buckets() -> None:
    start, end = int((T0 + 100) * 1000), int((T0 + 5 * HOUR + 7) * 1000)
    (split,) = read_splits(2 * HOUR_MS, start, end)
    assert split.granularity == "hourly"
    assert split.head == (start, int((T0 + HOUR) * 1000)) and split.tail == (int((T0 + 5 * HOUR) * 1000), end)
    assert read_splits(90 * 60_000, start, end) == []  # 1.5 h steps are not whole hours
    assert [s.granularity for s in read_splits(DAY_MS, int(T0 * 1000), int((T0 + 3 * DAY) * 1000))] == [
        "daily",
        "hourly",
    ]


# ------------------------------------------------------------------------------ data


def _seed(store: Store, days: int = 3, seed: int = 7) -> None:
    """3 series with points every ~97 s (values in quarters: sums are exact), task tries and DAG
    runs across ``days`` days from T0, some tries without an end time."""
    rnd = random.Random(seed)
    points = [
        MetricPoint(
            "rows", rnd.randint(-400, 4000) / 4, {"table": f"t{i % 3}", "dag_id": "d1"}, T0 + i * 97.3
        )
        for i in range(int(days * DAY / 97.3))
    ]
    points.append(MetricPoint("rows", 1.0, {"table": "t0", "dag_id": "d1"}, T0 + DAY))  # on a boundary
    store.metrics.write(points)
    for i in range(days * 40):
        end = T0 + i * (DAY / 40) + rnd.random() * 60
        store.outcomes.record(
            TaskOutcome(
                f"dag{i % 2}",
                f"task{i % 3}",
                f"run{i}",
                1,
                ["success", "failed", "up_for_retry", "skipped"][i % 4],
                start_ts=end - 30,
                end_ts=None if i % 11 == 0 else end,
                duration_s=None if i % 11 == 0 else 30 + i % 7,
            )
        )
        if i % 3 == 0:
            store.dag_runs.record(
                DagRunOutcome(
                    f"dag{i % 2}", f"run{i}", ["success", "failed"][i % 2], "scheduled", end - 60, end, 60.0
                )
            )


def _rows(store: Store, table: str) -> list[tuple[Any, ...]]:
    order = {
        "etlops_metric_rollups": "granularity, series_id, bucket_ms",
        "etlops_outcome_rollups": "granularity, bucket_ms, dag_id, task_id, state",
        "etlops_dag_run_rollups": "granularity, bucket_ms, dag_id, state",
        "etlops_rollup_buckets": "granularity, start_ms",
    }[table]
    skip = ", rolled_at" if table == "etlops_rollup_buckets" else ""
    with store.engine.connect() as conn:
        columns = [
            c for c in conn.execute(text(f"SELECT * FROM {table} WHERE 1 = 0")).keys() if f", {c}" != skip
        ]
        return [
            tuple(r) for r in conn.execute(text(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"))
        ]


def _hand_metric_rollup(store: Store, width_ms: int, lo: float, hi: float) -> list[tuple[Any, ...]]:
    sql = f"""
        SELECT series_id, (ts_ms / {width_ms}) * {width_ms} AS b, count(*), sum(value), min(value),
               max(value), avg(value)
        FROM etlops_metric_points WHERE ts_ms >= :lo AND ts_ms < :hi
        GROUP BY series_id, b ORDER BY series_id, b
    """
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), {"lo": int(lo * 1000), "hi": int(hi * 1000)})]


def _stored_metric_rollup(store: Store, granularity: str) -> list[tuple[Any, ...]]:
    sql = """
        SELECT series_id, bucket_ms, value_count, value_sum, value_min, value_max, value_avg
        FROM etlops_metric_rollups WHERE granularity = :g ORDER BY series_id, bucket_ms
    """
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), {"g": granularity})]


# ------------------------------------------------------------------------------ rollups in the store


@pytest.mark.parametrize(("granularity", "width"), [("hourly", HOUR_MS), ("daily", DAY_MS)])
def test_rollups_equal_a_hand_written_group_by(store: Store, granularity: str, width: int) -> None:
    _seed(store)
    result = store.maintenance.rollup(granularity, T0, T0 + 2 * DAY)
    assert len(result.buckets) == (48 if granularity == "hourly" else 2)
    expected = _hand_metric_rollup(store, width, T0, T0 + 2 * DAY)
    assert _stored_metric_rollup(store, granularity) == expected
    assert result.points == sum(r[2] for r in expected)
    assert result.rows_written["etlops_metric_rollups"] == len(expected)

    ms = (
        "CAST(floor(coalesce(end_ts, recorded_at) * 1000) AS BIGINT)"
        if store.dialect == "postgresql"
        else ("CAST(coalesce(end_ts, recorded_at) * 1000 AS INTEGER)")
    )
    hand_outcomes = f"""
        SELECT ({ms} / {width}) * {width} AS b, dag_id, task_id, state, count(*), count(duration_s),
               sum(duration_s), min(duration_s), max(duration_s)
        FROM etlops_task_outcomes WHERE {ms} >= :lo AND {ms} < :hi
        GROUP BY b, dag_id, task_id, state ORDER BY b, dag_id, task_id, state
    """
    params = {"lo": int(T0 * 1000), "hi": int((T0 + 2 * DAY) * 1000)}
    with store.engine.connect() as conn:
        expected_outcomes = [(granularity, *r) for r in conn.execute(text(hand_outcomes), params)]
        runs = conn.execute(
            text(f"SELECT count(*) FROM etlops_dag_runs WHERE {ms} >= :lo AND {ms} < :hi"), params
        ).scalar_one()
    assert _rows(store, "etlops_outcome_rollups") == expected_outcomes
    assert sum(r[5] for r in expected_outcomes) == result.outcomes > 0
    assert sum(r[4] for r in _rows(store, "etlops_dag_run_rollups")) == runs == result.dag_runs > 0


def test_p95_on_postgresql_and_what_sqlite_gets(store: Store) -> None:
    _seed(store, days=1)
    result = store.maintenance.rollup("hourly", T0, T0 + DAY)
    with store.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT series_id, bucket_ms, value_p95 FROM etlops_metric_rollups ORDER BY 1, 2")
        ).all()
        if store.dialect == "postgresql":
            hand = conn.execute(
                text(
                    "SELECT series_id, (ts_ms / 3600000) * 3600000 AS b, "
                    "percentile_cont(0.95) WITHIN GROUP (ORDER BY value) FROM etlops_metric_points "
                    "WHERE ts_ms < :hi GROUP BY series_id, b ORDER BY 1, 2"
                ),
                {"hi": int((T0 + DAY) * 1000)},
            ).all()
            assert [tuple(r) for r in stored] == [tuple(r) for r in hand]
            assert result.p95 == "PostgreSQL percentile_cont(0.95)"
        else:
            assert {r[2] for r in stored} == {None}
            assert "no percentile_cont" in result.p95


def test_re_running_an_interval_gives_identical_rows(store: Store) -> None:
    _seed(store)
    store.maintenance.rollup("hourly", T0 + 300, T0 + DAY + 300)
    first = {t: _rows(store, t) for t in ROLLUP_TABLES}
    again = store.maintenance.rollup("hourly", T0 + 300, T0 + DAY + 300)
    assert {t: _rows(store, t) for t in ROLLUP_TABLES} == first
    assert again.rows_replaced["etlops_metric_rollups"] == len(first["etlops_metric_rollups"])
    # a late point in a rolled-up hour is picked up by running the interval again
    store.metrics.write([MetricPoint("rows", 1000.0, {"table": "t1", "dag_id": "d1"}, T0 + 10)])
    store.maintenance.rollup("hourly", T0 + 300, T0 + DAY + 300)
    assert _stored_metric_rollup(store, "hourly") == _hand_metric_rollup(store, HOUR_MS, T0, T0 + DAY)
    assert len(_rows(store, "etlops_rollup_buckets")) == 24


def test_monthly_rollups(store: Store) -> None:
    _seed(store, days=2)
    store.metrics.write([MetricPoint("rows", 2.5, {"table": "t0", "dag_id": "d1"}, _utc(2024, 2, 3))])
    result = store.maintenance.rollup("monthly", _utc(2024, 1, 20), _utc(2024, 3, 1))
    assert [b.start_ms for b in result.buckets] == [int(T0 * 1000), int(_utc(2024, 2, 1) * 1000)]
    per_bucket: dict[tuple[int, int], list[float]] = defaultdict(list)
    with store.engine.connect() as conn:
        for sid, ts_ms, value in conn.execute(
            text("SELECT series_id, ts_ms, value FROM etlops_metric_points")
        ):
            per_bucket[(sid, bucket_start("monthly", ts_ms))].append(value)
    expected = [
        (sid, b, len(v), sum(v), min(v), max(v), sum(v) / len(v))
        for (sid, b), v in sorted(per_bucket.items())
    ]
    assert _close(_stored_metric_rollup(store, "monthly"), expected)


def test_a_dry_run_counts_and_writes_nothing(store: Store) -> None:
    _seed(store, days=1)
    result = store.maintenance.rollup("hourly", T0, T0 + DAY, dry_run=True)
    assert result.dry_run and result.points > 0 and result.outcomes > 0
    assert all(_rows(store, t) == [] for t in ROLLUP_TABLES)


# ------------------------------------------------------------------------------ retention


def _count(store: Store, table: str, where: str = "1 = 1") -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one())


def test_retention_deletes_only_rolled_up_raw_rows(store: Store) -> None:
    _seed(store)
    run = MaintenanceRun("cache_cleanup", "/cache", T0 + HOUR, 1.0)
    store.maintenance.record(run)
    store.maintenance.record(MaintenanceRun("cache_cleanup", "/cache", T0 + 2.5 * DAY, 1.0))
    store.maintenance.rollup("hourly", T0, T0 + DAY)  # day 1 only
    day1_ms, cutoff = int((T0 + DAY) * 1000), T0 + 2 * DAY  # day 2 is old enough but not rolled up
    points = _count(store, "etlops_metric_points")
    day1_points = _count(store, "etlops_metric_points", f"ts_ms < {day1_ms}")
    day1_outcomes = _count(store, "etlops_task_outcomes", f"coalesce(end_ts, recorded_at) < {T0 + DAY}")
    day1_runs = _count(store, "etlops_dag_runs", f"end_ts < {T0 + DAY}")

    planned = store.maintenance.clean(cutoff, dry_run=True)
    assert _count(store, "etlops_metric_points") == points  # a dry run deletes nothing
    cleaned = store.maintenance.clean(cutoff, batch_size=200)
    assert (
        cleaned.freed
        == planned.freed
        == {
            "etlops_metric_points": day1_points,
            "etlops_task_outcomes": day1_outcomes,
            "etlops_dag_runs": day1_runs,
            "etlops_maintenance_runs": 1,
        }
    )
    assert cleaned.ranges == ((int(T0 * 1000), day1_ms),)
    assert cleaned.batches > day1_points // 200
    assert _count(store, "etlops_metric_points", f"ts_ms < {day1_ms}") == 0
    assert _count(store, "etlops_metric_points") == points - day1_points
    assert [r.run.started_at for r in store.maintenance.runs()] == [T0 + 2.5 * DAY]
    # the rollups still answer for day 1
    assert store.metrics.aggregate("rows", fn="count", start=T0, end=T0 + DAY) is None
    assert sum(r[2] for r in _stored_metric_rollup(store, "hourly")) == day1_points


def test_retention_waits_for_a_granularity_still_to_come(store: Store) -> None:
    _seed(store, days=2)
    store.maintenance.rollup("monthly", None, T0)  # December 2023: the monthly rollup is in use
    store.maintenance.rollup("hourly", T0, T0 + 2 * DAY)
    before = _count(store, "etlops_metric_points")
    cleaned = store.maintenance.clean(T0 + 2 * DAY)
    # January is not rolled up monthly yet: only December (rolled up, and empty) may go
    assert cleaned.ranges == ((int(_utc(2023, 12, 1) * 1000), int(T0 * 1000)),)
    assert cleaned.freed["etlops_metric_points"] == 0
    assert _count(store, "etlops_metric_points") == before


def test_after_retention_rollups_are_kept_derived_or_skipped_never_rebuilt_from_what_is_left(
    store: Store,
) -> None:
    _seed(store, days=2)
    store.maintenance.rollup("hourly", T0, T0 + 2 * DAY)
    hourly = {t: _rows(store, t) for t in ROLLUP_TABLES}
    whole_days = _hand_metric_rollup(store, DAY_MS, T0, T0 + 2 * DAY)
    cutoff = T0 + DAY + 5.5 * HOUR
    store.maintenance.clean(cutoff)
    assert store.maintenance.deleted_ranges() == [(int(T0 * 1000), int(cutoff * 1000))]
    again = store.maintenance.rollup("hourly", T0, T0 + 2 * DAY)
    assert {t: _rows(store, t) for t in ROLLUP_TABLES} == hourly  # identical: nothing rebuilt from a part
    assert (len(again.kept), len(again.derived), len(again.skipped)) == (30, 0, 0)
    # daily, first used after retention, is built from the hourly rollups where raw rows are gone
    daily = store.maintenance.rollup("daily", T0, T0 + 2 * DAY)
    assert [source for _bucket, source in daily.derived] == ["hourly", "hourly"]
    assert _close(_stored_metric_rollup(store, "daily"), whole_days)
    # no finer rollup holds the time: skipped, said so, and nothing written for it
    weekly = store.maintenance.rollup("weekly", T0, T0 + 7 * DAY)  # only 2 days of the week rolled up
    assert weekly.skipped == weekly.buckets and len(weekly.buckets) == 1
    assert _stored_metric_rollup(store, "weekly") == []


def test_a_granularity_without_finer_rollups_skips_buckets_whose_raw_rows_are_gone(store: Store) -> None:
    _seed(store, days=2)
    store.maintenance.rollup("daily", T0, T0 + DAY)
    store.maintenance.clean(T0 + DAY)
    late = store.maintenance.rollup("hourly", T0, T0 + 2 * DAY)
    assert len(late.skipped) == 24 and len(late.buckets) == 48
    assert {b for _s, b, *_ in _stored_metric_rollup(store, "hourly")} == {
        int(T0 * 1000 + h * HOUR_MS) for h in range(24, 48)
    }


# ------------------------------------------------------------------------------ reads from the rollups


def _series(store: Store, fn: str, step: float, start: float, end: float) -> list[tuple[Any, ...]]:
    found = store.metrics.series("rows", step=step, fn=fn, start=start, end=end, labels={"dag_id": "d1"})
    return sorted((tuple(sorted(s.labels.items())), tuple(s.points)) for s in found)


WINDOWS = [(T0, T0 + 2 * DAY), (T0 + 100, T0 + DAY + 5 * HOUR + 7), (T0 + 3 * HOUR, T0 + 30 * HOUR)]


def test_series_from_rollups_equals_raw(store: Store) -> None:
    _seed(store)
    asks = [
        (fn, step, w)
        for fn in ("avg", "sum", "min", "max", "count")
        for step in (HOUR, 2 * HOUR, DAY)
        for w in WINDOWS
    ]
    raw = {a: _series(store, a[0], a[1], *a[2]) for a in asks}
    store.maintenance.rollup("hourly", T0, T0 + 2 * DAY)
    store.maintenance.rollup("daily", T0, T0 + 2 * DAY)
    with store.db.read("test") as conn:  # the rollups do answer these
        matching = store.metrics._matching("rows", {"dag_id": "d1"}, None)
        assert (
            rollup_series_statement(conn, matching, "avg", HOUR_MS, int(T0 * 1000), int((T0 + DAY) * 1000))
            is not None
        )
        # not a whole number of hours, or a window the rollups do not hold: raw
        assert (
            rollup_series_statement(conn, matching, "avg", 1_800_000, int(T0 * 1000), int((T0 + DAY) * 1000))
            is None
        )
        assert (
            rollup_series_statement(
                conn, matching, "avg", HOUR_MS, int(T0 * 1000), int((T0 + 3 * DAY) * 1000)
            )
            is None
        )
    for ask in asks:
        assert _close(_series(store, ask[0], ask[1], *ask[2]), raw[ask]), ask
    # with the raw points of the covered hours gone, whole hours still come from the rollups
    store.maintenance.clean(T0 + DAY)
    for fn in ("avg", "sum", "min", "max", "count"):
        for step in (HOUR, DAY):
            ask = (fn, step, (T0, T0 + 2 * DAY))
            assert _close(_series(store, fn, step, T0, T0 + 2 * DAY), raw[ask]), ask


# ------------------------------------------------------------------------------ the operator


@pytest.fixture
def configured(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", store.engine.url.render_as_string(hide_password=False))
    return store


def _context(start: float, end: float) -> dict[str, Any]:
    return {
        "data_interval_start": dt.datetime.fromtimestamp(start, dt.UTC),
        "data_interval_end": dt.datetime.fromtimestamp(end, dt.UTC),
    }


def test_the_operator_rolls_up_its_interval_and_applies_retention(configured: Store, tmp_path: Any) -> None:
    store = configured
    _seed(store)
    op = MetricsAggregationOperator(
        task_id="rollup", granularity="hourly", retention_days=1, batch_size=500, lock_dir=str(tmp_path)
    )
    summary = op.execute(_context(T0 + 300, T0 + DAY + 300))
    day1_ms = int((T0 + DAY) * 1000)
    assert summary["freed_rows"] > 0 and summary["changed"] == len(
        _stored_metric_rollup(store, "hourly")
    ) + len(_rows(store, "etlops_outcome_rollups")) + len(_rows(store, "etlops_dag_run_rollups"))
    # the cutoff (a day before the interval end) is 00:05 on day 1: only 00:00-00:05 is older and rolled up
    assert _count(store, "etlops_metric_points", f"ts_ms < {int((T0 + 300) * 1000)}") == 0
    assert (
        _count(store, "etlops_metric_points", f"ts_ms >= {int((T0 + 300) * 1000)} AND ts_ms < {day1_ms}") > 0
    )
    (stored,) = store.maintenance.runs("metrics_aggregation")
    assert stored.run.task_id == "rollup" and stored.run.freed_rows == summary["freed_rows"]
    assert stored.run.details["retention"]["freed"]["etlops_metric_points"] > 0
    assert len(stored.run.details["buckets"]) == 24
    freed = store.metrics.aggregate(
        "maintenance_freed_rows", fn="last", labels={"task": "metrics_aggregation"}, window=DAY * 10000
    )
    assert freed == summary["freed_rows"]
    # running the same interval again: the same rollups, nothing more to free
    rollups = _stored_metric_rollup(store, "hourly")
    again = op.execute(_context(T0 + 300, T0 + DAY + 300))
    assert again["freed_rows"] == 0
    assert _stored_metric_rollup(store, "hourly") == rollups  # the hour partly deleted is kept as it was
    (newest, _first) = store.maintenance.runs("metrics_aggregation")
    assert newest.run.details["kept"] == [[int(T0 * 1000), int((T0 + HOUR) * 1000)]]


def test_a_zero_width_interval_starts_at_the_previous_success(configured: Store, tmp_path: Any) -> None:
    """Cron schedules give start == end: the run covers what ended since the last successful run."""
    _seed(configured, days=1)
    op = MetricsAggregationOperator(task_id="rollup", lock_dir=str(tmp_path))
    at = dt.datetime.fromtimestamp(T0 + 5 * HOUR + 300, dt.UTC)
    previous = dt.datetime.fromtimestamp(T0 + 2 * HOUR + 300, dt.UTC)  # two runs failed since
    op.execute(
        {"data_interval_start": at, "data_interval_end": at, "prev_data_interval_end_success": previous}
    )
    assert [b for b, *_ in _rows(configured, "etlops_rollup_buckets")] == ["hourly"] * 3
    # the first run (no previous success): the last hour
    op.execute({"data_interval_start": at, "data_interval_end": at, "prev_data_interval_end_success": None})
    (newest, _) = configured.maintenance.runs("metrics_aggregation")
    assert newest.run.details["buckets"] == [[int((T0 + 4 * HOUR) * 1000), int((T0 + 5 * HOUR) * 1000)]]


def test_the_operator_dry_run_changes_nothing(configured: Store, tmp_path: Any) -> None:
    _seed(configured, days=1)
    op = MetricsAggregationOperator(
        task_id="rollup", retention_days=0.5, dry_run=True, lock_dir=str(tmp_path)
    )
    summary = op.execute(_context(T0, T0 + DAY))
    assert summary["dry_run"] and summary["changed"] == 0 and summary["freed_rows"] == 0
    assert _stored_metric_rollup(configured, "hourly") == []
    (stored,) = configured.maintenance.runs("metrics_aggregation")
    assert stored.run.dry_run and stored.run.details["retention"]["would_free"]["etlops_metric_points"] == 0


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"granularity": "minutely"}, "granularity 'minutely'"),
        ({"retention_days": 0}, "retention_days 0"),
        ({"retention_days": "30"}, "retention_days '30'"),
        ({"batch_size": 0}, "batch_size 0"),
    ],
)
def test_the_operator_checks_its_arguments_when_built(kwargs: dict[str, Any], shown: str) -> None:
    with pytest.raises(ValidationError, match="MetricsAggregationOperator 'rollup'") as info:
        MetricsAggregationOperator(task_id="rollup", **kwargs)
    assert shown in str(info.value)
