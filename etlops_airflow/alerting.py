"""Alert evaluation and delivery against the store: the adapter between the alerting engine
(``core/alerts``), the store and the senders (Slack, e-mail).

:func:`run_evaluation` is what ``EvaluateAlertRulesOperator``, the bundled ``etlops_alerting``
DAG and ``airflow etlops alerts evaluate`` run:

1. take the ``alert-evaluation`` lease lock (two evaluations at once — two schedulers, a
   manual run — never both decide or send: the second waits, then finds nothing new);
2. load the stored alerts, groups and silences; observe every enabled rule; step the
   alerts; plan the due notifications;
3. commit all of it, outbox rows included, in one transaction;
4. deliver due outbox rows within the delivery budget, recording every attempt.

A process killed after step 3 loses nothing: the next evaluation delivers the pending rows.
A process killed during a send leaves its row claimed; after ``stale_claim_s`` it is sent
again — the one window where a message can arrive twice (a webhook gives no way to ask
whether it arrived).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from etlops_airflow.core.alerts.engine import evaluate, plan_notifications, view_of
from etlops_airflow.core.alerts.grouping import Notification
from etlops_airflow.core.alerts.rules import Receiver, RuleSet
from etlops_airflow.core.alerts.state import FIRING, PENDING, RESOLVED, AlertState
from etlops_airflow.core.alerts.views import AlertView, MessageView

if TYPE_CHECKING:
    from etlops_airflow.notifications.delivery import Attempt, DeliveryResult
    from etlops_airflow.store import Store
    from etlops_airflow.store.alerts import NewNotification, OutboxRow

log = logging.getLogger("etlops_airflow.alerting")

LOCK = "alert-evaluation"
MAX_ATTEMPTS = 10
STALE_CLAIM_S = 600.0


@dataclass
class EvaluationSummary:
    """What one evaluation did (pushed to XCom by the operator)."""

    firing: int = 0
    pending: int = 0
    fired: int = 0  # transitions to firing in this evaluation
    resolved: int = 0  # transitions to resolved in this evaluation
    queued: int = 0  # notifications put in the outbox
    sent: int = 0
    failed: int = 0  # marked failed for good (permanent error or out of attempts)
    retrying: int = 0  # left in the outbox for a later evaluation
    errors: dict[str, str] = field(default_factory=dict)  # rule id -> error
    skipped: str | None = None  # why nothing was evaluated

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def airflow_links(base_url: str | None) -> Callable[[AlertState], dict[str, str]]:
    """Links from an alert to the Airflow UI: its DAG, and the DAG run when known."""

    def links(alert: AlertState) -> dict[str, str]:
        if not base_url:
            return {}
        from urllib.parse import quote

        out: dict[str, str] = {}
        dag_id = alert.labels.get("dag_id")
        if dag_id:
            out["DAG"] = f"{base_url}/dags/{quote(dag_id, safe='')}"
            run_id = alert.annotations.get("run_id")
            if run_id:
                out["DAG run"] = f"{base_url}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
        return out

    return links


def _acquire(store: Store, owner: str, ttl: float, at: float) -> bool:
    """Take the evaluation lock; a lock left by a dead process on this host is taken over at
    once (a SIGKILLed evaluation does not block the next one until its lease expires)."""
    if store.locks.acquire(LOCK, owner, ttl, now=at):
        return True
    holder = store.locks.holder(LOCK)
    if holder is not None and _dead_here(holder.owner):
        log.warning("etlops: alert evaluation lock of %s, a process that is gone, taken over", holder.owner)
        return store.locks.take_over(LOCK, holder.owner, owner, ttl, now=at)
    return False


def _dead_here(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _airflow_base_url() -> str | None:
    try:
        from airflow.sdk.configuration import conf

        url = conf.get("api", "base_url", fallback="") or ""
    except Exception:
        return None
    return url.rstrip("/") or None


def run_evaluation(
    ruleset: RuleSet,
    *,
    store: Store | None = None,
    owner: str | None = None,
    delivery_budget_s: float = 30.0,
    lock_wait_s: float = 60.0,
    now: Callable[[], float] = time.time,
    base_url: str | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> EvaluationSummary:
    """Evaluate ``ruleset`` against the store and deliver what is due (see module docstring)."""
    from etlops_airflow.store.alerts import StoreAlertSource

    if store is None:
        from etlops_airflow.runtime import get_store

        store = get_store()
    owner = owner or default_owner()
    summary = EvaluationSummary()
    ttl = delivery_budget_s + 120.0
    deadline = time.monotonic() + lock_wait_s
    while not _acquire(store, owner, ttl, now()):
        if time.monotonic() >= deadline:
            holder = store.locks.holder(LOCK)
            summary.skipped = f"another evaluation holds the lock ({holder.owner if holder else 'unknown'})"
            log.warning("etlops: alert evaluation skipped: %s", summary.skipped)
            return summary
        time.sleep(0.2)
    try:
        at = now()
        loaded_at = time.time()
        previous, groups, silences = store.alerts.load()
        result = evaluate(ruleset, StoreAlertSource(store), previous, at, recovered=_recovered(store))
        new_groups, due = plan_notifications(ruleset, result.alerts, groups, silences, at)
        rows = _outbox_rows(ruleset, due, base_url)
        changed = [a for fp, a in result.alerts.items() if previous.get(fp) != a]
        removed = [fp for fp in previous if fp not in result.alerts]
        summary.queued = store.alerts.commit_evaluation(
            changed, removed, result.transitions, new_groups, rows, now=at, loaded_at=loaded_at
        )
        summary.errors = dict(result.errors)
        summary.firing = result.count(FIRING)
        summary.pending = result.count(PENDING)
        summary.fired = sum(1 for t in result.transitions if t.to_state == FIRING)
        summary.resolved = sum(1 for t in result.transitions if t.to_state == RESOLVED)
        for rule_id, error in result.errors.items():
            log.error("etlops: alert rule %r could not be evaluated: %s", rule_id, error)
        sent, failed, retrying = deliver_outbox(
            store, ruleset, owner=owner, budget_s=delivery_budget_s, now=now, max_attempts=max_attempts
        )
        summary.sent, summary.failed, summary.retrying = sent, failed, retrying
    finally:
        store.locks.release(LOCK, owner)
    return summary


def _outbox_rows(ruleset: RuleSet, due: list[Notification], base_url: str | None) -> list[NewNotification]:
    from etlops_airflow.store.alerts import NewNotification

    links = airflow_links(base_url if base_url is not None else _airflow_base_url())
    rows = []
    for notification in due:
        payload = _payload(view_of(notification, ruleset, links))
        for receiver in notification.receivers:
            rows.append(
                NewNotification(notification.idempotency_key, notification.root_key, receiver, payload)
            )
    return rows


def _recovered(store: Store) -> Callable[[AlertState], bool]:
    """Has the DAG (or task) of a callback alert succeeded since it fired?"""

    def recovered(alert: AlertState) -> bool:
        dag_id = alert.labels.get("dag_id")
        if not dag_id:
            return False
        task_id = alert.labels.get("task_id")
        if task_id:
            streaks = store.outcomes.failure_streaks(dag_id, task_id)
        else:
            streaks = store.dag_runs.failure_streaks(dag_id)
        # recovered when the newest outcome is a success recorded after the alert fired
        return bool(streaks) and streaks[0][1] == 0 and _latest_success_after(store, dag_id, task_id, alert)

    return recovered


def _latest_success_after(store: Store, dag_id: str, task_id: str | None, alert: AlertState) -> bool:
    since = alert.active_since or 0.0
    if task_id:
        return bool(
            store.outcomes.query(dag_id=dag_id, task_id=task_id, states=["success"], since=since, limit=1)
        )
    return bool(store.dag_runs.query(dag_id=dag_id, states=["success"], since=since, limit=1))


def raise_callback_alert(
    ruleset: RuleSet | Callable[[], RuleSet],
    *,
    rule_id: str,
    severity: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    store: Store,
    delivery_budget_s: float = 10.0,
    now: Callable[[], float] = time.time,
    base_url: str | None = None,
) -> dict[str, Any]:
    """Raise (or keep) a callback's alert, then — when no evaluation is running — plan and
    deliver what is due now. Grouping, silences and the outbox apply as for rules; a
    ``group_wait`` not yet over is left to the next evaluation (the ``etlops_alerting`` DAG).

    ``ruleset`` may be a loader: the alert is recorded first, so a rule file that fails to
    load loses the delivery for now (the error is raised), never the alert itself."""
    from etlops_airflow.core.alerts.engine import CALLBACK

    full = {**dict(labels), "rule_id": rule_id, "severity": severity}
    alert, started = store.alerts.raise_alert(
        rule_id, full, {**dict(annotations), "source": CALLBACK}, now=now()
    )
    if callable(ruleset):
        ruleset = ruleset()
    owner = default_owner()
    if not _acquire(store, owner, delivery_budget_s + 120.0, now()):
        return {
            "fingerprint": alert.fingerprint,
            "started": started,
            "queued": 0,
            "sent": 0,
            "deferred": True,
        }
    try:
        at = now()
        alerts, groups, silences = store.alerts.load()
        new_groups, due = plan_notifications(ruleset, alerts, groups, silences, at)
        queued = store.alerts.commit_evaluation(
            [], [], [], new_groups, _outbox_rows(ruleset, due, base_url), now=at
        )
        sent, failed, later = deliver_outbox(store, ruleset, owner=owner, budget_s=delivery_budget_s, now=now)
    finally:
        store.locks.release(LOCK, owner)
    return {
        "fingerprint": alert.fingerprint,
        "started": started,
        "queued": queued,
        "sent": sent,
        "failed": failed,
    }


# -- delivery ------------------------------------------------------------------------------------


def _payload(view: MessageView) -> dict[str, Any]:
    return asdict(view)


def view_from_payload(payload: Mapping[str, Any]) -> MessageView:
    data = dict(payload)
    data["firing"] = [AlertView(**a) for a in data.get("firing", [])]
    data["resolved"] = [AlertView(**a) for a in data.get("resolved", [])]
    return MessageView(**data)


def deliver_outbox(
    store: Store,
    ruleset: RuleSet,
    *,
    owner: str,
    budget_s: float,
    now: Callable[[], float] = time.time,
    max_attempts: int = MAX_ATTEMPTS,
    senders: Mapping[str, Callable[[Receiver], Any]] | None = None,
) -> tuple[int, int, int]:
    """Deliver due outbox rows, oldest first, within ``budget_s`` seconds. Returns (sent,
    failed, left for later)."""
    deadline = time.monotonic() + budget_s
    sent = failed = later = 0
    for row in store.alerts.due(now=now(), stale_claim_s=STALE_CLAIM_S):
        if time.monotonic() >= deadline:
            later += 1
            continue
        receiver = ruleset.receivers.get(row.receiver)
        if receiver is None:
            if store.alerts.claim(row.id, owner, now=now(), stale_claim_s=STALE_CLAIM_S):
                store.alerts.finish(
                    row.id,
                    status="failed",
                    now=now(),
                    error=f"receiver {row.receiver!r} is not in the rule file",
                )
                failed += 1
            continue
        if not store.alerts.claim(row.id, owner, now=now(), stale_claim_s=STALE_CLAIM_S):
            continue  # another sender has it
        tried = [0]
        try:
            result = _send(store, row, receiver, deadline, (senders or {}).get(receiver.type), tried)
        except Exception as exc:  # a bug or a broken connection definition: never lose the row
            from etlops_airflow.notifications.delivery import DeliveryResult

            error = f"{type(exc).__name__}: {exc}"
            result = DeliveryResult(
                ok=False, permanent=False, retry_after=None, error=error, external_id=None
            )
            store.alerts.record_attempt(row.id, now(), None, error)
            tried[0] += 1
        if result.ok:
            store.alerts.finish(row.id, status="sent", now=now(), external_id=result.external_id)
            sent += 1
            continue
        attempts = row.attempts + tried[0]
        if result.permanent or attempts >= max_attempts:
            store.alerts.finish(row.id, status="failed", now=now(), error=result.error)
            log.error(
                "etlops: notification %s to %s failed for good: %s",
                row.idempotency_key,
                row.receiver,
                result.error,
            )
            failed += 1
        else:
            wait = (
                result.retry_after
                if result.retry_after is not None
                else min(3600.0, 15.0 * 2 ** (attempts - 1))
            )
            store.alerts.finish(
                row.id, status="pending", now=now(), error=result.error, next_attempt_at=now() + wait
            )
            later += 1
    return sent, failed, later


def _send(
    store: Store,
    row: OutboxRow,
    receiver: Receiver,
    deadline: float,
    factory: Callable[[Receiver], Any] | None,
    tried: list[int],
) -> DeliveryResult:
    def record(attempt: Attempt) -> None:
        tried[0] += 1
        store.alerts.record_attempt(row.id, attempt.at, attempt.status, attempt.error)

    view = view_from_payload(row.payload)
    if receiver.type == "slack":
        from etlops_airflow.core.alerts.slack_format import render_slack, render_slack_resolved_update

        if factory is not None:
            sender = factory(receiver)
        else:
            from etlops_airflow.notifications.slack import SlackSender

            sender = SlackSender(receiver.conn_id, receiver.channel)
        thread_of = None
        only_resolved = bool(view.resolved) and not view.firing
        if only_resolved and sender.supports_threads and row.root_key and row.root_key != row.idempotency_key:
            thread_of = store.alerts.external_id_of(row.root_key, receiver.name)
        text, blocks = render_slack(view)
        result: DeliveryResult = sender.send(
            text, blocks, deadline=deadline, on_attempt=record, thread_of=thread_of
        )
        if result.ok and thread_of:
            up_text, up_blocks = render_slack_resolved_update(view)
            updated = sender.update(thread_of, up_text, up_blocks, deadline=deadline, on_attempt=record)
            if not updated.ok:
                log.warning("etlops: could not mark the original Slack message resolved: %s", updated.error)
        return result
    from etlops_airflow.core.alerts.email_format import render_email

    if factory is not None:
        mailer = factory(receiver)
    else:
        from etlops_airflow.notifications.email import EmailSender

        mailer = EmailSender(receiver.conn_id, receiver.to, receiver.cc)
    subject, html, text = render_email(view)
    mailed: DeliveryResult = mailer.send(subject, html, text, deadline=deadline, on_attempt=record)
    return mailed
