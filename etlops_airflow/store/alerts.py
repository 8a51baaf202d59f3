"""Alerting state in the store: alerts, transitions, groups, the outbox and its attempts,
silences and acknowledgements; and the reads alert conditions make (:class:`StoreAlertSource`).

One evaluation commits everything it decided — alert states, transitions, group states and
the notifications to send — in one transaction (:meth:`AlertsStore.commit_evaluation`).
Delivery happens afterwards, from the outbox, one row at a time: a row is claimed (and the
claim committed) before it is sent, every attempt is recorded, and a row is marked sent,
to retry, or failed. An evaluation killed between its commit and the delivery leaves the
rows pending; the next one sends them, once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, delete, or_, select, update

from etlops_airflow.core.alerts.grouping import GroupState, Silence
from etlops_airflow.core.alerts.state import FIRING, INACTIVE, PENDING, RESOLVED, AlertState, Transition
from etlops_airflow.exceptions import ValidationError
from etlops_airflow.store import schema
from etlops_airflow.store.db import Database

A = schema.alerts
TR = schema.alert_transitions
G = schema.alert_groups
O = schema.alert_outbox  # noqa: E741
AT = schema.alert_attempts
SI = schema.alert_silences

_ALERT_FIELDS = (
    "fingerprint",
    "rule_id",
    "state",
    "value",
    "pending_since",
    "active_since",
    "resolved_at",
    "last_breach_at",
    "last_eval_at",
    "acked_by",
    "acked_at",
    "incident",
)


def _alert_row(alert: AlertState) -> dict[str, Any]:
    row = {name: getattr(alert, name) for name in _ALERT_FIELDS}
    row["labels"] = json.dumps(dict(alert.labels), sort_keys=True, ensure_ascii=False)
    row["annotations"] = json.dumps(dict(alert.annotations), sort_keys=True, ensure_ascii=False)
    row["dag_id"] = alert.labels.get("dag_id")
    row["updated_at"] = time.time()  # the wall clock, whatever clock evaluations use
    return row


def _alert_from(row: Any) -> AlertState:
    values = {name: getattr(row, name) for name in _ALERT_FIELDS}
    return AlertState(labels=json.loads(row.labels), annotations=json.loads(row.annotations), **values)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    idempotency_key: str
    root_key: str | None
    receiver: str
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float
    sent_at: float | None
    external_id: str | None
    last_error: str | None


def _outbox_from(row: Any) -> OutboxRow:
    return OutboxRow(
        id=int(row.id),
        idempotency_key=row.idempotency_key,
        root_key=row.root_key,
        receiver=row.receiver,
        payload=json.loads(row.payload),
        status=row.status,
        attempts=int(row.attempts),
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        sent_at=row.sent_at,
        external_id=row.external_id,
        last_error=row.last_error,
    )


@dataclass(frozen=True)
class NewNotification:
    """An outbox row to create: one notification for one receiver."""

    idempotency_key: str
    root_key: str | None
    receiver: str
    payload: Mapping[str, Any]


class AlertsStore:
    """The alerting concern of the store (``store.alerts``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- evaluation state -------------------------------------------------------------------------

    def load(self) -> tuple[dict[str, AlertState], dict[str, GroupState], list[Silence]]:
        """Every stored alert, group and silence that is not over (one read transaction)."""
        self.db.ensure_schema()
        now = time.time()
        with self.db.read("load alert state") as conn:
            alerts = {row.fingerprint: _alert_from(row) for row in conn.execute(select(A))}
            groups = {
                row.key: GroupState(
                    key=row.key,
                    route_index=row.route_index,
                    labels=json.loads(row.labels),
                    created_at=row.created_at,
                    last_flush_at=row.last_flush_at,
                    notified=json.loads(row.notified),
                    sequence=row.sequence,
                )
                for row in conn.execute(select(G))
            }
            silences = [_silence_from(row) for row in conn.execute(select(SI).where(SI.c.ends_at > now))]
        return alerts, groups, silences

    def commit_evaluation(
        self,
        changed: Sequence[AlertState],
        removed: Sequence[str],
        transitions: Sequence[Transition],
        groups: Mapping[str, GroupState],
        notifications: Sequence[NewNotification],
        *,
        now: float,
        loaded_at: float | None = None,
        keep_resolved_s: float = 7 * 86400,
    ) -> int:
        """Write one evaluation's decisions in one transaction: the alerts it changed (inactive
        ones removed, resolved ones kept ``keep_resolved_s``), its transitions, the full set of
        group states and the outbox rows. Alerts it did not change are left alone, and so are
        alerts written by someone else since ``loaded_at`` (wall clock, taken before the state
        was loaded) — e.g. a callback raising one again while it was being resolved: the next
        evaluation decides on them. Returns how many outbox rows were created (a row whose
        idempotency key exists already is not created twice)."""
        self.db.ensure_schema()
        with self.db.write("commit alert evaluation") as conn:
            if loaded_at is not None:
                fresh = set(conn.execute(select(A.c.fingerprint).where(A.c.updated_at > loaded_at)).scalars())
                changed = [a for a in changed if a.fingerprint not in fresh]
                removed = [fp for fp in removed if fp not in fresh]
                transitions = [t for t in transitions if t.fingerprint not in fresh]
            # An acknowledgement made while this evaluation ran (API, CLI) is kept.
            acks = {
                row.fingerprint: row
                for row in conn.execute(
                    select(A.c.fingerprint, A.c.acked_by, A.c.acked_at, A.c.incident).where(
                        A.c.acked_at.is_not(None)
                    )
                )
            }
            gone = set(removed) | {a.fingerprint for a in changed if a.state == INACTIVE}
            if gone:
                conn.execute(delete(A).where(self.db.values_in(A.c.fingerprint, sorted(gone))))
            rows = []
            for alert in changed:
                if alert.state == INACTIVE:
                    continue
                ack = acks.get(alert.fingerprint)
                if ack is not None and alert.acked_at is None and ack.incident == alert.incident:
                    alert = replace(alert, acked_by=ack.acked_by, acked_at=ack.acked_at)
                rows.append(_alert_row(alert))
            if rows:
                conn.execute(self.db.upsert(A, ["fingerprint"]), rows)
            conn.execute(delete(A).where(A.c.state == RESOLVED, A.c.resolved_at < now - keep_resolved_s))
            self._transitions(conn, transitions)
            conn.execute(delete(G))
            if groups:
                conn.execute(
                    G.insert(),
                    [
                        {
                            "key": g.key,
                            "route_index": g.route_index,
                            "labels": json.dumps(dict(g.labels), sort_keys=True, ensure_ascii=False),
                            "created_at": g.created_at,
                            "last_flush_at": g.last_flush_at,
                            "notified": json.dumps(dict(g.notified), sort_keys=True),
                            "sequence": g.sequence,
                        }
                        for g in groups.values()
                    ],
                )
            return self._enqueue(conn, notifications, now)

    def _transitions(
        self, conn: Connection, transitions: Sequence[Transition], note: str | None = None
    ) -> None:
        if not transitions:
            return
        conn.execute(
            TR.insert(),
            [
                {
                    "fingerprint": t.fingerprint,
                    "rule_id": t.rule_id,
                    "from_state": t.from_state,
                    "to_state": t.to_state,
                    "at": t.at,
                    "value": t.value,
                    "labels": json.dumps(dict(t.labels), sort_keys=True, ensure_ascii=False),
                    "note": note,
                }
                for t in transitions
            ],
        )

    def raise_alert(
        self,
        rule_id: str,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        *,
        now: float,
        note: str = "raised by a callback",
    ) -> tuple[AlertState, bool]:
        """Make the alert of ``rule_id`` + ``labels`` fire (a new incident unless it is firing
        already). Returns the alert and whether it started firing now."""
        from etlops_airflow.core.alerts.state import fingerprint

        fp = fingerprint(rule_id, labels)
        self.db.ensure_schema()
        with self.db.write("raise alert") as conn:
            row = conn.execute(select(A).where(A.c.fingerprint == fp)).first()
            before = _alert_from(row) if row is not None else None
            if before is not None and before.state == FIRING:
                alert = replace(before, annotations=dict(annotations), last_breach_at=now, last_eval_at=now)
                started = False
            else:
                alert = AlertState(
                    fingerprint=fp,
                    rule_id=rule_id,
                    labels=dict(labels),
                    state=FIRING,
                    pending_since=now,
                    active_since=now,
                    last_breach_at=now,
                    last_eval_at=now,
                    incident=(before.incident if before else 0) + 1,
                    annotations=dict(annotations),
                )
                started = True
            conn.execute(self.db.upsert(A, ["fingerprint"]).values(**_alert_row(alert)))
            if started:
                previous_state = before.state if before else INACTIVE
                self._transitions(
                    conn,
                    [Transition(fp, rule_id, previous_state, FIRING, now, None, dict(labels))],
                    note=note,
                )
        return alert, started

    def _enqueue(self, conn: Connection, notifications: Sequence[NewNotification], now: float) -> int:
        if not notifications:
            return 0
        stmt = (
            self.db.insert(O)
            .on_conflict_do_nothing(index_elements=["idempotency_key", "receiver"])
            .returning(O.c.id)
        )
        rows = conn.execute(
            stmt,
            [
                {
                    "idempotency_key": n.idempotency_key,
                    "root_key": n.root_key,
                    "receiver": n.receiver,
                    "payload": json.dumps(n.payload, sort_keys=True, ensure_ascii=False),
                    "status": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "next_attempt_at": now,
                }
                for n in notifications
            ],
        ).all()
        return len(rows)

    def enqueue(self, notifications: Sequence[NewNotification], *, now: float | None = None) -> int:
        """Put notifications in the outbox outside an evaluation (notifier callbacks)."""
        self.db.ensure_schema()
        with self.db.write("enqueue notifications") as conn:
            return self._enqueue(conn, notifications, time.time() if now is None else now)

    # -- outbox -----------------------------------------------------------------------------------

    def due(self, *, now: float, stale_claim_s: float = 600.0, limit: int = 500) -> list[OutboxRow]:
        """Rows to deliver now, oldest first: pending ones whose time has come, and rows whose
        sender died mid-delivery (claimed longer than ``stale_claim_s`` ago)."""
        self.db.ensure_schema()
        stmt = (
            select(O)
            .where(
                or_(
                    (O.c.status == "pending") & (O.c.next_attempt_at <= now),
                    (O.c.status == "sending") & (O.c.claimed_at < now - stale_claim_s),
                )
            )
            .order_by(O.c.id)
            .limit(limit)
        )
        with self.db.read("read due notifications") as conn:
            return [_outbox_from(row) for row in conn.execute(stmt)]

    def claim(self, row_id: int, owner: str, *, now: float, stale_claim_s: float = 600.0) -> bool:
        """Mark a row as being sent by ``owner`` (committed before the send). False when
        another sender has it, or it is no longer due."""
        with self.db.write("claim notification") as conn:
            return bool(
                conn.execute(
                    update(O)
                    .where(
                        O.c.id == row_id,
                        or_(
                            O.c.status == "pending",
                            (O.c.status == "sending") & (O.c.claimed_at < now - stale_claim_s),
                        ),
                    )
                    .values(status="sending", claimed_by=owner, claimed_at=now)
                ).rowcount
            )

    def record_attempt(self, row_id: int, at: float, status: int | None, error: str | None) -> None:
        with self.db.write("record delivery attempt") as conn:
            conn.execute(AT.insert().values(outbox_id=row_id, at=at, status=status, error=error))
            conn.execute(update(O).where(O.c.id == row_id).values(attempts=O.c.attempts + 1))

    def finish(
        self,
        row_id: int,
        *,
        status: str,
        now: float,
        error: str | None = None,
        external_id: str | None = None,
        next_attempt_at: float | None = None,
    ) -> None:
        """Close a claimed row: ``sent``, ``failed``, or back to ``pending`` for a later try."""
        if status not in ("sent", "failed", "pending"):
            raise ValidationError("status", status, "expected sent, failed or pending")
        values: dict[str, Any] = {"status": status, "last_error": error, "claimed_by": None}
        if status == "sent":
            values.update(sent_at=now, external_id=external_id)
        if status == "pending":
            values["next_attempt_at"] = next_attempt_at if next_attempt_at is not None else now
        with self.db.write("finish notification") as conn:
            conn.execute(update(O).where(O.c.id == row_id).values(**values))

    def external_id_of(self, idempotency_key: str, receiver: str) -> str | None:
        """The Slack message id a sent notification got (threads and updates point at it)."""
        with self.db.read("read sent notification") as conn:
            return conn.execute(
                select(O.c.external_id).where(
                    O.c.idempotency_key == idempotency_key, O.c.receiver == receiver, O.c.status == "sent"
                )
            ).scalar()

    def outbox(self, *, limit: int = 200) -> list[OutboxRow]:
        self.db.ensure_schema()
        with self.db.read("read outbox") as conn:
            return [_outbox_from(r) for r in conn.execute(select(O).order_by(O.c.id.desc()).limit(limit))]

    def attempts(self, row_id: int) -> list[tuple[float, int | None, str | None]]:
        with self.db.read("read delivery attempts") as conn:
            rows = conn.execute(
                select(AT.c.at, AT.c.status, AT.c.error).where(AT.c.outbox_id == row_id).order_by(AT.c.id)
            )
            return [(r.at, r.status, r.error) for r in rows]

    # -- alerts, silences, acknowledgements ----------------------------------------------------------

    def alerts(
        self,
        *,
        states: Sequence[str] | None = None,
        rule_id: str | None = None,
        dag_ids: Sequence[str] | None = None,
        limit: int = 10_000,
        resolved_since: float | None = None,
    ) -> list[AlertState]:
        """Stored alerts; ``dag_ids`` keeps alerts of those DAGs and alerts with no ``dag_id``;
        ``resolved_since`` leaves out alerts resolved before then (active ones stay)."""
        self.db.ensure_schema()
        stmt = select(A).order_by(A.c.rule_id, A.c.fingerprint).limit(limit)
        if resolved_since is not None:
            stmt = stmt.where(or_(A.c.state != RESOLVED, A.c.resolved_at >= resolved_since))
        if dag_ids is not None:
            stmt = stmt.where(or_(A.c.dag_id.is_(None), self.db.values_in(A.c.dag_id, list(dag_ids))))
        if states is not None:
            stmt = stmt.where(self.db.values_in(A.c.state, list(states)))
        if rule_id is not None:
            stmt = stmt.where(A.c.rule_id == rule_id)
        with self.db.read("read alerts") as conn:
            return [_alert_from(row) for row in conn.execute(stmt)]

    def transitions(
        self, *, fingerprint: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[Transition]:
        self.db.ensure_schema()
        stmt = select(TR).order_by(TR.c.id)
        if fingerprint is not None:
            stmt = stmt.where(TR.c.fingerprint == fingerprint)
        if since is not None:
            stmt = stmt.where(TR.c.at >= since)
        with self.db.read("read alert transitions") as conn:
            return [
                Transition(
                    r.fingerprint, r.rule_id, r.from_state, r.to_state, r.at, r.value, json.loads(r.labels)
                )
                for r in conn.execute(stmt.limit(limit))
            ]

    def get(self, fingerprint: str) -> AlertState | None:
        self.db.ensure_schema()
        with self.db.read("read alert") as conn:
            row = conn.execute(select(A).where(A.c.fingerprint == fingerprint)).first()
        return None if row is None else _alert_from(row)

    def silence_by_id(self, silence_id: str) -> Silence | None:
        self.db.ensure_schema()
        with self.db.read("read silence") as conn:
            row = conn.execute(select(SI).where(SI.c.id == silence_id)).first()
        return None if row is None else _silence_from(row)

    def acknowledge(self, fingerprint: str, by: str, *, now: float | None = None) -> AlertState:
        """Stop repeats of a firing (or pending) alert; its resolve notice is still sent."""
        now = time.time() if now is None else now
        if not by or not isinstance(by, str):
            raise ValidationError("by", by, "name who acknowledges")
        self.db.ensure_schema()
        with self.db.write("acknowledge alert") as conn:
            row = conn.execute(select(A).where(A.c.fingerprint == fingerprint)).first()
            if row is None:
                raise ValidationError("fingerprint", fingerprint, "no such alert")
            if row.state not in (FIRING, PENDING):
                raise ValidationError("fingerprint", fingerprint, f"the alert is {row.state}, not firing")
            conn.execute(
                update(A).where(A.c.fingerprint == fingerprint).values(acked_by=by[:250], acked_at=now)
            )
            conn.execute(
                TR.insert().values(
                    fingerprint=fingerprint,
                    rule_id=row.rule_id,
                    from_state=row.state,
                    to_state=row.state,
                    at=now,
                    value=row.value,
                    labels=row.labels,
                    note=f"acknowledged by {by}"[:250],
                )
            )
            row = conn.execute(select(A).where(A.c.fingerprint == fingerprint)).one()
        return _alert_from(row)

    def silence(
        self,
        matchers: Mapping[str, str | Sequence[str]],
        *,
        duration_s: float,
        created_by: str,
        comment: str = "",
        starts_at: float | None = None,
    ) -> Silence:
        """Mute alerts whose labels match every matcher (``rule_id``, ``severity`` or any label)."""
        if not isinstance(matchers, Mapping) or not matchers:
            raise ValidationError("matchers", matchers, "expected at least one label: value (e.g. rule_id)")
        clean: dict[str, list[str]] = {}
        for key, value in matchers.items():
            values = [value] if isinstance(value, str) else list(value)
            if (
                not isinstance(key, str)
                or not key
                or not values
                or not all(isinstance(v, str) for v in values)
            ):
                raise ValidationError(f"matchers.{key}", value, "expected a label value or a list of values")
            clean[key] = values
        if (
            isinstance(duration_s, bool)
            or not isinstance(duration_s, (int, float))
            or not 0 < duration_s <= 366 * 86400
        ):
            raise ValidationError("duration", duration_s, "expected a positive duration of at most a year")
        if not created_by:
            raise ValidationError("created_by", created_by, "name who silences")
        start = time.time() if starts_at is None else starts_at
        silence = Silence(
            uuid.uuid4().hex, clean, start, start + float(duration_s), created_by[:250], comment
        )
        self.db.ensure_schema()
        with self.db.write("add silence") as conn:
            conn.execute(
                SI.insert().values(
                    id=silence.id,
                    matchers=json.dumps(clean, sort_keys=True),
                    starts_at=silence.starts_at,
                    ends_at=silence.ends_at,
                    created_by=silence.created_by,
                    comment=comment,
                    created_at=time.time(),
                )
            )
        return silence

    def unsilence(self, silence_id: str, *, now: float | None = None) -> bool:
        """End a silence now. False when there is no active silence with that id."""
        now = time.time() if now is None else now
        self.db.ensure_schema()
        with self.db.write("end silence") as conn:
            return bool(
                conn.execute(
                    update(SI).where(SI.c.id == silence_id, SI.c.ends_at > now).values(ends_at=now)
                ).rowcount
            )

    def silences(self, *, include_expired: bool = False) -> list[Silence]:
        self.db.ensure_schema()
        stmt = select(SI).order_by(SI.c.starts_at)
        if not include_expired:
            stmt = stmt.where(SI.c.ends_at > time.time())
        with self.db.read("read silences") as conn:
            return [_silence_from(row) for row in conn.execute(stmt)]


def _silence_from(row: Any) -> Silence:
    return Silence(row.id, json.loads(row.matchers), row.starts_at, row.ends_at, row.created_by, row.comment)


class StoreAlertSource:
    """The reads alert conditions make (``core.alerts.conditions.AlertSource``), on the store.

    Metric reads are batched: the first rule asking for a metric over a window fetches
    count, sum, min, max and last of every series of that metric in that window (one query);
    every other rule on the same metric and window is answered from that, by subset-matching
    its labels. One evaluation of a thousand rules makes one query per metric and window,
    not one per rule. Build one source per evaluation (the cache is its snapshot).
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self._series: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self._stats: dict[tuple[int, int, int], Any] = {}
        self._fetched: set[tuple[int, int, int]] = set()
        self._index: dict[str, dict[tuple[str, str], set[int]]] = {}
        self._matches: dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[int, dict[str, str]]]] = {}

    def _matching(self, name: str, labels: Mapping[str, str]) -> list[tuple[int, dict[str, str]]]:
        """The series of ``name`` whose labels include ``labels`` (an inverted index per name)."""
        key = (name, frozenset(labels.items()))
        found = self._matches.get(key)
        if found is not None:
            return found
        if name not in self._series:
            self._series.update(self.store.metrics.catalogue([name]))
        series = self._series[name]
        if not labels:
            found = list(series)
        else:
            index = self._index.get(name)
            if index is None:
                index = self._index[name] = {}
                for sid, have in series:
                    for item in have.items():
                        index.setdefault(item, set()).add(sid)
            ids = set.intersection(*(index.get(item, set()) for item in labels.items()))
            found = [(sid, have) for sid, have in series if sid in ids]
        self._matches[key] = found
        return found

    def prepare(self, needs: Sequence[tuple[str, Mapping[str, str], float, float]]) -> None:
        """Fetch, in two queries, every metric window the rules about to be observed will read:
        the series of their metrics, then the figures of every (series, window) pair."""
        from etlops_airflow.store.metrics import window_ms

        names = {name for name, _, _, _ in needs if name not in self._series}
        if names:
            self._series.update(self.store.metrics.catalogue(sorted(names)))
        requests = []
        for name, labels, start, end in needs:
            span = window_ms(start, end, None)
            requests += [(sid, *span) for sid, _ in self._matching(name, labels)]
        self._load([r for r in requests if r not in self._fetched])

    def _load(self, requests: list[tuple[int, int, int]]) -> None:
        if requests:
            self._stats.update(self.store.metrics.stats(requests))
            self._fetched.update(requests)

    def _rows(
        self, name: str, labels: Mapping[str, str], start: float, end: float
    ) -> list[tuple[dict[str, str], Any]]:
        from etlops_airflow.store.metrics import window_ms

        span = window_ms(start, end, None)
        matching = self._matching(name, labels)
        self._load([(sid, *span) for sid, _ in matching if (sid, *span) not in self._fetched])
        return [(have, self._stats[(sid, *span)]) for sid, have in matching if (sid, *span) in self._stats]

    def metric_value(
        self, name: str, fn: str, labels: Mapping[str, str], start: float, end: float
    ) -> float | None:
        return _combine([stats for _, stats in self._rows(name, labels, start, end)], fn)

    def metric_values_by(
        self, name: str, by: Sequence[str], fn: str, labels: Mapping[str, str], start: float, end: float
    ) -> list[tuple[dict[str, str], float]]:
        groups: dict[tuple[tuple[str, str], ...], list[Any]] = {}
        for have, stats in self._rows(name, labels, start, end):
            key = tuple((k, have[k]) for k in by if k in have)
            groups.setdefault(key, []).append(stats)
        out = []
        for key, rows in sorted(groups.items()):
            value = _combine(rows, fn)
            if value is not None:
                out.append((dict(key), value))
        return out

    def error_counts(
        self, start: float, end: float, dag_id: str | None, task_id: str | None, by: Sequence[str]
    ) -> list[tuple[dict[str, str], int, int]]:
        rows: list[tuple[dict[str, str], int, int]] = self.store.outcomes.error_counts(
            start, end, dag_id=dag_id, task_id=task_id, by=tuple(by)
        )
        return rows

    def failure_streaks(self, dag_id: str | None, task_id: str | None) -> list[tuple[dict[str, str], int]]:
        if task_id is not None:
            rows: list[tuple[dict[str, str], int]] = self.store.outcomes.failure_streaks(dag_id, task_id)
        else:
            rows = self.store.dag_runs.failure_streaks(dag_id)
        return rows

    def latest_run_id(self, dag_id: str, task_id: str | None) -> str | None:
        if task_id is not None:
            tries = self.store.outcomes.query(dag_id=dag_id, task_id=task_id, limit=1)
            return tries[0].run_id if tries else None
        runs = self.store.dag_runs.query(dag_id=dag_id, limit=1)
        return runs[0].run_id if runs else None


def _combine(rows: Sequence[Any], fn: str) -> float | None:
    """One aggregate over several series' window stats (``None`` when there is no point)."""
    if not rows:
        return None
    if fn == "count":
        return float(sum(r.count for r in rows))
    if fn == "sum":
        return float(sum(r.sum for r in rows))
    if fn == "min":
        return float(min(r.min for r in rows))
    if fn == "max":
        return float(max(r.max for r in rows))
    if fn == "avg":
        return float(sum(r.sum for r in rows) / sum(r.count for r in rows))
    if fn == "last":
        return float(max(rows, key=lambda r: (r.last_ts_ms, r.last_id)).last)
    raise ValidationError("fn", fn, "expected avg, sum, min, max, count or last")


def count_by_state(alerts: Iterable[AlertState]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for alert in alerts:
        counts[alert.state] = counts.get(alert.state, 0) + 1
    return counts


__all__ = ["AlertsStore", "NewNotification", "OutboxRow", "StoreAlertSource", "count_by_state"]
