"""Evaluation and delivery end to end on a real store, a Slack stand-in (a real HTTP server on
127.0.0.1 that answers like Slack, including 429 + Retry-After, 500s and dropped connections)
and a real SMTP server: each transition is delivered exactly once."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from etlops_airflow.alerting import run_evaluation
from etlops_airflow.core.alerts.rules import MetricThreshold, Receiver, Route, Rule, RuleSet
from etlops_airflow.core.models import MetricPoint
from etlops_airflow.store import Store
from tests.fixtures.slack_server import TOKEN, Reply, SlackServer
from tests.fixtures.smtp_server import SmtpServer

POST = "/api/chat.postMessage"


@pytest.fixture
def lite(tmp_path: Path) -> Store:
    store = Store.from_url(f"sqlite:///{tmp_path / 'alerts.db'}")
    store.upgrade()
    return store


@pytest.fixture
def slack_bot(monkeypatch: pytest.MonkeyPatch, slack_server: SlackServer) -> str:
    conn = {"conn_type": "slack", "password": TOKEN, "extra": {"base_url": slack_server.api_url}}
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_OPS", json.dumps(conn))
    return "slack_ops"


@pytest.fixture
def slack_hook(monkeypatch: pytest.MonkeyPatch, slack_server: SlackServer) -> str:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_HOOK",
        json.dumps({"conn_type": "slackwebhook", "password": slack_server.webhook_url}),
    )
    return "slack_hook"


def _rules(conn_id: str, *, by: list[str] | None = None, **route: object) -> RuleSet:
    rule = Rule(
        id="slow-load",
        name="Orders load too slow",
        severity="high",
        description="only {{ value }} rows loaded into {{ table }}",
        runbook_url="https://wiki.example.com/runbooks/orders",
        condition=MetricThreshold(
            metric="rows_loaded",
            labels={"table": "orders"},
            fn="sum",
            window="1h",
            op="<",
            threshold=100,
            resolve_threshold=150,
            by=by or (),
        ),
    )
    receivers = {"ops": Receiver(name="ops", type="slack", conn_id=conn_id, channel="#etl-alerts")}
    return RuleSet(
        rules=[rule], receivers=receivers, routes=[Route(receivers=["ops"], group_wait=0, **route)]
    )  # type: ignore[arg-type]


def _rows(store: Store, value: float, **labels: str) -> None:
    store.metrics.write([MetricPoint("rows_loaded", value, {"table": "orders", **labels}, time.time())])


def test_each_transition_is_delivered_once_and_the_resolve_threads_under_it(
    lite: Store, slack_server: SlackServer, slack_bot: str
) -> None:
    rules = _rules(slack_bot)
    _rows(lite, 40)
    first = run_evaluation(rules, store=lite, base_url="https://airflow.example.com")
    assert (first.fired, first.queued, first.sent) == (1, 1, 1)
    for _ in range(3):  # still firing: nothing new to say
        again = run_evaluation(rules, store=lite)
        assert (again.fired, again.queued, again.sent) == (0, 0, 0)
    (post,) = slack_server.requests_to(POST)
    assert post.body["channel"] == "#etl-alerts" and "Orders load too slow" in post.body["text"]
    assert "only 40 rows loaded into orders" in json.dumps(post.body["blocks"])
    _rows(lite, 200)  # 240 in the hour: past the resolve threshold
    done = run_evaluation(rules, store=lite, now=lambda: time.time() + 301)  # after group_interval (5m)
    assert (done.resolved, done.sent) == (1, 1)
    posts = slack_server.requests_to(POST)
    assert len(posts) == 2
    original = next(iter(slack_server.messages.values()))
    assert posts[1].body["thread_ts"] == original.ts  # the resolve is a thread reply ...
    (update,) = slack_server.requests_to("/api/chat.update")
    assert (
        update.body["ts"] == original.ts and "RESOLVED" in update.body["text"]
    )  # ... and marks the original
    assert [(t.from_state, t.to_state) for t in lite.alerts.transitions()] == [
        ("inactive", "firing"),
        ("firing", "resolved"),
    ]


def test_no_request_before_retry_after_and_every_attempt_is_recorded(
    lite: Store, slack_server: SlackServer, slack_bot: str
) -> None:
    slack_server.script(Reply.rate_limited(2), Reply.server_error(500), Reply.drop_connection(), path=POST)
    _rows(lite, 40)
    summary = run_evaluation(_rules(slack_bot), store=lite, delivery_budget_s=20)
    assert summary.sent == 1
    posts = slack_server.requests_to(POST)
    assert len(posts) == 4
    assert posts[1].at - posts[0].at >= 2.0  # Retry-After honoured
    (row,) = lite.alerts.outbox()
    assert row.status == "sent" and row.attempts == 4
    statuses = [status for _, status, _ in lite.alerts.attempts(row.id)]
    assert statuses[0] == 429 and statuses[1] == 500 and statuses[-1] == 200


def test_what_cannot_wait_in_this_budget_stays_in_the_outbox_for_the_next_evaluation(
    lite: Store, slack_server: SlackServer, slack_bot: str
) -> None:
    slack_server.script(Reply.rate_limited(30), path=POST)
    _rows(lite, 40)
    rules = _rules(slack_bot)
    summary = run_evaluation(rules, store=lite, delivery_budget_s=2)
    assert (summary.sent, summary.retrying) == (0, 1)
    assert len(slack_server.requests_to(POST)) == 1
    (row,) = lite.alerts.outbox()
    assert row.status == "pending" and row.next_attempt_at >= time.time() + 25
    assert run_evaluation(rules, store=lite).sent == 0  # not before Retry-After
    assert len(slack_server.requests_to(POST)) == 1
    later = run_evaluation(rules, store=lite, now=lambda: time.time() + 31)
    assert later.sent == 1 and len(slack_server.requests_to(POST)) == 2


def test_an_undeliverable_notification_ends_marked_failed(
    lite: Store, slack_server: SlackServer, slack_bot: str
) -> None:
    slack_server.script(*[Reply.server_error(503)] * 50, path=POST)
    _rows(lite, 40)
    rules = _rules(slack_bot)
    started = time.monotonic()
    summary = run_evaluation(rules, store=lite, delivery_budget_s=3, max_attempts=3)
    assert time.monotonic() - started < 10  # within the budget (plus the evaluation)
    assert summary.sent == 0
    for _ in range(3):
        run_evaluation(rules, store=lite, delivery_budget_s=3, max_attempts=3, now=lambda: time.time() + 7200)
    (row,) = lite.alerts.outbox()
    assert row.status == "failed" and row.attempts >= 3 and "503" in (row.last_error or "")


def test_a_permanent_error_is_not_retried(lite: Store, slack_server: SlackServer, slack_bot: str) -> None:
    slack_server.script(Reply.slack_error("channel_not_found"), path=POST)
    _rows(lite, 40)
    summary = run_evaluation(_rules(slack_bot), store=lite)
    assert summary.failed == 1 and len(slack_server.requests_to(POST)) == 1
    assert lite.alerts.outbox()[0].status == "failed"


def test_fifty_alerts_of_one_rule_are_one_message(
    lite: Store, slack_server: SlackServer, slack_hook: str
) -> None:
    lite.metrics.write(
        [MetricPoint("rows_loaded", 5, {"table": "orders", "dag_id": f"dag_{i:02d}"}) for i in range(50)]
    )
    summary = run_evaluation(_rules(slack_hook, by=["dag_id"], group_by=["rule_id"]), store=lite)
    assert (summary.fired, summary.queued, summary.sent) == (50, 1, 1)
    (hook,) = slack_server.requests_to(slack_server.webhook_path)
    assert "[FIRING:50]" in hook.body["text"]  # and the stand-in accepted its blocks as valid


def test_two_evaluations_at_once_send_one_message(
    tmp_path: Path, slack_server: SlackServer, slack_hook: str
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    Store.from_url(url).upgrade()
    _rows(Store.from_url(url), 40)
    rules = _rules(slack_hook)
    barrier = threading.Barrier(2)
    results = []

    def evaluate() -> None:
        store = Store.from_url(url)  # as two schedulers would: their own connections
        barrier.wait()
        results.append(run_evaluation(rules, store=store, owner=threading.current_thread().name))

    threads = [threading.Thread(target=evaluate, name=f"scheduler-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.sent for r in results) == [0, 1]
    assert len(slack_server.requests_to(slack_server.webhook_path)) == 1


def test_silenced_alerts_are_not_sent_and_acknowledged_ones_not_repeated(
    lite: Store, slack_server: SlackServer, slack_hook: str
) -> None:
    rules = _rules(slack_hook, repeat_interval="10m")
    silence = lite.alerts.silence(
        {"rule_id": "slow-load"}, duration_s=600, created_by="ann", comment="deploy"
    )
    _rows(lite, 40)
    assert run_evaluation(rules, store=lite).queued == 0
    lite.alerts.unsilence(silence.id)
    assert run_evaluation(rules, store=lite).sent == 1
    (alert,) = lite.alerts.alerts(states=["firing"])
    lite.alerts.acknowledge(alert.fingerprint, "ann")
    assert run_evaluation(rules, store=lite, now=lambda: time.time() + 900).queued == 0  # no repeat
    _rows(lite, 500)
    assert (
        run_evaluation(rules, store=lite, now=lambda: time.time() + 1000).sent == 1
    )  # the resolve still goes
    assert "RESOLVED" in slack_server.requests_to(slack_server.webhook_path)[-1].body["text"]


def test_an_email_receiver_gets_html_and_text(
    lite: Store, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = {"from_email": "etlops@example.com", "disable_ssl": True, "disable_tls": True}
    conn = {"conn_type": "smtp", "host": smtp_server.host, "port": smtp_server.port, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", json.dumps(conn))
    rules = _rules("unused")
    mail = Receiver(name="oncall", type="email", conn_id="smtp_alerts", to=["oncall@example.com"])
    rules = RuleSet(
        rules=rules.rules, receivers={"oncall": mail}, routes=[Route(receivers=["oncall"], group_wait=0)]
    )
    _rows(lite, 40)
    assert run_evaluation(rules, store=lite).sent == 1
    (received,) = smtp_server.wait_for(1)
    assert list(received.rcpt_tos) == ["oncall@example.com"]
    assert "Orders load too slow" in str(received.message["Subject"])
    kinds = [part.get_content_type() for part in received.message.walk()]
    assert "text/plain" in kinds and "text/html" in kinds
