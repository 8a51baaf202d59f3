"""Runs a pipeline's migrations: lease lock, ledger, backup, steps, validations, rollback,
restore, crash recovery, repair and baseline. Plain Python: the Airflow tasks and the CLI call
the same phases.

A run is a plan (one or more migrations, up or down) and goes through phases that any process
can continue, because everything a phase needs is in the ledger row:

``start`` (lock, refusals, plan, ``running`` row committed) -> ``backup`` (every table the
plan touches, and the pipeline's config document) -> per migration ``begin`` (figures for
validations, ``before: true`` validations) -> ``run_step`` for each step -> ``validate`` ->
``complete`` (ledger, applied migrations and version in one transaction; lock released).

On a failure: ``rollback_step`` for each rollback step of each migration that had begun,
newest first (a rollback step with nothing to undo is skipped) -> ``settle``: the touched
tables and the config document are compared with the backup; if anything differs, or a
rollback step failed, the backup is restored and compared again. The run ends
``rolled_back`` (identical to before) or ``failed`` (a restore failed: the step log says what).
A downward run restores the backup on failure without rollback steps.

The lock is a lease in the store (``store.locks``), renewed by a heartbeat while a phase runs.
A run left ``running`` by a killed process is found by the next run once its lease expired, and
everything is refused until :meth:`MigrationEngine.recover` restores the backup (or finishes the
run when every step and validation had succeeded).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import semver

from etlops_airflow.core.migrations import planner
from etlops_airflow.core.migrations.loader import MigrationSet
from etlops_airflow.core.migrations.model import (
    ConfigUpdate,
    CustomScript,
    CustomValidation,
    DataTransformation,
    Migration,
    Plan,
    SchemaChange,
    Step,
    Validation,
)
from etlops_airflow.core.migrations.registry import TransformBatch, resolve_transformer, resolve_validator
from etlops_airflow.exceptions import MigrationFailed, MigrationRefused, ValidationError

if TYPE_CHECKING:
    from etlops_airflow.core.migrations.target import Target
    from etlops_airflow.store import Store
    from etlops_airflow.store.migrations import MigrationRun

MAX_LOGGED_STATEMENTS = 50
OUTPUT_TAIL = 2000


def lock_name(pipeline: str) -> str:
    return f"migration:{pipeline}"


def new_owner(label: str = "") -> str:
    suffix = f":{label}" if label else ""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}{suffix}"[:250]


def describe_step(step: Step) -> str:
    if isinstance(step, ConfigUpdate):
        return f"config {step.path}: {step.old!r} -> {step.new!r}"
    if isinstance(step, SchemaChange):
        return step.describe()
    if isinstance(step, DataTransformation):
        return f"transformer {step.transformer} on {', '.join(step.tables)} (batches of {step.batch_size})"
    return f"script {' '.join(step.argv)}"


def describe_validation(validation: Validation) -> str:
    kind = validation.kind
    target = getattr(validation, "table", None) or getattr(validation, "validator", None) or ""
    return f"{kind} {target}".strip()


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class StepPlanView:
    """A step as a dry run shows it."""

    migration: str
    phase: str
    index: int
    kind: str
    description: str
    sql: list[str]
    warnings: list[str]


class StepFailed(Exception):
    """A step or validation failed (the message says why); the run rolls back."""


class MigrationEngine:
    """The migrations of one pipeline, against the store and its target database.

    ``target_factory(conn_id)`` opens the target a migration names (the Airflow adapter builds
    it from the Connection). ``backup_dir`` holds file backups (SQLite targets).
    """

    def __init__(
        self,
        store: Store,
        migrations: MigrationSet,
        pipeline: str,
        *,
        target_factory: Callable[[str], Target],
        backup_dir: str | os.PathLike[str],
        lock_ttl_s: float = 300.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if not lock_ttl_s > 0:
            raise ValidationError("lock_ttl", lock_ttl_s, "expected a positive number of seconds")
        self.store = store
        self.set = migrations
        self.pipeline = pipeline
        self.migrations = migrations.for_pipeline(pipeline)
        self.target_factory = target_factory
        self.backup_dir = Path(backup_dir)
        self.lock_ttl_s = lock_ttl_s
        self.log = log or (lambda message: None)
        self._targets: dict[str, Target] = {}

    # ---------------------------------------------------------------- status and plans
    def current_version(self) -> semver.Version:
        found = self.store.migrations.version(self.pipeline)
        if found is None:
            return planner.start_version(self.migrations)
        return semver.Version.parse(found.version)

    def plan(self, target_version: str | None = None) -> Plan:
        return planner.plan(self.migrations, self.current_version(), target_version)

    def changed_migrations(self) -> list[str]:
        """Applied migrations whose file changed since (or is gone): refused until repair."""
        files = {m.key: m for m in self.migrations}
        problems = []
        for applied in self.store.migrations.applied(self.pipeline):
            found = files.get(applied.key)
            if found is None:
                problems.append(f"{applied.key} ({applied.source}) was applied but its file is gone")
            elif found.checksum != applied.checksum:
                problems.append(
                    f"{applied.key} ({found.source.name}) changed since it was applied "
                    f"(checksum {applied.checksum[:12]}… now {found.checksum[:12]}…)"
                )
        return problems

    def crashed_run(self, now: float | None = None) -> MigrationRun | None:
        """A run left ``running`` whose lease expired (its process is gone)."""
        now = time.time() if now is None else now
        running = self.store.migrations.runs(self.pipeline, states=["running"], limit=10)
        if not running:
            return None
        lease = self.store.locks.holder(lock_name(self.pipeline))
        if lease is not None and lease.expires_at > now:
            return None  # still held: locked, not crashed
        return running[0]

    def status(self) -> dict[str, Any]:
        current = self.current_version()
        version = self.store.migrations.version(self.pipeline)
        latest = planner.latest_version(self.migrations)
        try:
            pending = [m.key for m in planner.plan(self.migrations, current, latest).migrations]
            plan_error = None
        except (MigrationRefused, ValidationError) as exc:
            pending, plan_error = [], str(exc)
        lease = self.store.locks.holder(lock_name(self.pipeline))
        crashed = self.crashed_run()
        return {
            "pipeline": self.pipeline,
            "current_version": str(current),
            "recorded": version is not None,
            "baseline": bool(version and version.baseline),
            "latest_version": str(latest),
            "pending": pending,
            "plan_error": plan_error,
            "applied": [a.key for a in self.store.migrations.applied(self.pipeline)],
            "changed": self.changed_migrations(),
            "locked_by": None if lease is None or lease.expires_at <= time.time() else lease.owner,
            "crashed_run": None if crashed is None else crashed.id,
        }

    def dry_run(self, target_version: str | None = None) -> tuple[Plan, list[StepPlanView]]:
        """The plan and, for every step, the SQL it would run and warnings (table rewrites,
        long locks). Changes nothing.

        Each step is planned against the target as the earlier steps of the plan leave it: the
        schema changes run, in order, on empty copies of the touched tables (SQLite: an
        in-memory database built from the target's own ``CREATE`` statements; PostgreSQL: a
        scratch schema inside a transaction that is rolled back). Warnings come from the live
        table (row estimates) for a table no earlier step changed. A step that would fail is an
        error naming the file and the step."""
        plan = self.plan(target_version)
        return plan, self._simulate(plan)

    def _simulate(self, plan: Plan, *, before_run: bool = False) -> list[StepPlanView]:
        """Plan every schema change of ``plan`` on empty copies of its tables, in order.
        ``before_run``: a step after a ``custom_script`` that cannot be planned is a warning,
        not a refusal (the script may change the table)."""
        views: list[StepPlanView] = []
        if not plan.migrations:
            return views
        target = self._target(plan.migrations[0].conn_id)
        phase = "step" if plan.direction == "up" else "rollback"
        changed: set[str] = set()
        after_script = False
        with _scratch_copy(target, plan.tables) as (scratch, conn, fix):
            for migration in plan.migrations:
                steps = migration.steps if plan.direction == "up" else migration.rollback
                for index, step in enumerate(steps, 1):
                    sql: list[str] = []
                    warnings: list[str] = []
                    if isinstance(step, CustomScript):
                        after_script = True
                    if isinstance(step, SchemaChange):
                        try:
                            if plan.direction == "down" and not scratch.undo_needed(conn, step):
                                warnings.append("nothing to undo: skipped")
                            else:
                                planned = scratch.plan_change(step, conn)
                                scratch.apply_change(conn, step)
                                sql = [fix(statement) for statement in planned.statements]
                                warnings = list(planned.warnings)
                                if step.table not in changed:
                                    warnings = self._live_warnings(target, step) or warnings
                        except ValidationError as exc:
                            if not (before_run and after_script):
                                raise MigrationRefused(
                                    f"{migration.source.name}: {phase} {index} would fail: {exc}"
                                ) from None
                            warnings.append(
                                f"not checked before the run (an earlier script may change it): {exc}"
                            )
                        changed.add(step.table)
                    views.append(
                        StepPlanView(
                            migration.key, phase, index, step.kind, describe_step(step), sql, warnings
                        )
                    )
        return views

    @staticmethod
    def _live_warnings(target: Target, step: SchemaChange) -> list[str]:
        try:
            return list(target.plan_change(step).warnings)
        except ValidationError:
            return []

    # ---------------------------------------------------------------- the lease
    def _acquire(self, owner: str) -> None:
        name = lock_name(self.pipeline)
        if self.store.locks.acquire(name, owner, self.lock_ttl_s):
            return
        lease = self.store.locks.holder(name)
        holder = "another run" if lease is None else lease.owner
        until = (
            "" if lease is None else f" until {time.strftime('%H:%M:%S', time.gmtime(lease.expires_at))} UTC"
        )
        raise MigrationRefused(f"pipeline {self.pipeline!r} is locked by {holder}{until}")

    @contextmanager
    def _held(self, run: MigrationRun) -> Iterator[None]:
        """Renew ``run``'s lease now and every third of its ttl while the block runs."""
        name = lock_name(self.pipeline)
        if not self.store.locks.renew(name, run.owner, self.lock_ttl_s):
            raise MigrationRefused(
                f"run {run.id} of {self.pipeline!r} no longer holds its lock (its lease expired and "
                f"another process may have taken it)"
            )
        stop = threading.Event()
        lost: list[bool] = []

        def beat() -> None:
            while not stop.wait(self.lock_ttl_s / 3):
                try:
                    if not self.store.locks.renew(name, run.owner, self.lock_ttl_s):
                        lost.append(True)
                        return
                except Exception:  # a store hiccup: try again next beat; expiry is the limit
                    continue

        thread = threading.Thread(target=beat, name=f"etlops-migration-lease-{run.id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
        if lost:
            raise MigrationRefused(f"run {run.id} lost its lock on {self.pipeline!r} while working")

    def release(self, run_id: str) -> bool:
        run = self._run(run_id)
        return self.store.locks.release(lock_name(self.pipeline), run.owner)

    # ---------------------------------------------------------------- phases
    def _target(self, conn_id: str) -> Target:
        if conn_id not in self._targets:
            self._targets[conn_id] = self.target_factory(conn_id)
        return self._targets[conn_id]

    def _run(self, run_id: str) -> MigrationRun:
        run = self.store.migrations.get_run(run_id)
        if run is None or run.pipeline != self.pipeline:
            raise ValidationError("run_id", run_id, f"no migration run of pipeline {self.pipeline!r}")
        return run

    def _plan_of(self, run: MigrationRun) -> list[Migration]:
        by_key = {m.key: m for m in self.migrations}
        missing = [key for key in run.migrations if key not in by_key]
        if missing:
            raise MigrationRefused(f"run {run.id}: migration file(s) {', '.join(missing)} are gone")
        return [by_key[key] for key in run.migrations]

    def _migration(self, run: MigrationRun, key: str) -> Migration:
        for migration in self._plan_of(run):
            if migration.key == key:
                return migration
        raise ValidationError("migration", key, f"not in the plan of run {run.id}")

    def start(
        self,
        target_version: str | None = None,
        *,
        owner: str | None = None,
        dag_id: str | None = None,
        dag_run_id: str | None = None,
    ) -> MigrationRun | None:
        """Lock, check, plan and record the run as ``running``. None when already at the
        target (the lock is released again)."""
        owner = owner or new_owner()
        self._acquire(owner)
        try:
            crashed = self.store.migrations.runs(self.pipeline, states=["running"], limit=1)
            if crashed:
                raise MigrationRefused(
                    f"pipeline {self.pipeline!r}: run {crashed[0].id} (owner {crashed[0].owner}) was left "
                    f"running by a process that is gone; run `airflow etlops migrations recover "
                    f"{self.pipeline}` to restore its backup first"
                )
            changed = self.changed_migrations()
            if changed:
                raise MigrationRefused(
                    f"pipeline {self.pipeline!r}: {'; '.join(changed)}. Applied migrations must not change: "
                    f"restore the file, or accept it with `airflow etlops migrations repair {self.pipeline}`"
                )
            plan = self.plan(target_version)
            if not plan.migrations:
                self.store.locks.release(lock_name(self.pipeline), owner)
                self.log(f"{self.pipeline} is at {plan.current} already")
                return None
            conn_ids = {m.conn_id for m in plan.migrations}
            if len(conn_ids) > 1:
                raise MigrationRefused(
                    f"pipeline {self.pipeline!r}: the migrations of one run must share a target; this plan "
                    f"uses {', '.join(sorted(conn_ids))}"
                )
            self._simulate(plan, before_run=True)  # every schema change is checked before any runs
            self._resolve_callables(plan)
            run_id = uuid.uuid4().hex
            detail = {
                "conn_id": plan.migrations[0].conn_id,
                "tables": list(plan.tables),
                "checksums": {m.key: m.checksum for m in plan.migrations},
            }
            run = self.store.migrations.start_run(
                run_id=run_id,
                pipeline=self.pipeline,
                from_version=str(plan.current),
                to_version=str(plan.target),
                direction=plan.direction,
                owner=owner,
                migrations=[m.key for m in plan.migrations],
                detail=detail,
                dag_id=dag_id,
                dag_run_id=dag_run_id,
            )
        except BaseException:
            self.store.locks.release(lock_name(self.pipeline), owner)
            raise
        self.log(
            f"run {run.id}: {self.pipeline} {plan.current} -> {plan.target} ({plan.direction}), "
            f"{len(plan.migrations)} migration(s)"
        )
        return run

    def _resolve_callables(self, plan: Plan) -> None:
        """Every transformer and validator the plan names resolves, before anything changes."""
        for migration in plan.migrations:
            steps = migration.steps if plan.direction == "up" else migration.rollback
            for index, step in enumerate(steps, 1):
                if isinstance(step, DataTransformation):
                    try:
                        resolve_transformer(step.transformer)
                    except ValidationError as exc:
                        raise MigrationRefused(f"{migration.source.name}: step {index}: {exc}") from None
            if plan.direction == "up":
                for index, validation in enumerate(migration.validations, 1):
                    if isinstance(validation, CustomValidation):
                        try:
                            resolve_validator(validation.validator)
                        except ValidationError as exc:
                            raise MigrationRefused(
                                f"{migration.source.name}: validation {index}: {exc}"
                            ) from None

    def backup(self, run_id: str) -> dict[str, Any]:
        """Back up every table the plan touches and the config document, and record both in
        the ledger."""
        run = self._run(run_id)
        with self._held(run):
            target = self._target(run.detail["conn_id"])
            tables = list(run.detail["tables"])
            seq = self.store.migrations.log_step(
                run.id,
                migration="",
                phase="backup",
                index=0,
                kind="backup",
                description=", ".join(tables) or "config",
            )
            info: dict[str, Any] = {}
            try:
                # Schema and row counts only: after a failure the tables are compared with the
                # backup itself, in SQL (Target.differences), not through per-row checksums.
                info = (
                    target.backup(tables, label=run.id, backup_dir=self.backup_dir, checksums=False)
                    if tables
                    else {}
                )
                config = self.store.migrations.config(self.pipeline)
            except Exception as exc:
                if info:  # taken but never recorded: nothing else would ever remove it
                    try:
                        target.discard_backup(info)
                    except Exception as discard_exc:
                        self.log(f"run {run.id}: could not remove its backup: {_error_text(discard_exc)}")
                self.store.migrations.finish_step(run.id, seq, "error", error=_error_text(exc))
                raise StepFailed(f"backup failed: {_error_text(exc)}") from exc
            detail = self.store.migrations.update_detail(
                run.id,
                backup=_jsonable(info),
                config_before=config,
                backed_up=True,
            )
            self.store.migrations.finish_step(
                run.id, seq, "success", detail={"tables": tables, "rows": _rows(info.get("fingerprints", {}))}
            )
        return detail

    def begin(self, run_id: str, key: str) -> None:
        """Before a migration's steps: figures its validations compare with, and its
        ``before: true`` validations."""
        from etlops_airflow.core.migrations import checks

        run = self._run(run_id)
        if run.direction != "up":
            return
        migration = self._migration(run, key)
        with self._held(run):
            target = self._target(migration.conn_id)
            figures: dict[str, Any] = {}
            for index, validation in enumerate(migration.validations, 1):
                captured = checks.capture(target, validation)
                if captured is not None:
                    figures[str(index)] = captured
                if validation.before:
                    self._check(run, migration, index, validation, target, None, when="before")
            before = dict(run.detail.get("before", {}))
            before[key] = _jsonable(figures)
            self.store.migrations.update_detail(run.id, before=before)

    def run_step(self, run_id: str, key: str, index: int) -> None:
        """Forward step ``index`` (from 1) of migration ``key`` (rollback step on a down run)."""
        run = self._run(run_id)
        migration = self._migration(run, key)
        steps = migration.steps if run.direction == "up" else migration.rollback
        if not 1 <= index <= len(steps):
            raise ValidationError("index", index, f"{key} has {len(steps)} step(s)")
        with self._held(run):
            self._execute(run, migration, "step", index, steps[index - 1], undo=run.direction == "down")

    def validate(self, run_id: str, key: str) -> None:
        run = self._run(run_id)
        if run.direction != "up":
            return
        migration = self._migration(run, key)
        target = self._target(migration.conn_id)
        figures = self._run(run_id).detail.get("before", {}).get(key, {})
        with self._held(run):
            failures = []
            for index, validation in enumerate(migration.validations, 1):
                try:
                    self._check(
                        run, migration, index, validation, target, figures.get(str(index)), when="after"
                    )
                except StepFailed as exc:
                    failures.append(str(exc))
            if failures:
                raise StepFailed("; ".join(failures))

    def _check(
        self,
        run: MigrationRun,
        migration: Migration,
        index: int,
        validation: Validation,
        target: Target,
        before: Any,
        *,
        when: str,
    ) -> None:
        from etlops_airflow.core.migrations import checks

        seq = self.store.migrations.log_step(
            run.id,
            migration=migration.key,
            phase="validation",
            index=index,
            kind=validation.kind,
            description=f"{describe_validation(validation)} ({when} the steps)",
        )
        try:
            result = checks.check(target, validation, before if when == "after" else None)
        except Exception as exc:
            self.store.migrations.finish_step(run.id, seq, "error", error=_error_text(exc))
            raise StepFailed(
                f"{migration.key} validation {index} ({validation.kind}): {_error_text(exc)}"
            ) from exc
        self.store.migrations.finish_step(
            run.id,
            seq,
            "success" if result.ok else "error",
            error=None if result.ok else result.message,
            detail={"message": result.message, "figures": _jsonable(result.figures)},
        )
        if not result.ok:
            raise StepFailed(
                f"{migration.key} validation {index} ({validation.kind}) {when}: {result.message}"
            )
        self.log(f"{migration.key} validation {index} ({validation.kind}) {when}: {result.message}")

    def complete(self, run_id: str) -> MigrationRun:
        """Record success: ledger, applied migrations, version; drop the backup; release."""
        from etlops_airflow.store.migrations import AppliedMigration

        run = self._run(run_id)
        now = time.time()
        plan = self._plan_of(run)
        applied = []
        unapplied = []
        for migration in plan:
            if run.direction == "up":
                applied.append(
                    AppliedMigration(
                        self.pipeline,
                        str(migration.from_version),
                        str(migration.to_version),
                        migration.checksum,
                        _source(migration, self.set.root),
                        now,
                        run.id,
                        None,
                    )
                )
            else:
                unapplied.append((self.pipeline, str(migration.from_version), str(migration.to_version)))
        self.store.migrations.end_run(
            run.id,
            "success",
            version=(self.pipeline, run.to_version),
            applied=applied,
            unapplied=unapplied,
            now=now,
        )
        self._discard_backup(run)
        self.store.locks.release(lock_name(self.pipeline), run.owner)
        self.log(f"run {run.id}: {self.pipeline} is at {run.to_version}")
        return self._run(run_id)

    # ---------------------------------------------------------------- failure
    def mark_failed(self, run_id: str, error: str) -> None:
        """Note the first failure of a run (the rollback phases read it)."""
        run = self._run(run_id)
        if not run.detail.get("failure"):
            self.store.migrations.update_detail(run_id, failure=error[:4000])

    def begun_migrations(self, run: MigrationRun) -> list[Migration]:
        """Migrations of the plan with at least one forward step logged, in plan order."""
        logged = {(e.migration, e.phase) for e in self.store.migrations.steps(run.id)}
        return [m for m in self._plan_of(run) if (m.key, "step") in logged]

    def rollback_step(self, run_id: str, key: str, index: int) -> str:
        """Rollback step ``index`` (from 1) of migration ``key`` after a failure. Returns what
        happened: ``success``, ``skipped`` (not begun, nothing to undo, or an earlier rollback
        step failed so the backup will be restored) or ``error``."""
        run = self._run(run_id)
        migration = self._migration(run, key)
        if run.direction != "up" or migration not in self.begun_migrations(run):
            return "skipped"
        if run.detail.get("rollback_failed"):
            return "skipped"
        with self._held(run):
            try:
                return self._execute(
                    run, migration, "rollback", index, migration.rollback[index - 1], undo=True
                )
            except StepFailed as exc:
                self.store.migrations.update_detail(run.id, rollback_failed=str(exc)[:4000])
                return "error"

    def settle(self, run_id: str) -> MigrationRun:
        """After the rollback steps: compare with the backup, restore when anything differs (or
        a rollback step failed), end the run and release the lock."""
        run = self._run(run_id)
        with self._held(run):
            state, error = self._settle(run)
        if state == "rolled_back":
            for migration in self.begun_migrations(run):
                for index in range(1, len(migration.steps) + 1):
                    self.store.migrations.mark_rolled_back(run.id, migration.key, index)
        failure = run.detail.get("failure") or "a step failed"
        message = failure if error is None else f"{failure}; then: {error}"
        if run.detail.get("rollback_failed") and state == "rolled_back":
            # the ledger says so too, not only the step log: the rollback steps did not finish
            message += f"; then: {run.detail['rollback_failed']}; the backup was restored"
        self.store.migrations.end_run(run.id, state, error=message)
        if state == "rolled_back":
            self._discard_backup(self._run(run_id))
        self.store.locks.release(lock_name(self.pipeline), run.owner)
        return self._run(run_id)

    def _settle(self, run: MigrationRun) -> tuple[str, str | None]:
        if not run.detail.get("backed_up"):
            return "rolled_back", None  # failed before the backup finished: nothing had changed
        target = self._target(run.detail["conn_id"])
        tables = list(run.detail["tables"])
        reasons = self._differences(run, target, tables)
        if run.detail.get("rollback_failed"):
            reasons.insert(0, f"rollback step failed: {run.detail['rollback_failed']}")
        if not reasons:
            self.log(f"run {run.id}: rollback steps left the target identical to the backup")
            return "rolled_back", None
        seq = self.store.migrations.log_step(
            run.id,
            migration="",
            phase="restore",
            index=0,
            kind="restore",
            description="; ".join(reasons)[:2000],
        )
        try:
            done = target.restore(run.detail["backup"]) if tables else []
            self.store.migrations.set_config(self.pipeline, run.detail.get("config_before"))
        except Exception as exc:
            self.store.migrations.finish_step(run.id, seq, "error", error=_error_text(exc))
            return "failed", f"restoring the backup failed: {_error_text(exc)}"
        left = self._differences(run, target, tables)
        if left:
            self.store.migrations.finish_step(run.id, seq, "error", sql=done, error="; ".join(left))
            return "failed", f"after the restore the target still differs: {'; '.join(left)}"
        self.store.migrations.finish_step(run.id, seq, "success", sql=done, detail={"reasons": reasons})
        return "rolled_back", None

    def _differences(self, run: MigrationRun, target: Target, tables: list[str]) -> list[str]:
        reasons = list(target.differences(run.detail["backup"])) if tables else []
        if self.store.migrations.config(self.pipeline) != run.detail.get("config_before"):
            reasons.append("the config document differs from the backup")
        return reasons

    def _discard_backup(self, run: MigrationRun) -> None:
        info = run.detail.get("backup")
        if info:
            try:
                self._target(run.detail["conn_id"]).discard_backup(info)
            except Exception as exc:  # the run's outcome stands; say what was left behind
                self.log(f"run {run.id}: could not remove its backup: {_error_text(exc)}")

    # ---------------------------------------------------------------- one step
    def _execute(
        self, run: MigrationRun, migration: Migration, phase: str, index: int, step: Step, *, undo: bool
    ) -> str:
        seq = self.store.migrations.log_step(
            run.id,
            migration=migration.key,
            phase=phase,
            index=index,
            kind=step.kind,
            description=describe_step(step),
        )
        target = self._target(migration.conn_id)
        statements: list[str] = []
        started = time.monotonic()
        try:
            outcome, detail = self._do(run, migration, step, target, statements, undo=undo)
        except Exception as exc:
            error = _error_text(exc)
            self.store.migrations.finish_step(run.id, seq, "error", sql=_capped(statements), error=error)
            raise StepFailed(f"{migration.key} {phase} {index} ({step.kind}): {error}") from exc
        detail["seconds"] = round(time.monotonic() - started, 6)
        self.store.migrations.finish_step(run.id, seq, outcome, sql=_capped(statements), detail=detail)
        self.log(f"{migration.key} {phase} {index} ({describe_step(step)}): {outcome}")
        return outcome

    def _do(
        self,
        run: MigrationRun,
        migration: Migration,
        step: Step,
        target: Target,
        statements: list[str],
        *,
        undo: bool,
    ) -> tuple[str, dict[str, Any]]:
        if isinstance(step, ConfigUpdate):
            if undo and self.store.migrations.config_value(self.pipeline, step.path) == step.new:
                return "skipped", {"reason": f"{step.path} is {step.new!r} already"}
            changed, found = self.store.migrations.compare_and_set(
                self.pipeline, step.path, step.old, step.new
            )
            if not changed:
                raise StepFailed(
                    f"config {step.path} is {found!r}, expected {step.old!r}: refused (compare-and-set)"
                )
            return "success", {"path": step.path}
        if isinstance(step, SchemaChange):
            with target.transaction() as conn, _recording(conn, statements):
                if undo and not target.undo_needed(conn, step):
                    return "skipped", {"reason": "nothing to undo"}
                ran = target.apply_change(conn, step)
            if ran:
                statements[:] = list(ran)
            return "success", {}
        if isinstance(step, DataTransformation):
            transformer = resolve_transformer(step.transformer)
            total = 0
            batches = 0
            with target.transaction() as conn, _recording(conn, statements):
                while True:
                    rows = transformer(
                        TransformBatch(conn, step.params, step.batch_size, batches, target.dialect)
                    )
                    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
                        raise StepFailed(
                            f"transformer {step.transformer} returned {rows!r}; expected the number "
                            "of rows it changed in the batch"
                        )
                    total += rows
                    batches += 1
                    if rows < step.batch_size:
                        break
            return "success", {"rows": total, "batches": batches}
        return self._script(run, migration, step)

    def _script(
        self, run: MigrationRun, migration: Migration, step: CustomScript
    ) -> tuple[str, dict[str, Any]]:
        argv = [str(step.script), *step.argv[1:]]
        env = {
            **os.environ,
            "ETLOPS_PIPELINE": self.pipeline,
            "ETLOPS_MIGRATION_FROM": str(migration.from_version),
            "ETLOPS_MIGRATION_TO": str(migration.to_version),
            "ETLOPS_MIGRATION_RUN_ID": run.id,
            "ETLOPS_TARGET_CONN_ID": migration.conn_id,
        }
        try:
            # its own process group: on a timeout the programs it started die with it, so
            # nothing it began goes on after the run has been rolled back
            proc = subprocess.Popen(
                argv,
                cwd=self.set.root,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise StepFailed(f"{step.argv[0]} could not start: {exc}") from exc
        try:
            stdout, stderr = proc.communicate(timeout=step.timeout_s)
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            raise StepFailed(
                f"{step.argv[0]} did not finish within {step.timeout_s:g}s and was killed"
            ) from exc
        except BaseException:
            _kill_group(proc)
            raise
        out = stdout.decode("utf-8", "replace")[-OUTPUT_TAIL:]
        err = stderr.decode("utf-8", "replace")[-OUTPUT_TAIL:]
        if proc.returncode != 0:
            raise StepFailed(f"{step.argv[0]} exited with {proc.returncode}: {err.strip() or out.strip()}")
        return "success", {"exit_code": 0, "stdout": out, "stderr": err}

    # ---------------------------------------------------------------- whole runs
    def apply(
        self,
        target_version: str | None = None,
        *,
        dag_id: str | None = None,
        dag_run_id: str | None = None,
        owner: str | None = None,
    ) -> MigrationRun | None:
        """Run the whole plan to ``target_version`` (None: latest) in this process. Raises
        :class:`MigrationFailed` after rolling back when a step or validation fails."""
        run = self.start(target_version, dag_id=dag_id, dag_run_id=dag_run_id, owner=owner)
        if run is None:
            return None
        try:
            self.backup(run.id)
            for migration in self._plan_of(run):
                self.begin(run.id, migration.key)
                steps = migration.steps if run.direction == "up" else migration.rollback
                for index in range(1, len(steps) + 1):
                    self.run_step(run.id, migration.key, index)
                self.validate(run.id, migration.key)
            return self.complete(run.id)
        except (StepFailed, MigrationRefused, ValidationError, OSError) as exc:
            return self.fail(run.id, str(exc))
        except BaseException as exc:  # anything else (a bug, KeyboardInterrupt): still undo
            self.fail(run.id, _error_text(exc), reraise=False)
            raise

    def fail(self, run_id: str, error: str, *, reraise: bool = True) -> MigrationRun:
        """Undo a failed run: rollback steps newest first, then settle. Raises MigrationFailed."""
        self.mark_failed(run_id, error)
        run = self._run(run_id)
        self.log(f"run {run.id} failed: {error}; rolling back")
        if run.direction == "up":
            for migration in reversed(self.begun_migrations(run)):
                for index in range(1, len(migration.rollback) + 1):
                    self.rollback_step(run.id, migration.key, index)
        ended = self.settle(run.id)
        if reraise:
            outcome = (
                "rolled back: the target is as before" if ended.state == "rolled_back" else "NOT fully undone"
            )
            raise MigrationFailed(
                f"migration run {ended.id} of {self.pipeline!r} failed and was {outcome}: {ended.error}",
                run_id=ended.id,
                state=ended.state,
            )
        return ended

    def recover(self, *, owner: str | None = None) -> MigrationRun | None:
        """Finish a crashed run: restore its backup (or record it when every step and
        validation had succeeded). None when there is nothing to recover."""
        crashed = self.crashed_run()
        if crashed is None:
            running = self.store.migrations.runs(self.pipeline, states=["running"], limit=1)
            if running:
                lease = self.store.locks.holder(lock_name(self.pipeline))
                holder = "another run" if lease is None else lease.owner
                raise MigrationRefused(
                    f"run {running[0].id} of {self.pipeline!r} still holds its lock ({holder}); wait "
                    "until its lease expires before recovering"
                )
            return None
        owner = owner or new_owner("recover")
        self._acquire(owner)
        self.store.migrations.set_owner(crashed.id, owner)
        run = self._run(crashed.id)
        seq = self.store.migrations.log_step(
            run.id,
            migration="",
            phase="recover",
            index=0,
            kind="recover",
            description=f"crashed owner {crashed.owner}",
        )
        if self._finished_forward(run):
            self.store.migrations.finish_step(run.id, seq, "success", detail={"action": "record"})
            self.complete(run.id)
            return self._run(run.id)
        self.mark_failed(run.id, f"the process running it ({crashed.owner}) was gone")
        self.store.migrations.finish_step(run.id, seq, "success", detail={"action": "restore"})
        run = self._run(run.id)  # with the failure just noted
        with self._held(run):
            state, error = self._settle(run)
        message = f"recovered after a crash of {crashed.owner}" + ("" if error is None else f"; {error}")
        self.store.migrations.end_run(
            run.id, "recovered" if state == "rolled_back" else "failed", error=message
        )
        if state == "rolled_back":
            self._discard_backup(self._run(run.id))
        self.store.locks.release(lock_name(self.pipeline), owner)
        return self._run(run.id)

    def _finished_forward(self, run: MigrationRun) -> bool:
        entries = self.store.migrations.steps(run.id)
        done = {(e.migration, e.phase, e.index) for e in entries if e.state in ("success", "skipped")}
        failed = any(e.state == "error" for e in entries)
        if failed or run.detail.get("failure"):
            return False
        for migration in self._plan_of(run):
            steps = migration.steps if run.direction == "up" else migration.rollback
            if any((migration.key, "step", i) not in done for i in range(1, len(steps) + 1)):
                return False
            if run.direction == "up" and any(
                (migration.key, "validation", i) not in done for i in range(1, len(migration.validations) + 1)
            ):
                return False
        return True

    def repair(self) -> list[str]:
        """Accept the current files of applied migrations (their checksums). Returns what changed."""
        files = {m.key: m for m in self.migrations}
        wanted = {}
        for applied in self.store.migrations.applied(self.pipeline):
            found = files.get(applied.key)
            if found is not None and (
                found.checksum != applied.checksum or applied.source != _source(found, self.set.root)
            ):
                wanted[(applied.from_version, applied.to_version)] = (
                    found.checksum,
                    _source(found, self.set.root),
                )
        self.store.migrations.repair(self.pipeline, wanted)
        return [f"{a}->{b}" for a, b in wanted]

    def baseline(self, version: str) -> None:
        parsed = planner.parse_version(version, "version")
        self.store.migrations.baseline(self.pipeline, str(parsed))


def _source(migration: Migration, root: Path) -> str:
    try:
        return str(migration.source.relative_to(root))
    except ValueError:
        return str(migration.source)


def _rows(fingerprints: Mapping[str, Any]) -> dict[str, Any]:
    return {table: fp.get("rows") for table, fp in fingerprints.items() if isinstance(fp, Mapping)}


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc`` and every process of its group (it leads a session of its own)."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # a descendant left the group and holds the pipes
        proc.kill()
        proc.wait()


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:2000] if len(text) > 2000 else text


def _raw(conn: Any, sql: str) -> Any:
    """A statement sent as is: no parameter markers are read in it (a name may hold ``%s``)."""
    return conn.execution_options(no_parameters=True).exec_driver_sql(sql)


@contextmanager
def _scratch_copy(
    target: Target, tables: Sequence[str]
) -> Iterator[tuple[Target, Any, Callable[[str], str]]]:
    """Empty copies of the target's tables to plan schema changes on: (a Target, the
    connection to plan on, a function mapping the copy's SQL to the real target's)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import StaticPool

    from etlops_airflow.core.migrations.target import Target as TargetClass

    if target.dialect == "sqlite":
        with target.read_only() as live:
            objects = _raw(
                live,
                "SELECT type, name, sql FROM sqlite_master "
                "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'",
            ).fetchall()
        engine = create_engine("sqlite://", poolclass=StaticPool)
        try:
            with engine.connect() as conn:
                order = {"table": 0, "index": 1, "view": 2, "trigger": 3}
                for kind, _name, sql in sorted(objects, key=lambda row: order.get(row[0], 4)):
                    try:
                        _raw(conn, sql)
                    except Exception:
                        if kind == "table":
                            raise
                        # a view or trigger the copy cannot hold does not change a plan
                conn.commit()
                scratch = TargetClass(engine, name=target.name)
                with scratch.transaction() as planning:
                    yield scratch, planning, lambda statement: statement
        finally:
            engine.dispose()
        return
    with target.engine.connect() as conn:
        trans = conn.begin()
        try:
            conn.execute(
                text("SELECT set_config('lock_timeout', :v, true)"),
                {"v": f"{int(target.lock_timeout_s * 1000)}ms"},
            )
            current = conn.execute(text("SELECT current_schema()")).scalar_one()
            scratch_schema = f"etlops_dryrun_{uuid.uuid4().hex[:12]}"
            quoted_scratch = target.quote(scratch_schema)
            _raw(conn, f"CREATE SCHEMA {quoted_scratch}")
            for table in tables:
                real, copy = conn.execute(
                    text(
                        "SELECT format('%I.%I', CAST(:s AS text), CAST(:t AS text)), "
                        "format('%I.%I', CAST(:c AS text), CAST(:t AS text))"
                    ),
                    {"s": current, "c": scratch_schema, "t": table},
                ).one()
                if conn.execute(text("SELECT to_regclass(:q)"), {"q": real}).scalar() is None:
                    continue  # the step that names it says so
                _raw(
                    conn,
                    f"CREATE TABLE {copy} (LIKE {real} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                    "INCLUDING GENERATED INCLUDING IDENTITY)",
                )
                for name, definition in conn.execute(
                    text(
                        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                        "WHERE conrelid = CAST(:q AS regclass) AND contype IN ('p', 'u', 'f') "
                        "ORDER BY contype DESC, conname"
                    ),
                    {"q": real},
                ):
                    _raw(conn, f"ALTER TABLE {copy} ADD CONSTRAINT {target.quote(name)} {definition}")
                for (definition,) in conn.execute(
                    text(
                        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
                        "WHERE i.indrelid = CAST(:q AS regclass) "
                        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
                    ),
                    {"q": real},
                ):
                    _raw(conn, str(definition).replace(f" ON {real} ", f" ON {copy} ", 1))
            conn.execute(text("SELECT set_config('search_path', :p, true)"), {"p": quoted_scratch})
            quoted_current = target.quote(current)
            yield target, conn, lambda statement: statement.replace(quoted_scratch, quoted_current)
        finally:
            trans.rollback()


def _capped(statements: Sequence[str]) -> list[str]:
    if len(statements) <= MAX_LOGGED_STATEMENTS:
        return list(statements)
    return [*statements[:MAX_LOGGED_STATEMENTS], f"-- … {len(statements) - MAX_LOGGED_STATEMENTS} more"]


@contextmanager
def _recording(conn: Any, statements: list[str]) -> Iterator[None]:
    """Collect every statement run on ``conn`` while the block runs."""
    from sqlalchemy import event

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(conn, "before_cursor_execute", record)
    try:
        yield
    finally:
        event.remove(conn, "before_cursor_execute", record)
