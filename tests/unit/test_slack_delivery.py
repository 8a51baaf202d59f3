"""Slack delivery against the Slack stand-in (a real HTTP server on 127.0.0.1, in a thread):
connections of both provider types as AIRFLOW_CONN_* env vars, retries inside the deadline,
threads and updates, secrets kept out of errors, and messages within Slack's limits."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from etlops_airflow.core.alerts.slack_format import (
    HEADER_MAX,
    MAX_BLOCKS,
    SECTION_MAX,
    render_slack,
    render_slack_resolved_update,
)
from etlops_airflow.core.alerts.views import AlertView, MessageView
from etlops_airflow.notifications.slack import Attempt, DeliveryResult, SlackSender, read_connection
from tests.fixtures.slack_server import TOKEN, WEBHOOK_PATH, Reply, SlackServer

POST = "/api/chat.postMessage"
UPDATE = "/api/chat.update"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


def _conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
    return conn_id


@pytest.fixture
def bot(slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch) -> SlackSender:
    conn_id = _conn(
        monkeypatch, "slack_bot", conn_type="slack", password=TOKEN, extra={"base_url": slack_server.api_url}
    )
    return SlackSender(conn_id, channel="#alerts", backoff=0.1)


@pytest.fixture
def webhook(slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch) -> SlackSender:
    conn_id = _conn(monkeypatch, "slack_hook", conn_type="slackwebhook", password=slack_server.webhook_url)
    return SlackSender(conn_id, backoff=0.1)


class Attempts(list[Attempt]):
    def __call__(self, attempt: Attempt) -> None:
        self.append(attempt)

    @property
    def statuses(self) -> list[int | None]:
        return [a.status for a in self]


def _send(sender: SlackSender, budget: float = 15.0, **kwargs: Any) -> tuple[DeliveryResult, Attempts]:
    attempts = Attempts()
    result = sender.send(
        "hello", [_section("hello")], deadline=time.monotonic() + budget, on_attempt=attempts, **kwargs
    )
    return result, attempts


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


# -- delivery -------------------------------------------------------------------------------------


def test_plain_post_with_a_bot_token(bot: SlackSender, slack_server: SlackServer) -> None:
    result, attempts = _send(bot)

    assert result.ok and not result.permanent and result.error is None
    assert result.external_id is not None
    channel, _, ts = result.external_id.partition(":")
    assert channel.startswith("C") and float(ts) > 0
    [request] = slack_server.requests
    assert request.path == POST
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.body["channel"] == "#alerts"
    assert request.body["text"] == "hello" and request.body["blocks"] == [_section("hello")]
    assert slack_server.message(result.external_id).text == "hello"
    assert attempts.statuses == [200] and attempts[0].error is None
    assert abs(attempts[0].at - time.time()) < 10  # epoch seconds
    assert bot.supports_threads


def test_rate_limit_waits_for_retry_after_then_succeeds(bot: SlackSender, slack_server: SlackServer) -> None:
    slack_server.script(Reply.rate_limited(2))

    result, attempts = _send(bot)

    assert result.ok
    first, second = slack_server.requests
    assert second.at - first.at >= 2.0, "the retry came before Retry-After elapsed"
    assert attempts.statuses == [429, 200]
    assert attempts[0].error is not None and "ratelimited" in attempts[0].error
    assert attempts[1].at - attempts[0].at >= 2.0


def test_server_error_then_success(bot: SlackSender, slack_server: SlackServer) -> None:
    slack_server.script(Reply.server_error(500), Reply.server_error(503))

    result, attempts = _send(bot)

    assert result.ok and result.external_id
    assert attempts.statuses == [500, 503, 200]
    assert len(slack_server.requests) == 3
    assert len(slack_server.messages) == 1


def test_dropped_connection_then_success(bot: SlackSender, slack_server: SlackServer) -> None:
    slack_server.script(Reply.drop_connection())

    result, attempts = _send(bot)

    assert result.ok
    assert attempts.statuses == [None, 200]
    assert attempts[0].error is not None and "connection error" in attempts[0].error
    assert len(slack_server.requests) == 2


def test_deadline_too_short_for_retry_after_hands_the_wait_back(
    bot: SlackSender, slack_server: SlackServer
) -> None:
    slack_server.script(Reply.rate_limited(5))
    started = time.monotonic()

    result, attempts = _send(bot, budget=2.0)

    assert time.monotonic() - started < 1.5, "waited although the deadline could not be met"
    assert not result.ok and not result.permanent
    assert result.retry_after is not None and 4.0 <= result.retry_after <= 5.0
    assert result.error is not None and "ratelimited" in result.error
    assert attempts.statuses == [429]
    time.sleep(0.3)
    assert len(slack_server.requests) == 1


def test_server_errors_until_max_attempts_are_not_permanent(
    slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _conn(
        monkeypatch, "slack_bot", conn_type="slack", password=TOKEN, extra={"base_url": slack_server.api_url}
    )
    sender = SlackSender(conn_id, channel="#alerts", max_attempts=3, backoff=0.05)
    slack_server.script(*[Reply.server_error(502)] * 5)

    result, attempts = _send(sender)

    assert not result.ok and not result.permanent and result.retry_after is not None
    assert attempts.statuses == [502, 502, 502]


def test_unreachable_server_is_retried_inside_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn_id = _conn(
        monkeypatch,
        "slack_bot",
        conn_type="slack",
        password=TOKEN,
        extra={"base_url": f"http://127.0.0.1:{port}/api/"},
    )
    sender = SlackSender(conn_id, channel="C0ALERTS", backoff=0.05)

    result, attempts = _send(sender, budget=1.5)

    assert not result.ok and not result.permanent
    assert len(attempts) >= 2 and set(attempts.statuses) == {None}
    assert all("Connection refused" in (a.error or "") for a in attempts)


@pytest.mark.parametrize("error", ["channel_not_found", "invalid_auth", "not_in_channel"])
def test_slack_errors_are_permanent_and_not_retried(
    bot: SlackSender, slack_server: SlackServer, error: str
) -> None:
    slack_server.script(Reply.slack_error(error))

    result, attempts = _send(bot)

    assert not result.ok and result.permanent and result.retry_after is None
    assert result.error is not None and error in result.error
    assert attempts.statuses == [200]
    assert len(slack_server.requests) == 1


def test_client_errors_are_permanent(bot: SlackSender, slack_server: SlackServer) -> None:
    slack_server.script(Reply(400, {"ok": False, "error": "invalid_arguments"}))

    result, attempts = _send(bot)

    assert result.permanent and attempts.statuses == [400]


def test_transient_slack_error_is_retried(bot: SlackSender, slack_server: SlackServer) -> None:
    slack_server.script(Reply.slack_error("internal_error"))

    result, attempts = _send(bot)

    assert result.ok and attempts.statuses == [200, 200]


def test_the_real_checks_of_the_stand_in_are_permanent(
    slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _conn(
        monkeypatch, "slack_bot", conn_type="slack", password=TOKEN, extra={"base_url": slack_server.api_url}
    )
    result, _ = _send(SlackSender(conn_id, channel="#missing-channel"))
    assert result.permanent and "channel_not_found" in (result.error or "")

    too_many = [_section(str(i)) for i in range(MAX_BLOCKS + 1)]
    attempts = Attempts()
    result = SlackSender(conn_id, channel="#alerts").send(
        "x", too_many, deadline=time.monotonic() + 5, on_attempt=attempts
    )
    assert result.permanent and "invalid_blocks" in (result.error or "") and "50" in (result.error or "")


def test_thread_reply_and_update_with_a_bot_token(bot: SlackSender, slack_server: SlackServer) -> None:
    original, _ = _send(bot)
    assert original.external_id

    attempts = Attempts()
    reply = bot.send(
        "resolved",
        [_section("resolved")],
        deadline=time.monotonic() + 10,
        on_attempt=attempts,
        thread_of=original.external_id,
    )
    updated = bot.update(
        original.external_id,
        "~hello~ resolved",
        [_section("~hello~ resolved")],
        deadline=time.monotonic() + 10,
        on_attempt=attempts,
    )

    assert reply.ok and updated.ok
    assert attempts.statuses == [200, 200]
    channel, _, original_ts = original.external_id.partition(":")
    assert reply.external_id is not None and reply.external_id.startswith(f"{channel}:")
    assert reply.external_id != original.external_id
    assert slack_server.message(reply.external_id).thread_ts == original_ts
    [post_reply] = [r for r in slack_server.requests_to(POST) if "thread_ts" in r.body]
    assert post_reply.body["channel"] == channel and post_reply.body["thread_ts"] == original_ts
    assert updated.external_id == original.external_id
    message = slack_server.message(original.external_id)
    assert message.edited and message.text == "~hello~ resolved"
    [update_request] = slack_server.requests_to(UPDATE)
    assert update_request.body == {
        "channel": channel,
        "ts": original_ts,
        "text": "~hello~ resolved",
        "blocks": [_section("~hello~ resolved")],
    }


def test_update_of_an_unknown_message_is_permanent(bot: SlackSender, slack_server: SlackServer) -> None:
    result = bot.update("C00000001:1.000001", "x", [], deadline=time.monotonic() + 5, on_attempt=Attempts())
    assert result.permanent and "message_not_found" in (result.error or "")
    result = bot.update("not-an-id", "x", [], deadline=time.monotonic() + 5, on_attempt=Attempts())
    assert result.permanent and len(slack_server.requests) == 1


def test_webhook_posts_but_has_no_threads(webhook: SlackSender, slack_server: SlackServer) -> None:
    result, attempts = _send(webhook)

    assert result.ok and result.external_id is None
    assert attempts.statuses == [200]
    assert not webhook.supports_threads
    [request] = slack_server.requests
    assert request.path == WEBHOOK_PATH and request.header("Authorization") is None
    assert request.body["text"] == "hello" and "channel" not in request.body

    # a "resolved" notice: no thread to reply in, so a message of its own; no update either
    reply, _ = _send(webhook, thread_of="C00000001:1.000001")
    assert reply.ok and "thread_ts" not in slack_server.requests[-1].body
    update_attempts = Attempts()
    updated = webhook.update(
        "C00000001:1.000001", "x", [], deadline=time.monotonic() + 5, on_attempt=update_attempts
    )
    assert updated.permanent and not updated.ok and update_attempts == []
    assert len(slack_server.requests) == 2


def test_webhook_retries_and_permanent_errors(webhook: SlackSender, slack_server: SlackServer) -> None:
    slack_server.script(Reply.rate_limited(1), Reply.server_error(500), path=WEBHOOK_PATH)
    result, attempts = _send(webhook)
    assert result.ok and attempts.statuses == [429, 500, 200]
    assert slack_server.requests[1].at - slack_server.requests[0].at >= 1.0

    slack_server.script(Reply(404, text_body="channel_not_found"))
    result, attempts = _send(webhook)
    assert result.permanent and attempts.statuses == [404]
    assert "channel_not_found" in (result.error or "")


def test_webhook_from_host_and_token_as_the_provider_allows(
    slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _conn(
        monkeypatch,
        "slack_hook_parts",
        conn_type="slackwebhook",
        host=f"{slack_server.url}/services/",
        password="/T000/B000/XXXX",
        extra={"extra__slackwebhook__timeout": "7"},
    )
    sender = SlackSender(conn_id)
    assert sender.target.secret == slack_server.webhook_url and sender.target.timeout == 7.0

    result, _ = _send(sender)

    assert result.ok and slack_server.requests[0].path == WEBHOOK_PATH


def test_bot_connection_with_prefixed_extras(
    slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _conn(
        monkeypatch,
        "slack_old",
        conn_type="slack",
        password=TOKEN,
        extra={"extra__slack__base_url": slack_server.api_url, "extra__slack__timeout": 12, "timeout": ""},
    )
    sender = SlackSender(conn_id, channel="C0ALERTS")
    assert sender.target.base_url == slack_server.api_url and sender.target.timeout == 12.0

    result, _ = _send(sender)

    assert result.ok and result.external_id is not None and result.external_id.startswith("C0ALERTS:")


class _Conn:
    def __init__(self, **fields: Any) -> None:
        self.conn_id = "c"
        self.conn_type = fields.pop("conn_type", "slackwebhook")
        self.host = fields.pop("host", None)
        self.schema = fields.pop("schema", None)
        self.password = fields.pop("password", None)
        self.extra_dejson = fields.pop("extra", {})


@pytest.mark.parametrize(
    ("fields", "url"),
    [
        ({"password": "T1/B1/X1"}, "https://hooks.slack.com/services/T1/B1/X1"),
        (
            {"password": " https://hooks.slack.com/services/T1/B1/X1 "},
            "https://hooks.slack.com/services/T1/B1/X1",
        ),
        (
            {"password": "T1/B1/X1", "host": "example.org/hooks", "schema": "http"},
            "http://example.org/hooks/T1/B1/X1",
        ),
        (
            {"password": "/T1/B1/X1/", "host": "https://example.org/hooks/"},
            "https://example.org/hooks/T1/B1/X1",
        ),
    ],
)
def test_webhook_url_is_built_like_the_provider(fields: dict[str, Any], url: str) -> None:
    assert read_connection(_Conn(**fields)).secret == url


def test_bad_connections_fail_permanently_without_a_request(
    slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    http = _conn(monkeypatch, "slack_http", conn_type="http", host="example.org", password="secret-password")
    empty = _conn(monkeypatch, "slack_empty", conn_type="slack", password="")
    bad_timeout = _conn(
        monkeypatch, "slack_bad", conn_type="slack", password=TOKEN, extra={"timeout": "soon"}
    )
    for conn_id, expected in [
        (http, "conn_type 'http'"),
        (empty, "password"),
        (bad_timeout, "extra.timeout 'soon'"),
        ("slack_missing", "slack_missing"),
    ]:
        result, attempts = _send(SlackSender(conn_id, channel="#alerts"))
        assert result.permanent and not result.ok and attempts == [], conn_id
        assert expected in (result.error or ""), result.error
        assert "secret-password" not in (result.error or "")
    no_channel, attempts = _send(
        SlackSender(
            _conn(
                monkeypatch,
                "slack_bot",
                conn_type="slack",
                password=TOKEN,
                extra={"base_url": slack_server.api_url},
            )
        )
    )
    assert no_channel.permanent and "channel" in (no_channel.error or "") and attempts == []
    assert slack_server.requests == []


def test_the_token_never_appears_in_errors_or_logs(
    slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "xoxb-wrong-token-SHOULD-NOT-LEAK"
    conn_id = _conn(
        monkeypatch,
        "slack_wrong",
        conn_type="slack",
        password=wrong,
        extra={"base_url": slack_server.api_url},
    )
    result, attempts = _send(SlackSender(conn_id, channel="#alerts"))
    assert result.permanent and "invalid_auth" in (result.error or "")

    # a server that echoes the secrets back
    bot_id = _conn(
        monkeypatch, "slack_bot", conn_type="slack", password=TOKEN, extra={"base_url": slack_server.api_url}
    )
    slack_server.script(Reply.server_error(500), Reply.slack_error(f"token {TOKEN} refused"), path=POST)
    echoed, echoed_attempts = _send(SlackSender(bot_id, channel="#alerts"))
    assert echoed.permanent and echoed_attempts.statuses == [500, 200]
    hook_id = _conn(monkeypatch, "slack_hook", conn_type="slackwebhook", password=slack_server.webhook_url)
    slack_server.script(
        Reply(500, text_body=f"failed: {slack_server.webhook_url}"), Reply(403, text_body=WEBHOOK_PATH)
    )
    hooked, hooked_attempts = _send(SlackSender(hook_id))
    assert hooked.permanent and hooked_attempts.statuses == [500, 403]

    texts = [
        repr(r)
        for r in (
            result,
            echoed,
            hooked,
            *attempts,
            *echoed_attempts,
            *hooked_attempts,
            SlackSender(hook_id).target,
        )
    ]
    texts += [record.getMessage() for record in caplog.records]
    for text in texts:
        for secret in (wrong, TOKEN, slack_server.webhook_url, "T000/B000/XXXX"):
            assert secret not in text, text


def test_an_unusable_webhook_url_is_permanent_and_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = _conn(
        monkeypatch, "slack_ftp", conn_type="slackwebhook", password="ftp://h/services/T9/B9/SECRET9"
    )

    result, attempts = _send(SlackSender(conn_id))

    assert result.permanent and attempts.statuses == [None]
    assert "Invalid URL" in (result.error or "") and "SECRET9" not in (result.error or "")


def test_on_attempt_errors_do_not_break_delivery(bot: SlackSender, slack_server: SlackServer) -> None:
    def broken(attempt: Attempt) -> None:
        raise RuntimeError("bookkeeping down")

    result = bot.send("x", [], deadline=time.monotonic() + 5, on_attempt=broken)
    assert result.ok


def test_a_hung_server_is_cut_at_the_deadline(bot: SlackSender, slack_server: SlackServer) -> None:
    slack_server.script(Reply.hang(3))
    started = time.monotonic()

    result, attempts = _send(bot, budget=1.0)

    assert time.monotonic() - started < 2.0
    assert not result.ok and not result.permanent
    assert attempts.statuses == [None] and "timed out" in (attempts[0].error or "")


# -- the message ----------------------------------------------------------------------------------


def _alert(i: int, **fields: Any) -> AlertView:
    values: dict[str, Any] = {
        "fingerprint": f"fp{i}",
        "rule_id": f"rows_low_{i}",
        "title": f"Rows loaded too low {i}",
        "severity": ("critical", "high", "medium", "low", "info")[i % 5],
        "state": "firing",
        "value": 12.5 + i,
        "threshold": "sum(rows_loaded) < 100",
        "labels": {"dag_id": "orders", "task_id": f"load_{i}"},
        "description": f"Only {i} rows & nothing else",
        "runbook_url": "https://runbooks.example.org/rows?a=1&b=2",
        "active_since": 1_760_000_000.0,
        "links": {"DAG run": f"https://airflow.example.org/dags/orders/runs/{i}"},
    }
    values.update(fields)
    return AlertView(**values)


def _view(
    firing: list[AlertView], resolved: list[AlertView] | None = None, title: str = "[FIRING:2] Orders"
) -> MessageView:
    return MessageView(
        title=title,
        reason="initial",
        group_labels={"team": "data"},
        firing=firing,
        resolved=resolved or [],
        idempotency_key="g1:1",
    )


def _texts(blocks: list[dict[str, Any]]) -> list[tuple[str, str]]:
    found = []
    for block in blocks:
        if "text" in block:
            found.append((block["type"], block["text"]["text"]))
        for element in block.get("elements", []):
            found.append((block["type"], element["text"]))
    return found


def _assert_within_limits(text: str, blocks: list[dict[str, Any]]) -> None:
    assert text.strip()
    assert len(blocks) <= MAX_BLOCKS
    for kind, value in _texts(blocks):
        assert value.strip()
        assert len(value) <= (HEADER_MAX if kind == "header" else SECTION_MAX), (kind, len(value))


def test_fifty_alerts_make_one_message_within_slack_limits(
    bot: SlackSender, slack_server: SlackServer
) -> None:
    hostile = "<script>alert(1)</script> <!channel> & <https://evil.example|click>"
    firing = [_alert(i) for i in range(45)] + [_alert(45, title=hostile, description=hostile * 200)]
    resolved = [_alert(i, state="resolved", resolved_at=1_760_000_600.0) for i in range(46, 50)]
    view = _view(firing, resolved, title="[FIRING:46] " + "Orders pipeline failing " * 20)

    text, blocks = render_slack(view)

    _assert_within_limits(text, blocks)
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["text"].startswith(":red_circle:")
    rendered = json.dumps(blocks)
    assert "more alerts" in rendered and "30" in blocks[-1]["elements"][0]["text"]
    assert "Rows loaded too low 0" in rendered and "DAG run" in rendered and "Runbook" in rendered
    # delivered as one message by the stand-in, which checks Slack's limits
    attempts = Attempts()
    result = bot.send(text, blocks, deadline=time.monotonic() + 10, on_attempt=attempts)
    assert result.ok and len(slack_server.requests) == 1


def test_user_text_is_escaped_for_mrkdwn() -> None:
    hostile = "<script>alert(1)</script> <!channel> & <https://evil.example|click>"
    alert = _alert(
        0,
        title=hostile,
        description=hostile,
        labels={"who": hostile},
        acked_by="<@U123>",
        links={"x|y>": "javascript:alert(1)", "ok": "https://a.example/?q=<b>&c"},
    )
    text, blocks = render_slack(_view([alert], title=hostile))

    mrkdwn = [value for kind, value in _texts(blocks) if kind != "header"] + [text]
    for value in mrkdwn:
        assert "<script>" not in value and "<!channel>" not in value and "<@U123>" not in value
        assert "<https://evil" not in value and "javascript:" not in value.replace("`javascript:", "")
    section = blocks[2]["text"]["text"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert "&amp; &lt;https://evil.example|click&gt;" in section
    assert "<https://a.example/?q=%3Cb%3E&amp;c|ok>" in section
    assert "<https://runbooks.example.org/rows?a=1&amp;b=2|Runbook>" in section
    assert "<javascript" not in section
    # plain_text is not parsed by Slack: the header carries the title as it is
    assert blocks[0]["text"]["type"] == "plain_text" and "<script>" in blocks[0]["text"]["text"]


def test_alert_section_shows_what_happened() -> None:
    alert = _alert(0, severity="critical", acked_by="maria", value=12.0)
    _, blocks = render_slack(_view([alert]))
    section = blocks[2]["text"]["text"]
    assert section.startswith(":red_circle: *CRITICAL* · *Rows loaded too low 0*")
    assert "*FIRING* since <!date^1760000000^" in section and "acknowledged by maria" in section
    assert "Value `12` vs threshold `sum(rows_loaded) &lt; 100`" in section
    assert "`dag_id=orders`" in section and "Only 0 rows &amp; nothing else" in section
    assert "<https://airflow.example.org/dags/orders/runs/0|DAG run>" in section


def test_huge_values_stay_within_limits_without_breaking_entities() -> None:
    alert = _alert(
        0,
        title="&" * 5000,
        threshold="<" * 5000,
        labels={f"k{i}": ">" * 500 for i in range(40)},
        description="&<>" * 5000,
        links={f"l{i}": "https://x.example/" + "a" * 1500 for i in range(20)},
    )
    text, blocks = render_slack(_view([alert] * 3, title="x" * 1000))
    _assert_within_limits(text, blocks)
    for _, value in _texts(blocks):
        body = value.rstrip("…")
        assert not body.endswith(("&", "&a", "&am", "&amp", "&l", "&lt", "&g", "&gt"))
        assert body.count("<") == body.count(">")


def test_resolved_update_strikes_the_original() -> None:
    resolved = [_alert(i, state="resolved", resolved_at=1_760_000_600.0) for i in range(60)]
    text, blocks = render_slack_resolved_update(_view([], resolved, title="[FIRING:60] Orders <b>"))

    _assert_within_limits(text, blocks)
    assert blocks[0]["text"]["text"] == ":white_check_mark: [RESOLVED] Orders <b>"
    assert text == ":white_check_mark: [RESOLVED] Orders &lt;b&gt;"
    assert "~CRITICAL · Rows loaded too low 0~" in blocks[2]["text"]["text"]
    assert "more alerts" in blocks[-1]["elements"][0]["text"]
    # still firing: the original shows the current state instead
    assert render_slack_resolved_update(_view([_alert(1)])) == render_slack(_view([_alert(1)]))
