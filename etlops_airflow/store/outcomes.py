"""Task outcomes: one row per task try, upserted; queries and grouped counts in SQL.

``dag_ids``, when given, limits every read to those DAGs inside the query (before
``LIMIT``): the API passes the DAGs the user may read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from etlops_airflow.core.models import TASK_STATES, TaskOutcome
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
GROUP_KEYS = ("dag_id", "task_id")
MAX_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class OutcomeCount:
    """How many tries ended in ``state``, per ``dag_id`` / ``task_id`` when grouped by them."""

    state: str
    count: int
    dag_id: str | None = None
    task_id: str | None = None


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError("limit", limit, f"expected a whole number from 1 to {MAX_LIMIT}")
    return limit


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
        stmt = self.db.insert(T).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["dag_id", "task_id", "run_id", "map_index", "try_number"],
            set_={col: stmt.excluded[col] for col in _UPDATE},
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
        stmt = select(*(T.c[name] for name in _FIELDS))
        if dag_id is not None:
            stmt = stmt.where(T.c.dag_id == dag_id)
        if task_id is not None:
            stmt = stmt.where(T.c.task_id == task_id)
        if run_id is not None:
            stmt = stmt.where(T.c.run_id == run_id)
        if states is not None:
            if isinstance(states, str):
                raise ValidationError("states", states, "expected a list of states, not one string")
            unknown = sorted(set(states) - set(TASK_STATES))
            if unknown:
                raise ValidationError("states", unknown, f"expected states among {', '.join(TASK_STATES)}")
            stmt = stmt.where(self.db.values_in(T.c.state, list(states)))
        if since is not None:
            stmt = stmt.where(T.c.end_ts >= since)
        if until is not None:
            stmt = stmt.where(T.c.end_ts < until)
        if dag_ids is not None:
            stmt = stmt.where(self.db.values_in(T.c.dag_id, list(dag_ids)))
        stmt = stmt.order_by(T.c.end_ts.is_(None), T.c.end_ts.desc(), T.c.id.desc()).limit(_limit(limit))
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
        stmt = select(*keys, T.c.state, func.count()).where(T.c.end_ts >= since)
        if until is not None:
            stmt = stmt.where(T.c.end_ts < until)
        if dag_id is not None:
            stmt = stmt.where(T.c.dag_id == dag_id)
        if task_id is not None:
            stmt = stmt.where(T.c.task_id == task_id)
        if dag_ids is not None:
            stmt = stmt.where(self.db.values_in(T.c.dag_id, list(dag_ids)))
        stmt = stmt.group_by(*keys, T.c.state).order_by(*keys, T.c.state)
        self.db.ensure_schema()
        with self.db.read("count task outcomes") as conn:
            rows = conn.execute(stmt).all()
        result = []
        for row in rows:
            named = dict(zip([k.name for k in keys], row[: len(keys)], strict=True))
            result.append(OutcomeCount(state=row[-2], count=int(row[-1]), **named))
        return result

    def state_totals(self, *, since: float, dag_id: str | None = None) -> dict[str, int]:
        """``{state: tries}`` since ``since`` (all DAGs, or one)."""
        return {c.state: c.count for c in self.counts(since=since, dag_id=dag_id, group_by=())}
