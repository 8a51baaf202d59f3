"""Hook for the etlops store: turns an Airflow Connection into a store.

Connection types understood:

* ``postgres`` (or ``postgresql``): host, port, login, password, schema (the database);
  extra keys ``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey`` are passed to libpq.
* ``sqlite``: host is the database file path.
* ``etlops_store``: extra ``{"sqlalchemy_url": "..."}``, or the fields as for postgres
  with extra ``{"dialect": "postgresql" | "sqlite"}``.

The password (and a ``sqlalchemy_url`` extra, which holds one) is registered with Airflow's
secrets masker when read, so task logs show *** instead.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from etlops_airflow._secrets import mask_url_password
from etlops_airflow.exceptions import ConfigError

if TYPE_CHECKING:
    from etlops_airflow.store import Store

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
            mask_url_password(str(explicit))
            return str(explicit)
        dialect = str(extra.get("dialect", "postgresql")).lower()
    if dialect in _PG_TYPES:
        query = {k: str(extra[k]) for k in _PASSTHROUGH_EXTRA if extra.get(k)}
        if not conn.host:
            raise ConfigError("store_conn_id", conn_id, "the PostgreSQL connection has no host")
        url = URL.create(
            "postgresql+psycopg",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host,
            port=conn.port or None,
            database=conn.schema or None,
            query=query,
        ).render_as_string(hide_password=False)
        mask_url_password(url)
        return url
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
    from etlops_airflow._connections import get_connection

    try:
        conn = get_connection(conn_id)
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
        from etlops_airflow.runtime import store_for

        return store_for(self.etlops_conn_id)

    def get_conn(self) -> Store:
        return self.store

    def test_connection(self) -> tuple[bool, str]:
        """Reads only: connects, reads the schema version; takes no lock and creates nothing."""
        try:
            status = self.store.status()
        except Exception as exc:
            from etlops_airflow._secrets import redact

            return False, redact(f"{type(exc).__name__}: {exc}")
        version, head = status["schema_version"], status["schema_head"]
        if version == 0:
            return True, f"store reachable, empty: tasks create the schema (version {head}) on first use"
        return True, f"store reachable, schema version {version} (this package: {head})"

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
