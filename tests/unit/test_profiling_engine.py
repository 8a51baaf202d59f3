"""The profiling engine with a fake clock and a fake reader: every figure, every finding,
nesting and repeats, reports, never hurting the task, and no thread or file left behind."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from etlops_airflow import profiling
from etlops_airflow.core.profiling import findings as rules
from etlops_airflow.core.profiling.model import (
    Finding,
    SessionKey,
    SessionReport,
    StageFigures,
    Thresholds,
)
from etlops_airflow.core.profiling.reader import IoCounters, LiveChildren, Reading
from etlops_airflow.core.profiling.report import build_report, by_path, summary, table, with_findings
from etlops_airflow.core.profiling.sampler import Sampler
from etlops_airflow.core.profiling.session import Session, current_stage
from etlops_airflow.exceptions import ConfigError, ValidationError

MB = 1024**2
GB = 1024**3


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeReader:
    """Returns what the test sets: the process's own figures, finished children, live children."""

    def __init__(self, cpu_count: int = 2, io: bool = True) -> None:
        self.cpu_count = cpu_count
        self.cpu_s = 10.0
        self.rss = 100 * MB
        self.maxrss = 150 * MB
        self.threads = 3
        self.reaped_cpu_s = 0.0
        self.reaped_maxrss = 0
        self.live = LiveChildren()
        self.io: IoCounters | None = IoCounters(1000, 2000, 10, 20) if io else None
        self.reads: list[tuple[bool, bool]] = []
        self.closed = 0

    def read(self, *, children: bool = True, io: bool = True) -> Reading:
        self.reads.append((children, io))
        return Reading(
            cpu_s=self.cpu_s,
            rss_bytes=self.rss,
            maxrss_bytes=self.maxrss,
            threads=self.threads,
            reaped_cpu_s=self.reaped_cpu_s,
            reaped_maxrss_bytes=self.reaped_maxrss,
            live=self.live if children else None,
            io=self.io if io else None,
        )

    def close(self) -> None:
        self.closed += 1


class BrokenReader(FakeReader):
    def read(self, *, children: bool = True, io: bool = True) -> Reading:
        raise OSError("no /proc here")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def reader() -> FakeReader:
    return FakeReader()


def make(reader: Any, clock: FakeClock, **kwargs: Any) -> Session:
    return Session(
        SessionKey("d", "t", "r", -1, 1),
        reader=reader,
        clock=clock,
        wall_clock=lambda: 1_700_000_000.0 + clock.t,
        sample_interval=0,
        **kwargs,
    )


@pytest.fixture(autouse=True)
def _fresh_profiling(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("AIRFLOW__ETLOPS__PROFILE_"):
            monkeypatch.delenv(name)
    profiling.finish_session()
    profiling._last = None
    profiling._warned.clear()
    yield
    profiling.finish_session()
    profiling._last = None
    profiling._warned.clear()


# -- every figure ---------------------------------------------------------------------------------------


def test_wall_time_records_and_throughput(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    with s.stage("parse", records_in=1000) as st:
        clock.advance(2.5)
        st.records_out = 800
    with s.stage("only_in", records_in=300):
        clock.advance(3.0)
    with s.stage("no_records"):
        clock.advance(1.0)
    parse, only_in, none = s.stages
    assert parse.duration_s == pytest.approx(2.5)
    assert (parse.records_in, parse.records_out) == (1000, 800)
    assert parse.records_per_s == pytest.approx(320.0)  # records out over the stage's time
    assert only_in.records_per_s == pytest.approx(100.0)  # records in when no out was given
    assert none.records_per_s is None and none.records_in is None
    assert parse.started_at == pytest.approx(1_700_000_100.0)


def test_cpu_is_delta_cpu_over_delta_wall_including_children(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    reader.live = LiveChildren(count=1, cpu_s=0.2)
    with s.stage("work"):
        clock.advance(2.0)
        reader.cpu_s += 1.5  # the process
        reader.reaped_cpu_s += 1.0  # a child that ended
        reader.live = LiveChildren(count=1, cpu_s=0.7)  # a live child: +0.5
    (f,) = s.stages
    assert f.cpu_s == pytest.approx(3.0)
    assert f.cpu_percent == pytest.approx(150.0)  # of one core
    assert f.cpu_percent_machine == pytest.approx(75.0)  # of the 2 cores


def test_peak_and_end_rss_from_samples_and_high_water_marks(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    with s.stage("sampled"):
        reader.rss = 500 * MB
        s.sample(children=False)
        reader.rss = 200 * MB
    (f,) = s.stages
    assert (f.peak_rss_bytes, f.end_rss_bytes, f.samples) == (500 * MB, 200 * MB, 1)

    # Too short for a sample: a new high-water mark of the process is its peak.
    with s.stage("short"):
        reader.maxrss = 900 * MB
    # A child that ended during the stage set the children's high-water mark.
    with s.stage("child"):
        reader.reaped_maxrss = 700 * MB
    assert [f.peak_rss_bytes for f in s.stages[1:]] == [900 * MB, 700 * MB]
    # An old high-water mark (reached before the stage) does not count.
    with s.stage("flat"):
        pass
    assert s.stages[-1].peak_rss_bytes == 200 * MB


def test_live_children_memory_counts_when_read(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    with s.stage("bash"):
        reader.live = LiveChildren(count=2, cpu_s=0.0, rss_bytes=400 * MB)
        s.sample(children=True)  # process 100 MB + children 400 MB
        reader.rss = 300 * MB
        s.sample(children=False)  # children not read: only the process counts
        reader.live = LiveChildren()
    (f,) = s.stages
    assert f.peak_rss_bytes == 500 * MB
    assert f.children_peak == 2
    assert f.samples == 2


def test_io_threads_children_and_samples(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    with s.stage("io"):
        reader.io = IoCounters(1000 + 5 * MB, 2000 + 50 * MB, 10 + 40, 20 + 800)
        reader.live = LiveChildren(count=1, io=IoCounters(MB, 2 * MB, 3, 4))
        reader.threads = 9
        s.sample(children=False)
        reader.threads = 4
    (f,) = s.stages
    assert (f.io_read_bytes, f.io_write_bytes) == (6 * MB, 52 * MB)
    assert (f.io_read_ops, f.io_write_ops) == (43, 804)
    assert f.threads_peak == 9
    assert f.children_peak == 1


def test_peak_cpu_from_samples_counts_a_finished_child_once(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    with s.stage("work"):
        reader.live = LiveChildren(count=1, cpu_s=0.0)
        s.sample(children=True)
        clock.advance(1)
        reader.cpu_s += 0.5
        reader.live = LiveChildren(count=1, cpu_s=0.9)
        s.sample(children=False)  # the process: 50 %
        clock.advance(1)
        reader.cpu_s += 0.2
        reader.live = LiveChildren()  # the child ended after 1.8 s of CPU, 0.9 s of it in this second
        reader.reaped_cpu_s += 1.8
        s.sample(children=False)  # the process: 20 % (the child's 1.8 s is not put in this second)
        clock.advance(1)
        s.sample(children=True)  # with children since the last such sample: 2.5 s over 3 s
        clock.advance(2)
    report = s.finish()
    assert report.stages[0].cpu_percent == pytest.approx(50.0)  # 2.5 s over the 5 s stage
    assert report.peak_cpu_percent == pytest.approx(2.5 / 3 * 100)


def test_io_is_none_where_the_os_has_no_counters(clock: FakeClock) -> None:
    s = make(FakeReader(io=False), clock)
    with s.stage("mac"):
        clock.advance(1)
    (f,) = s.stages
    assert (f.io_read_bytes, f.io_write_bytes, f.io_read_ops, f.io_write_ops) == (None, None, None, None)


def test_a_child_that_ran_between_readings_counts_as_one(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    with s.stage("quick_child"):
        reader.reaped_cpu_s += 0.3
    assert s.stages[0].children_peak == 1


def test_stage_error_is_recorded_and_the_exception_goes_on(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    boom = KeyError("missing column 'price'")
    with pytest.raises(KeyError) as caught:
        with s.stage("enrich", records_in=5):
            clock.advance(1)
            raise boom
    assert caught.value is boom
    (f,) = s.stages
    assert f.error == "KeyError: \"missing column 'price'\""
    assert f.duration_s == pytest.approx(1.0) and f.records_in == 5


def test_bad_arguments_are_caller_bugs(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    for name in ("", "a/b", 42, "x" * 251):
        with pytest.raises(ValidationError):
            s.stage(name)  # type: ignore[arg-type]
    for records in (-1, "10", 1.5, True):
        with pytest.raises(ValidationError, match="records_in"):
            s.stage("ok", records_in=records)  # type: ignore[arg-type]
    with s.stage("ok") as st:
        with pytest.raises(ValidationError, match="records_out"):
            st.records_out = -3


# -- nesting and repeats --------------------------------------------------------------------------------


def test_stages_nest_and_repeat(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    with s.stage("transform"):
        for _ in range(3):
            with s.stage("enrich"):
                with s.stage("lookup"):
                    clock.advance(1)
        with s.stage("parse"):
            clock.advance(0.5)
    with s.stage("enrich"):
        clock.advance(2)
    paths = [(f.index, f.path) for f in sorted(s.stages, key=lambda f: f.index)]
    assert paths == [
        (0, "transform"),
        (1, "transform/enrich"),
        (2, "transform/enrich/lookup"),
        (3, "transform/enrich"),
        (4, "transform/enrich/lookup"),
        (5, "transform/enrich"),
        (6, "transform/enrich/lookup"),
        (7, "transform/parse"),
        (8, "enrich"),
    ]
    assert rules.durations_by_path(s.stages) == {
        "transform": pytest.approx(3.5),
        "transform/enrich": pytest.approx(3.0),
        "transform/enrich/lookup": pytest.approx(3.0),
        "transform/parse": pytest.approx(0.5),
        "enrich": pytest.approx(2.0),
    }
    grouped = {g.path: g.runs for g in by_path(s.stages)}
    assert grouped["transform/enrich"] == 3 and grouped["enrich"] == 1


def test_other_threads_start_their_own_top_level_stages(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    with s.stage("main"):
        worker = threading.Thread(target=lambda: s.stage("worker").__enter__().close())
        worker.start()
        worker.join()
        with s.stage("inner"):
            pass
    assert sorted(f.path for f in s.stages) == ["main", "main/inner", "worker"]


def test_a_begun_stage_is_the_parent_until_closed(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    whole = s.begin_stage("load_orders")
    assert current_stage() is whole
    with s.stage("copy"):
        clock.advance(1)
    whole.close()
    with s.stage("after"):
        pass
    assert sorted(f.path for f in s.stages) == ["after", "load_orders", "load_orders/copy"]
    assert whole.close() is whole.figures  # closing again changes nothing


def test_finish_closes_open_stages_with_the_task_error(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    s.begin_stage("whole")
    clock.advance(4)
    report = s.finish(error=RuntimeError("task failed"))
    (f,) = report.stages
    assert f.error == "RuntimeError: task failed" and f.duration_s == pytest.approx(4)
    assert s.finish() is report
    assert reader.closed == 1
    with pytest.raises(Exception, match="finished"):
        s.begin_stage("late")


# -- findings -------------------------------------------------------------------------------------------


def fig(path: str = "s", **kw: Any) -> StageFigures:
    base: dict[str, Any] = {
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "index": 0,
        "started_at": 0.0,
        "duration_s": 10.0,
    }
    base.update(kw)
    return StageFigures(**base)


def kinds(found: list[Finding]) -> list[tuple[str, str, str]]:
    return [(f.kind, f.severity, f.stage) for f in found]


def test_memory_finding() -> None:
    t = Thresholds()
    assert rules.stage_findings(fig(peak_rss_bytes=GB), t) == []  # not above
    (f,) = rules.stage_findings(fig(peak_rss_bytes=GB + 1), t)
    assert (f.kind, f.severity, f.threshold) == ("memory", "medium", GB)
    assert "1.0 GiB" in f.message and "chunks" in f.suggestion
    (f,) = rules.stage_findings(fig(peak_rss_bytes=2 * GB), t)
    assert f.severity == "high"
    # Memory is a peak: even a short stage counts.
    assert kinds(rules.stage_findings(fig(duration_s=0.1, peak_rss_bytes=3 * GB), t)) == [
        ("memory", "high", "s")
    ]


def test_cpu_finding_needs_a_sustained_stage() -> None:
    t = Thresholds()
    (f,) = rules.stage_findings(fig(cpu_percent=99.0, cpu_percent_machine=49.5), t)
    assert (f.kind, f.severity, f.value) == ("cpu", "medium", 99.0)
    assert "99 % of one core (50 % of 2 cores)" in f.message and "vectorise" in f.suggestion
    (f,) = rules.stage_findings(fig(cpu_percent=390.0, cpu_percent_machine=97.5), t)
    assert f.severity == "high" and "bigger worker" in f.suggestion
    assert rules.stage_findings(fig(cpu_percent=90.0), t) == []  # not above 90
    assert rules.stage_findings(fig(duration_s=4.9, cpu_percent=100.0), t) == []  # too short
    assert rules.stage_findings(fig(cpu_percent=99.0), Thresholds(cpu_percent=150)) == []  # per call


def test_throughput_finding() -> None:
    t = Thresholds()
    assert rules.stage_findings(fig(records_out=1000, records_per_s=100.0), t) == []
    severities = [
        rules.stage_findings(fig(records_out=10, records_per_s=rate), t)[0].severity for rate in (60, 30, 5)
    ]
    assert severities == ["low", "medium", "high"]
    assert rules.stage_findings(fig(records_per_s=None), t) == []  # no records: not judged
    assert rules.stage_findings(fig(duration_s=2, records_per_s=1.0), t) == []  # too short
    assert rules.stage_findings(fig(records_per_s=50.0), Thresholds(min_records_per_s=0)) == []


def test_io_bound_finding() -> None:
    t = Thresholds()
    waiting = {"cpu_percent": 5.0, "io_read_bytes": 300 * MB, "io_write_bytes": 10 * MB}
    (f,) = rules.stage_findings(fig(**waiting), t)
    assert (f.kind, f.severity, f.value, f.threshold) == ("io_bound", "medium", 5.0, 20.0)
    assert "300.0 MiB were read" in f.message and "concurrently" in f.suggestion
    assert rules.stage_findings(fig(**{**waiting, "cpu_percent": 25.0}), t) == []  # CPU not low
    assert rules.stage_findings(fig(**{**waiting, "duration_s": 4.0}), t) == []  # not long
    assert rules.stage_findings(fig(cpu_percent=1.0, io_read_bytes=1000, io_write_bytes=0), t) == []  # no IO
    assert rules.stage_findings(fig(cpu_percent=1.0, io_read_bytes=None, io_write_bytes=None), t) == []


def test_one_finding_per_stage_path_and_the_most_specific_stage() -> None:
    stages = [
        fig("transform", index=0, peak_rss_bytes=3 * GB),
        fig("transform/enrich", index=1, peak_rss_bytes=int(1.5 * GB)),
        fig("transform/enrich", index=2, peak_rss_bytes=3 * GB),
        fig("load", index=3, records_out=10, records_per_s=5.0),
    ]
    found = rules.findings(stages)
    assert kinds(found) == [("memory", "high", "transform/enrich"), ("throughput", "high", "load")]
    assert found[0].message.endswith("(worst of 2 runs)") and found[0].value == 3 * GB


def test_regression_needs_the_factor_and_the_floor() -> None:
    def report(seconds: float, path: str = "load", error: str | None = None) -> SessionReport:
        return build_report(
            SessionKey(),
            started_at=0,
            duration_s=seconds,
            stages=[fig(path, duration_s=seconds, error=error)],
        )

    t = Thresholds()  # x1.25 and 60 s, median of 3
    history = {"load": [600.0, 610.0, 590.0]}
    # 700 s: above x1.25 (750)? no.  800 s: above 750 and above 600+60: yes.
    assert rules.regressions(report(700), history, t) == []
    (f,) = rules.regressions(report(800), history, t)
    assert (f.kind, f.severity, f.stage) == ("regression", "medium", "load")
    assert f.threshold == pytest.approx(750.0) and f.value == 800
    assert "median of 10.0 min over the last 3 runs" in f.message
    (f,) = rules.regressions(report(1300), history, t)
    assert f.severity == "high"
    # A 2 s stage taking 3 s is noise (factor passed, floor not) ...
    assert rules.regressions(report(3), {"load": [2, 2, 2]}, t) == []
    # ... unless the floor is lowered, per call.
    assert kinds(rules.regressions(report(3), {"load": [2, 2, 2]}, Thresholds(regression_floor_s=0.5))) == [
        ("regression", "medium", "load")
    ]
    # Far above the floor but within the factor: not a regression either.
    assert rules.regressions(report(1000), {"load": [900, 900, 900]}, t) == []


def test_regression_with_too_little_or_odd_history() -> None:
    rep = build_report(SessionKey(), started_at=0, duration_s=500, stages=[fig("load", duration_s=500)])
    t = Thresholds()
    assert rules.regressions(rep, {"load": [100, 100]}, t) == []  # fewer runs than 3
    assert rules.regressions(rep, {"load": []}, t) == []
    assert rules.regressions(rep, {"other": [1, 1, 1]}, t) == []  # no history of this path
    assert kinds(rules.regressions(rep, {"load": [100, 100]}, Thresholds(regression_runs=2))) == [
        ("regression", "high", "load")
    ]
    # Newest first: only the newest 3 count (median 400 of [400, 390, 410]; the old 100 is left out).
    assert rules.regressions(rep, {"load": [400, 390, 410, 100]}, t) == []
    failed = build_report(
        SessionKey(), started_at=0, duration_s=500, stages=[fig("load", duration_s=500, error="E: x")]
    )
    assert rules.regressions(failed, {"load": [100, 100, 100]}, t) == []  # a failed run is not judged
    for bad in ({"load": [1, -2, 3]}, {"load": "123"}, {"load": [float("nan")] * 3}, [1, 2]):
        with pytest.raises(ValidationError, match="history"):
            rules.regressions(rep, bad, t)  # type: ignore[arg-type]


def test_repeated_stage_compares_its_total_time() -> None:
    stages = [fig("batch", index=i, duration_s=40.0) for i in range(5)]  # 200 s in this run
    rep = build_report(SessionKey(), started_at=0, duration_s=200, stages=stages)
    (f,) = rules.regressions(rep, {"batch": [100, 100, 100]})
    assert f.value == pytest.approx(200)


def test_thresholds_are_checked() -> None:
    for bad in (
        {"memory_bytes": -1},
        {"regression_factor": 0.9},
        {"regression_runs": 0},
        {"cpu_percent": float("inf")},
    ):
        with pytest.raises(ValidationError):
            Thresholds(**bad)


# -- report, summary, table -----------------------------------------------------------------------------


def _busy_session(clock: FakeClock, reader: FakeReader) -> Session:
    s = make(reader, clock, thresholds=Thresholds(regression_floor_s=10))
    with s.stage("transform"):
        with s.stage("parse", records_in=10_000) as st:
            clock.advance(10)
            reader.cpu_s += 9.9
            reader.rss = int(1.5 * GB)
            s.sample()
            st.records_out = 9_000
        reader.rss = 200 * MB
        with s.stage("enrich", records_in=9_000) as st:
            clock.advance(30)
            reader.cpu_s += 0.3
            assert reader.io is not None
            reader.io = reader.io + IoCounters(500 * MB, 0, 1000, 0)
            st.records_out = 1_500
    clock.advance(1)
    return s


def test_report_figures_findings_and_recommendations(clock: FakeClock, reader: FakeReader) -> None:
    s = _busy_session(clock, reader)
    report = s.finish(history={"transform/enrich": [10.0, 11.0, 9.0]})
    assert report.key == SessionKey("d", "t", "r", -1, 1)
    assert report.duration_s == pytest.approx(41.0)
    assert report.peak_rss_bytes == int(1.5 * GB)
    assert report.peak_cpu_percent == pytest.approx(99.0)
    # Stages with records: (9000 + 1500) records out over 40 s.
    assert report.records_per_s == pytest.approx(10_500 / 40)
    assert kinds(list(report.findings)) == [
        ("regression", "high", "transform/enrich"),  # 30 s against a median of 10 s (+20 s > 10 s)
        ("cpu", "medium", "transform/parse"),
        ("memory", "medium", "transform/parse"),
        ("io_bound", "medium", "transform/enrich"),
        ("throughput", "low", "transform/enrich"),  # 50 records/s
    ]
    assert report.findings[0].severity == "high"  # worst first
    assert len(report.recommendations) == 5
    assert report.recommendations[0].startswith("Regression (transform/enrich): ")
    assert report.notes == ()


def test_summary_is_compact_and_json_able(clock: FakeClock, reader: FakeReader) -> None:
    s = _busy_session(clock, reader)
    for _ in range(200):
        with s.stage("tick", records_in=1):
            clock.advance(0.01)
    out = summary(s.finish())
    assert json.loads(json.dumps(out)) == out
    assert out["key"] == {"dag_id": "d", "task_id": "t", "run_id": "r", "map_index": -1, "try_number": 1}
    tick = next(g for g in out["stages"] if g["path"] == "tick")
    assert (tick["runs"], tick["records_in"], tick["duration_s"]) == (200, 200, pytest.approx(2.0))
    assert [g["path"] for g in out["stages"]] == ["transform", "transform/parse", "transform/enrich", "tick"]
    assert "samples" not in json.dumps(out)
    assert len(json.dumps(out)) < 8000
    assert {f["kind"] for f in out["findings"]} == {"memory", "cpu", "throughput", "io_bound"}


def test_summary_caps_stage_paths_and_findings(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    for i in range(60):
        with s.stage(f"s{i}"):
            reader.rss = 2 * GB
    out = summary(s.finish())
    assert len(out["stages"]) == 50 and out["stages_not_shown"] == 10
    assert len(out["findings"]) == 20 and out["findings_not_shown"] == 40


def test_table_for_the_task_log(clock: FakeClock, reader: FakeReader) -> None:
    s = _busy_session(clock, reader)
    with pytest.raises(ValueError):
        with s.stage("load"):
            raise ValueError("bad row 17")
    text = table(s.finish())
    lines = text.splitlines()
    assert lines[0].startswith("etlops profile d.t run r try 1: 41.00s, peak memory 1.5G, peak CPU 99%")
    assert any(line.strip().startswith("transform ") for line in lines)
    assert any(line.startswith("    parse ") for line in lines)  # nested: indented
    assert any("9,000" in line and "1,500" in line for line in lines)
    assert "! load (run 3) ended in ValueError: bad row 17" in text
    assert "findings:" in text and "[medium] memory transform/parse" in text
    assert "recommendations:" in text
    empty = table(make(reader, clock).finish())
    assert "(no stage ran)" in empty


def test_with_findings_replaces_and_rebuilds(clock: FakeClock, reader: FakeReader) -> None:
    report = _busy_session(clock, reader).finish()
    extra = Finding("regression", "medium", "transform/parse", "slower", "look", 20.0, 15.0)
    more = with_findings(report, [extra])
    assert len(more.findings) == len(report.findings) + 1
    assert any(r.startswith("Regression (transform/parse)") for r in more.recommendations)
    assert with_findings(more, [extra]).findings == more.findings


# -- never hurts the task -------------------------------------------------------------------------------


def test_a_reader_that_raises_costs_one_log_line(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    s = make(BrokenReader(), clock)
    caplog.set_level(logging.WARNING, logger="etlops_airflow.profiling")
    results = []
    for i in range(5):
        with s.stage("parse", records_in=10) as st:
            clock.advance(1)
            results.append(i * 2)
            st.records_out = 10
        s.sample()
    assert results == [0, 2, 4, 6, 8]
    lines = [r for r in caplog.records if r.name == "etlops_airflow.profiling"]
    assert len(lines) == 1 and "no /proc here" in lines[0].getMessage()
    assert "the task is not affected" in lines[0].getMessage()
    report = s.finish()
    assert [f.duration_s for f in report.stages] == [pytest.approx(1.0)] * 5
    assert report.stages[0].records_per_s == pytest.approx(10.0)
    assert report.notes and "stage figures are incomplete" in report.notes[0]
    assert "note: reading the process failed" in table(report)


def test_a_sampler_whose_reader_fails_stops_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    class FailsInThread(FakeReader):
        def read(self, *, children: bool = True, io: bool = True) -> Reading:
            if threading.current_thread() is not threading.main_thread():
                raise RuntimeError("sampler broke")
            return super().read(children=children, io=io)

    caplog.set_level(logging.WARNING, logger="etlops_airflow.profiling")
    s = Session(reader=FailsInThread(), sample_interval=0.01)
    with s.stage("work"):
        deadline = time.monotonic() + 5
        while s.sampler is not None and not s.sampler.failed and time.monotonic() < deadline:
            time.sleep(0.01)
    report = s.finish()
    assert s.sampler is not None and s.sampler.failed and not s.sampler.running
    assert len(report.stages) == 1
    assert any("sampling stopped (RuntimeError: sampler broke)" in n for n in report.notes)


def test_public_api_survives_a_broken_engine(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from etlops_airflow.core.profiling import session as session_module

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("engine down")

    monkeypatch.setattr(session_module.Session, "stage", explode)
    caplog.set_level(logging.WARNING, logger="etlops_airflow.profiling")
    out = []
    for _ in range(3):
        with profiling.profile_stage("parse", records_in=3) as stage:
            out.append(sum([1, 2, 3]))
            stage.records_out = 3
    assert out == [6, 6, 6]
    messages = [r.getMessage() for r in caplog.records if r.name == "etlops_airflow.profiling"]
    assert messages == [
        "etlops profiling: stage 'parse' is not profiled (RuntimeError: engine down); "
        "the task is not affected"
    ]


def test_public_api_reraises_the_task_exception_untouched() -> None:
    class TaskError(Exception):
        pass

    err = TaskError("source table is empty")
    with pytest.raises(TaskError) as caught:
        with profiling.profile_stage("extract"):
            raise err
    assert caught.value is err and caught.value.__traceback__ is not None
    report = profiling.last_report()
    assert report is not None and report.stages[0].error == "TaskError: source table is empty"


# -- no thread or file handle left behind ---------------------------------------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1


def test_no_thread_or_handle_leaks_across_many_stages() -> None:
    before_threads = set(threading.enumerate())
    before_fds = _fds()
    switch = sys.getswitchinterval()
    for i in range(30):
        s = Session(SessionKey("d", f"t{i}"), sample_interval=0.01)
        for _ in range(20):
            with s.stage("outer"):
                with s.stage("inner"):
                    pass
        with s.stage("sampled"):
            time.sleep(0.03)
        assert s.sampler is not None and s.sampler.running
        report = s.finish()
        assert len(report.stages) == 41
        assert not s.sampler.running
    assert set(threading.enumerate()) == before_threads
    assert _fds() == before_fds
    assert sys.getswitchinterval() == switch


def test_the_sampler_thread_ends_by_itself_when_no_stage_is_open() -> None:
    before = set(threading.enumerate())
    s = Session(sample_interval=0.01, linger=0.05)
    for _ in range(50):
        with s.stage("loop"):
            pass
    assert s.sampler is not None
    assert s.sampler.threads_started == 1  # reused while stages keep coming
    deadline = time.monotonic() + 5
    while s.sampler.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not s.sampler.running and set(threading.enumerate()) == before
    with s.stage("again"):  # a new stage starts a new thread
        assert s.sampler.running
    s.finish()
    assert s.sampler.threads_started == 2 and set(threading.enumerate()) == before


def test_the_switch_interval_is_lowered_while_sampling_and_restored() -> None:
    original = sys.getswitchinterval()
    s = Session(sample_interval=0.01)
    with s.stage("work"):
        deadline = time.monotonic() + 5
        while sys.getswitchinterval() == original and time.monotonic() < deadline:
            time.sleep(0.005)
        assert sys.getswitchinterval() == pytest.approx(0.001)
    s.finish()
    assert sys.getswitchinterval() == original


def test_sampler_schedule_and_latency_record() -> None:
    reader = FakeReader()
    seen: list[float] = []
    sampler = Sampler(reader, lambda r, t: seen.append(t), lambda: True, interval=0.01, on_error=print)
    sampler.ensure_running()
    time.sleep(0.25)
    sampler.stop()
    assert 10 <= sampler.samples <= 30
    assert len(sampler.latencies()) == sampler.samples == len(seen)
    # Live children are read every 5th sample only; IO never in samples.
    children = [c for c, _ in reader.reads]
    assert children[:6] == [True, False, False, False, False, True]
    assert not any(io for _, io in reader.reads)
    assert not sampler.running


# -- the public API -------------------------------------------------------------------------------------


def test_the_issue_example_runs_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    # The example of the issue with its @task decorator replaced by the identity (unit tier).
    def task(fn: Any) -> Any:
        return fn

    from etlops_airflow.profiling import profile_stage, profiled

    def parse(r: int) -> int:
        return r * 2

    @task
    def transform(rows: list[int]) -> list[int]:
        with profile_stage("parse", records_in=len(rows)) as stage:
            parsed = [parse(r) for r in rows]
            stage.records_out = len(parsed)
        with profile_stage("enrich", records_in=len(parsed)) as stage:
            enriched = [p + 1 for p in parsed]
            stage.records_out = len(enriched)
        return enriched

    @task
    @profiled(stage="load")  # the whole callable as one stage
    def load(rows: list[int]) -> int:
        return len(rows)

    assert load(transform(list(range(1000)))) == 1000
    report = profiling.last_report()
    assert report is not None
    assert [(f.path, f.records_in, f.records_out) for f in report.stages] == [
        ("parse", 1000, 1000),
        ("enrich", 1000, 1000),
        ("load", None, None),
    ]
    assert load.__name__ == "load" and load.__wrapped__ is not None  # type: ignore[attr-defined]


def test_profiled_forms_records_and_async() -> None:
    import asyncio

    @profiled_bare
    def bare(x: int) -> int:
        return x

    @profiling.profiled(records_in=lambda rows, **kw: len(rows), records_out=len)
    def counted(rows: list[int], factor: int = 1) -> list[int]:
        inner = profiling.current_stage()
        assert inner is not None and inner.path == "counted"
        return rows * factor

    @profiling.profiled(stage="fetch")
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        with profiling.profile_stage("decode"):
            return n

    assert bare(3) == 3
    assert counted([1, 2], factor=3) == [1, 2] * 3
    assert asyncio.run(fetch(7)) == 7
    report = profiling.last_report()
    assert report is not None
    assert [(f.path, f.records_in, f.records_out) for f in report.stages] == [
        ("bare", None, None),
        ("counted", 2, 6),
        ("fetch", None, None),
        ("fetch/decode", None, None),
    ]
    with pytest.raises(ValidationError):
        profiling.profiled(stage="a/b")
    with pytest.raises(ValidationError):
        profiling.profile_stage("")
    with pytest.raises(ValidationError):
        profiling.profile_stage("x", records_in=-5)


profiled_bare = profiling.profiled


def test_in_memory_session_and_last_report_outside_airflow() -> None:
    assert profiling.last_report() is None and profiling.current_session() is None
    with profiling.profile_stage("a"):
        pass
    session = profiling.current_session()
    assert session is not None and session.implicit and session.key == SessionKey()
    with profiling.profile_stage("b"):
        pass
    assert [f.path for f in profiling.last_report().stages] == ["a", "b"]  # type: ignore[union-attr]
    final = profiling.finish_session()
    assert final is not None and [f.path for f in final.stages] == ["a", "b"]
    assert profiling.current_session() is None and profiling.last_report() is final
    assert profiling.finish_session() is None


def test_start_whole_task_stage_and_finish_like_the_listener() -> None:
    key = SessionKey("etl", "load_orders", "manual__1", -1, 2)
    session = profiling.start_session(key, sample_interval=0, thresholds=Thresholds(min_stage_s=0))
    assert profiling.current_session() is session and session.key == key
    profiling.whole_task_stage("load_orders")
    with profiling.profile_stage("copy", records_in=5):
        pass
    report = profiling.finish_session(error=RuntimeError("boom"), history={"load_orders": [0.0, 0.0, 0.0]})
    assert report is not None and report.key == key
    # In start order; the whole-task stage was closed by finish_session with the task's error.
    assert [(f.path, f.error) for f in report.stages] == [
        ("load_orders", "RuntimeError: boom"),
        ("load_orders/copy", None),
    ]
    whole = next(f for f in report.stages if f.path == "load_orders")
    assert whole.error == "RuntimeError: boom"
    assert profiling.last_report() is report


def test_finish_session_with_bad_history_still_returns_the_report(caplog: pytest.LogCaptureFixture) -> None:
    profiling.start_session(SessionKey("d", "t"), sample_interval=0, thresholds=Thresholds())
    with profiling.profile_stage("x"):
        pass
    caplog.set_level(logging.WARNING, logger="etlops_airflow.profiling")
    report = profiling.finish_session(history={"x": "not a list"})  # type: ignore[dict-item]
    assert report is not None and [f.path for f in report.stages] == ["x"]
    assert any("history" in r.getMessage() for r in caplog.records)


def test_start_session_checks_its_arguments() -> None:
    for interval in (-1, 0.001, float("nan"), "1s", True):
        with pytest.raises(ValidationError, match="sample_interval"):
            profiling.start_session(SessionKey(), sample_interval=interval)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="thresholds"):
        profiling.start_session(SessionKey(), sample_interval=0, thresholds={"cpu_percent": 5})  # type: ignore[arg-type]
    assert profiling.current_session() is None


def test_starting_a_session_finishes_the_previous_one() -> None:
    first = profiling.start_session(SessionKey("d", "a"), sample_interval=0, thresholds=Thresholds())
    with profiling.profile_stage("s"):
        pass
    second = profiling.start_session(SessionKey("d", "b"), sample_interval=0, thresholds=Thresholds())
    assert first.finished and not second.finished
    last = profiling._last
    assert last is not None and last.key.task_id == "a"


def test_session_key_comes_from_the_running_airflow_task(monkeypatch: pytest.MonkeyPatch) -> None:
    ti = types.SimpleNamespace(
        dag_id="sales", task_id="transform", run_id="scheduled__2024", map_index=3, try_number=2
    )
    fake_sdk = types.ModuleType("airflow.sdk")
    fake_sdk.get_current_context = lambda: {"ti": ti}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "airflow.sdk", fake_sdk)
    monkeypatch.setattr(profiling, "load_settings", lambda: profiling.ProfilingSettings(sample_interval=0))
    with profiling.profile_stage("parse"):
        pass
    assert profiling.last_report().key == SessionKey("sales", "transform", "scheduled__2024", 3, 2)  # type: ignore[union-attr]
    # dag.test() runs every task in one process: the next task gets its own in-memory session.
    ti2 = types.SimpleNamespace(
        dag_id="sales", task_id="load", run_id="scheduled__2024", map_index=None, try_number=1
    )
    fake_sdk.get_current_context = lambda: {"ti": ti2}  # type: ignore[attr-defined]
    with profiling.profile_stage("copy"):
        pass
    assert profiling.last_report().key.task_id == "load"  # type: ignore[union-attr]
    assert profiling._last is not None and profiling._last.key.task_id == "transform"

    def no_context() -> Any:
        raise RuntimeError("Current context was requested but no context was found!")

    fake_sdk.get_current_context = no_context  # type: ignore[attr-defined]
    assert profiling.task_session_key() is None


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = profiling.load_settings()
    assert s == profiling.ProfilingSettings(False, 1.0, Thresholds())
    assert s.thresholds.memory_bytes == GB and s.thresholds.regression_floor_s == 60
    for option, value in {
        "PROFILE_ALL_TASKS": "true",
        "PROFILE_SAMPLE_INTERVAL": "250ms",
        "PROFILE_MEMORY_THRESHOLD_MB": "4096",
        "PROFILE_CPU_THRESHOLD_PERCENT": "150",
        "PROFILE_MIN_RECORDS_PER_SECOND": "10",
        "PROFILE_REGRESSION_FACTOR": "1.5",
        "PROFILE_REGRESSION_FLOOR": "5m",
        "PROFILE_REGRESSION_RUNS": "5",
    }.items():
        monkeypatch.setenv(f"AIRFLOW__ETLOPS__{option}", value)
    s = profiling.load_settings()
    assert s.profile_all_tasks and s.sample_interval == 0.25
    t = s.thresholds
    assert (t.memory_bytes, t.cpu_percent, t.min_records_per_s) == (4 * GB, 150, 10)
    assert (t.regression_factor, t.regression_floor_s, t.regression_runs) == (1.5, 300, 5)
    monkeypatch.setenv("AIRFLOW__ETLOPS__PROFILE_SAMPLE_INTERVAL", "0")
    assert profiling.load_settings().sample_interval == 0


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("profile_all_tasks", "maybe", "expected a boolean"),
        ("profile_sample_interval", "often", "expected a duration"),
        ("profile_sample_interval", "1ms", "at least 10ms"),
        ("profile_memory_threshold_mb", "1.5GB", "expected a whole number"),
        ("profile_memory_threshold_mb", "0", "at least 1"),
        ("profile_cpu_threshold_percent", "-5", "at least 1"),
        ("profile_min_records_per_second", "lots", "expected a whole number"),
        ("profile_regression_factor", "0.8", "at least 1"),
        ("profile_regression_factor", "nan", "finite"),
        ("profile_regression_floor", "-1m", "expected a duration"),
        ("profile_regression_runs", "0", "at least 1"),
    ],
)
def test_bad_settings_name_the_option(
    monkeypatch: pytest.MonkeyPatch, option: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(f"AIRFLOW__ETLOPS__{option.upper()}", value)
    with pytest.raises(ConfigError) as caught:
        profiling.load_settings()
    assert (
        caught.value.option == option
        and reason in str(caught.value)
        and f"[etlops] {option}" in str(caught.value)
    )
    with pytest.raises(ConfigError):
        profiling.start_session(SessionKey())


def test_bad_settings_do_not_stop_a_stage(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__PROFILE_SAMPLE_INTERVAL", "often")
    caplog.set_level(logging.WARNING, logger="etlops_airflow.profiling")
    with profiling.profile_stage("parse"):
        pass
    session = profiling.current_session()
    assert session is not None and session.sample_interval == 1.0
    (line,) = [r.getMessage() for r in caplog.records if r.name == "etlops_airflow.profiling"]
    assert "[etlops] profile_sample_interval = 'often'" in line and "default settings" in line


def test_every_profile_option_is_declared_and_documented() -> None:
    from etlops_airflow.config import OPTIONS

    names = [
        "profile_all_tasks",
        "profile_sample_interval",
        "profile_memory_threshold_mb",
        "profile_cpu_threshold_percent",
        "profile_min_records_per_second",
        "profile_regression_factor",
        "profile_regression_floor",
        "profile_regression_runs",
    ]
    for name in names:
        spec = OPTIONS[name]
        assert spec["version_added"] == "0.2.0" and len(spec["description"]) > 60, name
    defaults = {n: OPTIONS[n]["default"] for n in names}
    assert defaults == {
        "profile_all_tasks": "False",
        "profile_sample_interval": "1s",
        "profile_memory_threshold_mb": "1024",
        "profile_cpu_threshold_percent": "90",
        "profile_min_records_per_second": "100",
        "profile_regression_factor": "1.25",
        "profile_regression_floor": "60s",
        "profile_regression_runs": "3",
    }


def test_a_deeply_recursive_profiled_function_keeps_working(caplog: pytest.LogCaptureFixture) -> None:
    @profiling.profiled(stage="walk")
    def walk(n: int) -> int:
        return 0 if n == 0 else 1 + walk(n - 1)

    caplog.set_level(logging.WARNING, logger="etlops_airflow.profiling")
    assert walk(150) == 150  # paths past 500 characters are not profiled, the calls run
    report = profiling.last_report()
    assert report is not None and max(len(f.path) for f in report.stages) <= 500
    assert any("longer than 500 characters" in r.getMessage() for r in caplog.records)


def test_figures_are_frozen_dataclasses_of_the_contract(clock: FakeClock, reader: FakeReader) -> None:
    s = make(reader, clock)
    with s.stage("x"):
        pass
    (f,) = s.stages
    assert dataclasses.is_dataclass(f) and isinstance(f, StageFigures)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.duration_s = 1  # type: ignore[misc]
