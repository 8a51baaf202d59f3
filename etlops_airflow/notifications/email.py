"""Send a notification e-mail through Airflow's SMTP provider.

:class:`EmailSender` reads an ``smtp`` Airflow Connection with
:class:`airflow.providers.smtp.hooks.smtp.SmtpHook` (host, port, login, password; extras
``from_email``, ``timeout``, ``retry_limit``, ``disable_ssl``, ``disable_tls``, ``ssl_context``,
``auth_type``): the hook opens, secures and authenticates the SMTP session. The hook's own
``send_email_smtp`` only builds a message with a single HTML part, so the sender builds a
``multipart/alternative`` message (plain text, then HTML) with the standard ``email`` package
and hands it to the client the hook opened.

Retries are the sender's, not the hook's: transient failures (connection refused or reset,
time-outs, SMTP 4xx) are tried again with a short back-off until the caller's deadline or the
connection's ``retry_limit``; SMTP 5xx (unknown recipient, bad credentials) is permanent. Every
try is reported to ``on_attempt``. Errors never hold the connection's password.

This module is imported by DAG files: the hook and the e-mail machinery load inside methods.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from etlops_airflow.exceptions import ValidationError
from etlops_airflow.notifications.delivery import Attempt, DeliveryResult

if TYPE_CHECKING:
    from email.message import EmailMessage

__all__ = ["EmailSender"]

_FIRST_BACKOFF = 0.25
_MAX_BACKOFF = 2.0
_MIN_TRY_BUDGET = 0.05  # seconds: less than this left before the deadline, no new try starts
_ERROR_LIMIT = 300


class EmailSender:
    """Deliver ``(subject, html, text)`` to fixed recipients over an ``smtp`` Connection.

    ``EmailSender("smtp_alerts", to=["data-oncall@example.com"]).send(subject, html, text,
    deadline=time.monotonic() + 30, on_attempt=record)``. ``from_email`` overrides the
    connection's ``from_email`` extra (as in Airflow's ``SmtpNotifier``).
    """

    def __init__(
        self,
        conn_id: str,
        to: Sequence[str],
        cc: Sequence[str] = (),
        *,
        from_email: str | None = None,
    ) -> None:
        if not isinstance(conn_id, str) or not conn_id.strip():
            raise ValidationError(
                "conn_id", conn_id, "expected the id of an smtp Connection", owner="EmailSender"
            )
        self.conn_id = conn_id
        self.to = _addresses("to", to, required=True)
        self.cc = _addresses("cc", cc, required=False)
        self.from_email = _addresses("from_email", [from_email], required=True)[0] if from_email else None

    def __repr__(self) -> str:
        return f"EmailSender(conn_id={self.conn_id!r}, to={list(self.to)!r}, cc={list(self.cc)!r})"

    def send(
        self,
        subject: str,
        html: str,
        text: str,
        *,
        deadline: float,
        on_attempt: Callable[[Attempt], None],
    ) -> DeliveryResult:
        """Send one message; retry transient failures until ``deadline`` (a ``time.monotonic()``
        value). Never raises for a delivery problem: the result says what happened."""
        hook = _hook_class()(self.conn_id)
        message: EmailMessage | None = None  # built once: the same Message-ID on every try
        tries = 0
        max_tries: int | None = None
        backoff = _FIRST_BACKOFF
        while True:
            remaining = deadline - time.monotonic()
            if remaining < _MIN_TRY_BUDGET:
                return DeliveryResult(
                    ok=False,
                    permanent=False,
                    retry_after=backoff,
                    error=f"{self._where(hook)}: deadline reached after {tries} tries",
                    external_id=None,
                )
            tries += 1
            started = time.time()
            hook.budget = remaining
            failure: _Failure | None = None
            try:
                hook.get_conn()
                client = hook.client
                if message is None:
                    message = self._message(hook, subject, html, text)
                client.sock.settimeout(max(_MIN_TRY_BUDGET, deadline - time.monotonic()))
                refused = client.send_message(message, to_addrs=[*self.to, *self.cc])
                message_id = str(message["Message-ID"])
            except Exception as exc:
                failure = _classify(exc)
            finally:
                hook.close_client()

            if failure is None:
                partial: str | None = None
                if refused:
                    listed = "; ".join(
                        f"{addr!r}: {code} {_text(reply)}" for addr, (code, reply) in sorted(refused.items())
                    )
                    partial = _redact(
                        f"{self._where(hook)}: sent, but some recipients refused: {listed}", hook
                    )
                self._report(on_attempt, Attempt(at=started, status=250, error=partial))
                return DeliveryResult(
                    ok=True, permanent=False, retry_after=None, error=partial, external_id=message_id
                )

            error = _redact(f"{self._where(hook)}: {failure.text}", hook)
            self._report(on_attempt, Attempt(at=started, status=failure.status, error=error))
            if max_tries is None and hook.smtp_connection is not None:
                max_tries = hook.configured_retry_limit + 1
            give_up = (
                failure.permanent
                or (max_tries is not None and tries >= max_tries)
                or time.monotonic() + backoff + _MIN_TRY_BUDGET > deadline
            )
            if give_up:
                return DeliveryResult(
                    ok=False,
                    permanent=failure.permanent,
                    retry_after=None if failure.permanent else backoff,
                    error=error,
                    external_id=None,
                )
            time.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _message(self, hook: Any, subject: str, html: str, text: str) -> EmailMessage:
        from email.message import EmailMessage
        from email.utils import formatdate, make_msgid, parseaddr

        sender = self.from_email or hook.from_email
        if not sender:
            raise _ConfigProblem(
                f"no sender: set the 'from_email' extra of connection {self.conn_id!r} "
                "or EmailSender(from_email=...)"
            )
        msg = EmailMessage()
        msg["Subject"] = _one_line(subject)[:998] or "(no subject)"
        msg["From"] = sender
        msg["To"] = ", ".join(self.to)
        if self.cc:
            msg["Cc"] = ", ".join(self.cc)
        msg["Date"] = formatdate(localtime=True)
        domain = parseaddr(sender)[1].rpartition("@")[2]
        msg["Message-ID"] = make_msgid(idstring="etlops", domain=domain or None)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to alerts
        # Plain text first, HTML last: a client shows the last part it can render.
        msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        return msg

    def _where(self, hook: Any) -> str:
        if hook.smtp_connection is None:
            return f"smtp connection {self.conn_id!r}"
        return f"smtp connection {self.conn_id!r} ({hook.host}:{hook.port})"

    def _report(self, on_attempt: Callable[[Attempt], None], attempt: Attempt) -> None:
        """Tell the caller; a failing callback is logged, never stops the delivery."""
        try:
            on_attempt(attempt)
        except Exception as exc:
            from etlops_airflow._log import log, one_line

            log.warning("etlops: e-mail attempt not recorded: %s; delivery carries on", one_line(exc))


# --- the hook -----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _hook_class() -> type[Any]:
    """SmtpHook bounded by the caller's deadline, without the hook's own retry loop.

    Defined on first use so that importing this module does not import the SMTP provider.
    """
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    class _DeadlineSmtpHook(SmtpHook):  # type: ignore[misc]
        budget: float | None = None

        @property
        def timeout(self) -> float:  # type: ignore[override]
            # smtplib's socket time-out: the connection's ``timeout`` extra, but never past the deadline.
            configured = float(super().timeout)
            if self.budget is None:
                return configured
            return max(_MIN_TRY_BUDGET, min(configured, self.budget))

        @property
        def smtp_retry_limit(self) -> int:
            # get_conn() would retry a dropped connection at once, without back-off or report:
            # EmailSender.send does the retrying, one reported attempt each.
            return 0

        @property
        def configured_retry_limit(self) -> int:
            try:
                return max(0, int(super().smtp_retry_limit))
            except (TypeError, ValueError):
                return 5  # the hook's default

        @property
        def client(self) -> Any:
            if self._smtp_client is None:  # pragma: no cover - get_conn() either sets it or raises
                raise _ConfigProblem("the SMTP hook opened no client")
            return self._smtp_client

        def close_client(self) -> None:
            client, self._smtp_client = self._smtp_client, None
            if client is None:
                return
            try:
                client.quit()
            except Exception:
                try:
                    client.close()
                except Exception:
                    pass

    return _DeadlineSmtpHook


# --- errors -------------------------------------------------------------------------------------


class _ConfigProblem(Exception):
    """Something no retry fixes: no sender address, no client."""


class _Failure:
    __slots__ = ("permanent", "status", "text")

    def __init__(self, text: str, *, status: int | None, permanent: bool) -> None:
        self.text = text
        self.status = status
        self.permanent = permanent


def _classify(exc: BaseException) -> _Failure:
    """Transient (retry) or permanent, with the SMTP reply code when the server answered."""
    import smtplib
    import ssl

    for cause in _chain(exc):
        if isinstance(cause, _ConfigProblem):
            return _Failure(str(cause), status=None, permanent=True)
        if isinstance(cause, smtplib.SMTPRecipientsRefused):
            replies = sorted(cause.recipients.items())
            codes = [code for _, (code, _reply) in replies]
            listed = "; ".join(f"{addr!r}: {code} {_text(reply)}" for addr, (code, reply) in replies)
            temporary = [code for code in codes if 400 <= code < 500]
            transient = bool(temporary)  # a retry may reach those; 5xx everywhere never will
            status = min(temporary) if transient else max(codes, default=None)
            return _Failure(f"recipients refused: {listed}", status=status, permanent=not transient)
        if isinstance(cause, smtplib.SMTPResponseException):
            code = cause.smtp_code
            what = _response_kind(cause)
            return _Failure(
                f"{what}: {code} {_text(cause.smtp_error)}",
                status=code if code > 0 else None,
                permanent=500 <= code < 600,
            )
        if isinstance(cause, smtplib.SMTPServerDisconnected):
            return _Failure(f"server disconnected: {cause}", status=None, permanent=False)
        if isinstance(cause, smtplib.SMTPException):
            # No AUTH extension, no usable auth method, STARTTLS not offered: configuration.
            return _Failure(f"SMTP: {type(cause).__name__}: {cause}", status=None, permanent=True)
        if isinstance(cause, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return _Failure(f"TLS connection closed: {cause}", status=None, permanent=False)
        if isinstance(cause, ssl.SSLError):
            # Certificate not trusted, SSL spoken to a plain-text port (check disable_ssl / disable_tls).
            return _Failure(f"TLS: {type(cause).__name__}: {cause}", status=None, permanent=True)
        if isinstance(cause, ConnectionRefusedError):
            return _Failure("connection refused", status=None, permanent=False)
        if isinstance(cause, TimeoutError):
            return _Failure("timed out", status=None, permanent=False)
        if isinstance(cause, OSError):
            return _Failure(f"{type(cause).__name__}: {cause}", status=None, permanent=False)
        if type(cause).__name__ == "AirflowNotFoundException":
            return _Failure("connection not found", status=None, permanent=True)
    # The hook's own errors (connection missing, no sender), a bad extra, a bug: not transient.
    return _Failure(f"{type(exc).__name__}: {exc}", status=None, permanent=True)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes (the hook re-raises connection problems as AirflowException)."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _response_kind(exc: BaseException) -> str:
    import smtplib

    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return "login refused"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return f"sender {exc.sender!r} refused"
    if isinstance(exc, smtplib.SMTPDataError):
        return "message refused"
    if isinstance(exc, smtplib.SMTPConnectError):
        return "greeting refused"
    if isinstance(exc, smtplib.SMTPHeloError):
        return "HELO refused"
    return "server replied"


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", errors="replace")
    return _one_line(reply)


def _one_line(text: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in str(text)).split())


def _redact(text: str, hook: Any) -> str:
    """One line, bounded, with the connection's password (plain and as sent in AUTH) replaced."""
    import base64

    text = _one_line(text)
    connection = hook.smtp_connection
    password = getattr(connection, "password", None) if connection is not None else None
    if password:
        login = getattr(connection, "login", None) or ""
        forms = {
            password,
            base64.b64encode(password.encode()).decode(),
            base64.b64encode(f"\0{login}\0{password}".encode()).decode(),
        }
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, "***")
    return text if len(text) <= _ERROR_LIMIT else text[: _ERROR_LIMIT - 1] + "…"


def _addresses(field: str, value: object, *, required: bool) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError(field, value, "expected a list of e-mail addresses", owner="EmailSender")
    if required and not value:
        raise ValidationError(field, value, "expected at least one e-mail address", owner="EmailSender")
    for address in value:
        if not isinstance(address, str) or "@" not in address or not address.isprintable():
            raise ValidationError(field, address, "is not an e-mail address", owner="EmailSender")
    return tuple(value)
