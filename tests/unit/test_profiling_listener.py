"""The profiling listener, called as Airflow's task runner calls it (hook functions, a stand-in
task instance that records its XCom pushes, a real store)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

# Airflow configures logging when first imported: before any test, so caplog's handler stays.
import airflow.sdk.configuration  # noqa: F401
import pytest

from etlops_airflow import profiling
from etlops_airflow.core.profiling.model import SessionKey, SessionReport, StageFigures
from etlops_airflow.listeners import profiling as listener
from etlops_airflow.runtime import get_store

RUN_ID = "scheduled__2026-01-01"


class FakeTI(SimpleNamespace):
    def __init__(self, task_id: str = "load", try_number: int = 1, fail_xcom: bool = False) -> None:
        super().__init__(dag_id="orders", task_id=task_id, run_id=RUN_ID, map_index=-1, try_number=try_number)
        self.pushed: dict[str, Any] = {}
        self.fail_xcom = fail_xcom

    def xcom_push(self, key: str, value: Any) -> None:
        if self.fail_xcom:
            raise ConnectionError("supervisor gone")
        self.pushed[key] = value


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> Iterator[None]:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    monkeypatch.setenv("AIRFLOW__ETLOPS__PROFILE_SAMPLE_INTERVAL", "0")
    for name in ("PROFILE_ALL_TASKS", "PROFILE_REGRESSION_RUNS", "PROFILE_REGRESSION_FLOOR"):
        monkeypatch.delenv(f"AIRFLOW__ETLOPS__{name}", raising=False)
    monkeypatch.setattr(listener, "_store_failed_at", None)
    profiling.finish_session()
    yield
    profiling.finish_session()


def _etlops_lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name.startswith("etlops_airflow") and r.levelno >= level
    ]


def test_profile_all_tasks_profiles_the_whole_task_and_publishes_the_report(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__PROFILE_ALL_TASKS", "True")
    caplog.set_level(logging.INFO, logger="etlops_airflow")
    ti = FakeTI()
    listener.on_task_instance_running(None, ti)
    with profiling.profile_stage("write", records_in=10) as stage:
        time.sleep(0.01)
        stage.records_out = 10
    listener.on_task_instance_success(None, ti)
    assert profiling.current_session() is None

    (stored,) = get_store().profiles.sessions(dag_id="orders")
    report = stored.report
    assert report.key == SessionKey("orders", "load", RUN_ID, -1, 1)
    assert [(s.name, s.path) for s in report.stages] == [("load", "load"), ("write", "load/write")]
    assert report.stages[1].records_out == 10

    summary = ti.pushed[listener.XCOM_KEY]
    assert summary["session_id"] == stored.id
    assert [s["path"] for s in summary["stages"]] == ["load", "load/write"]

    store = get_store()
    io = report.stages[0].io_read_bytes is not None  # macOS gives no IO counters
    for stage_path, has_records in (("load", False), ("load/write", True)):
        labels = {"dag_id": "orders", "task_id": "load", "stage": stage_path}
        for name, _ in listener.STAGE_METRICS:
            expected = {"stage_records_per_second": has_records, "stage_io_read_bytes": io}.get(name, True)
            if name == "stage_io_write_bytes":
                expected = io
            count = store.metrics.aggregate(name, fn="count", labels=labels, window=3600)
            assert count == (1 if expected else None), (name, stage_path)
    written = store.metrics.aggregate(
        "stage_records_per_second", fn="last", labels={"stage": "load/write"}, window=3600
    )
    assert written == pytest.approx(10 / report.stages[1].duration_s)

    infos = _etlops_lines(caplog, logging.INFO)
    assert any(line.startswith(f"etlops profile orders.load run {RUN_ID} try 1") for line in infos)
    assert _etlops_lines(caplog) == []


def test_without_profile_all_tasks_only_tasks_that_mark_stages_are_profiled() -> None:
    quiet = FakeTI("quiet")
    listener.on_task_instance_running(None, quiet)
    assert profiling.current_session() is None
    listener.on_task_instance_success(None, quiet)
    assert quiet.pushed == {}

    marked = FakeTI("marked")
    listener.on_task_instance_running(None, marked)
    with profiling.profile_stage("parse"):
        pass
    listener.on_task_instance_success(None, marked)
    sessions = get_store().profiles.sessions(dag_id="orders")
    assert [(s.report.key.task_id, [g.path for g in s.report.stages]) for s in sessions] == [
        ("marked", ["parse"])
    ]
    assert marked.pushed[listener.XCOM_KEY]["key"]["task_id"] == "marked"


def test_a_failed_try_is_recorded_with_the_error_on_the_open_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__PROFILE_ALL_TASKS", "True")
    ti = FakeTI(try_number=2)
    listener.on_task_instance_running(None, ti)
    listener.on_task_instance_failed(None, ti, TimeoutError("upstream timed out"))
    (stored,) = get_store().profiles.sessions(dag_id="orders")
    assert stored.report.key.try_number == 2
    assert stored.report.stages[0].error == "TimeoutError: upstream timed out"


def _history(task_id: str, durations: list[float]) -> None:
    """Earlier sessions of the task, oldest first, each with one ``extract`` stage."""
    for i, duration in enumerate(durations):
        started = time.time() - 1000 + i
        stage = StageFigures(name="extract", path="extract", index=0, started_at=started, duration_s=duration)
        get_store().profiles.record(
            SessionReport(
                key=SessionKey("orders", task_id, f"old_{i}", -1, 1),
                started_at=started,
                duration_s=duration,
                stages=(stage,),
                peak_rss_bytes=0,
                peak_cpu_percent=0.0,
                records_per_s=None,
            )
        )


def _run_extract(ti: FakeTI, seconds: float) -> SessionReport:
    with profiling.profile_stage("extract"):
        time.sleep(seconds)
    listener.on_task_instance_success(None, ti)
    return get_store().profiles.sessions(dag_id="orders", task_id=ti.task_id, run_id=RUN_ID)[0].report


def test_a_stage_slower_than_its_history_gets_a_regression_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__PROFILE_REGRESSION_RUNS", "2")
    monkeypatch.setenv("AIRFLOW__ETLOPS__PROFILE_REGRESSION_FLOOR", "0.1")
    _history("steady", [0.01, 0.02, 5.0])  # the newest two make the median: (5.0 + 0.02) / 2
    assert _run_extract(FakeTI("steady"), 0.2).findings == ()

    _history("slower", [5.0, 0.02, 0.01])  # median 0.015: a limit of 0.115 s
    ti = FakeTI("slower")
    (finding,) = _run_extract(ti, 0.2).findings
    assert (finding.kind, finding.stage, finding.severity) == ("regression", "extract", "high")
    assert finding.value >= 0.2 and finding.threshold == pytest.approx(0.015 + 0.1)
    assert ti.pushed[listener.XCOM_KEY]["findings"][0]["kind"] == "regression"

    _history("too_new", [0.01])  # fewer runs than regression_runs: not judged
    assert _run_extract(FakeTI("too_new"), 0.2).findings == ()


def test_an_unreachable_store_costs_one_line_and_the_rest_still_happens(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", "postgresql://etl:topsecret@127.0.0.1:1/etlops")
    monkeypatch.setenv("AIRFLOW__ETLOPS__PROFILE_ALL_TASKS", "True")
    caplog.set_level(logging.INFO, logger="etlops_airflow")
    for try_number in (1, 2):
        ti = FakeTI(try_number=try_number)
        listener.on_task_instance_running(None, ti)
        listener.on_task_instance_success(None, ti)
        assert ti.pushed[listener.XCOM_KEY]["session_id"] is None  # XCom all the same
    warnings = _etlops_lines(caplog)
    assert len(warnings) == 2, warnings
    assert "orders.load not recorded in store postgresql://etl:***@127.0.0.1:1/etlops" in warnings[0]
    assert "store unavailable" in warnings[1]  # the back-off: no second connection attempt
    assert all("task is not affected" in w and "topsecret" not in w for w in warnings)
    tables = [line for line in _etlops_lines(caplog, logging.INFO) if line.startswith("etlops profile ")]
    assert len(tables) == 2


def test_xcom_failure_costs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="etlops_airflow")
    ti = FakeTI(fail_xcom=True)
    with profiling.profile_stage("extract"):
        pass
    listener.on_task_instance_success(None, ti)
    (line,) = _etlops_lines(caplog)
    assert "not pushed to XCom: ConnectionError: supervisor gone" in line
    assert len(get_store().profiles.sessions()) == 1


def test_a_bad_option_does_not_fail_the_task(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__PROFILE_ALL_TASKS", "maybe")
    caplog.set_level(logging.WARNING, logger="etlops_airflow")
    listener.on_task_instance_running(None, FakeTI())
    (line,) = _etlops_lines(caplog)
    assert "profiling of orders.load not started" in line and "profile_all_tasks" in line


class FakeStats:
    def __init__(self) -> None:
        self.gauges: list[tuple[str, float, dict[str, str] | None]] = []

    def gauge(
        self, stat: str, value: float, rate: float = 1, delta: bool = False, *, tags: Any = None
    ) -> None:
        self.gauges.append((stat, value, tags))

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


@pytest.fixture
def fake_stats() -> Iterator[FakeStats]:
    from airflow.sdk._shared.observability.metrics import stats

    backend = FakeStats()
    saved = (stats._factory, stats._backend, stats._export_legacy_names)
    stats.initialize(factory=lambda: backend, export_legacy_names=False)  # type: ignore[arg-type,return-value]
    yield backend
    stats._factory, stats._backend, stats._export_legacy_names = saved


def _one_stage_report() -> SessionReport:
    stage = StageFigures(
        name="enrich",
        path="transform/enrich",
        index=1,
        started_at=time.time(),
        duration_s=2.0,
        records_out=100,
        records_per_s=50.0,
        cpu_s=1.0,
        cpu_percent=50.0,
        peak_rss_bytes=1000,
        io_read_bytes=None,
        io_write_bytes=None,
    )
    return SessionReport(
        key=SessionKey("orders.v2", "load", RUN_ID, -1, 1),
        started_at=stage.started_at,
        duration_s=2.0,
        stages=(stage,),
        peak_rss_bytes=1000,
        peak_cpu_percent=50.0,
        records_per_s=50.0,
    )


def test_stats_gauges_only_when_airflow_sends_metrics(
    monkeypatch: pytest.MonkeyPatch, fake_stats: FakeStats
) -> None:
    for option in ("STATSD_ON", "OTEL_ON", "STATSD_DATADOG_ENABLED", "STATSD_INFLUXDB_ENABLED"):
        monkeypatch.setenv(f"AIRFLOW__METRICS__{option}", "False")
    assert listener.send_stats(_one_stage_report()) == 0 and fake_stats.gauges == []

    monkeypatch.setenv("AIRFLOW__METRICS__OTEL_ON", "True")
    assert listener.send_stats(_one_stage_report()) == 4  # no IO counters: 4 of the 6 figures
    tags = {"dag_id": "orders.v2", "task_id": "load", "stage": "transform/enrich"}
    assert fake_stats.gauges == [
        ("etlops.stage_duration_seconds", 2.0, tags),
        ("etlops.stage_records_per_second", 50.0, tags),
        ("etlops.stage_peak_rss_bytes", 1000.0, tags),
        ("etlops.stage_cpu_percent", 50.0, tags),
    ]

    # plain StatsD has no tags: they go into the name
    fake_stats.gauges.clear()
    monkeypatch.setenv("AIRFLOW__METRICS__OTEL_ON", "False")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    listener.send_stats(_one_stage_report())
    assert fake_stats.gauges[0] == (
        "etlops.stage_duration_seconds.orders__v2.load.transform_enrich",
        2.0,
        None,
    )


def test_the_readme_example_of_reading_profiles_runs_as_written() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "get_store().profiles" in b]
    _history("transform", [1.0])
    report = get_store().profiles.sessions()[0].report
    namespace: dict[str, Any] = {"report": report}
    exec(compile(code, "README.md", "exec"), namespace)
    stats = namespace["stats"]
    assert stats.overall.sessions == 1 and stats.by_dag["orders"].sessions == 1


def test_a_session_of_another_try_is_recorded_as_its_own_and_not_pushed_to_this_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW__ETLOPS__PROFILE_ALL_TASKS", "True")
    listener.on_task_instance_running(None, FakeTI("extract"))
    other = FakeTI("load")
    listener.on_task_instance_success(None, other)
    assert other.pushed == {}
    (stored,) = get_store().profiles.sessions(dag_id="orders")
    assert stored.report.key.task_id == "extract"
