"""Listener that profiles tasks and publishes each task try's profile.

Registered by the ``etlops`` plugin. Both hooks run in the task's own process:

* ``on_task_instance_running`` — with ``[etlops] profile_all_tasks = True``, starts a session
  for the task try with the whole task as one stage (named after the task); stages the task
  marks itself (``profile_stage`` / ``@profiled``) nest in it. Otherwise nothing: a task that
  marks stages starts its session at its first stage.
* ``on_task_instance_success`` / ``_failed`` / ``_skipped`` — when a session runs (started here
  or by the task's first stage), finishes it (the task's error closes the stages left open),
  adds regression findings against the stage history in the store, and publishes the report:

  - the store: ``store.profiles.record`` (session, stages, findings, in one transaction);
  - metrics, one batch, labels ``dag_id``, ``task_id``, ``stage`` (the stage path):
    ``stage_duration_seconds``, ``stage_records_per_second``, ``stage_peak_rss_bytes``,
    ``stage_cpu_percent``, ``stage_io_read_bytes``, ``stage_io_write_bytes`` (a stage that ran
    several times counts once, its runs added up; a figure the OS does not give is left out);
  - the same figures as gauges through Airflow's ``Stats`` when ``[metrics]`` sends metrics
    (StatsD, Datadog, OpenTelemetry);
  - XCom ``etlops_profile``: the compact summary plus the ``session_id`` in the store;
  - the task log: the report as a table.

It never fails the task: whatever goes wrong costs one log line per task naming what was not
done, and after a store failure the same process does not try the store again for 30 s.
Elsewhere (the API server marking a state by hand, the scheduler failing a try) there is no
session and the hooks return at once.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

from etlops_airflow._log import one_line
from etlops_airflow.listeners.outcomes import hookimpl

if TYPE_CHECKING:
    from etlops_airflow.core.models import MetricPoint
    from etlops_airflow.core.profiling.model import SessionReport, Thresholds
    from etlops_airflow.core.profiling.report import PathFigures
    from etlops_airflow.store import Store

log = logging.getLogger("etlops_airflow.profiling")

XCOM_KEY = "etlops_profile"
# metric name -> PathFigures attribute (per stage path, runs added up)
STAGE_METRICS = (
    ("stage_duration_seconds", "duration_s"),
    ("stage_records_per_second", "records_per_s"),
    ("stage_peak_rss_bytes", "peak_rss_bytes"),
    ("stage_cpu_percent", "cpu_percent"),
    ("stage_io_read_bytes", "io_read_bytes"),
    ("stage_io_write_bytes", "io_write_bytes"),
)
STATS_PREFIX = "etlops."

_BACKOFF_S = 30.0
_store_failed_at: float | None = None
_store_error = ""


def _where(ti: Any) -> str:
    return f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')}"


# -- task start -------------------------------------------------------------------------------------


def start_task_session(ti: Any) -> bool:
    """Start a session with the whole task as one stage when ``profile_all_tasks`` is on.
    Returns whether one was started; never raises."""
    try:
        from etlops_airflow import config, profiling

        if not config.get_bool("profile_all_tasks"):  # one option read: every task start pays it
            return False
        settings = profiling.load_settings()
        key = profiling.task_session_key(ti)
        if key is None:
            return False
        profiling.start_session(key, sample_interval=settings.sample_interval, thresholds=settings.thresholds)
        profiling.whole_task_stage(str(ti.task_id))
        return True
    except Exception as exc:
        log.warning(
            "etlops: profiling of %s not started: %s; the task is not affected", _where(ti), one_line(exc)
        )
        return False


# -- task end ---------------------------------------------------------------------------------------


def stage_points(report: SessionReport) -> list[MetricPoint]:
    """The per-stage metric points of a report: one per stage path and figure, at the session's end."""
    from etlops_airflow.core.models import MetricPoint
    from etlops_airflow.core.profiling.report import by_path

    key = report.key
    ts = report.started_at + report.duration_s
    points = []
    for figures in by_path(report.stages):
        labels = {"dag_id": str(key.dag_id), "task_id": str(key.task_id), "stage": figures.path}
        for name, value in _figures(figures):
            points.append(MetricPoint(name, value, labels, ts))
    return points


def _figures(figures: PathFigures) -> list[tuple[str, float]]:
    out = []
    for name, attribute in STAGE_METRICS:
        value = getattr(figures, attribute)
        if value is not None:
            out.append((name, float(value)))
    return out


def _record(store: Store, report: SessionReport, thresholds: Thresholds) -> tuple[SessionReport, int]:
    """Regressions against the stored history, then the report and its metrics into the store."""
    from etlops_airflow.core.profiling.findings import durations_by_path, regressions
    from etlops_airflow.core.profiling.report import with_findings

    key = report.key
    assert key.dag_id is not None and key.task_id is not None
    paths = list(durations_by_path(report.stages))
    if paths:
        history = store.profiles.history(
            key.dag_id, key.task_id, paths, runs=thresholds.regression_runs, before=report.started_at
        )
        found = regressions(report, history, thresholds)
        if found:
            report = with_findings(report, found)
    session_id = store.profiles.record(report)
    store.metrics.write(stage_points(report))
    return report, session_id


def _stats_mode() -> str | None:
    """How Airflow's Stats sends metrics in this process: ``"tags"`` (OpenTelemetry, Datadog,
    StatsD with InfluxDB tags), ``"names"`` (plain StatsD: no tags, so they go into the name)
    or None (metrics are off)."""
    from airflow.sdk.configuration import conf

    def on(option: str) -> bool:
        return bool(conf.getboolean("metrics", option, fallback=False))

    if on("statsd_datadog_enabled") or on("otel_on"):
        return "tags"
    if on("statsd_on"):
        return "tags" if on("statsd_influxdb_enabled") else "names"
    return None


def _stat_part(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", value.replace(".", "__"))


def send_stats(report: SessionReport) -> int:
    """Gauges ``etlops.<metric>`` (tags ``dag_id``, ``task_id``, ``stage``), or with plain StatsD
    ``etlops.<metric>.<dag_id>.<task_id>.<stage>``. Returns how many were sent (0 when Airflow's
    metrics are off)."""
    mode = _stats_mode()
    if mode is None:
        return 0
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # pragma: no cover - Airflow before 3.3
        from airflow.stats import Stats  # type: ignore[no-redef]
    from etlops_airflow.core.profiling.report import by_path

    key = report.key
    sent = 0
    for figures in by_path(report.stages):
        tags = {"dag_id": str(key.dag_id), "task_id": str(key.task_id), "stage": figures.path}
        for name, value in _figures(figures):
            if mode == "tags":
                Stats.gauge(STATS_PREFIX + name, value, tags=tags)
            else:
                parts = ".".join(_stat_part(tags[k]) for k in ("dag_id", "task_id", "stage"))
                Stats.gauge(f"{STATS_PREFIX}{name}.{parts}", value)
            sent += 1
    return sent


def finish_task_session(ti: Any, error: BaseException | str | None = None) -> SessionReport | None:
    """Finish the running session (if any) for the task try ``ti`` and publish its report: store,
    metrics, Stats, XCom, task log. Returns the report (None without a session); never raises."""
    global _store_failed_at, _store_error
    problems: list[str] = []
    try:
        from etlops_airflow import profiling

        session = profiling.current_session()
        if session is None:
            return None
        thresholds = session.thresholds
        report = profiling.finish_session(error=error)
        if report is None:
            return None
        ti_key = profiling.task_session_key(ti)
        if ti_key is not None and None in (report.key.dag_id, report.key.task_id, report.key.run_id):
            import dataclasses

            report = dataclasses.replace(report, key=ti_key)  # a session begun outside the task context
    except Exception as exc:
        log.warning(
            "etlops: profile of %s not finished: %s; the task is not affected", _where(ti), one_line(exc)
        )
        return None

    session_id: int | None = None
    if _store_failed_at is not None and time.monotonic() - _store_failed_at < _BACKOFF_S:
        problems.append(f"not recorded: store unavailable ({_store_error})")
    else:
        try:
            from etlops_airflow.runtime import get_store

            report, session_id = _record(get_store(), report, thresholds)
            _store_failed_at = None
        except Exception as exc:
            from etlops_airflow.exceptions import ValidationError
            from etlops_airflow.runtime import display_target

            if not isinstance(exc, ValidationError):  # the store failed, not this report: back off
                _store_failed_at = time.monotonic()
                _store_error = one_line(exc)
            problems.append(f"not recorded in store {display_target()}: {one_line(exc)}")
    try:
        send_stats(report)
    except Exception as exc:
        problems.append(f"not sent to Stats: {one_line(exc)}")
    try:
        from etlops_airflow.core.profiling.report import summary

        if report.key == ti_key:  # never another try's report in this task's XCom
            ti.xcom_push(XCOM_KEY, summary(report) | {"session_id": session_id})
    except Exception as exc:
        problems.append(f"not pushed to XCom: {one_line(exc)}")
    try:
        from etlops_airflow.core.profiling.report import table

        log.info("%s", table(report))
    except Exception as exc:
        problems.append(f"not shown: {one_line(exc)}")
    if problems:
        log.warning("etlops: profile of %s %s; the task is not affected", _where(ti), "; ".join(problems))
    return report


def _error(error: Any) -> BaseException | str | None:
    return error if isinstance(error, (BaseException, str)) or error is None else str(error)


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    start_task_session(task_instance)


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    finish_task_session(task_instance)


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    finish_task_session(task_instance, _error(error))


@hookimpl
def on_task_instance_skipped(previous_state: Any, task_instance: Any) -> None:
    finish_task_session(task_instance)
