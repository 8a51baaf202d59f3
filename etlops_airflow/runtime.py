"""The adapter between Airflow (config, Connections) and the store: settings resolved once
per process, one cached :class:`~etlops_airflow.store.Store` per location.

``get_store()`` is the store of the ``[etlops]`` section; ``store_for(conn_id)`` the store of
an Airflow Connection. Both read the configuration and the Connection once per process (an
API server answering many requests does not re-fetch them). ``reset()`` forgets everything:
for tests and after a fork.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from etlops_airflow import config

if TYPE_CHECKING:
    from etlops_airflow.store import Store

__all__ = ["StoreSettings", "display_target", "get_store", "reset", "store_for", "store_settings"]


@dataclass(frozen=True)
class StoreSettings:
    """Where the store is and how to reach it. ``url`` holds the password: it is never shown
    (``repr`` and ``display_url`` mask it)."""

    url: str = field(repr=False)
    connect_timeout: int
    sqlite_busy_timeout: int
    source: str  # which option gave the URL, for error messages

    @property
    def display_url(self) -> str:
        from etlops_airflow.store.engine import mask_url

        return mask_url(self.url)

    def __repr__(self) -> str:
        return (
            f"StoreSettings(url={self.display_url!r}, connect_timeout={self.connect_timeout}, "
            f"sqlite_busy_timeout={self.sqlite_busy_timeout}, source={self.source!r})"
        )


_lock = threading.Lock()
_settings: dict[str, StoreSettings] = {}
_stores: dict[str, Store] = {}
_pid = os.getpid()


def _resolve(conn_id: str) -> StoreSettings:
    timeout = config.get_int("store_connect_timeout", minimum=1)
    busy = config.get_int("sqlite_busy_timeout", minimum=0)
    conn_id = conn_id or config.get("store_conn_id").strip()
    if conn_id:
        from etlops_airflow.hooks.store import url_from_connection_id

        return StoreSettings(url_from_connection_id(conn_id), timeout, busy, f"store_conn_id={conn_id!r}")
    url = config.get("store_url").strip()
    if url:
        _mask(url)
        return StoreSettings(url, timeout, busy, "store_url")
    path = os.path.join(config.airflow_home(), "etlops.db")
    return StoreSettings(f"sqlite:///{path}", timeout, busy, "default (AIRFLOW_HOME/etlops.db)")


def _mask(url: str) -> None:
    """Register the URL's password with Airflow's secrets masker (task logs hide it)."""
    from etlops_airflow._secrets import mask_url_password

    mask_url_password(url)


def _check_fork() -> None:
    global _pid
    if os.getpid() != _pid:  # engines and their pools must not be shared with a parent process
        _settings.clear()
        _stores.clear()
        _pid = os.getpid()


def store_settings(conn_id: str | None = None) -> StoreSettings:
    """The resolved location: ``conn_id`` if given, else ``[etlops] store_conn_id``, else
    ``store_url``, else SQLite in AIRFLOW_HOME. Resolved once per process and key."""
    key = conn_id or ""
    with _lock:
        _check_fork()
        found = _settings.get(key)
        if found is None:
            found = _settings[key] = _resolve(key)
        return found


def store_for(conn_id: str | None = None) -> Store:
    """The store at ``conn_id`` (or the configured one), shared within the process."""
    settings = store_settings(conn_id)
    with _lock:
        store = _stores.get(settings.url)
        if store is None:
            from etlops_airflow.store import Store

            store = _stores[settings.url] = Store.from_url(
                settings.url,
                connect_timeout=settings.connect_timeout,
                sqlite_busy_timeout=settings.sqlite_busy_timeout,
                source=settings.source,
            )
        return store


def display_target(conn_id: str | None = None) -> str:
    """The store's masked URL for a log line, or ``(unresolved)`` when the settings themselves
    are broken (never raises: log lines about a failure must not fail)."""
    try:
        return store_settings(conn_id).display_url
    except Exception:
        return "(unresolved)"


def get_store() -> Store:
    """The store named by the ``[etlops]`` section."""
    return store_for(None)


def reset() -> None:
    """Forget resolved settings and dispose of every cached store (tests, forked processes)."""
    with _lock:
        for store in _stores.values():
            store.dispose()
        _stores.clear()
        _settings.clear()
