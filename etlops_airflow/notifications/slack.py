"""Deliver a rendered Slack message through an Airflow connection of the Slack provider's types.

A user's existing connections work unchanged; they are read the way
``apache-airflow-providers-slack`` reads them:

* ``slack`` (Slack API, bot token): the token is the password; the extras ``base_url``,
  ``timeout`` and ``proxy`` are optional, also under the old prefixed names
  ``extra__slack__base_url`` … (an empty value counts as absent, the plain name wins).
* ``slackwebhook`` (incoming webhook): the password is the whole webhook URL (it holds
  ``://``), or the token part ``T…/B…/…`` joined to the host (``hooks.slack.com/services``
  and the ``https`` schema by default); the extras ``timeout`` and ``proxy`` are optional
  (``extra__slackwebhook__timeout`` …).

:class:`SlackSender` retries inside a delivery budget (``deadline``, a ``time.monotonic()``
value) and reports every HTTP attempt to ``on_attempt``: 429 after its ``Retry-After`` (never
earlier; when that would pass the deadline it returns ``retry_after`` for the caller to
schedule), 5xx and connection errors with a short exponential back-off. Other 4xx answers and
Slack ``ok: false`` errors (``channel_not_found``, ``invalid_auth`` …) are permanent.

``chat.postMessage`` has no idempotency key: a retry after a connection lost while Slack was
answering may post the message twice. The caller records each send durably.

A bot token supports threads: a "resolved" notice goes out as ``send(..., thread_of=<the
original's external_id>)`` plus ``update(<external_id>, ...)`` of the original. An incoming
webhook cannot thread nor edit: ``send`` posts the notice as a message of its own.

This module may be imported by DAG files: the connection is read inside methods, and
``slack_sdk`` is imported inside functions only. No token or webhook URL ever reaches an
error, a log line or a :class:`DeliveryResult`. :class:`Attempt` and :class:`DeliveryResult` are
the shared ones of :mod:`etlops_airflow.notifications.delivery`; with a bot token
``external_id`` is ``"CHANNEL:TS"`` of the posted (or updated) message, with a webhook ``None``.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from etlops_airflow._log import log
from etlops_airflow.exceptions import ValidationError
from etlops_airflow.notifications.delivery import Attempt, DeliveryResult

__all__ = ["Attempt", "DeliveryResult", "SlackSender", "SlackTarget", "read_connection"]

if TYPE_CHECKING:
    from slack_sdk import WebClient

BOT = "slack"
WEBHOOK = "slackwebhook"
DEFAULT_TIMEOUT = 30.0
DEFAULT_WEBHOOK_HOST = "hooks.slack.com/services"
MIN_ATTEMPT_SECONDS = 0.5  # an attempt is not started with less of the budget left
DEFAULT_RETRY_AFTER = 5.0  # a 429 without a usable Retry-After

# Slack answers these with ok: false, yet they are worth another try.
TRANSIENT_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
)
_SDK_LOGGER = "etlops_airflow.slack_sdk"
_TOKEN = re.compile(r"xox[a-z]-[A-Za-z0-9-]+")
_WEBHOOK_URL = re.compile(r"https?://[^\s'\"]*/services/[^\s'\"]+")


OnAttempt = Callable[[Attempt], None]


@dataclass(frozen=True)
class SlackTarget:
    """A Slack connection as this sender uses it. ``secret`` is the token or the webhook URL."""

    conn_id: str
    kind: str  # BOT or WEBHOOK
    secret: str
    base_url: str | None
    timeout: float | None
    proxy: str | None

    def __repr__(self) -> str:
        return f"SlackTarget(conn_id={self.conn_id!r}, kind={self.kind!r}, secret='***')"


@dataclass(frozen=True)
class _Outcome:
    """One attempt's result: ``received`` is the monotonic time the answer (or error) came."""

    received: float
    status: int | None
    ok: bool = False
    permanent: bool = False
    retry_after: float | None = None
    error: str | None = None
    external_id: str | None = None


def read_connection(conn: Any) -> SlackTarget:
    """A connection of type ``slack`` or ``slackwebhook`` read as the Slack provider reads it.

    ``conn`` is an Airflow ``Connection`` (``conn_id``, ``conn_type``, ``host``, ``schema``,
    ``password``, ``extra_dejson``). Raises :class:`ValidationError` naming the connection.
    """
    conn_id = str(getattr(conn, "conn_id", None) or "?")
    owner = f"Slack connection {conn_id!r}"
    conn_type = getattr(conn, "conn_type", None)
    if conn_type not in (BOT, WEBHOOK):
        raise ValidationError(
            "conn_type",
            conn_type,
            f"expected {BOT!r} (Slack API, bot token) or {WEBHOOK!r} (Slack incoming webhook)",
            owner=owner,
        )
    password = (getattr(conn, "password", None) or "").strip()
    if not password:
        what = "the bot token" if conn_type == BOT else "the webhook URL or token"
        raise ValidationError("password", "", f"empty: it must hold {what}", owner=owner)
    extra = _ExtraConfig(conn_type, owner, getattr(conn, "extra_dejson", None) or {})
    timeout = extra.get_number("timeout")
    proxy = extra.get("proxy")
    if conn_type == BOT:
        return SlackTarget(conn_id, BOT, password, extra.get("base_url"), timeout, proxy)
    if "://" in password:
        url = password
    else:
        base = getattr(conn, "host", None) or ""
        if not base or "://" not in base:
            base = f"{getattr(conn, 'schema', None) or 'https'}://{base or DEFAULT_WEBHOOK_HOST}"
        url = (base.rstrip("/") + "/" + password.lstrip("/")).rstrip("/")
    return SlackTarget(conn_id, WEBHOOK, url, None, timeout, proxy)


class _ExtraConfig:
    """Extras under their plain name or the old ``extra__<conn_type>__<name>`` one (as the
    provider's ``ConnectionExtraConfig``): empty values are absent, the plain name wins."""

    def __init__(self, conn_type: str, owner: str, extra: Mapping[str, Any]) -> None:
        self.conn_type = conn_type
        self.owner = owner
        self.extra = extra

    def get(self, name: str) -> str | None:
        for key in (name, f"extra__{self.conn_type}__{name}"):
            value = self.extra.get(key)
            if value not in (None, ""):
                return str(value)
        return None

    def get_number(self, name: str) -> float | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not number > 0:
            raise ValidationError(f"extra.{name}", value, "must be a number of seconds > 0", owner=self.owner)
        return number


class SlackSender:
    """Posts messages to Slack through one Airflow connection (see the module docstring).

    ``channel`` is where a bot token posts (a channel ID, or a name such as ``#alerts``); a
    webhook posts to its own channel and ignores it. ``max_attempts`` bounds the HTTP attempts
    of one call, ``backoff`` is the first wait after a 5xx or connection error (doubled each
    time, at most ``max_backoff``).
    """

    def __init__(
        self,
        conn_id: str,
        channel: str | None = None,
        *,
        max_attempts: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        connection_reader: Callable[[str], Any] | None = None,
    ) -> None:
        if not conn_id or not isinstance(conn_id, str):
            raise ValidationError(
                "conn_id", conn_id, "a Slack connection id is required", owner="SlackSender"
            )
        if max_attempts < 1:
            raise ValidationError("max_attempts", max_attempts, "must be at least 1", owner="SlackSender")
        self.conn_id = conn_id
        self.channel = channel
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._connection_reader = connection_reader

    def __repr__(self) -> str:
        return f"SlackSender(conn_id={self.conn_id!r}, channel={self.channel!r})"

    # -- connection ----------------------------------------------------------------------------

    @cached_property
    def target(self) -> SlackTarget:
        """The connection, read once (raises ValidationError or Airflow's not-found error)."""
        if self._connection_reader is not None:
            conn = self._connection_reader(self.conn_id)
        else:
            from airflow.sdk import BaseHook

            conn = BaseHook.get_connection(self.conn_id)
        target = read_connection(conn)
        from etlops_airflow._secrets import mask_secret

        mask_secret(target.secret)
        return target

    @property
    def supports_threads(self) -> bool:
        """A bot token can reply in threads and edit messages; an incoming webhook cannot."""
        return self.target.kind == BOT

    # -- public API ----------------------------------------------------------------------------

    def send(
        self,
        text: str,
        blocks: list[dict[str, Any]],
        *,
        deadline: float,
        on_attempt: OnAttempt,
        thread_of: str | None = None,
    ) -> DeliveryResult:
        """Post a message (``thread_of``: the ``external_id`` of the message to reply to)."""
        target = self._resolve()
        if isinstance(target, DeliveryResult):
            return target
        if target.kind == WEBHOOK:
            body = {"text": text, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}
            return self._deliver(
                target, lambda timeout: self._webhook_attempt(target, body, timeout), deadline, on_attempt
            )
        if thread_of is not None:
            parsed = _parse_external_id(thread_of)
            if parsed is None:
                return _permanent(f"thread_of {thread_of!r} is not CHANNEL:TS")
            channel, thread_ts = parsed
        elif self.channel:
            channel, thread_ts = self.channel, None
        else:
            return _permanent(f"{self!r}: a bot-token connection needs a channel to post to")
        payload: dict[str, Any] = {
            "channel": channel,
            "text": text,
            "blocks": blocks,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if thread_ts:
            payload["thread_ts"] = thread_ts
        return self._deliver(
            target,
            lambda timeout: self._api_attempt(target, "chat.postMessage", payload, timeout),
            deadline,
            on_attempt,
        )

    def update(
        self,
        external_id: str,
        text: str,
        blocks: list[dict[str, Any]],
        *,
        deadline: float,
        on_attempt: OnAttempt,
    ) -> DeliveryResult:
        """Replace a posted message (``chat.update``); a bot token only."""
        target = self._resolve()
        if isinstance(target, DeliveryResult):
            return target
        if target.kind != BOT:
            return _permanent(f"{self!r}: an incoming webhook cannot update messages (needs a bot token)")
        parsed = _parse_external_id(external_id)
        if parsed is None:
            return _permanent(f"external_id {external_id!r} is not CHANNEL:TS")
        channel, ts = parsed
        payload = {"channel": channel, "ts": ts, "text": text, "blocks": blocks}
        return self._deliver(
            target,
            lambda timeout: self._api_attempt(target, "chat.update", payload, timeout),
            deadline,
            on_attempt,
        )

    # -- the retry loop ------------------------------------------------------------------------

    def _resolve(self) -> SlackTarget | DeliveryResult:
        """The connection, or the failed result when it cannot be read (no HTTP attempt made)."""
        try:
            return self.target
        except ValidationError as exc:
            return _permanent(str(exc))
        except Exception as exc:
            # Airflow's "isn't defined" is permanent; a secrets backend that failed may recover.
            permanent = type(exc).__name__ == "AirflowNotFoundException"
            error = _redact_known(f"Slack connection {self.conn_id!r}: {_first_line(exc)}", ())
            return DeliveryResult(False, permanent, None, error, None)

    def _deliver(
        self,
        target: SlackTarget,
        attempt: Callable[[float], _Outcome],
        deadline: float,
        on_attempt: OnAttempt,
    ) -> DeliveryResult:
        tries = 0
        last_error = "delivery deadline passed before the first attempt"
        while True:
            remaining = deadline - time.monotonic()
            if remaining < MIN_ATTEMPT_SECONDS:
                return DeliveryResult(False, False, None, last_error, None)
            timeout = min(target.timeout or DEFAULT_TIMEOUT, remaining)
            started = time.time()
            outcome = attempt(timeout)
            tries += 1
            error = _redact(target, outcome.error) if outcome.error else None
            self._report(on_attempt, Attempt(started, outcome.status, error))
            if outcome.ok:
                return DeliveryResult(True, False, None, None, outcome.external_id)
            if outcome.permanent:
                log.warning("etlops: Slack delivery via %r failed for good: %s", self.conn_id, error)
                return DeliveryResult(False, True, None, error, None)
            last_error = error or "failed"
            if outcome.retry_after is not None:
                wait = outcome.retry_after
            else:
                wait = min(self.backoff * 2 ** (tries - 1), self.max_backoff) * random.uniform(0.8, 1.2)
            resume = outcome.received + wait
            if tries >= self.max_attempts or resume + MIN_ATTEMPT_SECONDS > deadline:
                log.info("etlops: Slack delivery via %r to be retried later: %s", self.conn_id, error)
                return DeliveryResult(False, False, max(resume - time.monotonic(), 0.0), last_error, None)
            log.info("etlops: Slack attempt %d via %r failed (%s); retrying", tries, self.conn_id, error)
            _sleep_until(resume)

    def _report(self, on_attempt: OnAttempt, attempt: Attempt) -> None:
        try:
            on_attempt(attempt)
        except Exception as exc:  # the caller's bookkeeping must not break the delivery
            log.warning("etlops: on_attempt callback failed: %s: %s", type(exc).__name__, _first_line(exc))

    # -- one HTTP attempt ------------------------------------------------------------------------

    def _web_client(self, target: SlackTarget, timeout: float) -> WebClient:
        from slack_sdk import WebClient

        kwargs: dict[str, Any] = {"token": target.secret, "timeout": timeout, "logger": _sdk_logger()}
        if target.base_url:
            kwargs["base_url"] = target.base_url
        if target.proxy:
            kwargs["proxy"] = target.proxy
        return WebClient(retry_handlers=[], **kwargs)

    def _api_attempt(
        self, target: SlackTarget, method: str, payload: dict[str, Any], timeout: float
    ) -> _Outcome:
        from slack_sdk.errors import SlackApiError, SlackRequestError

        try:
            client = self._web_client(target, timeout)
            response = client.api_call(method, json=payload)
        except SlackApiError as exc:
            received = time.monotonic()
            answer = exc.response
            data = answer.data if isinstance(answer.data, dict) else {}
            return _api_failure(method, received, int(answer.status_code), dict(answer.headers), data)
        except SlackRequestError as exc:
            return _Outcome(time.monotonic(), None, permanent=True, error=f"{method}: {_first_line(exc)}")
        except Exception as exc:  # URLError, RemoteDisconnected, reset, timeout …
            return _Outcome(time.monotonic(), None, error=f"{method}: {_connection_error(exc)}")
        data = response.data if isinstance(response.data, dict) else {}
        channel, ts = data.get("channel"), data.get("ts")
        external_id = f"{channel}:{ts}" if channel and ts else None
        return _Outcome(time.monotonic(), int(response.status_code), ok=True, external_id=external_id)

    def _webhook_attempt(self, target: SlackTarget, body: dict[str, Any], timeout: float) -> _Outcome:
        from slack_sdk.errors import SlackRequestError
        from slack_sdk.webhook import WebhookClient

        kwargs: dict[str, Any] = {"timeout": timeout, "logger": _sdk_logger(), "retry_handlers": []}
        if target.proxy:
            kwargs["proxy"] = target.proxy
        try:
            response = WebhookClient(target.secret, **kwargs).send_dict(body)
        except SlackRequestError as exc:
            return _Outcome(time.monotonic(), None, permanent=True, error=f"webhook: {_first_line(exc)}")
        except Exception as exc:
            return _Outcome(time.monotonic(), None, error=f"webhook: {_connection_error(exc)}")
        received = time.monotonic()
        status = int(response.status_code)
        if 200 <= status < 300:
            return _Outcome(received, status, ok=True)
        detail = _first_line_of(str(response.body or ""), 200) or "no body"
        error = f"webhook: HTTP {status} {detail}"
        if status == 429:
            return _Outcome(received, status, retry_after=_retry_after(dict(response.headers)), error=error)
        if status >= 500 or status == 408:
            return _Outcome(received, status, error=error)
        return _Outcome(received, status, permanent=True, error=error)


# -- helpers ---------------------------------------------------------------------------------------


def _api_failure(
    method: str, received: float, status: int, headers: dict[str, Any], data: dict[str, Any]
) -> _Outcome:
    code = str(data.get("error") or "")
    detail = code or "no error code"
    messages = (data.get("response_metadata") or {}).get("messages") if isinstance(data, dict) else None
    if isinstance(messages, list) and messages:
        detail += " (" + "; ".join(str(m) for m in messages[:3]) + ")"
    error = f"{method}: HTTP {status} {_first_line_of(detail, 300)}"
    if status == 429 or code == "ratelimited":
        return _Outcome(received, status, retry_after=_retry_after(headers), error=error)
    if status >= 500 or status == 408 or (status == 200 and code in TRANSIENT_ERRORS):
        return _Outcome(received, status, error=error)
    return _Outcome(received, status, permanent=True, error=error)


def _redact(target: SlackTarget, text: str) -> str:
    """``text`` without the connection's token or webhook URL (nor its path, which is the secret)."""
    secrets = [target.secret]
    if target.kind == WEBHOOK:
        import urllib.parse

        parts = urllib.parse.urlsplit(target.secret)
        secrets += [parts.netloc + parts.path, parts.path]
    return _redact_known(text, secrets)


def _redact_known(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) > 3 and secret != "/":
            text = text.replace(secret, "***")
    text = _TOKEN.sub("xox?-***", text)
    return _WEBHOOK_URL.sub("<webhook URL>", text)


def _retry_after(headers: Mapping[str, Any]) -> float:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), at least 0."""
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return DEFAULT_RETRY_AFTER
    text = str(value).strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER
    return max(when.timestamp() - time.time(), 0.0)


def _parse_external_id(external_id: str) -> tuple[str, str] | None:
    channel, sep, ts = str(external_id).partition(":")
    if not sep or not channel or not ts:
        return None
    return channel, ts


def _permanent(error: str) -> DeliveryResult:
    return DeliveryResult(False, True, None, error, None)


def _sleep_until(moment: float) -> None:
    while (left := moment - time.monotonic()) > 0:
        time.sleep(left)


def _first_line(exc: BaseException) -> str:
    return _first_line_of(str(exc), 300)


def _first_line_of(text: str, limit: int) -> str:
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _connection_error(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # URLError wraps the socket error
    shown = reason if isinstance(reason, BaseException) else exc
    detail = _first_line(shown)
    name = type(shown).__name__
    return f"connection error: {name}: {detail}" if detail else f"connection error: {name}"


def _sdk_logger() -> logging.Logger:
    """slack_sdk's own logging: its DEBUG lines print the webhook URL (a secret) and it logs an
    ERROR per failed attempt that we report ourselves. It checks ``logger.level`` (not the
    effective level) before building DEBUG lines, so the level is set on this logger."""
    logger = logging.getLogger(_SDK_LOGGER)
    if logger.level != logging.CRITICAL:
        logger.setLevel(logging.CRITICAL)
    return logger
