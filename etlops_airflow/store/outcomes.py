"""Task outcomes: one row per task try, upserted; queries, grouped counts, error counts and
failure streaks in SQL. ``record_missing`` adds the tries a DAG run ended with that nobody
recorded (never-run task instances, killed task processes) without touching recorded ones.

``dag_ids``, when given, limits every read to those DAGs inside the query (before
``LIMIT``): the API passes the DAGs the user may read.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.sql import ColumnElement

from etlops_airflow.core.models import FAILED_TRY_STATES, RAN_TRY_STATES, TASK_STATES, TaskOutcome
from etlops_airflow.exceptions import InvalidOutcomeError, ValidationError
from etlops_airflow.store import schema
from etlops_airflow.store.db import Database

T = schema.task_outcomes
_UPDATE = (
    "state",
    "start_ts",
    "end_ts",
    "duration_s",
    "error_class",
    "error_message",
    "hostname",
    "recorded_at",
)
_FIELDS = tuple(TaskOutcome.__dataclass_fields__)
_TRY_KEY = ("dag_id", "task_id", "run_id", "map_index", "try_number")
GROUP_KEYS = ("dag_id", "task_id")
MAX_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class OutcomeCount:
    """How many tries ended in ``state``, per ``dag_id`` / ``task_id`` when grouped by them."""

    state: str
    count: int
    dag_id: str | None = None
    task_id: str | None = None


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError("limit", limit, f"expected a whole number from 1 to {MAX_LIMIT}")
    return limit


def _seconds(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValidationError(field, value, "expected seconds since the epoch (a finite number)")
    return float(value)


def _group_keys(by: Sequence[str]) -> list[str]:
    if isinstance(by, str) or not set(by) <= set(GROUP_KEYS):
        raise ValidationError("by", by, f"expected a list of {', '.join(GROUP_KEYS)}")
    return [key for key in GROUP_KEYS if key in by]


def scoped(
    db: Database,
    stmt: Any,
    table: Any,
    *,
    equal: Mapping[str, str | None] | None = None,
    states: Sequence[str] | None = None,
    allowed_states: Sequence[str] = (),
    since: float | None = None,
    until: float | None = None,
    dag_ids: Sequence[str] | None = None,
) -> Any:
    """The filters every outcome query shares: equal columns (``None`` = any), states (checked
    against ``allowed_states``), ``[since, until)`` on ``end_ts``, and the readable DAGs."""
    for column, value in (equal or {}).items():
        if value is not None:
            stmt = stmt.where(table.c[column] == value)
    if states is not None:
        if isinstance(states, str):
            raise ValidationError("states", states, "expected a list of states, not one string")
        unknown = sorted(set(states) - set(allowed_states))
        if unknown:
            raise ValidationError("states", unknown, f"expected states among {', '.join(allowed_states)}")
        stmt = stmt.where(db.values_in(table.c.state, list(states)))
    if since is not None:
        stmt = stmt.where(table.c.end_ts >= since)
    if until is not None:
        stmt = stmt.where(table.c.end_ts < until)
    if dag_ids is not None:
        stmt = stmt.where(db.values_in(table.c.dag_id, list(dag_ids)))
    return stmt


def streak_column(rn: Any, success_rn: Any) -> ColumnElement[Any]:
    """Per group of rows ranked newest first (``rn`` = 1, 2, …): how many come before the newest
    success, i.e. the failures in a row ending at the newest row (all rows when none succeeded)."""
    return func.coalesce(func.min(success_rn) - 1, func.count())


class OutcomesStore:
    """The task-outcomes concern of the store (``store.outcomes``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, outcome: TaskOutcome) -> None:
        """Insert the outcome of one try, or update it if that try was recorded already."""
        if not isinstance(outcome, TaskOutcome):
            raise InvalidOutcomeError("outcome", outcome, "expected a TaskOutcome")
        values = {name: getattr(outcome, name) for name in _FIELDS}
        values["recorded_at"] = time.time()
        stmt = self.db.upsert(T, ["dag_id", "task_id", "run_id", "map_index", "try_number"], _UPDATE).values(
            **values
        )
        self.db.ensure_schema()
        with self.db.write(f"record outcome of {outcome.dag_id}.{outcome.task_id}") as conn:
            conn.execute(stmt)

    def query(
        self,
        *,
        dag_id: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        states: Sequence[str] | None = None,
        since: float | None = None,
        until: float | None = None,
        dag_ids: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[TaskOutcome]:
        """Recorded outcomes, newest end first; tries with no end time last, on both databases."""
        stmt = scoped(
            self.db,
            select(*(T.c[name] for name in _FIELDS)),
            T,
            equal={"dag_id": dag_id, "task_id": task_id, "run_id": run_id},
            states=states,
            allowed_states=TASK_STATES,
            since=since,
            until=until,
            dag_ids=dag_ids,
        )
        stmt = stmt.order_by(T.c.end_ts.is_(None), T.c.end_ts.desc(), T.c.id.desc()).limit(check_limit(limit))
        self.db.ensure_schema()
        with self.db.read("query task outcomes") as conn:
            rows = conn.execute(stmt).all()
        return [TaskOutcome(**dict(zip(_FIELDS, row, strict=True))) for row in rows]

    def counts(
        self,
        *,
        since: float,
        until: float | None = None,
        dag_id: str | None = None,
        task_id: str | None = None,
        group_by: Sequence[str] = GROUP_KEYS,
        dag_ids: Sequence[str] | None = None,
    ) -> list[OutcomeCount]:
        """How many tries ended in each state in ``[since, until)``, per ``group_by`` (any of
        ``dag_id``, ``task_id``; empty = totals per state), counted in SQL."""
        unknown = [key for key in group_by if key not in GROUP_KEYS]
        if unknown or isinstance(group_by, str):
            raise ValidationError("group_by", group_by, f"expected a list of {', '.join(GROUP_KEYS)}")
        keys = [T.c[key] for key in GROUP_KEYS if key in group_by]
        stmt = scoped(
            self.db,
            select(*keys, T.c.state, func.count()),
            T,
            equal={"dag_id": dag_id, "task_id": task_id},
            since=since,
            until=until,
            dag_ids=dag_ids,
        )
        stmt = stmt.group_by(*keys, T.c.state).order_by(*keys, T.c.state)
        self.db.ensure_schema()
        with self.db.read("count task outcomes") as conn:
            rows = conn.execute(stmt).all()
        result = []
        for row in rows:
            named = dict(zip([k.name for k in keys], row[: len(keys)], strict=True))
            result.append(OutcomeCount(state=row[-2], count=int(row[-1]), **named))
        return result

    def record_missing(self, outcomes: Sequence[TaskOutcome]) -> int:
        """Insert the tries that have no row yet, in one transaction; a recorded try (by the
        worker, the scheduler or the API server) is never changed. Returns how many were added."""
        rows = list(outcomes)
        for item in rows:
            if not isinstance(item, TaskOutcome):
                raise InvalidOutcomeError("outcome", item, "expected a TaskOutcome")
        if not rows:
            return 0
        runs = sorted({(o.dag_id, o.run_id) for o in rows})
        where = or_(*(and_(T.c.dag_id == dag_id, T.c.run_id == run_id) for dag_id, run_id in runs))
        existing_stmt = select(*(T.c[k] for k in _TRY_KEY)).where(where)
        self.db.ensure_schema()
        now = time.time()
        with self.db.write(f"record missing outcomes of {len(runs)} DAG run(s)") as conn:
            existing = {tuple(row) for row in conn.execute(existing_stmt)}
            missing: dict[tuple[Any, ...], dict[str, Any]] = {}
            for o in rows:
                key = tuple(getattr(o, k) for k in _TRY_KEY)
                if key not in existing:
                    missing[key] = {name: getattr(o, name) for name in _FIELDS} | {"recorded_at": now}
            if missing:
                # Another writer may record a try meanwhile (PostgreSQL): its row wins.
                stmt = self.db.insert(T).on_conflict_do_nothing(index_elements=list(_TRY_KEY))
                conn.execute(stmt, list(missing.values()))
        return len(missing)

    def error_counts(
        self,
        start: float,
        end: float,
        dag_id: str | None = None,
        task_id: str | None = None,
        by: Sequence[str] = (),
        *,
        dag_ids: Sequence[str] | None = None,
    ) -> list[tuple[dict[str, str], int, int]]:
        """``(labels, failed, total)`` per group of ``by`` (any of ``dag_id``, ``task_id``; empty =
        one group): tries that ended in ``[start, end)``, ``failed`` = ``failed`` + ``up_for_retry``,
        ``total`` = those + ``success`` (skipped and never-run task instances are not tries).
        Only groups with at least one try. Counted in SQL."""
        start, end = _seconds("start", start), _seconds("end", end)
        keys = [T.c[key] for key in _group_keys(by)]
        failed = func.sum(case((T.c.state.in_(FAILED_TRY_STATES), 1), else_=0))
        stmt = (
            scoped(
                self.db,
                select(*keys, failed, func.count()).where(T.c.state.in_(RAN_TRY_STATES)),
                T,
                equal={"dag_id": dag_id, "task_id": task_id},
                since=start,
                until=end,
                dag_ids=dag_ids,
            )
            .group_by(*keys)
            .order_by(*keys)
        )
        self.db.ensure_schema()
        with self.db.read("count failed task tries") as conn:
            rows = conn.execute(stmt).all()
        n = len(keys)
        return [
            ({k.name: v for k, v in zip(keys, row[:n], strict=True)}, int(row[n] or 0), int(row[n + 1]))
            for row in rows
            if row[n + 1]
        ]

    def failure_streaks(
        self,
        dag_id: str | None = None,
        task_id: str | None = None,
        *,
        dag_ids: Sequence[str] | None = None,
    ) -> list[tuple[dict[str, str], int]]:
        """Per task (``{"dag_id", "task_id"}``, limited to ``dag_id`` / ``task_id`` when given):
        how many of its tries in a row failed (``failed`` or ``up_for_retry``) up to its latest
        try; 0 when the latest succeeded. Tries are ordered by end time across runs; skipped and
        never-run task instances are not tries and neither break nor extend a streak. Only tasks
        with at least one try. Computed in SQL."""
        order = (T.c.end_ts.is_(None), T.c.end_ts.desc(), T.c.try_number.desc(), T.c.id.desc())
        ranked = select(
            T.c.dag_id,
            T.c.task_id,
            T.c.state,
            func.row_number().over(partition_by=(T.c.dag_id, T.c.task_id), order_by=order).label("rn"),
        ).where(T.c.state.in_(RAN_TRY_STATES))
        ranked = scoped(self.db, ranked, T, equal={"dag_id": dag_id, "task_id": task_id}, dag_ids=dag_ids)
        r = ranked.subquery()
        stmt = (
            select(r.c.dag_id, r.c.task_id, streak_column(r.c.rn, case((r.c.state == "success", r.c.rn))))
            .group_by(r.c.dag_id, r.c.task_id)
            .order_by(r.c.dag_id, r.c.task_id)
        )
        self.db.ensure_schema()
        with self.db.read("compute task failure streaks") as conn:
            rows = conn.execute(stmt).all()
        return [({"dag_id": row[0], "task_id": row[1]}, int(row[2])) for row in rows]

    def state_totals(self, *, since: float, dag_id: str | None = None) -> dict[str, int]:
        """``{state: tries}`` since ``since`` (all DAGs, or one)."""
        return {c.state: c.count for c in self.counts(since=since, dag_id=dag_id, group_by=())}
