"""Profiling reports in the store: one session per task try (upserted), its stages and findings;
stage history for regression findings, recent sessions and global figures, all in SQL.

What is stored is checked first, the same way for SQLite and PostgreSQL: identifiers (DAG,
task, run, stage names and paths) are refused when empty, too long for their column or
holding NUL; numbers must be finite (whole where the contract says ``int``, and not negative
where a negative makes no sense); free text (stage errors, finding messages and suggestions,
recommendations) is made storable: NUL shown as ``\\x00`` and cut to size.

``dag_ids``, when given, limits every read to those DAGs inside the query (before ``LIMIT``),
as in :mod:`etlops_airflow.store.outcomes`.
"""

from __future__ import annotations

import json
import math
import numbers
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, select

from etlops_airflow.core.models import MAX_INT32, MAX_TS, clean_text
from etlops_airflow.core.profiling.model import (
    FINDING_KINDS,
    FINDING_SEVERITIES,
    MAX_STAGE_NAME,
    MAX_STAGE_PATH,
    Finding,
    SessionKey,
    SessionReport,
    StageFigures,
)
from etlops_airflow.exceptions import InvalidProfileError, ValidationError
from etlops_airflow.store import schema
from etlops_airflow.store.db import Database
from etlops_airflow.store.outcomes import check_limit

S = schema.profile_sessions
ST = schema.profile_stages
F = schema.profile_findings

MAX_IDENTIFIER = 250  # dag_id, task_id, run_id (the columns' width)
MAX_NAME = MAX_STAGE_NAME  # 250: a stage's name
MAX_PATH = MAX_STAGE_PATH  # 500: a stage's path ("transform/enrich"); indexed, bounded on PostgreSQL too
MAX_TEXT = 4000  # a stage's error, a finding's message or suggestion, one recommendation
MAX_RECOMMENDATIONS = 100
MAX_INT64 = 2**63 - 1
MAX_HISTORY_RUNS = 1000
MAX_HISTORY_PATHS = 1000

_STAGE_FIELDS = tuple(f.name for f in fields(StageFigures))
_FINDING_FIELDS = tuple(f.name for f in fields(Finding))
# StageFigures.index is stored as stage_index (INDEX is an SQL keyword).
_STAGE_COLUMNS = {name: ("stage_index" if name == "index" else name) for name in _STAGE_FIELDS}
_SESSION_UPDATE = (
    "started_at",
    "duration_s",
    "peak_rss_bytes",
    "peak_cpu_percent",
    "records_per_s",
    "recommendations",
    "recorded_at",
)
_TRY_KEY = ("dag_id", "task_id", "run_id", "map_index", "try_number")


@dataclass(frozen=True)
class StoredSession:
    """A recorded session: its id in the store, when it was (last) recorded, and the report."""

    id: int
    recorded_at: float
    report: SessionReport


@dataclass(frozen=True)
class ProfileTotals:
    """Figures over a set of sessions: how many, their average duration, the highest peak RSS and
    peak CPU of any of them (``None`` without sessions), and their findings per kind (every kind
    of ``FINDING_KINDS``, 0 when none)."""

    sessions: int
    avg_duration_s: float | None
    peak_rss_bytes: int | None
    peak_cpu_percent: float | None
    findings: dict[str, int]


@dataclass(frozen=True)
class PipelineRecords:
    """What the profiled tasks of one DAG processed in a window: the records out of each
    session's last top-level stage, added up; the profiled seconds of those sessions; and the
    newest session's last stage (its task, path and when it ended). ``profiled_s`` counts the
    sessions whose last stage counted records, so ``records_per_s`` is their throughput."""

    dag_id: str
    sessions: int
    records: int | None
    profiled_s: float
    last_task_id: str
    last_run_id: str
    last_stage: str | None
    last_stage_end: float | None

    @property
    def records_per_s(self) -> float | None:
        if self.records is None or self.profiled_s <= 0:
            return None
        return self.records / self.profiled_s


@dataclass(frozen=True)
class ProfileStats:
    """:class:`ProfileTotals` over every session, and per DAG (DAGs with sessions only)."""

    overall: ProfileTotals
    by_dag: dict[str, ProfileTotals]


# -- checks -----------------------------------------------------------------------------------------


def _identifier(field: str, value: Any, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str) or not (value or empty):
        raise InvalidProfileError(field, value, "must be non-empty text")
    if len(value) > limit:
        raise InvalidProfileError(field, value, f"is longer than {limit} characters")
    if "\x00" in value:
        raise InvalidProfileError(field, value, "must not hold NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidProfileError(field, value, "must be encodable as UTF-8") from None
    return value


def _number(field: str, value: Any, *, optional: bool = False, minimum: float | None = 0.0) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidProfileError(field, value, f"must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except (OverflowError, ValueError):
        raise InvalidProfileError(field, value, "does not fit a 64-bit float") from None
    if not math.isfinite(number):
        raise InvalidProfileError(field, value, "must be finite")
    if minimum is not None and number < minimum:
        raise InvalidProfileError(field, value, f"must be at least {minimum:g}")
    return number


def _timestamp(field: str, value: Any) -> float:
    ts = _number(field, value)
    assert ts is not None
    if ts > MAX_TS:
        raise InvalidProfileError(field, value, "is beyond the year 2200; pass seconds since the epoch")
    return ts


def _whole(
    field: str, value: Any, *, optional: bool = False, minimum: int = 0, maximum: int = MAX_INT64
) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidProfileError(field, value, f"must be a whole number, not {type(value).__name__}")
    number = int(value)
    if not minimum <= number <= maximum:
        raise InvalidProfileError(field, value, f"must be between {minimum} and {maximum}")
    return number


def _text(value: Any) -> str:
    text = clean_text(value if isinstance(value, str) else str(value))
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _session_row(report: SessionReport) -> dict[str, Any]:
    if not isinstance(report, SessionReport):
        raise InvalidProfileError("report", report, "expected a SessionReport")
    key = report.key
    if not isinstance(key, SessionKey):
        raise InvalidProfileError("key", key, "expected a SessionKey")
    recommendations = report.recommendations
    if isinstance(recommendations, (str, bytes)) or not isinstance(recommendations, Sequence):
        raise InvalidProfileError("recommendations", recommendations, "expected a list of text")
    if len(recommendations) > MAX_RECOMMENDATIONS:
        raise InvalidProfileError(
            "recommendations", len(recommendations), f"at most {MAX_RECOMMENDATIONS} are stored"
        )
    return {
        "dag_id": _identifier("key.dag_id", key.dag_id, MAX_IDENTIFIER),
        "task_id": _identifier("key.task_id", key.task_id, MAX_IDENTIFIER),
        "run_id": _identifier("key.run_id", key.run_id, MAX_IDENTIFIER),
        "map_index": _whole("key.map_index", key.map_index, minimum=-1, maximum=MAX_INT32),
        "try_number": _whole("key.try_number", key.try_number, maximum=MAX_INT32),
        "started_at": _timestamp("started_at", report.started_at),
        "duration_s": _number("duration_s", report.duration_s),
        "peak_rss_bytes": _whole("peak_rss_bytes", report.peak_rss_bytes),
        "peak_cpu_percent": _number("peak_cpu_percent", report.peak_cpu_percent),
        "records_per_s": _number("records_per_s", report.records_per_s, optional=True),
        "recommendations": json.dumps([_text(r) for r in recommendations], ensure_ascii=False),
    }


def _stage_row(i: int, stage: Any) -> dict[str, Any]:
    if not isinstance(stage, StageFigures):
        raise InvalidProfileError(f"stages[{i}]", stage, "expected StageFigures")
    f = f"stages[{i}]."
    g = stage
    return {
        "name": _identifier(f + "name", g.name, MAX_NAME),
        "path": _identifier(f + "path", g.path, MAX_PATH),
        "stage_index": _whole(f + "index", g.index, maximum=MAX_INT32),
        "started_at": _timestamp(f + "started_at", g.started_at),
        "duration_s": _number(f + "duration_s", g.duration_s),
        "records_in": _whole(f + "records_in", g.records_in, optional=True),
        "records_out": _whole(f + "records_out", g.records_out, optional=True),
        "records_per_s": _number(f + "records_per_s", g.records_per_s, optional=True),
        "cpu_s": _number(f + "cpu_s", g.cpu_s),
        "cpu_percent": _number(f + "cpu_percent", g.cpu_percent),
        "cpu_percent_machine": _number(f + "cpu_percent_machine", g.cpu_percent_machine),
        "peak_rss_bytes": _whole(f + "peak_rss_bytes", g.peak_rss_bytes),
        "end_rss_bytes": _whole(f + "end_rss_bytes", g.end_rss_bytes),
        "io_read_bytes": _whole(f + "io_read_bytes", g.io_read_bytes, optional=True),
        "io_write_bytes": _whole(f + "io_write_bytes", g.io_write_bytes, optional=True),
        "io_read_ops": _whole(f + "io_read_ops", g.io_read_ops, optional=True),
        "io_write_ops": _whole(f + "io_write_ops", g.io_write_ops, optional=True),
        "threads_peak": _whole(f + "threads_peak", g.threads_peak, maximum=MAX_INT32),
        "children_peak": _whole(f + "children_peak", g.children_peak, maximum=MAX_INT32),
        "samples": _whole(f + "samples", g.samples, maximum=MAX_INT32),
        "error": None if g.error is None else _text(g.error),
    }


def _finding_row(i: int, finding: Any) -> dict[str, Any]:
    if not isinstance(finding, Finding):
        raise InvalidProfileError(f"findings[{i}]", finding, "expected a Finding")
    f = f"findings[{i}]."
    if finding.kind not in FINDING_KINDS:
        raise InvalidProfileError(f + "kind", finding.kind, f"expected one of {', '.join(FINDING_KINDS)}")
    if finding.severity not in FINDING_SEVERITIES:
        raise InvalidProfileError(
            f + "severity", finding.severity, f"expected one of {', '.join(FINDING_SEVERITIES)}"
        )
    return {
        "kind": finding.kind,
        "severity": finding.severity,
        "stage": _identifier(f + "stage", finding.stage, MAX_PATH, empty=True),  # "": the whole task
        "message": _text(finding.message),
        "suggestion": _text(finding.suggestion),
        "value": _number(f + "value", finding.value, minimum=None),
        "threshold": _number(f + "threshold", finding.threshold, minimum=None),
    }


def _seconds(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValidationError(field, value, "expected seconds since the epoch (a finite number)")
    return float(value)


# -- reads back -------------------------------------------------------------------------------------


def _stage_from(row: Any) -> StageFigures:
    values = {name: getattr(row, column) for name, column in _STAGE_COLUMNS.items()}
    return StageFigures(**values)


def _finding_from(row: Any) -> Finding:
    return Finding(**{name: getattr(row, name) for name in _FINDING_FIELDS})


def _totals(row: Any, findings: Mapping[str, int]) -> ProfileTotals:
    count = int(row.sessions) if row is not None else 0
    return ProfileTotals(
        sessions=count,
        avg_duration_s=None if not count or row.avg_duration is None else float(row.avg_duration),
        peak_rss_bytes=None if not count or row.peak_rss is None else int(row.peak_rss),
        peak_cpu_percent=None if not count or row.peak_cpu is None else float(row.peak_cpu),
        findings={kind: int(findings.get(kind, 0)) for kind in FINDING_KINDS},
    )


class ProfilesStore:
    """The profiling concern of the store (``store.profiles``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writes -----------------------------------------------------------------------------------

    def record(self, report: SessionReport) -> int:
        """Store one task try's report — the session, every stage and every finding — in one
        transaction, and return the session's id. Recording the same try again (same DAG, task,
        run, map index and try number) replaces its figures, stages and findings and keeps its id.
        Nothing is written when any field is refused."""
        row = _session_row(report)
        stages = [_stage_row(i, stage) for i, stage in enumerate(report.stages)]
        findings = [_finding_row(i, finding) for i, finding in enumerate(report.findings)]
        row["recorded_at"] = time.time()
        stmt = self.db.upsert(S, list(_TRY_KEY), _SESSION_UPDATE).values(**row).returning(S.c.id)
        self.db.ensure_schema()
        with self.db.write(f"record profile of {row['dag_id']}.{row['task_id']}") as conn:
            session_id = int(conn.execute(stmt).scalar_one())
            conn.execute(delete(ST).where(ST.c.session_id == session_id))
            conn.execute(delete(F).where(F.c.session_id == session_id))
            if stages:
                conn.execute(ST.insert(), [s | {"session_id": session_id} for s in stages])
            if findings:
                conn.execute(F.insert(), [f | {"session_id": session_id} for f in findings])
        return session_id

    # -- reads ------------------------------------------------------------------------------------

    def history(
        self,
        dag_id: str,
        task_id: str,
        stage_paths: Sequence[str],
        runs: int = 3,
        before: float | None = None,
    ) -> dict[str, list[float]]:
        """``{path: [duration_s, …]}`` of each stage path in the last ``runs`` sessions of the
        task that ran it, newest first (sessions started before ``before`` when given: pass the
        current session's start to leave it out). A path run more than once in a session counts
        with its total time there; a session in which the stage ended in an error does not count
        for that stage. Every requested path is a key (an empty list: no history). In SQL."""
        _identifier("dag_id", dag_id, MAX_IDENTIFIER)
        _identifier("task_id", task_id, MAX_IDENTIFIER)
        if isinstance(stage_paths, (str, bytes)) or not isinstance(stage_paths, Sequence):
            raise ValidationError("stage_paths", stage_paths, "expected a list of stage paths")
        paths = list(dict.fromkeys(_identifier("stage_paths", p, MAX_PATH) for p in stage_paths))
        if len(paths) > MAX_HISTORY_PATHS:
            raise ValidationError("stage_paths", len(paths), f"at most {MAX_HISTORY_PATHS} paths at once")
        if isinstance(runs, bool) or not isinstance(runs, int) or not 1 <= runs <= MAX_HISTORY_RUNS:
            raise ValidationError("runs", runs, f"expected a whole number from 1 to {MAX_HISTORY_RUNS}")
        result: dict[str, list[float]] = {p: [] for p in paths}
        if not paths:
            return result
        per_session = (
            select(
                S.c.id.label("sid"),
                S.c.started_at,
                ST.c.path,
                func.sum(ST.c.duration_s).label("duration"),
            )
            .join(ST, ST.c.session_id == S.c.id)
            .where(S.c.dag_id == dag_id, S.c.task_id == task_id, self.db.values_in(ST.c.path, paths))
            .group_by(S.c.id, S.c.started_at, ST.c.path)
            .having(func.count(ST.c.error) == 0)
        )
        if before is not None:
            per_session = per_session.where(S.c.started_at < _seconds("before", before))
        p = per_session.subquery()
        rn = func.row_number().over(partition_by=p.c.path, order_by=(p.c.started_at.desc(), p.c.sid.desc()))
        ranked = select(p.c.path, p.c.duration, rn.label("rn")).subquery()
        stmt = select(ranked.c.path, ranked.c.duration).where(ranked.c.rn <= runs)
        stmt = stmt.order_by(ranked.c.path, ranked.c.rn)
        self.db.ensure_schema()
        with self.db.read(f"read stage history of {dag_id}.{task_id}") as conn:
            for path, duration in conn.execute(stmt):
                result[path].append(float(duration))
        return result

    def sessions(
        self,
        *,
        dag_id: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        since: float | None = None,
        dag_ids: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[StoredSession]:
        """Recorded sessions, newest start first, each with its stages (in start order) and
        findings (in the order recorded). ``since`` is on the session's start."""
        stmt = select(S)
        for column, value in (("dag_id", dag_id), ("task_id", task_id), ("run_id", run_id)):
            if value is not None:
                stmt = stmt.where(S.c[column] == value)
        if since is not None:
            stmt = stmt.where(S.c.started_at >= _seconds("since", since))
        if dag_ids is not None:
            stmt = stmt.where(self.db.values_in(S.c.dag_id, list(dag_ids)))
        stmt = stmt.order_by(S.c.started_at.desc(), S.c.id.desc()).limit(check_limit(limit))
        self.db.ensure_schema()
        with self.db.read("query profile sessions") as conn:
            rows = conn.execute(stmt).all()
            ids = [int(r.id) for r in rows]
            stages, findings = self._children(conn, ids)
        return [
            StoredSession(
                id=int(r.id),
                recorded_at=float(r.recorded_at),
                report=SessionReport(
                    key=SessionKey(
                        dag_id=r.dag_id,
                        task_id=r.task_id,
                        run_id=r.run_id,
                        map_index=int(r.map_index),
                        try_number=int(r.try_number),
                    ),
                    started_at=float(r.started_at),
                    duration_s=float(r.duration_s),
                    stages=tuple(stages.get(int(r.id), ())),
                    peak_rss_bytes=int(r.peak_rss_bytes),
                    peak_cpu_percent=float(r.peak_cpu_percent),
                    records_per_s=None if r.records_per_s is None else float(r.records_per_s),
                    findings=tuple(findings.get(int(r.id), ())),
                    recommendations=tuple(json.loads(r.recommendations)),
                ),
            )
            for r in rows
        ]

    def _children(
        self, conn: Connection, ids: list[int]
    ) -> tuple[dict[int, list[StageFigures]], dict[int, list[Finding]]]:
        stages: dict[int, list[StageFigures]] = {}
        findings: dict[int, list[Finding]] = {}
        if not ids:
            return stages, findings
        stage_rows = conn.execute(
            select(ST)
            .where(self.db.values_in(ST.c.session_id, ids))
            .order_by(ST.c.session_id, ST.c.stage_index, ST.c.id)
        )
        for row in stage_rows:
            stages.setdefault(int(row.session_id), []).append(_stage_from(row))
        finding_rows = conn.execute(
            select(F).where(self.db.values_in(F.c.session_id, ids)).order_by(F.c.session_id, F.c.id)
        )
        for row in finding_rows:
            findings.setdefault(int(row.session_id), []).append(_finding_from(row))
        return stages, findings

    def stats(self, since: float | None = None, dag_ids: Sequence[str] | None = None) -> ProfileStats:
        """Sessions profiled, their average duration, the highest peak memory and CPU, and findings
        per kind: over all sessions and per DAG, computed in SQL. ``since`` is on the session's
        start; ``dag_ids`` limits both to those DAGs."""
        where = []
        if since is not None:
            where.append(S.c.started_at >= _seconds("since", since))
        if dag_ids is not None:
            where.append(self.db.values_in(S.c.dag_id, list(dag_ids)))
        figures = (
            func.count().label("sessions"),
            func.avg(S.c.duration_s).label("avg_duration"),
            func.max(S.c.peak_rss_bytes).label("peak_rss"),
            func.max(S.c.peak_cpu_percent).label("peak_cpu"),
        )
        per_dag = select(S.c.dag_id, *figures).where(*where).group_by(S.c.dag_id).order_by(S.c.dag_id)
        overall = select(*figures).where(*where)
        kinds = select(S.c.dag_id, F.c.kind, func.count().label("n")).join(F, F.c.session_id == S.c.id)
        kinds = kinds.where(*where).group_by(S.c.dag_id, F.c.kind)
        all_kinds = select(F.c.kind, func.count().label("n")).join(S, F.c.session_id == S.c.id)
        all_kinds = all_kinds.where(*where).group_by(F.c.kind)
        self.db.ensure_schema()
        with self.db.read("compute profile statistics") as conn:
            dag_rows = conn.execute(per_dag).all()
            total_row = conn.execute(overall).one()
            by_kind: dict[str, dict[str, int]] = {}
            for dag, kind, n in conn.execute(kinds):
                by_kind.setdefault(dag, {})[kind] = int(n)
            overall_kinds = {kind: int(n) for kind, n in conn.execute(all_kinds)}
        return ProfileStats(
            overall=_totals(total_row, overall_kinds),
            by_dag={row.dag_id: _totals(row, by_kind.get(row.dag_id, {})) for row in dag_rows},
        )

    def get(self, session_id: int, *, dag_ids: Sequence[str] | None = None) -> StoredSession | None:
        """One session by its id, with stages and findings; None when there is none (or it is of
        a DAG not in ``dag_ids``)."""
        ident = _whole("session_id", session_id, minimum=1)
        stmt = select(S.c.dag_id).where(S.c.id == ident)
        if dag_ids is not None:
            stmt = stmt.where(self.db.values_in(S.c.dag_id, list(dag_ids)))
        self.db.ensure_schema()
        with self.db.read("read profile session") as conn:
            row = conn.execute(stmt).first()
        return None if row is None else self._one(ident)

    def _one(self, session_id: int) -> StoredSession | None:
        self.db.ensure_schema()
        with self.db.read("read profile session") as conn:
            r = conn.execute(select(S).where(S.c.id == session_id)).first()
            if r is None:
                return None
            stages, findings = self._children(conn, [session_id])
        return StoredSession(
            id=int(r.id),
            recorded_at=float(r.recorded_at),
            report=SessionReport(
                key=SessionKey(
                    dag_id=r.dag_id,
                    task_id=r.task_id,
                    run_id=r.run_id,
                    map_index=int(r.map_index),
                    try_number=int(r.try_number),
                ),
                started_at=float(r.started_at),
                duration_s=float(r.duration_s),
                stages=tuple(stages.get(session_id, ())),
                peak_rss_bytes=int(r.peak_rss_bytes),
                peak_cpu_percent=float(r.peak_cpu_percent),
                records_per_s=None if r.records_per_s is None else float(r.records_per_s),
                findings=tuple(findings.get(session_id, ())),
                recommendations=tuple(json.loads(r.recommendations)),
            ),
        )

    def pipeline_records(
        self, *, since: float, dag_ids: Sequence[str] | None = None
    ) -> dict[str, PipelineRecords]:
        """Per DAG with sessions started at or after ``since``: :class:`PipelineRecords`, in SQL.
        A session's records are those out of its last top-level stage (a stage path without
        ``/``; nested stages would count the same records twice)."""
        where = [S.c.started_at >= _seconds("since", since)]
        if dag_ids is not None:
            where.append(self.db.values_in(S.c.dag_id, list(dag_ids)))
        top = ~ST.c.path.contains("/", autoescape=True)
        ranked = (
            select(
                ST.c.session_id,
                ST.c.path,
                ST.c.records_out,
                (ST.c.started_at + ST.c.duration_s).label("ended"),
                func.row_number()
                .over(partition_by=ST.c.session_id, order_by=(ST.c.stage_index.desc(), ST.c.id.desc()))
                .label("rn"),
            )
            .join(S, S.c.id == ST.c.session_id)
            .where(top, *where)
            .subquery()
        )
        last = select(ranked).where(ranked.c.rn == 1).subquery()
        per_session = (
            select(
                S.c.id,
                S.c.dag_id,
                S.c.task_id,
                S.c.run_id,
                S.c.started_at,
                S.c.duration_s,
                last.c.path,
                last.c.records_out,
                last.c.ended,
                func.row_number()
                .over(partition_by=S.c.dag_id, order_by=(S.c.started_at.desc(), S.c.id.desc()))
                .label("newest"),
            )
            .outerjoin(last, last.c.session_id == S.c.id)
            .where(*where)
            .subquery()
        )
        p = per_session
        totals = (
            select(
                p.c.dag_id,
                func.count().label("sessions"),
                func.sum(p.c.records_out).label("records"),
                func.sum(case((p.c.records_out.is_not(None), p.c.duration_s), else_=0.0)).label("profiled"),
            )
            .group_by(p.c.dag_id)
            .subquery()
        )
        stmt = (
            select(totals, p.c.task_id, p.c.run_id, p.c.path, p.c.ended)
            .join(p, and_(p.c.dag_id == totals.c.dag_id, p.c.newest == 1))
            .order_by(totals.c.dag_id)
        )
        self.db.ensure_schema()
        with self.db.read("sum records per pipeline") as conn:
            rows = conn.execute(stmt).all()
        return {
            r.dag_id: PipelineRecords(
                dag_id=r.dag_id,
                sessions=int(r.sessions),
                records=None if r.records is None else int(r.records),
                profiled_s=float(r.profiled or 0.0),
                last_task_id=r.task_id,
                last_run_id=r.run_id,
                last_stage=r.path,
                last_stage_end=None if r.ended is None else float(r.ended),
            )
            for r in rows
        }
