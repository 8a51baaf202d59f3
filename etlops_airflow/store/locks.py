"""Lease locks in the store: one holder at a time across processes and hosts, and a holder
that dies (SIGKILL, lost worker) only blocks the lock until its lease expires.

``acquire`` is one conditional write: it takes the lock when it is free, expired, or
already ours. The holder renews the lease while it works and releases it at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import or_, select, update

from etlops_airflow.exceptions import ValidationError
from etlops_airflow.store import schema
from etlops_airflow.store.db import Database

K = schema.locks


@dataclass(frozen=True)
class Lease:
    name: str
    owner: str
    acquired_at: float
    expires_at: float


class LocksStore:
    """The locks concern of the store (``store.locks``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def acquire(self, name: str, owner: str, ttl: float, *, now: float | None = None) -> bool:
        """Take ``name`` for ``ttl`` seconds if it is free, expired or already ``owner``'s."""
        if not owner or ttl <= 0:
            raise ValidationError("lease", (owner, ttl), "needs an owner and a positive ttl")
        now = time.time() if now is None else now
        self.db.ensure_schema()
        with self.db.write(f"acquire lock {name}") as conn:
            conn.execute(
                self.db.insert(K)
                .values(name=name, owner=None, acquired_at=0.0, expires_at=0.0)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            taken = conn.execute(
                update(K)
                .where(K.c.name == name, or_(K.c.owner.is_(None), K.c.expires_at <= now, K.c.owner == owner))
                .values(owner=owner, acquired_at=now, expires_at=now + ttl)
            ).rowcount
        return bool(taken)

    def take_over(
        self, name: str, dead_owner: str, owner: str, ttl: float, *, now: float | None = None
    ) -> bool:
        """Take ``name`` from ``dead_owner`` (a process known to be gone) before its lease ends.
        Only succeeds while that owner still holds it, so two processes cannot both take it."""
        now = time.time() if now is None else now
        self.db.ensure_schema()
        with self.db.write(f"take over lock {name}") as conn:
            return bool(
                conn.execute(
                    update(K)
                    .where(K.c.name == name, K.c.owner == dead_owner)
                    .values(owner=owner, acquired_at=now, expires_at=now + ttl)
                ).rowcount
            )

    def renew(self, name: str, owner: str, ttl: float, *, now: float | None = None) -> bool:
        """Extend our lease; False when we no longer hold it (it expired and another took it)."""
        now = time.time() if now is None else now
        with self.db.write(f"renew lock {name}") as conn:
            return bool(
                conn.execute(
                    update(K).where(K.c.name == name, K.c.owner == owner).values(expires_at=now + ttl)
                ).rowcount
            )

    def release(self, name: str, owner: str) -> bool:
        with self.db.write(f"release lock {name}") as conn:
            return bool(
                conn.execute(
                    update(K).where(K.c.name == name, K.c.owner == owner).values(owner=None, expires_at=0.0)
                ).rowcount
            )

    def holder(self, name: str) -> Lease | None:
        """The current lease on ``name``, expired or not (None when free)."""
        self.db.ensure_schema()
        with self.db.read(f"read lock {name}") as conn:
            row = conn.execute(select(K).where(K.c.name == name, K.c.owner.is_not(None))).first()
        return None if row is None else Lease(row.name, row.owner, row.acquired_at, row.expires_at)
