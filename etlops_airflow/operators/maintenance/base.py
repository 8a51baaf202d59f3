"""What every maintenance operator does around its work: one run per host at a time, a dry
run that plans without changing anything, the run recorded in the store with its figures as
metrics, and a failed task (never "exit 0 on failure") when it could not do its job."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from airflow.sdk import BaseOperator

from etlops_airflow.exceptions import MaintenanceFailed


class MaintenanceOperator(BaseOperator):
    """Base of the maintenance operators. Subclasses set ``maintenance_task`` and implement
    :meth:`run_maintenance`, which returns a :class:`~etlops_airflow.core.maintenance.model.MaintenanceRun`.

    :param dry_run: report the same plan and change nothing.
    :param etlops_conn_id: the store that records the run (default: the ``[etlops]`` store).
    :param lock_dir: where the per-host lock files live (default ``[etlops] maintenance_lock_dir``).
    """

    maintenance_task: ClassVar[str] = ""
    ui_color = "#eef3fb"

    def __init__(
        self,
        *,
        dry_run: bool = False,
        etlops_conn_id: str | None = None,
        lock_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Not ``self.dry_run``: that name is BaseOperator's dry_run() method.
        self.plan_only = bool(dry_run)
        self.etlops_conn_id = etlops_conn_id
        self.lock_dir = lock_dir

    def run_maintenance(self, context: Any) -> Any:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def execute(self, context: Any) -> dict[str, Any]:
        from dataclasses import replace

        from etlops_airflow import config
        from etlops_airflow.core.maintenance.locks import host_lock

        lock_dir = self.lock_dir or config.maintenance_lock_dir()
        with host_lock(lock_dir, f"{self.dag_id}.{self.task_id}") as held:
            if not held:
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException(
                    f"another run of {self.dag_id}.{self.task_id} is running on this host "
                    f"(lock in {lock_dir})"
                )
            started = time.time()
            run = self.run_maintenance(context)
            ti = context.get("ti") if hasattr(context, "get") else None
            run = replace(
                run,
                dry_run=self.plan_only,
                duration_s=time.time() - started if not run.duration_s else run.duration_s,
                dag_id=self.dag_id,
                task_id=self.task_id,
                run_id=getattr(ti, "run_id", None),
            )
            self._record(run)
        summary = {
            "task": run.task,
            "target": run.target,
            "dry_run": run.dry_run,
            "looked_at": run.looked_at,
            "changed": run.changed,
            "freed_bytes": run.freed_bytes,
            "freed_rows": run.freed_rows,
            "freed_files": run.freed_files,
            "errors": list(run.errors),
        }
        self.log.info(
            "%s on %s%s: looked at %d, changed %d, freed %d bytes / %d rows / %d files in %.1f s",
            run.task,
            run.target,
            " (dry run: nothing changed)" if run.dry_run else "",
            run.looked_at,
            run.changed,
            run.freed_bytes,
            run.freed_rows,
            run.freed_files,
            run.duration_s,
        )
        if run.errors:
            shown = "; ".join(run.errors[:5]) + (
                f"; and {len(run.errors) - 5} more" if len(run.errors) > 5 else ""
            )
            raise MaintenanceFailed(f"{run.task} on {run.target} failed: {shown}")
        return summary

    def _record(self, run: Any) -> None:
        """The run and its key figures into the store. A store that cannot be reached fails the
        task after the work is done: the record is part of the job."""
        from etlops_airflow.core.models import MetricPoint
        from etlops_airflow.runtime import store_for

        store = store_for(self.etlops_conn_id)
        store.maintenance.record(run)
        labels = {"task": run.task, "dag_id": self.dag_id, "task_id": self.task_id}
        if run.dry_run:
            labels["dry_run"] = "true"
        store.metrics.write(
            [
                MetricPoint("maintenance_freed_bytes", run.freed_bytes, labels),
                MetricPoint("maintenance_freed_rows", run.freed_rows, labels),
                MetricPoint("maintenance_freed_files", run.freed_files, labels),
                MetricPoint("maintenance_changed", run.changed, labels),
                MetricPoint("maintenance_duration_seconds", run.duration_s, labels),
                MetricPoint("maintenance_errors", len(run.errors), labels),
            ]
        )
