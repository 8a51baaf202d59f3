"""Hook for the etlops store: turns an Airflow Connection into a store.

Connection types understood:

* ``postgres`` (or ``postgresql``): host, port, login, password, schema (the database);
  extra keys ``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey`` are passed to libpq.
* ``sqlite``: host is the database file path.
* ``etlops_store``: extra ``{"sqlalchemy_url": "..."}``, or the fields as for postgres
  with extra ``{"dialect": "postgresql" | "sqlite"}``.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from etlops_airflow.exceptions import ConfigError

if TYPE_CHECKING:
    from etlops_airflow.store.store import Store

_PG_TYPES = ("postgres", "postgresql")
_PASSTHROUGH_EXTRA = ("sslmode", "sslrootcert", "sslcert", "sslkey")


def url_from_connection(conn: Any) -> str:
    """SQLAlchemy URL (as text, password included) for an Airflow Connection object."""
    from sqlalchemy.engine import URL

    conn_id = getattr(conn, "conn_id", None)
    conn_type = (conn.conn_type or "").lower()
    extra = conn.extra_dejson if getattr(conn, "extra", None) else {}
    dialect = conn_type
    if conn_type == "etlops_store":
        explicit = extra.get("sqlalchemy_url")
        if explicit:
            return str(explicit)
        dialect = str(extra.get("dialect", "postgresql")).lower()
    if dialect in _PG_TYPES:
        query = {k: str(extra[k]) for k in _PASSTHROUGH_EXTRA if extra.get(k)}
        if not conn.host:
            raise ConfigError("store_conn_id", conn_id, "the PostgreSQL connection has no host")
        return URL.create(
            "postgresql+psycopg",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host,
            port=conn.port or None,
            database=conn.schema or None,
            query=query,
        ).render_as_string(hide_password=False)
    if dialect == "sqlite":
        path = conn.host or conn.schema
        if not path:
            raise ConfigError("store_conn_id", conn_id, "the SQLite connection has no file path in host")
        return f"sqlite:///{path}"
    raise ConfigError(
        "store_conn_id",
        conn_id,
        f"connection type {conn_type!r} is not a store; use postgres, sqlite or etlops_store",
    )


def url_from_connection_id(conn_id: str) -> str:
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise ConfigError("store_conn_id", conn_id, f"connection not found or unreadable: {exc}") from None
    return url_from_connection(conn)


class EtlopsStoreHook(BaseHook):
    """Access to the etlops store through an Airflow Connection.

    ``EtlopsStoreHook().store`` is the configured store (``[etlops] store_conn_id`` /
    ``store_url`` / SQLite in AIRFLOW_HOME); ``EtlopsStoreHook("my_pg").store`` uses
    that connection instead.
    """

    conn_name_attr = "etlops_conn_id"
    default_conn_name = "etlops_store"
    conn_type = "etlops_store"
    hook_name = "etlops store"

    def __init__(self, etlops_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.etlops_conn_id = etlops_conn_id

    @cached_property
    def store(self) -> Store:
        from etlops_airflow import config
        from etlops_airflow.store import store_from_settings

        return store_from_settings(config.store_settings(self.etlops_conn_id))

    def get_conn(self) -> Store:
        return self.store

    def test_connection(self) -> tuple[bool, str]:
        try:
            version = self.store.upgrade()[1]
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"store reachable, schema version {version}"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"schema": "Database", "host": "Host (or SQLite file path)"},
            "placeholders": {
                "extra": '{"dialect": "postgresql"}  or  {"sqlalchemy_url": "postgresql+psycopg://..."}',
                "port": "5432",
            },
        }
