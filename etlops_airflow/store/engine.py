"""Engines for the store: SQLite (embedded default) and PostgreSQL. Knows nothing of Airflow.

SQLite is set up for several task processes writing at once: WAL journal, a busy timeout,
and every write transaction opened with ``BEGIN IMMEDIATE`` so that two writers never
deadlock on a read-to-write lock upgrade ("database is locked"). Transactions come in three
modes (see :mod:`etlops_airflow.store.db`), chosen by the ``etlops_mode`` execution option:

* ``read``: SQLite ``BEGIN`` (deferred, takes no write lock) with ``PRAGMA query_only``;
  PostgreSQL ``READ ONLY`` transactions. A write in a read transaction fails on both.
* ``write``: SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``READ COMMITTED``.
* ``autocommit``: no transaction at all (``VACUUM``, ``CREATE INDEX CONCURRENTLY``).
"""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from etlops_airflow.exceptions import ConfigError

MODE = "etlops_mode"  # execution option: "read", "write" (default) or "autocommit"

_PASSWORD_IN_URL = re.compile(r"(\w[\w+.-]*://[^:/@\s]*:)[^@\s]*@")


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ***, safe for logs and error messages."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return mask_passwords_in_text(url)


def mask_passwords_in_text(text: str) -> str:
    """Every ``scheme://user:password@`` in free text with the password replaced by ***."""
    return _PASSWORD_IN_URL.sub(r"\1***@", text)


def parse_store_url(url: str, source: str = "store_url") -> URL:
    """Parse and normalise a store URL; bad input raises ConfigError naming the option and value."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(source, mask_url(url), "not a valid SQLAlchemy URL (dialect://…)") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed
    if backend == "sqlite":
        if parsed.drivername != "sqlite":
            raise ConfigError(source, mask_url(parsed), "use the plain sqlite:// driver")
        return parsed
    raise ConfigError(source, mask_url(parsed), f"unsupported database {backend!r}; use sqlite or postgresql")


def _ensure_wal(cur: Any, busy_timeout: float) -> None:
    """Switch the file to WAL (persistent, so only the first connection ever does it).

    The switch needs an exclusive lock and SQLite answers "database is locked" at once,
    without the busy handler, while another process holds any lock: retry until the busy
    timeout, as every other statement would wait.
    """
    import sqlite3

    if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + max(busy_timeout, 1)
    delay = 0.005
    while True:
        try:
            mode = str(cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        else:
            if mode == "wal":
                return
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError(f"could not switch the store to WAL mode (still {mode!r})")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


_SQLITE_BEGIN = {
    "read": ("PRAGMA query_only = 1", "BEGIN"),
    "write": ("PRAGMA query_only = 0", "BEGIN IMMEDIATE"),
    "autocommit": ("PRAGMA query_only = 0",),
}


def _sqlite_engine(url: URL, busy_timeout: int) -> Engine:
    memory = url.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {
        "connect_args": {"timeout": busy_timeout, "check_same_thread": False},
        "hide_parameters": True,
    }
    if memory:
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let the "begin" event below own transactions (pysqlite's own BEGIN is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if not memory:
                _ensure_wal(cur, busy_timeout)
            # NORMAL is crash-safe in WAL mode (a power cut may lose the last commits, never corrupts).
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        for statement in _SQLITE_BEGIN[conn.get_execution_options().get(MODE, "write")]:
            conn.exec_driver_sql(statement)

    return engine


def _postgres_engine(url: URL, connect_timeout: int) -> Engine:
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=4,
        hide_parameters=True,
        connect_args={"connect_timeout": connect_timeout, "application_name": "etlops-airflow"},
    )


def create_store_engine(
    url: str | URL, *, connect_timeout: int = 5, sqlite_busy_timeout: int = 30, source: str = "store_url"
) -> Engine:
    parsed = url if isinstance(url, URL) else parse_store_url(url, source)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, sqlite_busy_timeout)
    return _postgres_engine(parsed, connect_timeout)
