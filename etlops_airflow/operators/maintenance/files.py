"""File maintenance operators: cache cleanup, log rotation, checkpoint cleanup.

Thin: each validates its arguments at parse time, then scans, plans and (unless ``dry_run``)
executes with :mod:`etlops_airflow.core.maintenance.files`, ``.rotation`` and ``.checkpoints``.
A dry run reports the very plan a real run would execute (``details["plan"]``); a real run
records the same plan and what was done (``details["done"]``). An unreadable root or
directory, or a failed deletion, is an error of the run: the task fails after the run is
recorded (:class:`~etlops_airflow.operators.maintenance.base.MaintenanceOperator`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

from etlops_airflow._validate import is_templated
from etlops_airflow.core.maintenance.files import KEEP_PATTERNS
from etlops_airflow.core.maintenance.model import MaintenanceRun
from etlops_airflow.exceptions import ValidationError
from etlops_airflow.operators.maintenance.base import MaintenanceOperator

DEFAULT_COMPONENT_LOGS = ("scheduler", "api-server", "dag-processor", "triggerer")


# -------------------------------------------------------------------------------- validation


def root_path(owner: str, field: str, value: Any, *, allow_none: bool = False, final: bool = True) -> Any:
    """An absolute, normalised directory path other than ``/`` (a template passes until rendered)."""
    if value is None and allow_none:
        return None
    if not final and is_templated(value):
        return value
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValidationError(field, value, "expected an absolute path", owner=owner)
    if not os.path.isabs(value):
        raise ValidationError(field, value, "must be an absolute path", owner=owner)
    parts = value.split("/")
    if ".." in parts or "." in parts:
        raise ValidationError(field, value, "must not contain '.' or '..' components", owner=owner)
    normal = os.path.normpath(value)
    if normal == "/" or normal == "//":
        raise ValidationError(field, value, "refusing to clean the filesystem root", owner=owner)
    return normal


def positive(owner: str, field: str, value: Any, *, integer: bool = False, zero: bool = False) -> Any:
    """A positive (or, with ``zero``, non-negative) finite number; ``integer``: a whole number."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if (
        isinstance(value, bool)
        or not ok_type
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        kind = "whole number" if integer else "number"
        bound = "at least 0" if zero else "greater than 0"
        raise ValidationError(field, value, f"expected a {kind} {bound}", owner=owner)
    return value


def patterns(owner: str, field: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError(field, value, "expected a list of glob patterns", owner=owner)
    for item in value:
        if not isinstance(item, str) or not item or "/" in item:
            raise ValidationError(
                field, value, f"pattern {item!r} must be a non-empty file-name glob", owner=owner
            )
    return tuple(value)


def components(owner: str, field: str, value: Any) -> tuple[str, ...]:
    """Folder names under the log root, or absolute paths (a folder or one log file)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError(field, value, "expected a list of folder names or absolute paths", owner=owner)
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item or "\x00" in item:
            raise ValidationError(
                field, value, f"entry {item!r} must be a non-empty name or path", owner=owner
            )
        if os.path.isabs(item):
            out.append(root_path(owner, field, item))
        elif ".." in item.split("/") or item.startswith(".") or "/" in item.strip("/"):
            raise ValidationError(
                field,
                value,
                f"entry {item!r} must be a folder name under the root or an absolute path",
                owner=owner,
            )
        else:
            out.append(item.strip("/"))
    return tuple(out)


def _dry(op: MaintenanceOperator) -> bool:
    """Whether the operator only plans (``dry_run=True``)."""
    return bool(op.plan_only)


def _owner(cls: type, kwargs: dict[str, Any]) -> str:
    return f"{cls.__name__} {kwargs.get('task_id', '?')!r}"


# ---------------------------------------------------------------------------------- operators


class CacheCleanupOperator(MaintenanceOperator):
    """Delete cache files unused for ``max_age_hours``, then the least recently used ones until
    the tree under ``path`` is at most ``target_size_gb``; prune emptied directories.

    Confined to ``path``: no symlink followed, no other filesystem entered, every file
    re-checked just before its unlink; files modified within ``grace_period_s``, lock/temp
    names (``keep_patterns``) and files any process holds open are kept; hard links count once.

    :param path: absolute root of the cache (templated).
    :param max_age_hours: last use (later of atime and mtime) older than this: deleted.
    :param target_size_gb: size the tree is brought under (GB = 2^30 bytes, as ``du -h``), oldest use first.
    :param grace_period_s: files modified this recently are never touched.
    :param keep_patterns: file-name globs never deleted.
    :param dry_run: plan and report, change nothing.
    """

    maintenance_task = "cache_cleanup"
    template_fields: Sequence[str] = ("path",)

    def __init__(
        self,
        *,
        path: str,
        max_age_hours: float = 24,
        target_size_gb: float = 10,
        grace_period_s: float = 300,
        keep_patterns: Sequence[str] = KEEP_PATTERNS,
        dry_run: bool = False,
        **kwargs: Any,
    ) -> None:
        owner = _owner(type(self), kwargs)
        self.path = root_path(owner, "path", path, final=False)
        self.max_age_hours = positive(owner, "max_age_hours", max_age_hours)
        self.target_size_gb = positive(owner, "target_size_gb", target_size_gb)
        self.grace_period_s = positive(owner, "grace_period_s", grace_period_s, zero=True)
        self.keep_patterns = patterns(owner, "keep_patterns", keep_patterns)
        super().__init__(dry_run=dry_run, **kwargs)

    def run_maintenance(self, context: Any) -> MaintenanceRun:
        from etlops_airflow.core.maintenance.files import (
            CachePolicy,
            open_files,
            plan_cache_cleanup,
            scan_tree,
        )

        started = time.time()
        root = root_path(f"CacheCleanupOperator {self.task_id!r}", "path", self.path)
        scan = scan_tree(root)
        if not scan.ok:
            return _failed(self.maintenance_task, root, started, scan.errors)
        held = open_files([scan.dirs[0].dev])
        policy = CachePolicy(
            max_age_s=self.max_age_hours * 3600.0,
            target_bytes=int(self.target_size_gb * 1024**3),
            grace_period_s=float(self.grace_period_s),
            keep_patterns=self.keep_patterns,
        )
        plan = plan_cache_cleanup(scan, policy, now=started, open_files=held)
        summary = plan.summary()
        summary["open_file_check"] = held.describe()
        self.log.info(
            "cache %s: %d entries, %d bytes; plan: delete %d files (%d bytes), prune %d dirs%s",
            root,
            scan.entries,
            plan.tree_bytes,
            len(plan.deletions),
            plan.planned_bytes,
            len(plan.prune),
            " (dry run)" if _dry(self) else "",
        )
        details: dict[str, object] = {"plan": summary}
        if _dry(self):
            return _run(self.maintenance_task, root, started, scan.entries, details, errors=scan.errors)
        done = plan.execute()
        details["done"] = done.as_dict()
        return _run(
            self.maintenance_task,
            root,
            started,
            scan.entries,
            details,
            changed=done.deleted_files + done.pruned_dirs,
            freed_bytes=done.deleted_bytes,
            freed_files=done.deleted_files,
            errors=[*scan.errors, *done.errors],
        )


class LogRotationOperator(MaintenanceOperator):
    """Compress and delete closed Airflow task-attempt logs; rotate long-running component logs.

    Task-attempt logs (``…/attempt=N.log`` and their trigger companions): gzip the closed ones
    (mtime kept), delete by age, count (newest ``max_files`` per task) and total size — never
    an attempt modified within ``grace_period_s`` or open for writing by any process.
    Component logs (files directly in each ``component_logs`` folder, or the absolute files
    or folders given there): copytruncate + delaycompress keeping ``max_files`` copies
    (``name.1``, ``name.2.gz`` …). Dated component logs (``<component>/YYYY-MM-DD/…``, as the
    DAG processor writes them): deleted by age. See :mod:`etlops_airflow.core.maintenance.rotation`
    for the layout and the copytruncate window.

    :param path: absolute log root; None: Airflow's ``[logging] base_log_folder`` (templated).
    :param max_files: attempt logs kept per task; rotated copies kept per component log.
    :param max_size_mb: total size of the task-attempt logs (MB = 2^20 bytes, as logrotate).
    :param max_age_days: closed attempt logs and dated component logs older than this go.
    :param compress: gzip closed attempt logs and rotated copies from ``.2`` on.
    :param component_logs: component folder names under the root, or absolute paths. Airflow
        3.3's own DAG-processor folder (``[logging] dag_processor_child_process_log_directory``)
        is added when it lies under the root.
    :param grace_period_s: files modified this recently are never touched.
    :param dry_run: plan and report, change nothing.
    """

    maintenance_task = "log_rotation"
    template_fields: Sequence[str] = ("path",)

    def __init__(
        self,
        *,
        path: str | None = None,
        max_files: int = 10,
        max_size_mb: float = 100,
        max_age_days: float = 30,
        compress: bool = True,
        component_logs: Sequence[str] = DEFAULT_COMPONENT_LOGS,
        grace_period_s: float = 300,
        dry_run: bool = False,
        **kwargs: Any,
    ) -> None:
        owner = _owner(type(self), kwargs)
        self.path = root_path(owner, "path", path, allow_none=True, final=False)
        self.max_files = positive(owner, "max_files", max_files, integer=True)
        self.max_size_mb = positive(owner, "max_size_mb", max_size_mb)
        self.max_age_days = positive(owner, "max_age_days", max_age_days)
        if not isinstance(compress, bool):
            raise ValidationError("compress", compress, "expected True or False", owner=owner)
        self.compress = compress
        self.component_logs = components(owner, "component_logs", component_logs)
        self.grace_period_s = positive(owner, "grace_period_s", grace_period_s, zero=True)
        super().__init__(dry_run=dry_run, **kwargs)

    def _airflow_logging(self, key: str) -> str | None:
        try:
            from airflow.sdk.configuration import conf
        except ImportError:  # pragma: no cover - Airflow without the task SDK
            from airflow.configuration import conf
        value = conf.get("logging", key, fallback=None)
        return str(value) if value else None

    def run_maintenance(self, context: Any) -> MaintenanceRun:
        from etlops_airflow.core.maintenance.files import open_files, scan_tree
        from etlops_airflow.core.maintenance.rotation import (
            LogPolicy,
            execute_log_plan,
            plan_log_rotation,
            scan_component,
        )

        started = time.time()
        owner = f"LogRotationOperator {self.task_id!r}"
        raw = self.path if self.path is not None else self._airflow_logging("base_log_folder")
        if raw is None:
            return _failed(
                self.maintenance_task, "(unset)", started, ["[logging] base_log_folder is not set"]
            )
        root = root_path(owner, "path", raw)
        names = [c for c in self.component_logs if not os.path.isabs(c)]
        absolute = [c for c in self.component_logs if os.path.isabs(c)]
        processor = self._airflow_logging("dag_processor_child_process_log_directory")
        if processor:
            rel = os.path.relpath(os.path.normpath(processor), root)
            if not rel.startswith("..") and "/" not in rel and rel != "." and rel not in names:
                names.append(rel)
        scan = scan_tree(root)
        if not scan.ok:
            return _failed(self.maintenance_task, root, started, scan.errors)
        extra = [scan_component(p) for p in absolute]
        devices = {scan.dirs[0].dev} | {s.dirs[0].dev for s in extra if s.dirs}
        held = open_files(devices)
        policy = LogPolicy(
            max_files=int(self.max_files),
            max_size_bytes=int(self.max_size_mb * 1024 * 1024),
            max_age_s=float(self.max_age_days) * 86400.0,
            compress=self.compress,
            grace_period_s=float(self.grace_period_s),
        )
        plan = plan_log_rotation(
            scan, policy, now=started, components=names, component_scans=extra, open_files=held
        )
        summary = plan.summary()
        summary["components"] = names + absolute
        scan_errors = [*scan.errors, *(e for s in extra for e in s.errors)]
        self.log.info(
            "logs %s: %d attempts of %d tasks (%d bytes, %d active); plan: delete %d files, "
            "compress %d, rotate %d component logs%s",
            root,
            plan.attempts,
            plan.tasks,
            plan.attempt_bytes,
            plan.active,
            len(plan.deletions),
            len(plan.compress),
            len(plan.rotations),
            " (dry run)" if _dry(self) else "",
        )
        details: dict[str, object] = {"plan": summary}
        looked_at = scan.entries + sum(s.entries for s in extra)
        if _dry(self):
            return _run(self.maintenance_task, root, started, looked_at, details, errors=scan_errors)
        done = execute_log_plan(plan, recheck_open=lambda: open_files(devices))
        details["done"] = done.as_dict()
        return _run(
            self.maintenance_task,
            root,
            started,
            looked_at,
            details,
            changed=done.changed,
            freed_bytes=done.freed_bytes,
            freed_files=done.freed_files,
            errors=[*scan_errors, *done.errors],
        )


class CheckpointCleanupOperator(MaintenanceOperator):
    """Remove checkpoints (files or folders; one folder per pipeline under ``path``) older
    than ``retention_days``, always keeping the newest ``keep_last`` of each pipeline. Folders
    are removed without following symlinks and without leaving the filesystem.

    :param path: absolute root holding one folder per pipeline (templated).
    :param retention_days: checkpoints whose newest content is older than this may go.
    :param keep_last: newest checkpoints always kept per pipeline.
    :param grace_period_s: checkpoints modified this recently are never touched.
    :param dry_run: plan and report, change nothing.
    """

    maintenance_task = "checkpoint_cleanup"
    template_fields: Sequence[str] = ("path",)

    def __init__(
        self,
        *,
        path: str,
        retention_days: float = 7,
        keep_last: int = 3,
        grace_period_s: float = 300,
        dry_run: bool = False,
        **kwargs: Any,
    ) -> None:
        owner = _owner(type(self), kwargs)
        self.path = root_path(owner, "path", path, final=False)
        self.retention_days = positive(owner, "retention_days", retention_days)
        self.keep_last = positive(owner, "keep_last", keep_last, integer=True, zero=True)
        self.grace_period_s = positive(owner, "grace_period_s", grace_period_s, zero=True)
        super().__init__(dry_run=dry_run, **kwargs)

    def run_maintenance(self, context: Any) -> MaintenanceRun:
        from etlops_airflow.core.maintenance.checkpoints import (
            CheckpointPolicy,
            execute_checkpoint_plan,
            plan_checkpoint_cleanup,
        )
        from etlops_airflow.core.maintenance.files import scan_tree

        started = time.time()
        root = root_path(f"CheckpointCleanupOperator {self.task_id!r}", "path", self.path)
        scan = scan_tree(root)
        if not scan.ok:
            return _failed(self.maintenance_task, root, started, scan.errors)
        policy = CheckpointPolicy(
            retention_s=float(self.retention_days) * 86400.0,
            keep_last=int(self.keep_last),
            grace_period_s=float(self.grace_period_s),
        )
        plan = plan_checkpoint_cleanup(scan, policy, now=started)
        self.log.info(
            "checkpoints %s: %d pipelines; plan: remove %d checkpoints%s",
            root,
            len(plan.pipelines),
            len(plan.remove),
            " (dry run)" if _dry(self) else "",
        )
        details: dict[str, object] = {"plan": plan.summary()}
        if _dry(self):
            return _run(self.maintenance_task, root, started, scan.entries, details, errors=scan.errors)
        done = execute_checkpoint_plan(plan)
        details["done"] = done.as_dict()
        return _run(
            self.maintenance_task,
            root,
            started,
            scan.entries,
            details,
            changed=done.removed,
            freed_bytes=done.deleted_bytes,
            freed_files=done.deleted_files,
            errors=[*scan.errors, *done.errors],
        )


# ---------------------------------------------------------------------------------- helpers


def _run(
    task: str,
    target: str,
    started: float,
    looked_at: int,
    details: dict[str, object],
    *,
    changed: int = 0,
    freed_bytes: int = 0,
    freed_files: int = 0,
    errors: Sequence[str] = (),
) -> MaintenanceRun:
    return MaintenanceRun(
        task=task,
        target=target,
        started_at=started,
        duration_s=max(time.time() - started, 1e-6),
        looked_at=looked_at,
        changed=changed,
        freed_bytes=freed_bytes,
        freed_files=freed_files,
        errors=tuple(errors),
        details=details,
    )


def _failed(task: str, target: str, started: float, errors: Sequence[str]) -> MaintenanceRun:
    return _run(task, target, started, 0, {"plan": None}, errors=errors)
