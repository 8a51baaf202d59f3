"""A store with something of every capability, for the Operations view's API and browser tests.

Two DAGs: ``mine`` (readable by the user under test) and ``theirs`` (not readable by them).
Every record of ``theirs`` carries the marker text ``THEIRS`` somewhere, so a test can check
that none of it reaches a user who may not read that DAG.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from etlops_airflow.core.maintenance.model import MaintenanceRun
from etlops_airflow.core.models import DagRunOutcome, MetricPoint, TaskOutcome
from etlops_airflow.core.profiling.model import Finding, SessionKey, SessionReport, StageFigures
from etlops_airflow.store import Store

SCRIPT_DESCRIPTION = '<script>document.title="pwned"</script><img src=x onerror=alert(1)> rows dropped'


@dataclass(frozen=True)
class Seeded:
    now: float
    mine: str
    theirs: str
    alert_mine: str  # fingerprints
    alert_theirs: str
    alert_global: str
    session_mine: int
    session_theirs: int
    maintenance_theirs: int


def _stage(path: str, index: int, start: float, duration: float, **more: object) -> StageFigures:
    return StageFigures(
        name=path.rsplit("/", 1)[-1],
        path=path,
        index=index,
        started_at=start,
        duration_s=duration,
        cpu_s=duration / 2,
        cpu_percent=50.0,
        cpu_percent_machine=25.0,
        peak_rss_bytes=200 * 2**20,
        end_rss_bytes=150 * 2**20,
        threads_peak=3,
        samples=int(duration),
        **more,  # type: ignore[arg-type]
    )


def _session(dag_id: str, run_id: str, start: float, records: int) -> SessionReport:
    stages = (
        _stage("extract", 0, start, 4.0, records_out=records),
        _stage("transform", 1, start + 4, 10.0, records_in=records, records_out=records - 10),
        _stage("transform/enrich", 2, start + 5, 6.0, records_in=records, records_out=records - 10),
        _stage("load", 3, start + 14, 6.0, records_in=records - 10, records_out=records - 10),
    )
    finding = Finding(
        kind="cpu",
        severity="high",
        stage="transform",
        message=f"transform of {dag_id} used 96 % of one core",
        suggestion="split the transform or vectorise it",
        value=96.0,
        threshold=90.0,
    )
    return SessionReport(
        key=SessionKey(dag_id, "etl", run_id, -1, 1),
        started_at=start,
        duration_s=20.0,
        stages=stages,
        peak_rss_bytes=200 * 2**20,
        peak_cpu_percent=96.0,
        records_per_s=(records - 10) / 20.0,
        findings=(finding,),
        recommendations=(f"{dag_id}: cache the customers lookup",),
    )


def seed(store: Store, mine: str, theirs: str, *, now: float | None = None) -> Seeded:
    now = time.time() if now is None else now
    # metrics: a point every 5 minutes for 6 hours
    points = []
    for i in range(72):
        ts = now - 6 * 3600 + i * 300 + 1
        points.append(MetricPoint("rows_loaded", 100 + i, {"dag_id": mine, "table": "orders"}, ts))
        points.append(MetricPoint("rows_loaded", 5000 + i, {"dag_id": theirs, "table": "THEIRS"}, ts))
        points.append(MetricPoint("host_cpu_percent", 20 + i % 10, {"host": "w1"}, ts))
    store.metrics.write(points)
    # DAG runs and task tries: mine ran 3 times (the middle one failed), theirs once
    for i, state in enumerate(("success", "failed", "success")):
        end = now - 3600 * (3 - i)
        store.dag_runs.record(DagRunOutcome(mine, f"run_{i}", state, "scheduled", end - 60, end, 60.0))
        store.outcomes.record(TaskOutcome(mine, "etl", f"run_{i}", 1, state, start_ts=end - 50, end_ts=end))
    store.dag_runs.record(
        DagRunOutcome(theirs, "THEIRS_run", "failed", "manual", now - 600, now - 500, 100.0)
    )
    store.outcomes.record(TaskOutcome(theirs, "etl", "THEIRS_run", 1, "failed", end_ts=now - 500))
    # profiles
    session_mine = store.profiles.record(_session(mine, "run_2", now - 3600 - 30, 1010))
    session_theirs = store.profiles.record(_session(theirs, "THEIRS_run", now - 560, 50010))
    # maintenance: a health check (run from no DAG) and cleanups
    store.maintenance.record(
        MaintenanceRun(
            task="health_check",
            target="database, system",
            started_at=now - 120,
            duration_s=1.5,
            details={
                "components": [
                    {"component": "database", "status": "healthy", "latency_s": 0.01, "figures": {"x": 1}},
                    {
                        "component": "filesystem",
                        "status": "degraded",
                        "reasons": ["free space 15 % under 20 %"],
                        "figures": {"filesystem_free_percent": 15.0},
                    },
                ]
            },
        )
    )
    store.maintenance.record(
        MaintenanceRun(
            task="cache_cleanup",
            target="/data/cache",
            started_at=now - 300,
            duration_s=2.0,
            freed_bytes=3 * 2**20,
            freed_files=12,
            dag_id=mine,
            task_id="cache_cleanup",
            run_id="scheduled__1",
        )
    )
    store.maintenance.record(
        MaintenanceRun(
            task="cache_cleanup", target="/data/cache", started_at=now - 250, duration_s=1.0, dry_run=True
        )
    )
    maintenance_theirs = store.maintenance.record(
        MaintenanceRun(
            task="checkpoint_cleanup",
            target="/data/THEIRS",
            started_at=now - 200,
            duration_s=1.0,
            freed_bytes=2**30,
            dag_id=theirs,
        )
    )

    # alerts: firing, with a description holding markup
    def fire(rule_id: str, severity: str, description: str, **labels: str) -> str:
        alert, _ = store.alerts.raise_alert(
            rule_id,
            {"rule_id": rule_id, "severity": severity, **labels},
            {"summary": f"{rule_id} breached", "description": description, "run_id": "run_1"},
            now=now - 900,
        )
        return str(alert.fingerprint)

    return Seeded(
        now=now,
        mine=mine,
        theirs=theirs,
        alert_mine=fire("rows-low", "critical", SCRIPT_DESCRIPTION, dag_id=mine, table="orders"),
        alert_theirs=fire("rows-low", "high", "THEIRS is failing", dag_id=theirs, table="THEIRS"),
        alert_global=fire("disk-full", "medium", "disk of w1 is 91 % full", host="w1"),
        session_mine=session_mine,
        session_theirs=session_theirs,
        maintenance_theirs=maintenance_theirs,
    )


def seed_migrations(store: Store, mine: str, theirs: str, *, now: float | None = None) -> dict[str, str]:
    """Two migration runs: one of ``mine`` that succeeded (two steps), one of ``theirs`` that
    was rolled back. Returns their run ids."""
    now = time.time() if now is None else now
    m = store.migrations
    ids = {}
    for dag_id, pipeline, state in ((mine, "orders", "success"), (theirs, "THEIRS", "rolled_back")):
        run_id = f"mig-{pipeline.lower()}"
        m.start_run(
            run_id=run_id,
            pipeline=pipeline,
            from_version="1.0.0",
            to_version="1.1.0",
            direction="up",
            owner="tester",
            migrations=["1.0.0->1.1.0"],
            detail={},
            dag_id=dag_id,
            dag_run_id=f"{pipeline}_run",
            now=now - 100,
        )
        seq = m.log_step(
            run_id,
            migration="1.0.0->1.1.0",
            phase="step",
            index=0,
            kind="sql",
            description="add column",
            now=now - 90,
        )
        m.finish_step(
            run_id,
            seq,
            "success" if state == "success" else "error",
            sql=[f"ALTER TABLE {pipeline} ADD COLUMN note TEXT"],
            error=None if state == "success" else "THEIRS: column exists",
            now=now - 80,
        )
        m.end_run(
            run_id,
            state,
            error=None if state == "success" else "THEIRS: rolled back",
            version=(pipeline, "1.1.0") if state == "success" else None,
            now=now - 70,
        )
        ids[dag_id] = run_id
    return ids
