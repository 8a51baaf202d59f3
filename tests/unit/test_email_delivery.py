"""E-mail notifications: the format, and EmailSender against a real SMTP server (aiosmtpd in a
thread) through Airflow's SmtpHook and an ``AIRFLOW_CONN_*`` connection."""

from __future__ import annotations

import base64
import json
import time
from email.message import EmailMessage

import pytest

from etlops_airflow.core.alerts.email_format import MAX_SUBJECT_LENGTH, render_email, render_subject
from etlops_airflow.core.alerts.views import AlertView, MessageView
from etlops_airflow.exceptions import ValidationError
from etlops_airflow.notifications.delivery import Attempt, DeliveryResult
from etlops_airflow.notifications.email import EmailSender
from tests.fixtures.smtp_server import SmtpServer

PASSWORD = "s3cret-Pa55word-xyz"


def _alert(**overrides: object) -> AlertView:
    fields: dict[str, object] = {
        "fingerprint": "fp1",
        "rule_id": "orders_failing",
        "title": "Orders pipeline failing",
        "severity": "high",
        "state": "firing",
        "value": 3.0,
        "threshold": ">= 3 failed DAG runs in a row",
        "labels": {"dag_id": "orders", "team": "data"},
        "description": "orders failed 3 runs in a row",
        "runbook_url": "https://wiki.example.com/runbooks/orders",
        "active_since": 1_700_000_000.0,
        "links": {"DAG run": "https://airflow.example.com/dags/orders/runs/r1"},
    }
    fields.update(overrides)
    return AlertView(**fields)  # type: ignore[arg-type]


def _view(firing: list[AlertView] | None = None, resolved: list[AlertView] | None = None) -> MessageView:
    return MessageView(
        title="[FIRING:2] Orders pipeline failing",
        reason="initial",
        group_labels={"team": "data"},
        firing=[_alert(), _alert(fingerprint="fp2", severity="medium")] if firing is None else firing,
        resolved=[] if resolved is None else resolved,
        idempotency_key="group-1:1",
    )


def _connect(
    monkeypatch: pytest.MonkeyPatch,
    server: SmtpServer,
    conn_id: str = "etlops_test_smtp",
    *,
    login: str | None = None,
    password: str | None = None,
    **extra: object,
) -> str:
    """An smtp connection as Airflow reads it from the environment (JSON form)."""
    extras: dict[str, object] = {
        # SmtpHook defaults to SMTP over SSL and to STARTTLS: both off for a plain test server.
        "disable_ssl": True,
        "disable_tls": True,
        "from_email": "etlops@example.com",
        "timeout": 5,
        "retry_limit": 5,
    }
    extras.update(extra)
    conn: dict[str, object] = {"conn_type": "smtp", "host": server.host, "port": server.port, "extra": extras}
    if login is not None:
        conn["login"] = login
    if password is not None:
        conn["password"] = password
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def _send(
    sender: EmailSender, view: MessageView | None = None, budget: float = 10.0
) -> tuple[DeliveryResult, list[Attempt]]:
    attempts: list[Attempt] = []
    subject, html, text = render_email(view or _view())
    result = sender.send(subject, html, text, deadline=time.monotonic() + budget, on_attempt=attempts.append)
    return result, attempts


def _parts(message: EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): str(part.get_content()) for part in message.iter_parts()}


# --- the format ---------------------------------------------------------------------------------


def test_subject_is_one_bounded_line() -> None:
    assert render_subject(_view()) == "[FIRING:2] high: Orders pipeline failing"
    hostile = _alert(title="a\r\nBcc: evil@example.com\u2028" + "x" * 1000)
    view = MessageView("line one\nline two" + "y" * 500, "initial", {}, [hostile], [], "k")
    subject = render_subject(view)
    assert "\n" not in subject and "\r" not in subject and "\u2028" not in subject
    assert len(subject) <= MAX_SUBJECT_LENGTH
    assert subject.startswith("[FIRING:1] high: line one line two")


def test_only_resolved_subject_and_sections() -> None:
    view = _view(firing=[], resolved=[_alert(state="resolved", severity="low", resolved_at=1_700_000_600.0)])
    subject, html, text = render_email(view)
    assert subject == "[RESOLVED:1] low: Orders pipeline failing"
    assert "Resolved (1)" in html and "Firing" not in html
    assert "RESOLVED (1)" in text and "resolved at 2023-11-14 22:23:20 UTC" in text


def test_format_shows_every_field() -> None:
    acked = _alert(acked_by="alice")
    view = _view(firing=[acked], resolved=[_alert(fingerprint="fp3", state="resolved", value=None)])
    _, html, text = render_email(view)
    for part in (html, text):
        assert "Firing (1)" in part or "FIRING (1)" in part
        assert "acknowledged by alice" in part
        assert "&gt;= 3 failed DAG runs in a row" in part or ">= 3 failed DAG runs in a row" in part
        assert "dag_id=orders" in part
        assert "orders failed 3 runs in a row" in part
        assert "https://airflow.example.com/dags/orders/runs/r1" in part
        assert "https://wiki.example.com/runbooks/orders" in part
        assert "no data" in part
    assert '<a href="https://airflow.example.com/dags/orders/runs/r1">' in html
    assert '<a href="https://wiki.example.com/runbooks/orders">' in html


def test_html_escapes_user_text_and_links_only_http() -> None:
    hostile = _alert(
        title='<b onmouseover="x">rule</b>',
        rule_id="r<1>",
        description="<script>alert(1)</script>\nsecond line",
        labels={"<k>": '"><img src=x onerror=alert(1)>'},
        links={"evil": "javascript:alert(1)", "data": "data:text/html,<b>", "ok": 'https://a.example/?q="x"'},
        runbook_url="javascript:alert(2)",
        acked_by="<i>mallory</i>",
        threshold="x < 1 & y > 2",
    )
    _, html, text = render_email(_view(firing=[hostile]))
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;<br>" in html
    assert "<img" not in html and "<i>" not in html and 'onmouseover="' not in html
    assert "javascript:" not in html and "data:text" not in html
    assert 'href="https://a.example/?q="' not in html  # a quote ends no attribute: not a link at all
    assert "x &lt; 1 &amp; y &gt; 2" in html
    assert "javascript:" not in text and "<script>alert(1)</script>" in text  # plain text is not HTML


# --- the sender against a real server -----------------------------------------------------------


def test_mail_arrives_with_text_and_html_parts(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _connect(monkeypatch, smtp_server)
    sender = EmailSender(conn_id, to=["oncall@example.com", "lead@example.com"], cc=["audit@example.com"])
    result, attempts = _send(sender)

    assert result.ok and not result.permanent and result.error is None
    assert [(a.status, a.error) for a in attempts] == [(250, None)]
    (got,) = smtp_server.wait_for(1)
    assert got.mail_from == "etlops@example.com"
    assert set(got.rcpt_tos) == {"oncall@example.com", "lead@example.com", "audit@example.com"}
    msg = got.message
    assert msg["Subject"] == "[FIRING:2] high: Orders pipeline failing"
    assert msg["From"] == "etlops@example.com"
    assert msg["To"] == "oncall@example.com, lead@example.com"
    assert msg["Cc"] == "audit@example.com"
    assert msg["Message-ID"] == result.external_id
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    parts = _parts(msg)
    assert "Orders pipeline failing" in parts["text/plain"] and "<table" not in parts["text/plain"]
    assert "<table" in parts["text/html"] and "Firing (2)" in parts["text/html"]


def test_script_in_a_description_arrives_escaped(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _connect(monkeypatch, smtp_server)
    view = _view(firing=[_alert(description="<script>alert('x')</script> ünïcode ✓")])
    result, _ = _send(EmailSender(conn_id, to=["oncall@example.com"]), view)

    assert result.ok
    html = _parts(smtp_server.wait_for(1)[0].message)["text/html"]
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; ünïcode ✓" in html


def test_a_header_cannot_be_injected_through_the_subject(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _connect(monkeypatch, smtp_server)
    sender = EmailSender(conn_id, to=["oncall@example.com"])
    attempts: list[Attempt] = []
    result = sender.send(
        "alert\r\nBcc: evil@example.com",
        "<p>x</p>",
        "x",
        deadline=time.monotonic() + 10,
        on_attempt=attempts.append,
    )

    assert result.ok
    (got,) = smtp_server.wait_for(1)
    assert got.rcpt_tos == ("oncall@example.com",)
    assert got.message["Bcc"] is None and got.message["Subject"] == "alert Bcc: evil@example.com"


@pytest.mark.parametrize(("code", "stage"), [(451, "RCPT"), (421, "MAIL"), (451, "DATA")])
def test_a_temporary_error_is_retried(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, code: int, stage: str
) -> None:
    conn_id = _connect(monkeypatch, smtp_server)
    smtp_server.fail_next(1, code, stage=stage)
    result, attempts = _send(EmailSender(conn_id, to=["oncall@example.com"]))

    assert result.ok and result.error is None
    assert [a.status for a in attempts] == [code, 250]
    assert str(code) in (attempts[0].error or "") and attempts[1].error is None
    assert attempts[0].at <= attempts[1].at
    assert smtp_server.transactions == 2
    assert len(smtp_server.wait_for(1)) == 1


def test_retries_stop_at_the_connections_retry_limit(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _connect(monkeypatch, smtp_server, retry_limit=1)
    smtp_server.fail_next(5, 451)
    result, attempts = _send(EmailSender(conn_id, to=["oncall@example.com"]))

    assert not result.ok and not result.permanent and result.retry_after is not None
    assert [a.status for a in attempts] == [451, 451]
    assert result.error is not None and "451" in result.error
    assert smtp_server.messages == []


def test_a_permanent_error_is_not_retried(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = _connect(monkeypatch, smtp_server)
    smtp_server.fail_next(1, 550)
    result, attempts = _send(EmailSender(conn_id, to=["nobody@example.com"]))

    assert not result.ok and result.permanent and result.retry_after is None
    assert result.error is not None and "550" in result.error and "nobody@example.com" in result.error
    assert [a.status for a in attempts] == [550]
    assert smtp_server.transactions == 1 and smtp_server.messages == []


def test_server_down_fails_within_the_deadline(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _connect(monkeypatch, smtp_server)
    smtp_server.stop()
    started = time.monotonic()
    result, attempts = _send(EmailSender(conn_id, to=["oncall@example.com"]), budget=1.5)
    elapsed = time.monotonic() - started

    assert not result.ok and not result.permanent and result.retry_after is not None
    assert elapsed < 1.5 + 0.5
    assert len(attempts) >= 2
    assert all(a.status is None and "connection refused" in (a.error or "") for a in attempts)
    assert f"127.0.0.1:{smtp_server.port}" in (result.error or "")


def test_a_hung_server_does_not_hold_the_sender_past_the_deadline(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _connect(monkeypatch, smtp_server, timeout=30)  # the hook's socket time-out alone: 30 s
    smtp_server.delay_next(5, seconds=5.0)
    started = time.monotonic()
    result, attempts = _send(EmailSender(conn_id, to=["oncall@example.com"]), budget=1.0)
    elapsed = time.monotonic() - started

    assert not result.ok and not result.permanent and result.retry_after is not None
    assert elapsed < 1.0 + 0.5
    assert attempts and all(a.status is None and "timed out" in (a.error or "") for a in attempts)


def test_a_missing_connection_or_sender_is_permanent(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, attempts = _send(EmailSender("etlops_no_such_smtp", to=["oncall@example.com"]))
    assert not result.ok and result.permanent and "not found" in (result.error or "")
    assert len(attempts) == 1

    conn_id = _connect(monkeypatch, smtp_server, "etlops_test_smtp_nofrom", from_email="")
    result, attempts = _send(EmailSender(conn_id, to=["oncall@example.com"]))
    assert not result.ok and result.permanent and "from_email" in (result.error or "")
    assert len(attempts) == 1

    result, _ = _send(EmailSender(conn_id, to=["oncall@example.com"], from_email="other@example.com"))
    assert result.ok
    assert smtp_server.wait_for(1)[0].message["From"] == "other@example.com"


def test_login_through_the_hook(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    smtp_server.require_auth("alerts", PASSWORD)
    conn_id = _connect(monkeypatch, smtp_server, "etlops_test_smtp_auth", login="alerts", password=PASSWORD)
    result, _ = _send(EmailSender(conn_id, to=["oncall@example.com"]))

    assert result.ok
    assert ("alerts", PASSWORD) in smtp_server.auth_attempts


def test_the_password_is_never_in_errors(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = (PASSWORD, base64.b64encode(PASSWORD.encode()).decode())
    conn_id = _connect(monkeypatch, smtp_server, "etlops_test_smtp_auth", login="alerts", password=PASSWORD)

    # A server that quotes the credentials it refused.
    smtp_server.require_auth("alerts", "the-right-one")
    smtp_server.echo_credentials = True
    refused, attempts = _send(EmailSender(conn_id, to=["oncall@example.com"]))
    assert not refused.ok and refused.permanent
    assert refused.error is not None and "535" in refused.error and "***" in refused.error
    assert [a.status for a in attempts] == [535]
    assert ("alerts", PASSWORD) in smtp_server.auth_attempts  # the server did get, and quote, it

    # And a server that is down.
    smtp_server.stop()
    down, down_attempts = _send(EmailSender(conn_id, to=["oncall@example.com"]), budget=0.6)
    assert not down.ok

    texts = [refused.error, down.error, *(a.error for a in (*attempts, *down_attempts))]
    texts += [repr(refused), repr(down), repr(EmailSender(conn_id, to=["oncall@example.com"]))]
    for text in texts:
        for secret in secrets:
            assert secret not in (text or "")


def test_a_failing_attempt_callback_does_not_stop_delivery(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _connect(monkeypatch, smtp_server)

    def broken(attempt: Attempt) -> None:
        raise RuntimeError("outbox down")

    result = EmailSender(conn_id, to=["oncall@example.com"]).send(
        "s", "<p>h</p>", "t", deadline=time.monotonic() + 10, on_attempt=broken
    )
    assert result.ok


@pytest.mark.parametrize(
    ("to", "cc"),
    [
        ("oncall@example.com", ()),
        ([], ()),
        (["not an address"], ()),
        (["a@example.com"], ["b@x\r\nBcc: c@x"]),
    ],
)
def test_recipients_are_checked(to: object, cc: object) -> None:
    with pytest.raises(ValidationError, match="EmailSender"):
        EmailSender("smtp", to=to, cc=cc)  # type: ignore[arg-type]
