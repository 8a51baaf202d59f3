"""What a maintenance run did, as plain data (the contract between operators, the store and
the operations view)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MAINTENANCE_TASKS = (
    "cache_cleanup",
    "log_rotation",
    "db_optimization",
    "checkpoint_cleanup",
    "metrics_aggregation",
    "health_check",
    "performance_report",
)


@dataclass(frozen=True)
class MaintenanceRun:
    """One run of one maintenance operator.

    ``task`` is one of MAINTENANCE_TASKS; ``target`` what it worked on (a path, a connection
    id and tables, the store); ``looked_at`` how many entries/rows/tables it examined;
    ``changed`` how many it changed (deleted, compressed, rotated, rolled up …);
    ``freed_bytes`` / ``freed_rows`` / ``freed_files`` what it freed (0 in a dry run, whose
    plan is in ``details``); ``errors`` what went wrong (a run with errors failed its task);
    ``details`` a JSON-able summary (the plan, per-table figures, health verdicts …).
    """

    task: str
    target: str
    started_at: float
    duration_s: float
    dry_run: bool = False
    looked_at: int = 0
    changed: int = 0
    freed_bytes: int = 0
    freed_rows: int = 0
    freed_files: int = 0
    errors: Sequence[str] = field(default_factory=tuple)
    details: Mapping[str, object] = field(default_factory=dict)
    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors
