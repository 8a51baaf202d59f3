"""Migrations as Airflow tasks: ``MigrateOperator`` runs a whole path in one task;
``build_migration_dag`` lays a run out as one task per phase and step, with rollback tasks that
fire when a step fails.

The migrations folder is read and checked when the DAG file is parsed: a wrong file is an
import error naming the file, the step and the field. Everything else (engine, store,
target) loads when a task runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator, Param, TaskGroup, TriggerRule, chain

from etlops_airflow.core.migrations.loader import MigrationSet, load_migrations
from etlops_airflow.core.migrations.model import Migration
from etlops_airflow.core.migrations.planner import latest_version, parse_version
from etlops_airflow.exceptions import ValidationError

SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def _load(owner: str, migrations_dir: str | os.PathLike[str], pipeline: str) -> MigrationSet:
    if not isinstance(pipeline, str) or not pipeline:
        raise ValidationError("pipeline", pipeline, "expected the name of a pipeline", owner=owner)
    try:
        return load_migrations(migrations_dir, pipeline)
    except ValidationError as exc:
        if exc.owner:
            raise
        raise ValidationError(exc.field, exc.value, exc.reason, owner=owner) from None


class MigrateOperator(BaseOperator):
    """Run ``pipeline``'s migrations to ``target_version`` (default: the latest) in one task:
    lock, backup, steps, validations, record; on a failure the rollback steps and, when needed,
    the backup restore run inside the task, which then fails.

    :param migrations_dir: the migrations folder (checked when the DAG is parsed).
    :param pipeline: which pipeline's migrations to run.
    :param target_version: semver version to reach (templated); None for the latest.
    :param dry_run: log the plan and the SQL each step would run, change nothing.
    """

    template_fields: Sequence[str] = ("target_version",)
    ui_color = "#f3eefb"

    def __init__(
        self,
        *,
        migrations_dir: str | os.PathLike[str],
        pipeline: str,
        target_version: str | None = None,
        dry_run: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        owner = f"MigrateOperator {self.task_id!r}"
        self.migrations_dir = str(Path(migrations_dir).resolve())
        self.pipeline = pipeline
        found = _load(owner, self.migrations_dir, pipeline)
        if target_version is not None and "{{" not in str(target_version):
            version = parse_version(target_version)
            known = {str(m.to_version) for m in found.migrations} | {
                str(m.from_version) for m in found.migrations
            }
            if str(version) not in known:
                raise ValidationError(
                    "target_version",
                    target_version,
                    f"is not a version of pipeline {pipeline!r}",
                    owner=owner,
                )
        self.target_version = target_version
        self.plan_only = bool(dry_run)

    def execute(self, context: Any) -> dict[str, Any]:
        from etlops_airflow.migrations import engine_for

        engine = engine_for(self.migrations_dir, self.pipeline, log=self.log.info)
        target = self.target_version or None
        if self.plan_only:
            plan, views = engine.dry_run(target)
            for view in views:
                self.log.info("%s %s %d %s", view.migration, view.phase, view.index, view.description)
                for statement in view.sql:
                    self.log.info("    %s", statement)
                for warning in view.warnings:
                    self.log.warning("    %s", warning)
            return {
                "pipeline": self.pipeline,
                "from_version": str(plan.current),
                "to_version": str(plan.target),
                "direction": plan.direction,
                "migrations": [m.key for m in plan.migrations],
                "dry_run": True,
            }
        dag_run = context.get("dag_run")
        run = engine.apply(
            target,
            dag_id=self.dag_id,
            dag_run_id=getattr(dag_run, "run_id", None),
        )
        if run is None:
            return {
                "pipeline": self.pipeline,
                "state": "up_to_date",
                "version": str(engine.current_version()),
            }
        return {
            "pipeline": self.pipeline,
            "run_id": run.id,
            "state": run.state,
            "from_version": run.from_version,
            "to_version": run.to_version,
            "migrations": run.migrations,
        }


class MigrationPhaseOperator(BaseOperator):
    """One task of a migration DAG (see :func:`build_migration_dag`); ``phase`` says which."""

    ui_color = "#f3eefb"

    def __init__(
        self,
        *,
        migrations_dir: str,
        pipeline: str,
        phase: str,
        migration: str | None = None,
        index: int = 0,
        lock_task_id: str = "lock",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.migrations_dir = migrations_dir
        self.pipeline = pipeline
        self.phase = phase
        self.migration = migration
        self.index = index
        self.lock_task_id = lock_task_id

    def execute(self, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowSkipException

        from etlops_airflow.core.migrations.runner import StepFailed
        from etlops_airflow.exceptions import MigrationFailed
        from etlops_airflow.migrations import engine_for

        engine = engine_for(self.migrations_dir, self.pipeline, log=self.log.info)
        if self.phase == "lock":
            target = context["params"].get("target_version") or None
            dag_run = context.get("dag_run")
            run = engine.start(target, dag_id=self.dag_id, dag_run_id=getattr(dag_run, "run_id", None))
            if run is None:
                raise AirflowSkipException(f"{self.pipeline} is at {engine.current_version()} already")
            return run.id
        run_id = context["ti"].xcom_pull(task_ids=self.lock_task_id)
        if not run_id:
            raise AirflowSkipException("no migration run (the lock task did not start one)")
        if self.phase == "release":
            if engine.release(run_id):
                self.log.info("released the lock of run %s", run_id)
            return None
        run = engine.store.migrations.get_run(run_id)
        assert run is not None
        in_plan = self.migration is None or self.migration in run.migrations
        try:
            if self.phase == "backup":
                engine.backup(run_id)
            elif self.phase in ("begin", "step", "validate", "downgrade"):
                return self._forward(engine, run, in_plan, AirflowSkipException)
            elif self.phase == "record":
                ended = engine.complete(run_id)
                return {"run_id": ended.id, "state": ended.state, "version": ended.to_version}
            elif self.phase == "rollback":
                return self._rollback(engine, run, context)
            elif self.phase == "settle":
                ended = engine.settle(run_id)
                if ended.state != "rolled_back":
                    raise MigrationFailed(
                        f"run {run_id}: the target could not be restored: {ended.error}",
                        run_id=run_id,
                        state=ended.state,
                    )
                self.log.info("run %s rolled back: the target is as before the run (%s)", run_id, ended.error)
                return {"run_id": ended.id, "state": ended.state}
        except StepFailed as exc:
            engine.mark_failed(run_id, str(exc))
            raise
        return None

    def _forward(self, engine: Any, run: Any, in_plan: bool, skip: type[Exception]) -> None:
        if self.phase == "downgrade":
            if run.direction != "down":
                raise skip("the run goes up")
            for key in run.migrations:
                migration = engine.set.find(self.pipeline, *key.split("->"))
                for index in range(1, len(migration.rollback) + 1):
                    engine.run_step(run.id, key, index)
            return
        if run.direction != "up" or not in_plan:
            raise skip(f"{self.migration} is not in this run's plan ({', '.join(run.migrations)})")
        if self.phase == "begin":
            engine.begin(run.id, self.migration)
        elif self.phase == "step":
            engine.run_step(run.id, self.migration, self.index)
        else:
            engine.validate(run.id, self.migration)

    def _rollback(self, engine: Any, run: Any, context: Any) -> str:
        if not run.detail.get("failure"):  # the failed task died before it could say why
            engine.mark_failed(run.id, "a task of the run failed or was killed (see its log)")
        outcome: str = engine.rollback_step(run.id, self.migration, self.index)
        if outcome == "error":
            raise RuntimeError(
                f"rollback step {self.index} of {self.migration} failed; the backup will be restored"
            )
        self.log.info("rollback step %d of %s: %s", self.index, self.migration, outcome)
        return outcome


def _group_id(migration: Migration) -> str:
    return (
        "to_"
        + re.sub(r"[^A-Za-z0-9_]", "_", str(migration.to_version))
        + ("_from_" + re.sub(r"[^A-Za-z0-9_]", "_", str(migration.from_version)))
    )


def build_migration_dag(
    dag_id: str,
    migrations_dir: str | os.PathLike[str],
    pipeline: str,
    **dag_kwargs: Any,
) -> DAG:
    """A DAG that runs ``pipeline``'s migrations to the ``target_version`` Param (default: the
    latest version):

    ``lock`` (setup) -> ``backup`` -> per migration ``begin`` -> one task per step ->
    ``validate`` -> ``record``; the migrations not in the run's plan skip themselves.
    ``rollback.*`` tasks, one per rollback step, newest migration first, run only when a step
    failed, then ``rollback.settle`` compares with the backup and restores it if needed.
    ``release`` (teardown) frees the lock whatever happened. A target below the current
    version runs the rollback steps of the path in the ``downgrade`` task.

    Extra keyword arguments go to ``DAG`` (``schedule`` defaults to None: trigger it).
    """
    owner = f"build_migration_dag {dag_id!r}"
    folder = str(Path(migrations_dir).resolve())
    found = _load(owner, folder, pipeline)
    migrations = sorted(found.for_pipeline(pipeline), key=lambda m: (m.from_version, m.to_version))
    latest = str(latest_version(migrations))
    params = dict(dag_kwargs.pop("params", {}) or {})
    params.setdefault(
        "target_version",
        Param(latest, type="string", pattern=SEMVER_PATTERN, description="semver version to migrate to"),
    )
    dag_kwargs.setdefault("schedule", None)
    dag_kwargs.setdefault("catchup", False)
    dag_kwargs.setdefault("max_active_runs", 1)
    dag_kwargs.setdefault("tags", ["etlops", "migrations"])
    dag_kwargs.setdefault("doc_md", f"Migrations of pipeline `{pipeline}` from `{folder}`.")
    common: dict[str, Any] = {"migrations_dir": folder, "pipeline": pipeline, "retries": 0}

    with DAG(dag_id, params=params, **dag_kwargs) as dag:
        lock = MigrationPhaseOperator(task_id="lock", phase="lock", **common)
        backup = MigrationPhaseOperator(task_id="backup", phase="backup", **common)
        chain(lock, backup)
        forward: list[BaseOperator] = []
        previous: BaseOperator = backup
        for migration in migrations:
            with TaskGroup(_group_id(migration), tooltip=migration.describe()):
                begin = MigrationPhaseOperator(
                    task_id="begin",
                    phase="begin",
                    migration=migration.key,
                    trigger_rule=TriggerRule.NONE_FAILED,
                    **common,
                )
                tasks: list[BaseOperator] = [begin]
                for index, step in enumerate(migration.steps, 1):
                    tasks.append(
                        MigrationPhaseOperator(
                            task_id=f"step_{index}_{step.kind}",
                            phase="step",
                            migration=migration.key,
                            index=index,
                            trigger_rule=TriggerRule.NONE_FAILED,
                            **common,
                        )
                    )
                tasks.append(
                    MigrationPhaseOperator(
                        task_id="validate",
                        phase="validate",
                        migration=migration.key,
                        trigger_rule=TriggerRule.NONE_FAILED,
                        **common,
                    )
                )
            chain(previous, *tasks)
            previous = tasks[-1]
            forward.extend(tasks)
        downgrade = MigrationPhaseOperator(task_id="downgrade", phase="downgrade", **common)
        backup >> downgrade
        record = MigrationPhaseOperator(
            task_id="record", phase="record", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, **common
        )
        [previous, downgrade] >> record

        with TaskGroup("rollback", tooltip="runs only when a step failed"):
            undo: list[BaseOperator] = []
            for migration in reversed(migrations):
                for index, step in enumerate(migration.rollback, 1):
                    undo.append(
                        MigrationPhaseOperator(
                            task_id=f"{_group_id(migration)}_undo_{index}_{step.kind}",
                            phase="rollback",
                            migration=migration.key,
                            index=index,
                            trigger_rule=TriggerRule.ONE_FAILED if not undo else TriggerRule.NONE_SKIPPED,
                            **common,
                        )
                    )
            settle = MigrationPhaseOperator(
                task_id="settle",
                phase="settle",
                trigger_rule=TriggerRule.ONE_FAILED if not undo else TriggerRule.NONE_SKIPPED,
                **common,
            )
        first = undo[0] if undo else settle
        [backup, *forward, downgrade] >> first
        chain(*undo, settle)
        release = MigrationPhaseOperator(task_id="release", phase="release", **common)
        [record, settle] >> release
        release.as_teardown(setups=lock)
    return dag
