"""Health check of the platform around the pipelines: a database, the cache, the filesystem, the
etlops store and the machine. Each component is measured in a thread of its own and given
``timeout_s``: one that does not answer in time is unhealthy, whatever it is doing (a stopped
database server, a hung NFS mount). The verdicts come from
:mod:`etlops_airflow.core.maintenance.health`.

Imported by DAG files: psutil, SQLAlchemy, redis and the store load inside ``run_maintenance()``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from etlops_airflow.core.maintenance.health import (
    COMPONENTS,
    SKIPPED,
    UNHEALTHY,
    ComponentHealth,
    Probe,
    Thresholds,
    check_components,
    check_percent,
    check_timeout,
    health_points,
    verdict,
    worst,
)
from etlops_airflow.core.maintenance.model import MaintenanceRun
from etlops_airflow.exceptions import ValidationError
from etlops_airflow.operators.data_quality import _conn_id
from etlops_airflow.operators.maintenance.base import MaintenanceOperator

_WRITE_TEST_BYTES = 4096


def _error(exc: BaseException) -> str:
    from etlops_airflow._log import one_line
    from etlops_airflow._secrets import redact
    from etlops_airflow.store.engine import mask_passwords_in_text

    return str(redact(mask_passwords_in_text(one_line(exc))))


def run_with_timeout(component: str, measure: Callable[[], Probe], timeout_s: float) -> Callable[[], Probe]:
    """Start ``measure`` in a daemon thread now; the returned function waits for it until
    ``timeout_s`` after the start and gives its probe, or a timed-out one (the thread is left to
    finish on its own: a connect stuck in the kernel cannot be interrupted)."""
    box: dict[str, Probe] = {}
    started = time.monotonic()

    def target() -> None:
        try:
            box["probe"] = measure()
        except Exception as exc:
            box["probe"] = Probe(component, error=_error(exc), latency_s=time.monotonic() - started)

    thread = threading.Thread(target=target, name=f"etlops-health-{component}", daemon=True)
    thread.start()

    def result() -> Probe:
        thread.join(max(0.0, started + timeout_s - time.monotonic()))
        if thread.is_alive() or "probe" not in box:
            return Probe(component, timed_out=True, latency_s=time.monotonic() - started)
        return box["probe"]

    return result


class HealthCheckOperator(MaintenanceOperator):
    """Check ``components`` and record a verdict on each: healthy, degraded or unhealthy, with the
    reasons.

    * ``database``: ``SELECT 1`` through ``database_conn_id`` (an Airflow Connection to SQLite or
      PostgreSQL; PostgreSQL gets ``connect_timeout``), or through the store's engine when None;
      the latency.
    * ``cache``: ``cache_path`` (default ``[etlops] maintenance_cache_path``) must be a writable
      directory (a file is written and removed), its size and file count are measured (up to the
      timeout); ``cache_conn_id``: Redis ``PING`` through that Airflow Connection (host, port,
      password, schema = db number). Without the ``redis`` package that check is unhealthy with
      "redis client not installed". Neither configured: skipped.
    * ``filesystem``: ``filesystem_path`` (default ``AIRFLOW_HOME``): free space and free inodes
      (percent), and a real write + fsync + unlink of a small file.
    * ``store``: the etlops store's schema version (a new or older store is upgraded first, as
      recording this run would), a read and a write transaction (SQLite: the write lock), the
      latency.
    * ``system``: CPU, memory, 1-minute load, uptime and CPU count (psutil).

    Every component runs in its own thread and has ``timeout_s`` from the start. The figures
    are written as metrics labelled ``component`` and ``host``: ``health_status`` (0 healthy,
    1 degraded, 2 unhealthy), ``health_latency_seconds``, ``system_memory_percent``,
    ``system_cpu_percent``, ``system_load_1m``, ``system_uptime_seconds``,
    ``filesystem_free_percent``, ``filesystem_free_inodes_percent``, ``cache_size_bytes`` …, and
    the verdicts are kept with the run (``store.maintenance.last_health()``). With
    ``fail_on_unhealthy`` the task fails (after recording) when a component is unhealthy.
    """

    maintenance_task = "health_check"

    def __init__(
        self,
        *,
        components: Sequence[str] = COMPONENTS,
        database_conn_id: str | None = None,
        cache_path: str | None = None,
        cache_conn_id: str | None = None,
        filesystem_path: str | None = None,
        timeout_s: float = 10,
        fail_on_unhealthy: bool = True,
        min_free_percent: float = 10,
        cache_max_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        owner = f"HealthCheckOperator {kwargs.get('task_id', '?')!r}"
        checked_components = check_components(components, owner)
        if database_conn_id is not None:
            _conn_id(owner, "database_conn_id", database_conn_id)
        if cache_conn_id is not None:
            _conn_id(owner, "cache_conn_id", cache_conn_id)
        for name, value in (("cache_path", cache_path), ("filesystem_path", filesystem_path)):
            if value is not None and (not isinstance(value, str) or not value.strip() or "\x00" in value):
                raise ValidationError(name, value, "expected a directory path", owner=owner)
        checked_timeout = check_timeout(timeout_s, owner)
        if not isinstance(fail_on_unhealthy, bool):
            raise ValidationError(
                "fail_on_unhealthy", fail_on_unhealthy, "expected True or False", owner=owner
            )
        checked_free = check_percent("min_free_percent", min_free_percent, owner)
        if cache_max_bytes is not None and (
            isinstance(cache_max_bytes, bool) or not isinstance(cache_max_bytes, int) or cache_max_bytes <= 0
        ):
            raise ValidationError(
                "cache_max_bytes", cache_max_bytes, "expected a positive number of bytes", owner=owner
            )
        super().__init__(**kwargs)
        self.components = checked_components
        self.database_conn_id = database_conn_id
        self.cache_conn_id = cache_conn_id
        self.cache_path = cache_path
        self.filesystem_path = filesystem_path
        self.timeout_s = checked_timeout
        self.fail_on_unhealthy = fail_on_unhealthy
        self.min_free_percent = checked_free
        self.cache_max_bytes = cache_max_bytes

    # -- the run --------------------------------------------------------------------------------

    def run_maintenance(self, context: Any) -> MaintenanceRun:
        from etlops_airflow.core.models import MetricPoint
        from etlops_airflow.runtime import display_target, store_for

        started = time.time()
        host = socket.gethostname()
        measures: dict[str, Callable[[], Probe]] = {
            "database": self._database,
            "cache": self._cache,
            "filesystem": self._filesystem,
            "store": self._store,
            "system": self._system,
        }
        waiting = [(c, run_with_timeout(c, measures[c], self.timeout_s)) for c in self.components]
        thresholds = Thresholds(min_free_percent=self.min_free_percent, cache_max_bytes=self.cache_max_bytes)
        verdicts: list[ComponentHealth] = [
            verdict(wait(), self.timeout_s, thresholds) for _c, wait in waiting
        ]
        overall = worst(verdicts)
        for v in verdicts:
            log = self.log.warning if v.status not in ("healthy", SKIPPED) else self.log.info
            latency = "" if v.latency_s is None else f" in {v.latency_s:.3f} s"
            log(
                "%s: %s%s%s", v.component, v.status, latency, f": {'; '.join(v.reasons)}" if v.reasons else ""
            )
        errors: list[str] = []
        if self.fail_on_unhealthy:
            errors += [
                f"{v.component} unhealthy: {'; '.join(v.reasons)}" for v in verdicts if v.status == UNHEALTHY
            ]
        points = [MetricPoint(name, value, labels) for name, value, labels in health_points(verdicts, host)]
        try:
            store_for(self.etlops_conn_id).metrics.write(points)
        except Exception as exc:
            errors.append(
                f"health figures not written to the store {display_target(self.etlops_conn_id)}: "
                f"{_error(exc)}"
            )
        return MaintenanceRun(
            task=self.maintenance_task,
            target=f"{host}: {', '.join(self.components)}",
            started_at=started,
            duration_s=0.0,
            looked_at=sum(1 for v in verdicts if v.status != SKIPPED),
            changed=0,
            errors=tuple(errors),
            details={
                "overall": overall,
                "host": host,
                "timeout_s": self.timeout_s,
                "components": [v.as_details() for v in verdicts],
                "metrics_written": len(points),
            },
        )

    # -- the measurements (each in its own thread) -------------------------------------------------

    def _database(self) -> Probe:
        if self.database_conn_id is None:
            from etlops_airflow.runtime import store_for

            engine = store_for(self.etlops_conn_id).engine
            facts = {"target": f"etlops store {engine.url.render_as_string(hide_password=True)}"}
            return self._select_one("database", engine, facts)
        from airflow.sdk import BaseHook
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        from etlops_airflow._secrets import mask_url_password
        from etlops_airflow.operators.data_quality import url_for_connection

        conn: Any = BaseHook.get_connection(self.database_conn_id)
        url = url_for_connection(conn)
        mask_url_password(url.render_as_string(hide_password=False))
        args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql":
            args["connect_timeout"] = max(1, int(self.timeout_s + 0.999))
        elif url.get_backend_name() == "sqlite":
            args["timeout"] = self.timeout_s
        engine = create_engine(url, poolclass=NullPool, connect_args=args)
        try:
            facts = {
                "target": f"conn_id {self.database_conn_id!r} ({url.render_as_string(hide_password=True)})"
            }
            return self._select_one("database", engine, facts)
        finally:
            engine.dispose()

    @staticmethod
    def _select_one(component: str, engine: Any, facts: dict[str, str]) -> Probe:
        began = time.monotonic()
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1").scalar()
            conn.rollback()
        latency = time.monotonic() - began
        return Probe(component, {"database_select_seconds": latency}, latency_s=latency, facts=facts)

    def _store(self) -> Probe:
        from etlops_airflow.runtime import store_for
        from etlops_airflow.store import upgrades

        began = time.monotonic()
        store = store_for(self.etlops_conn_id)
        facts = {"target": store.display_url}
        version = store.schema_version()
        if version < upgrades.HEAD:  # a new or older store: this run's records upgrade it anyway
            store.ensure_schema()
            facts["upgraded"] = f"from schema version {version} to {upgrades.HEAD}"
            version = store.schema_version()
        if version == upgrades.HEAD:
            with store.db.write("health check: write transaction") as conn:
                conn.exec_driver_sql("SELECT 1")
        latency = time.monotonic() - began
        return Probe(
            "store",
            {"store_schema_version": version, "store_schema_head": upgrades.HEAD},
            latency_s=latency,
            facts=facts,
        )

    def _cache(self) -> Probe:
        path = self.cache_path
        if path is None and self.cache_conn_id is None:
            from etlops_airflow import config

            path = config.get("maintenance_cache_path").strip() or None
        if path is None and self.cache_conn_id is None:
            return Probe(
                "cache",
                skipped="not configured: set cache_path or cache_conn_id ([etlops] maintenance_cache_path)",
            )
        figures: dict[str, float] = {}
        facts: dict[str, str] = {}
        began = time.monotonic()
        deadline = began + self.timeout_s * 0.8
        if path is not None:
            facts["path"] = path
            if not os.path.isdir(path):
                return Probe(
                    "cache",
                    error=f"cache directory {path!r} does not exist or is not a directory",
                    facts=facts,
                )
            figures["cache_writable"] = 1.0
            try:
                _write_test(path, sync=False)
            except OSError as exc:
                figures["cache_writable"] = 0.0
                facts["write_error"] = _error(exc)
            size, files, complete = _tree_size(path, deadline)
            figures["cache_size_bytes"] = float(size)
            figures["cache_files"] = float(files)
            if not complete:
                facts["size"] = "at least: the walk stopped at the timeout"
        if self.cache_conn_id is not None:
            facts["conn_id"] = self.cache_conn_id
            try:
                import redis  # type: ignore[import-not-found, unused-ignore]
            except ImportError:
                return Probe(
                    "cache",
                    figures,
                    error="redis client not installed (pip install redis) to PING the cache connection",
                    facts=facts,
                )
            from airflow.sdk import BaseHook

            conn: Any = BaseHook.get_connection(self.cache_conn_id)
            ping_began = time.monotonic()
            client = redis.Redis(
                host=conn.host or "localhost",
                port=int(conn.port or 6379),
                db=int(conn.schema or 0),
                username=conn.login or None,
                password=conn.password or None,
                socket_connect_timeout=self.timeout_s,
                socket_timeout=self.timeout_s,
            )
            try:
                if not client.ping():
                    return Probe(
                        "cache",
                        figures,
                        error="Redis answered PING with something else than PONG",
                        facts=facts,
                    )
            finally:
                client.close()
            figures["cache_ping_seconds"] = time.monotonic() - ping_began
        return Probe("cache", figures, latency_s=time.monotonic() - began, facts=facts)

    def _filesystem(self) -> Probe:
        from etlops_airflow import config

        path = self.filesystem_path or config.airflow_home()
        stats = os.statvfs(path)
        figures: dict[str, float] = {}
        if stats.f_blocks:
            figures["filesystem_free_percent"] = stats.f_bavail / stats.f_blocks * 100
            figures["filesystem_free_bytes"] = float(stats.f_bavail * stats.f_frsize)
        if stats.f_files:  # 0 on filesystems without a fixed inode table (btrfs, some network mounts)
            figures["filesystem_free_inodes_percent"] = stats.f_favail / stats.f_files * 100
        facts = {"path": path}
        began = time.monotonic()
        try:
            _write_test(path, sync=True)
            figures["filesystem_write_ok"] = 1.0
        except OSError as exc:
            figures["filesystem_write_ok"] = 0.0
            facts["write_error"] = _error(exc)
        latency = time.monotonic() - began
        figures["filesystem_write_seconds"] = latency
        return Probe("filesystem", figures, latency_s=latency, facts=facts)

    def _system(self) -> Probe:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        figures = {
            "system_cpu_percent": float(psutil.cpu_percent(interval=min(0.5, self.timeout_s / 4))),
            "system_memory_percent": float(psutil.virtual_memory().percent),
            "system_uptime_seconds": time.time() - psutil.boot_time(),
            "system_cpu_count": float(psutil.cpu_count() or 1),
        }
        try:
            figures["system_load_1m"] = float(os.getloadavg()[0])
        except (AttributeError, OSError):  # no load average (Windows)
            pass
        return Probe("system", figures)


def _write_test(directory: str, *, sync: bool) -> None:
    """Create a small file in ``directory``, write it (and fsync), remove it."""
    import tempfile

    fd, name = tempfile.mkstemp(prefix=".etlops-health-", dir=directory)
    try:
        os.write(fd, b"\0" * _WRITE_TEST_BYTES)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(name)


def _tree_size(root: str, deadline: float) -> tuple[int, int, bool]:
    """Bytes and files under ``root`` (symlinks not followed, other filesystems not entered),
    and whether the walk finished before ``deadline``."""
    device = os.stat(root).st_dev
    total = files = 0
    todo = [root]
    while todo:
        if time.monotonic() > deadline:
            return total, files, False
        current = todo.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if entry.stat(follow_symlinks=False).st_dev == device:
                                todo.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                            files += 1
                    except FileNotFoundError:
                        continue
        except (FileNotFoundError, PermissionError):
            continue
    return total, files, True
