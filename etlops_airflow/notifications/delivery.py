"""What a sender reports: one :class:`Attempt` per try, one :class:`DeliveryResult` per send.

Shared by every sender (e-mail, Slack) so the delivery loop treats them alike. Plain data, no
Airflow import: the outbox stores these fields as they are.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attempt:
    """One try to deliver.

    ``at``: epoch seconds (``time.time()``) when the try began. ``status``: the protocol's
    answer (HTTP status, SMTP reply code), ``None`` when none came (connection refused, reset,
    timed out). ``error``: one line, never a password or token; ``None`` on success.
    """

    at: float
    status: int | None
    error: str | None


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of one ``send``.

    ``ok``: the receiver accepted the message. ``permanent``: a failure that no retry will fix
    (unknown recipient, bad credentials, missing connection): do not try again. ``retry_after``:
    seconds the delivery loop should wait before trying again (a transient failure that outlasted
    the deadline), else ``None``. ``error``: one line, never a secret; may be set with ``ok`` when
    the message went out with a problem (some recipients refused). ``external_id``: the
    receiver-side id (e-mail Message-ID, Slack message ts), when there is one.
    """

    ok: bool
    permanent: bool
    retry_after: float | None
    error: str | None
    external_id: str | None
