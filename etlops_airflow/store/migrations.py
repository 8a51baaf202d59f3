"""Migrations in the store (``store.migrations``): the ledger of runs, the step log, the
migrations applied to each pipeline (with their checksums), each pipeline's current version,
and each pipeline's JSON config document that ``config_update`` steps change.

A run ends in one transaction that sets its state, the applied migrations and the pipeline's
version together: a crash leaves either the run ``running`` (for ``recover``) or all of it
recorded, never half.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select, update

from etlops_airflow.exceptions import ValidationError
from etlops_airflow.store import schema
from etlops_airflow.store.db import Database

RUNS = schema.migration_runs
STEPS = schema.migration_steps
APPLIED = schema.migration_applied
VERSIONS = schema.pipeline_versions
CONFIGS = schema.pipeline_configs

RUN_STATES = ("running", "success", "rolled_back", "failed", "recovered")
STEP_PHASES = ("backup", "validation", "step", "rollback", "restore", "recover")
STEP_STATES = ("started", "success", "error", "rolled_back", "skipped")
MAX_ERROR = 4000
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class MigrationRun:
    """One row of the ledger."""

    id: str
    pipeline: str
    from_version: str
    to_version: str
    direction: str
    state: str
    owner: str
    started_at: float
    ended_at: float | None
    error: str | None
    dag_id: str | None
    dag_run_id: str | None
    migrations: list[str]
    detail: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class StepLogEntry:
    """One entry of a run's step log."""

    run_id: str
    seq: int
    migration: str
    phase: str
    index: int
    kind: str
    description: str
    state: str
    started_at: float
    ended_at: float | None
    sql: list[str]
    error: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class PipelineVersion:
    pipeline: str
    version: str
    updated_at: float
    run_id: str | None
    baseline: bool = False


@dataclass(frozen=True)
class AppliedMigration:
    pipeline: str
    from_version: str
    to_version: str
    checksum: str
    source: str
    applied_at: float
    run_id: str
    repaired_at: float | None

    @property
    def key(self) -> str:
        return f"{self.from_version}->{self.to_version}"


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:MAX_ERROR]


def _run(row: Any) -> MigrationRun:
    return MigrationRun(
        id=row.id,
        pipeline=row.pipeline,
        from_version=row.from_version,
        to_version=row.to_version,
        direction=row.direction,
        state=row.state,
        owner=row.owner,
        started_at=row.started_at,
        ended_at=row.ended_at,
        error=row.error,
        dag_id=row.dag_id,
        dag_run_id=row.dag_run_id,
        migrations=json.loads(row.migrations),
        detail=json.loads(row.detail),
    )


class MigrationsStore:
    """The migrations concern of the store."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- the ledger ---------------------------------------------------------------------
    def start_run(
        self,
        *,
        run_id: str,
        pipeline: str,
        from_version: str,
        to_version: str,
        direction: str,
        owner: str,
        migrations: Sequence[str],
        detail: Mapping[str, Any],
        dag_id: str | None = None,
        dag_run_id: str | None = None,
        now: float | None = None,
    ) -> MigrationRun:
        """Record a run as ``running`` (committed before its first step)."""
        if direction not in ("up", "down"):
            raise ValidationError("direction", direction, "expected up or down")
        self.db.ensure_schema()
        values = {
            "id": run_id,
            "pipeline": pipeline,
            "from_version": from_version,
            "to_version": to_version,
            "direction": direction,
            "state": "running",
            "owner": owner,
            "started_at": time.time() if now is None else now,
            "ended_at": None,
            "error": None,
            "dag_id": dag_id,
            "dag_run_id": dag_run_id,
            "migrations": json.dumps(list(migrations)),
            "detail": json.dumps(dict(detail), default=str),
        }
        with self.db.write(f"start migration run of {pipeline}") as conn:
            conn.execute(RUNS.insert().values(**values))
        found = self.get_run(run_id)
        assert found is not None
        return found

    def update_detail(self, run_id: str, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into the run's detail document; returns the new document."""
        with self.db.write(f"update migration run {run_id}") as conn:
            row = conn.execute(select(RUNS.c.detail).where(RUNS.c.id == run_id)).first()
            if row is None:
                raise ValidationError("run_id", run_id, "no such migration run")
            detail = json.loads(row.detail)
            detail.update(changes)
            conn.execute(
                update(RUNS).where(RUNS.c.id == run_id).values(detail=json.dumps(detail, default=str))
            )
        return dict(detail)

    def end_run(
        self,
        run_id: str,
        state: str,
        *,
        error: str | None = None,
        version: tuple[str, str] | None = None,
        applied: Sequence[AppliedMigration] = (),
        unapplied: Sequence[tuple[str, str, str]] = (),
        now: float | None = None,
    ) -> None:
        """End a run in one transaction: its state and error; with ``version`` = (pipeline,
        version) the pipeline's version, the migrations it applied (``applied``) and those it
        took back (``unapplied``: (pipeline, from, to))."""
        if state not in RUN_STATES or state == "running":
            raise ValidationError("state", state, "expected success, rolled_back, failed or recovered")
        now = time.time() if now is None else now
        with self.db.write(f"end migration run {run_id}") as conn:
            conn.execute(
                update(RUNS).where(RUNS.c.id == run_id).values(state=state, ended_at=now, error=_clip(error))
            )
            for pipeline, from_version, to_version in unapplied:
                conn.execute(
                    delete(APPLIED).where(
                        APPLIED.c.pipeline == pipeline,
                        APPLIED.c.from_version == from_version,
                        APPLIED.c.to_version == to_version,
                    )
                )
            for item in applied:
                conn.execute(
                    self.db.upsert(APPLIED, ["pipeline", "from_version", "to_version"]).values(
                        pipeline=item.pipeline,
                        from_version=item.from_version,
                        to_version=item.to_version,
                        checksum=item.checksum,
                        source=item.source,
                        applied_at=item.applied_at,
                        run_id=item.run_id,
                        repaired_at=None,
                    )
                )
            if version is not None:
                self._set_version(conn, version[0], version[1], run_id, baseline=False, now=now)

    def set_owner(self, run_id: str, owner: str) -> None:
        """Hand a run to a new owner (``recover`` taking over a run whose process died)."""
        with self.db.write(f"take over migration run {run_id}") as conn:
            conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(owner=owner))

    def get_run(self, run_id: str) -> MigrationRun | None:
        self.db.ensure_schema()
        with self.db.read(f"read migration run {run_id}") as conn:
            row = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).first()
        return None if row is None else _run(row)

    def runs(
        self,
        pipeline: str | None = None,
        *,
        dag_ids: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        limit: int = 200,
    ) -> list[MigrationRun]:
        """Runs, newest first. ``dag_ids`` keeps runs started from those DAGs and runs started
        outside any DAG (CLI, Python)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationError("limit", limit, f"expected 1 to {MAX_LIMIT}")
        for state in states or ():
            if state not in RUN_STATES:
                raise ValidationError("state", state, f"expected one of {', '.join(RUN_STATES)}")
        self.db.ensure_schema()
        query = select(RUNS)
        if pipeline is not None:
            query = query.where(RUNS.c.pipeline == pipeline)
        if states:
            query = query.where(self.db.values_in(RUNS.c.state, list(states)))
        if dag_ids is not None:
            query = query.where(or_(RUNS.c.dag_id.is_(None), self.db.values_in(RUNS.c.dag_id, list(dag_ids))))
        query = query.order_by(RUNS.c.started_at.desc(), RUNS.c.id.desc()).limit(limit)
        with self.db.read("read migration runs") as conn:
            return [_run(row) for row in conn.execute(query)]

    # -- the step log -------------------------------------------------------------------
    def log_step(
        self,
        run_id: str,
        *,
        migration: str,
        phase: str,
        index: int,
        kind: str,
        description: str,
        now: float | None = None,
    ) -> int:
        """Record a step as started (committed); returns its sequence number in the run."""
        if phase not in STEP_PHASES:
            raise ValidationError("phase", phase, f"expected one of {', '.join(STEP_PHASES)}")
        with self.db.write(f"log migration step of {run_id}") as conn:
            seq = (
                int(
                    conn.execute(
                        select(func.coalesce(func.max(STEPS.c.seq), 0)).where(STEPS.c.run_id == run_id)
                    ).scalar_one()
                )
                + 1
            )
            conn.execute(
                STEPS.insert().values(
                    run_id=run_id,
                    seq=seq,
                    migration=migration,
                    phase=phase,
                    idx=index,
                    kind=kind,
                    description=description,
                    state="started",
                    started_at=time.time() if now is None else now,
                    ended_at=None,
                    sql="[]",
                    error=None,
                    detail="{}",
                )
            )
        return seq

    def finish_step(
        self,
        run_id: str,
        seq: int,
        state: str,
        *,
        sql: Sequence[str] = (),
        error: str | None = None,
        detail: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> None:
        if state not in STEP_STATES or state == "started":
            raise ValidationError("state", state, "expected success, error, rolled_back or skipped")
        with self.db.write(f"finish migration step {seq} of {run_id}") as conn:
            conn.execute(
                update(STEPS)
                .where(STEPS.c.run_id == run_id, STEPS.c.seq == seq)
                .values(
                    state=state,
                    ended_at=time.time() if now is None else now,
                    sql=json.dumps(list(sql)),
                    error=_clip(error),
                    detail=json.dumps(dict(detail or {}), default=str),
                )
            )

    def mark_rolled_back(self, run_id: str, migration: str, index: int) -> None:
        """A forward step that succeeded and was then undone: state ``rolled_back``."""
        with self.db.write(f"mark step rolled back in {run_id}") as conn:
            conn.execute(
                update(STEPS)
                .where(
                    STEPS.c.run_id == run_id,
                    STEPS.c.migration == migration,
                    STEPS.c.phase == "step",
                    STEPS.c.idx == index,
                    STEPS.c.state == "success",
                )
                .values(state="rolled_back")
            )

    def steps(self, run_id: str) -> list[StepLogEntry]:
        """The run's step log in the order it ran."""
        self.db.ensure_schema()
        with self.db.read(f"read migration steps of {run_id}") as conn:
            rows = conn.execute(select(STEPS).where(STEPS.c.run_id == run_id).order_by(STEPS.c.seq)).all()
        return [
            StepLogEntry(
                run_id=row.run_id,
                seq=row.seq,
                migration=row.migration,
                phase=row.phase,
                index=row.idx,
                kind=row.kind,
                description=row.description,
                state=row.state,
                started_at=row.started_at,
                ended_at=row.ended_at,
                sql=json.loads(row.sql),
                error=row.error,
                detail=json.loads(row.detail),
            )
            for row in rows
        ]

    # -- applied migrations and versions ------------------------------------------------
    def applied(self, pipeline: str) -> list[AppliedMigration]:
        self.db.ensure_schema()
        with self.db.read(f"read applied migrations of {pipeline}") as conn:
            rows = conn.execute(
                select(APPLIED).where(APPLIED.c.pipeline == pipeline).order_by(APPLIED.c.applied_at)
            ).all()
        return [
            AppliedMigration(
                r.pipeline,
                r.from_version,
                r.to_version,
                r.checksum,
                r.source,
                r.applied_at,
                r.run_id,
                r.repaired_at,
            )
            for r in rows
        ]

    def repair(self, pipeline: str, checksums: Mapping[tuple[str, str], tuple[str, str]]) -> int:
        """Accept the current files: ``checksums`` maps (from, to) to (checksum, source).
        Returns how many applied migrations changed."""
        now = time.time()
        changed = 0
        with self.db.write(f"repair migrations of {pipeline}") as conn:
            for (from_version, to_version), (checksum, source) in checksums.items():
                changed += conn.execute(
                    update(APPLIED)
                    .where(
                        APPLIED.c.pipeline == pipeline,
                        APPLIED.c.from_version == from_version,
                        APPLIED.c.to_version == to_version,
                        or_(APPLIED.c.checksum != checksum, APPLIED.c.source != source),
                    )
                    .values(checksum=checksum, source=source, repaired_at=now)
                ).rowcount
        return changed

    def version(self, pipeline: str) -> PipelineVersion | None:
        self.db.ensure_schema()
        with self.db.read(f"read version of {pipeline}") as conn:
            row = conn.execute(select(VERSIONS).where(VERSIONS.c.pipeline == pipeline)).first()
        return (
            None
            if row is None
            else PipelineVersion(row.pipeline, row.version, row.updated_at, row.run_id, row.baseline)
        )

    def versions(self) -> list[PipelineVersion]:
        self.db.ensure_schema()
        with self.db.read("read pipeline versions") as conn:
            rows = conn.execute(select(VERSIONS).order_by(VERSIONS.c.pipeline)).all()
        return [PipelineVersion(r.pipeline, r.version, r.updated_at, r.run_id, r.baseline) for r in rows]

    def baseline(self, pipeline: str, version: str) -> None:
        """Set where a pipeline with no applied migration starts."""
        with self.db.write(f"baseline {pipeline}") as conn:
            applied = conn.execute(
                select(func.count()).select_from(APPLIED).where(APPLIED.c.pipeline == pipeline)
            ).scalar_one()
            if applied:
                raise ValidationError(
                    "pipeline",
                    pipeline,
                    f"has {applied} applied migration(s): baseline only sets where a "
                    "pipeline without a ledger starts",
                )
            self._set_version(conn, pipeline, version, None, baseline=True, now=time.time())

    def _set_version(
        self, conn: Connection, pipeline: str, version: str, run_id: str | None, *, baseline: bool, now: float
    ) -> None:
        conn.execute(
            self.db.upsert(VERSIONS, ["pipeline"]).values(
                pipeline=pipeline, version=version, updated_at=now, run_id=run_id, baseline=baseline
            )
        )

    # -- pipeline config documents ----------------------------------------------------------
    def config(self, pipeline: str) -> dict[str, Any] | None:
        """The pipeline's config document, or None when it has none."""
        self.db.ensure_schema()
        with self.db.read(f"read config of {pipeline}") as conn:
            row = conn.execute(select(CONFIGS.c.document).where(CONFIGS.c.pipeline == pipeline)).first()
        return None if row is None else dict(json.loads(row.document))

    def set_config(self, pipeline: str, document: Mapping[str, Any] | None) -> None:
        """Replace the document (None removes it): for setting one up and for restores."""
        self.db.ensure_schema()
        with self.db.write(f"set config of {pipeline}") as conn:
            if document is None:
                conn.execute(delete(CONFIGS).where(CONFIGS.c.pipeline == pipeline))
                return
            self._write_config(conn, pipeline, dict(document))

    def config_value(self, pipeline: str, path: str) -> Any:
        return get_path(self.config(pipeline) or {}, path)

    def compare_and_set(self, pipeline: str, path: str, old: Any, new: Any) -> tuple[bool, Any]:
        """Set ``path`` to ``new`` if it holds ``old`` (an absent value counts as null).
        Returns (changed, value found)."""
        self.db.ensure_schema()
        with self.db.write(f"update config of {pipeline}") as conn:
            if self.db.dialect == "postgresql":
                row = conn.execute(
                    select(CONFIGS.c.document).where(CONFIGS.c.pipeline == pipeline).with_for_update()
                ).first()
            else:
                row = conn.execute(select(CONFIGS.c.document).where(CONFIGS.c.pipeline == pipeline)).first()
            document = {} if row is None else dict(json.loads(row.document))
            found = get_path(document, path)
            if found != old or type(found) is not type(old) and not _same_number(found, old):
                return False, found
            set_path(document, path, new)
            self._write_config(conn, pipeline, document)
            return True, found

    def _write_config(self, conn: Connection, pipeline: str, document: dict[str, Any]) -> None:
        now = time.time()
        current = conn.execute(select(CONFIGS.c.revision).where(CONFIGS.c.pipeline == pipeline)).scalar()
        conn.execute(
            self.db.upsert(CONFIGS, ["pipeline"]).values(
                pipeline=pipeline,
                document=json.dumps(document, sort_keys=True, allow_nan=False),
                revision=(current or 0) + 1,
                updated_at=now,
            )
        )


def _same_number(a: Any, b: Any) -> bool:
    numeric = (int, float)
    return (
        isinstance(a, numeric)
        and isinstance(b, numeric)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    )


def get_path(document: Mapping[str, Any], path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def set_path(document: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = document
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValidationError("config_update.path", path, f"{part!r} holds a value, not a mapping")
        node = child
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
