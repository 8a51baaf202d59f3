"""Health verdicts (plain Python) and HealthCheckOperator against real components: a SQLite
database, a stopped PostgreSQL (a closed port; a server that never answers) reported unhealthy
within its timeout, a cache directory, the filesystem, the store and the machine; the figures
in the store as metrics and the verdicts as the operations view reads them."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etlops_airflow.core.maintenance.health import (
    DEGRADED,
    HEALTHY,
    SKIPPED,
    UNHEALTHY,
    ComponentHealth,
    Probe,
    Thresholds,
    health_points,
    verdict,
    worst,
)
from etlops_airflow.exceptions import ValidationError
from etlops_airflow.operators.maintenance.base import MaintenanceFailed
from etlops_airflow.operators.maintenance.health import HealthCheckOperator
from etlops_airflow.runtime import get_store

# ------------------------------------------------------------------------------ verdicts


@pytest.mark.parametrize(
    ("probe", "status", "reason"),
    [
        (Probe("database", latency_s=0.01), HEALTHY, None),
        (Probe("database", latency_s=6.0), DEGRADED, "slow: answered in 6.00 s (timeout 10 s)"),
        (Probe("database", timed_out=True), UNHEALTHY, "no answer within its timeout of 10 s"),
        (Probe("database", error="OperationalError: connection refused"), UNHEALTHY, "connection refused"),
        (Probe("cache", skipped="not configured"), SKIPPED, "not configured"),
        (Probe("filesystem", {"filesystem_free_percent": 15.0}), DEGRADED, "free space 15.0 % is under 20 %"),
        (Probe("filesystem", {"filesystem_free_percent": 5.0}), UNHEALTHY, "free space 5.0 % is under 10 %"),
        (Probe("filesystem", {"filesystem_free_inodes_percent": 2.0}), UNHEALTHY, "free inodes 2.0 %"),
        (Probe("filesystem", {"filesystem_write_ok": 0.0}), UNHEALTHY, "the test write"),
        (Probe("cache", {"cache_writable": 0.0}), UNHEALTHY, "not writable"),
        (Probe("system", {"system_memory_percent": 99.0}), UNHEALTHY, "memory use 99.0 %"),
        (Probe("system", {"system_memory_percent": 91.0}), DEGRADED, "memory use 91.0 %"),
        (Probe("system", {"system_cpu_percent": 97.0}), DEGRADED, "CPU use 97.0 %"),
        (
            Probe("system", {"system_load_1m": 9.0, "system_cpu_count": 2.0}),
            DEGRADED,
            "1-minute load 9.00 on 2 CPUs",
        ),
        (Probe("store", {"store_schema_version": 5, "store_schema_head": 6}), DEGRADED, "older than 6"),
        (Probe("store", {"store_schema_version": 7, "store_schema_head": 6}), UNHEALTHY, "newer than"),
    ],
)
def test_verdicts_from_figures(probe: Probe, status: str, reason: str | None) -> None:
    found = verdict(probe, 10.0)
    assert found.status == status
    if reason is None:
        assert found.reasons == ()
    else:
        assert any(reason in r for r in found.reasons), found.reasons


def test_thresholds_overall_status_and_metrics() -> None:
    cache = verdict(Probe("cache", {"cache_size_bytes": 3e9}), 10, Thresholds(cache_max_bytes=2 * 2**30))
    assert cache.status == DEGRADED and cache.reasons == ("cache holds 2.8 GiB, over 2.0 GiB",)
    fine = ComponentHealth("system", HEALTHY, (), None, {"system_memory_percent": 40.0})
    skipped = ComponentHealth("cache", SKIPPED, ("not configured",))
    bad = ComponentHealth("database", UNHEALTHY, ("down",), 1.5)
    assert worst([fine, skipped]) == HEALTHY and worst([fine, bad, skipped]) == UNHEALTHY
    assert worst([skipped]) == SKIPPED
    assert health_points([fine, skipped, bad], "h1") == [
        ("health_status", 0.0, {"component": "system", "host": "h1"}),
        ("system_memory_percent", 40.0, {"component": "system", "host": "h1"}),
        ("health_status", 2.0, {"component": "database", "host": "h1"}),
        ("health_latency_seconds", 1.5, {"component": "database", "host": "h1"}),
    ]


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"components": ["database", "disk"]}, "components 'disk': unknown component"),
        ({"components": "database"}, "components 'database'"),
        ({"components": []}, "components []"),
        ({"timeout_s": 0}, "timeout_s 0"),
        ({"min_free_percent": 100}, "min_free_percent 100"),
        ({"database_conn_id": "no spaces allowed"}, "database_conn_id"),
        ({"filesystem_path": ""}, "filesystem_path ''"),
        ({"fail_on_unhealthy": "no"}, "fail_on_unhealthy 'no'"),
    ],
)
def test_checks_its_arguments_when_built(kwargs: dict[str, Any], shown: str) -> None:
    with pytest.raises(ValidationError, match="HealthCheckOperator 'health'") as info:
        HealthCheckOperator(task_id="health", **kwargs)
    assert shown in str(info.value)


# ------------------------------------------------------------------------------ the operator


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, sqlite_url: str, tmp_path: Path) -> Path:
    """The store in a SQLite file; ``AIRFLOW_CONN_DB`` a SQLite database; a cache directory."""
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", sqlite_url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_DB", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "db.sqlite")})
    )
    cache = tmp_path / "cache"
    (cache / "sub").mkdir(parents=True)
    (cache / "a.bin").write_bytes(b"x" * 1000)
    (cache / "sub" / "b.bin").write_bytes(b"y" * 234)
    return tmp_path


def _op(tmp: Path, **kwargs: Any) -> HealthCheckOperator:
    args: dict[str, Any] = {
        "task_id": "health",
        "database_conn_id": "db",
        "cache_path": str(tmp / "cache"),
        "filesystem_path": str(tmp),
        "min_free_percent": 0,
        "lock_dir": str(tmp / "locks"),
    }
    args.update(kwargs)
    return HealthCheckOperator(**args)


def _metric(name: str, **labels: str) -> float | None:
    value: float | None = get_store().metrics.aggregate(name, fn="last", labels=labels, window=600)
    return value


def test_healthy_components_and_their_figures_in_the_store(configured: Path) -> None:
    summary = _op(configured, components=["database", "cache", "filesystem", "store"]).execute({})
    assert summary["errors"] == [] and summary["looked_at"] == 4
    health = get_store().maintenance.last_health()
    assert {c: h.status for c, h in health.items()} == dict.fromkeys(
        ["cache", "database", "filesystem", "store"], HEALTHY
    )
    assert health["cache"].figures["cache_size_bytes"] == 1234 and health["cache"].figures["cache_files"] == 2
    assert health["database"].latency_s is not None and health["database"].task_id == "health"
    assert _metric("health_status", component="database") == 0
    assert (_metric("health_latency_seconds", component="store") or 0) > 0
    assert 0 < (_metric("filesystem_free_percent", component="filesystem") or 0) <= 100
    assert _metric("filesystem_write_ok") == 1
    assert _metric("cache_size_bytes") == 1234
    (run,) = get_store().maintenance.runs("health_check")
    assert run.run.details["overall"] == HEALTHY
    assert _metric("maintenance_errors", task="health_check") == 0
    assert not list(configured.glob(".etlops-health-*")) and not list(
        (configured / "cache").glob(".etlops-health-*")
    )


def test_system_figures(configured: Path) -> None:
    _op(configured, components=["system"], fail_on_unhealthy=False).execute({})
    system = get_store().maintenance.last_health()["system"]
    for name in ("system_cpu_percent", "system_memory_percent", "system_load_1m", "system_uptime_seconds"):
        assert name in system.figures and _metric(name, component="system") == system.figures[name]
    assert 0 < system.figures["system_memory_percent"] < 100 and system.figures["system_uptime_seconds"] > 0


def test_a_stopped_database_is_unhealthy_and_fails_the_task(
    configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": port,
        "login": "etl",
        "password": "s3cret-pw",
    }
    monkeypatch.setenv("AIRFLOW_CONN_DOWN", json.dumps(conn | {"schema": "warehouse"}))
    began = time.monotonic()
    with pytest.raises(MaintenanceFailed, match="database unhealthy: .*refused"):
        _op(configured, components=["database", "store"], database_conn_id="down", timeout_s=5).execute({})
    assert time.monotonic() - began < 5
    health = get_store().maintenance.last_health()
    assert health["database"].status == UNHEALTHY and health["store"].status == HEALTHY
    assert "s3cret-pw" not in " ".join(health["database"].reasons)
    assert _metric("health_status", component="database") == 2
    (run,) = get_store().maintenance.runs("health_check")
    assert not run.run.ok and run.run.details["overall"] == UNHEALTHY


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung database server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


def test_a_database_that_never_answers_is_unhealthy_within_its_timeout(
    configured: Path, monkeypatch: pytest.MonkeyPatch, silent_server: int
) -> None:
    conn = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": silent_server,
        "login": "etl",
        "schema": "w",
    }
    monkeypatch.setenv("AIRFLOW_CONN_HUNG", json.dumps(conn))
    began = time.monotonic()
    with pytest.raises(MaintenanceFailed, match="database unhealthy: no answer within its timeout of 1 s"):
        _op(configured, components=["database", "filesystem"], database_conn_id="hung", timeout_s=1).execute(
            {}
        )
    assert time.monotonic() - began < 2.5  # the database's 1 s, not libpq's minimum of 2 s nor longer
    database = get_store().maintenance.last_health()["database"]
    assert database.status == UNHEALTHY and database.latency_s is not None and database.latency_s < 1.5
    assert _metric("health_status", component="database") == 2
    assert _metric("health_status", component="filesystem") == 0


def test_unhealthy_without_failing_the_task(configured: Path) -> None:
    summary = _op(
        configured, components=["filesystem"], min_free_percent=99.99, fail_on_unhealthy=False
    ).execute({})
    assert summary["errors"] == []
    filesystem = get_store().maintenance.last_health()["filesystem"]
    assert filesystem.status == UNHEALTHY and "free space" in filesystem.reasons[0]


def test_cache_through_redis_without_the_client_and_cache_not_configured(
    configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_redis(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "redis":
            raise ImportError("No module named 'redis'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_redis)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CACHE", json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": 6379})
    )
    _op(
        configured, components=["cache"], cache_path=None, cache_conn_id="cache", fail_on_unhealthy=False
    ).execute({})
    cache = get_store().maintenance.last_health()["cache"]
    assert cache.status == UNHEALTHY and cache.reasons[0].startswith("redis client not installed")
    _op(configured, components=["cache"], cache_path=None).execute({})
    cache = get_store().maintenance.last_health()["cache"]
    assert cache.status == SKIPPED and "not configured" in cache.reasons[0]
