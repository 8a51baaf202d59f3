"""The one persistence layer. ``get_store()`` is the configured store of this process."""

from __future__ import annotations

import threading

from etlops_airflow.config import StoreSettings, store_settings
from etlops_airflow.store.store import Series, Store

__all__ = ["Series", "Store", "get_store", "reset_store_cache", "store_from_settings"]

_cache: dict[tuple[str, int, int], Store] = {}
_cache_lock = threading.Lock()


def store_from_settings(settings: StoreSettings) -> Store:
    key = (settings.url, settings.connect_timeout, settings.sqlite_busy_timeout)
    with _cache_lock:
        store = _cache.get(key)
        if store is None:
            store = Store.from_url(
                settings.url,
                connect_timeout=settings.connect_timeout,
                sqlite_busy_timeout=settings.sqlite_busy_timeout,
                source=settings.source,
            )
            _cache[key] = store
        return store


def get_store() -> Store:
    """The store named by the ``[etlops]`` section (shared per process and location)."""
    return store_from_settings(store_settings())


def reset_store_cache() -> None:
    """Dispose of every cached store (tests, forked processes)."""
    with _cache_lock:
        for store in _cache.values():
            store.dispose()
        _cache.clear()
