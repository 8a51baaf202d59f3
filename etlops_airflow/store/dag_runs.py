"""DAG-run outcomes: one row per finished run (``success`` / ``failed``), upserted on
``(dag_id, run_id)``; queries and failure streaks in SQL.

``dag_ids``, when given, limits every read to those DAGs inside the query (before ``LIMIT``),
as in :mod:`etlops_airflow.store.outcomes`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import bindparam, case, func, select

from etlops_airflow.core.models import DAG_RUN_STATES, DagRunOutcome
from etlops_airflow.exceptions import InvalidDagRunOutcomeError, ValidationError
from etlops_airflow.store import schema
from etlops_airflow.store.db import Database
from etlops_airflow.store.outcomes import check_limit, scoped, streak_column

D = schema.dag_runs
_FIELDS = tuple(DagRunOutcome.__dataclass_fields__)
_UPDATE = ("state", "run_type", "start_ts", "end_ts", "duration_s", "recorded_at")
MAX_PER_DAG = 100


class DagRunsStore:
    """The DAG-run-outcomes concern of the store (``store.dag_runs``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, outcome: DagRunOutcome) -> None:
        """Insert the outcome of one DAG run, or update it (a run cleared and run again ends again)."""
        if not isinstance(outcome, DagRunOutcome):
            raise InvalidDagRunOutcomeError("outcome", outcome, "expected a DagRunOutcome")
        values = {name: getattr(outcome, name) for name in _FIELDS}
        values["recorded_at"] = time.time()
        stmt = self.db.upsert(D, ["dag_id", "run_id"], _UPDATE).values(**values)
        self.db.ensure_schema()
        with self.db.write(f"record outcome of DAG run {outcome.dag_id} {outcome.run_id}") as conn:
            conn.execute(stmt)

    def query(
        self,
        *,
        dag_id: str | None = None,
        run_id: str | None = None,
        states: Sequence[str] | None = None,
        since: float | None = None,
        until: float | None = None,
        dag_ids: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[DagRunOutcome]:
        """Recorded runs, newest end first (runs with no end time last), on both databases."""
        stmt = scoped(
            self.db,
            select(*(D.c[name] for name in _FIELDS)),
            D,
            equal={"dag_id": dag_id, "run_id": run_id},
            states=states,
            allowed_states=DAG_RUN_STATES,
            since=since,
            until=until,
            dag_ids=dag_ids,
        )
        stmt = stmt.order_by(D.c.end_ts.is_(None), D.c.end_ts.desc(), D.c.id.desc()).limit(check_limit(limit))
        self.db.ensure_schema()
        with self.db.read("query DAG-run outcomes") as conn:
            rows = conn.execute(stmt).all()
        return [DagRunOutcome(**dict(zip(_FIELDS, row, strict=True))) for row in rows]

    def failure_streaks(
        self, dag_id: str | None = None, *, dag_ids: Sequence[str] | None = None
    ) -> list[tuple[dict[str, str], int]]:
        """Per DAG that has recorded runs: ``({"dag_id": …}, n)`` where ``n`` is the number of
        consecutive failed runs ending at its latest run (0 when the latest succeeded). Runs are
        ordered by end time (then by the order they were first recorded). Computed in SQL."""
        order = (D.c.end_ts.is_(None), D.c.end_ts.desc(), D.c.id.desc())
        ranked = select(
            D.c.dag_id,
            D.c.state,
            func.row_number().over(partition_by=D.c.dag_id, order_by=order).label("rn"),
        )
        ranked = scoped(self.db, ranked, D, equal={"dag_id": dag_id}, dag_ids=dag_ids)
        r = ranked.subquery()
        stmt = (
            select(r.c.dag_id, streak_column(r.c.rn, case((r.c.state == "success", r.c.rn))))
            .group_by(r.c.dag_id)
            .order_by(r.c.dag_id)
        )
        self.db.ensure_schema()
        with self.db.read("compute DAG-run failure streaks") as conn:
            rows = conn.execute(stmt).all()
        return [({"dag_id": row[0]}, int(row[1])) for row in rows]

    def latest_per_dag(
        self, *, per_dag: int = 10, dag_ids: Sequence[str] | None = None
    ) -> dict[str, list[DagRunOutcome]]:
        """The newest ``per_dag`` runs of every DAG with recorded runs, newest end first (runs
        with no end time last): ``{dag_id: [DagRunOutcome, …]}``. One index range scan per DAG
        on (DAG, end time), in one read transaction, whatever the number of runs stored."""
        if isinstance(per_dag, bool) or not isinstance(per_dag, int) or not 1 <= per_dag <= MAX_PER_DAG:
            raise ValidationError("per_dag", per_dag, f"expected a whole number from 1 to {MAX_PER_DAG}")
        dags = scoped(self.db, select(D.c.dag_id).distinct(), D, dag_ids=dag_ids).order_by(D.c.dag_id)
        columns = [D.c[name] for name in _FIELDS]
        ended = (
            select(*columns)
            .where(D.c.dag_id == bindparam("dag"), D.c.end_ts.is_not(None))
            .order_by(D.c.end_ts.desc(), D.c.id.desc())
            .limit(per_dag)
        )
        open_ended = (
            select(*columns)
            .where(D.c.dag_id == bindparam("dag"), D.c.end_ts.is_(None))
            .order_by(D.c.id.desc())
            .limit(per_dag)
        )
        self.db.ensure_schema()
        result: dict[str, list[DagRunOutcome]] = {}
        with self.db.read("read latest DAG runs per DAG") as conn:
            for dag_id in conn.execute(dags).scalars():
                rows = list(conn.execute(ended, {"dag": dag_id}))
                if len(rows) < per_dag:
                    rows += conn.execute(open_ended, {"dag": dag_id}).all()[: per_dag - len(rows)]
                result[dag_id] = [DagRunOutcome(**dict(zip(_FIELDS, row, strict=True))) for row in rows]
        return result
