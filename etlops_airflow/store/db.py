"""The database under every store concern: engine, transaction modes, errors, schema.

Knows nothing of Airflow: it takes an engine (or a URL through :meth:`Database.from_url`).
Each concern module (``metrics``, ``outcomes``, …) runs its SQL through one of three
transaction modes:

* :meth:`Database.read` — no write lock, no DDL; a write fails on both databases.
* :meth:`Database.write` — one transaction, serialised with other writers on SQLite.
* :meth:`Database.autocommit` — no transaction (``VACUUM``, ``CREATE INDEX CONCURRENTLY``).

Errors from the driver leave as :class:`~etlops_airflow.exceptions.StoreError` naming the
store (masked URL) and the operation, with the driver's first line only: never the SQL
parameters (engines are built with ``hide_parameters``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, any_, bindparam, func, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import ColumnElement

from etlops_airflow.exceptions import StoreError, StoreSchemaError
from etlops_airflow.store import upgrades
from etlops_airflow.store.engine import MODE, create_store_engine, mask_passwords_in_text, mask_url


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    source = orig if isinstance(orig, BaseException) else exc
    text = str(source).strip()
    line = text.splitlines()[0] if text else ""
    if len(line) > 300:
        line = line[:299] + "…"
    line = mask_passwords_in_text(line)
    return f"{type(source).__name__}: {line}" if line else type(source).__name__


class Database:
    """One store database. Build with :meth:`from_url`, or pass an engine (tests, embedding)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"unsupported store dialect {self.dialect!r}; use sqlite or postgresql")
        self.display_url = mask_url(engine.url)
        self._schema_ready = False
        self._lock = threading.Lock()
        dbapi = engine.dialect.loaded_dbapi
        self._driver_errors: tuple[type[BaseException], ...] = (SQLAlchemyError, dbapi.Error)

    @classmethod
    def from_url(
        cls,
        url: str | URL,
        *,
        connect_timeout: int = 5,
        sqlite_busy_timeout: int = 30,
        source: str = "store_url",
    ) -> Database:
        return cls(
            create_store_engine(
                url, connect_timeout=connect_timeout, sqlite_busy_timeout=sqlite_busy_timeout, source=source
            )
        )

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    # -- errors ------------------------------------------------------------------------------------

    def error(self, operation: str, exc: BaseException) -> StoreError:
        return StoreError(
            f"store {self.display_url}: {operation} failed: {_first_line(exc)}",
            store=self.display_url,
            operation=operation,
        )

    @contextmanager
    def _wrapped(self, operation: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except self._driver_errors as exc:
            raise self.error(operation, exc) from exc

    # -- transaction modes ---------------------------------------------------------------------------

    def _connection(self, mode: str) -> Connection:
        options: dict[str, Any] = {MODE: mode}
        if self.dialect == "postgresql":
            if mode == "read":
                options["postgresql_readonly"] = True
            elif mode == "autocommit":
                options["isolation_level"] = "AUTOCOMMIT"
        return self.engine.connect().execution_options(**options)

    @contextmanager
    def read(self, operation: str) -> Iterator[Connection]:
        """A read-only transaction: no write lock; any write in it fails."""
        with self._wrapped(operation), self._connection("read") as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self, operation: str) -> Iterator[Connection]:
        """One write transaction, committed at the end, rolled back on any error."""
        with self._wrapped(operation), self._connection("write") as conn, conn.begin():
            yield conn

    @contextmanager
    def autocommit(self, operation: str) -> Iterator[Connection]:
        """No transaction: each statement commits by itself."""
        with self._wrapped(operation), self._connection("autocommit") as conn:
            yield conn

    # -- SQL helpers shared by the concern modules ----------------------------------------------------

    def insert(self, table: Any) -> Any:
        """The dialect's INSERT (with ``on_conflict_do_*``)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def upsert(self, table: Any, keys: Sequence[str], update: Sequence[str] | None = None) -> Any:
        """INSERT that updates ``update`` (default: every column but ``keys`` and the primary key)
        when a row with the same ``keys`` exists. Add ``.values(...)`` or pass rows to execute."""
        stmt = self.insert(table)
        columns = update or [c.name for c in table.columns if c.name not in keys and not c.primary_key]
        return stmt.on_conflict_do_update(
            index_elements=list(keys), set_={name: stmt.excluded[name] for name in columns}
        )

    def values_in(self, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
        """``column IN values`` with one bound parameter, however many values there are
        (PostgreSQL ``= ANY(array)``, SQLite ``IN (SELECT value FROM json_each(?))``)."""
        items = list(values)
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY

            result: ColumnElement[bool] = column == any_(bindparam(None, items, type_=ARRAY(column.type)))
            return result
        each = func.json_each(bindparam(None, json.dumps(items))).table_valued("value")
        return column.in_(select(each.c.value))  # type: ignore[no-any-return]

    # -- schema ---------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The schema version recorded in the store (0 when empty). Reads only: no lock, no DDL."""
        with self.read("read schema version") as conn:
            return upgrades.current_version(conn)

    def upgrade(self, target: int = upgrades.HEAD) -> tuple[int, int]:
        """Create or upgrade the schema to ``target``. Returns (from, to)."""
        with self._wrapped("schema upgrade"):
            if self.dialect == "sqlite":
                result = self._upgrade_sqlite(target)
            else:
                with self._connection("write") as conn, conn.begin():
                    result = upgrades.upgrade(conn, target)
        if result[1] == upgrades.HEAD:
            self._schema_ready = True
        return result

    def _upgrade_sqlite(self, target: int) -> tuple[int, int]:
        # Foreign keys can only be switched off outside a transaction; a rebuilt parent table
        # must not cascade deletes into its children. They are checked before the commit.
        with self._connection("autocommit") as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    result = upgrades.upgrade(conn, target)
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StoreSchemaError(
                            result[0], upgrades.HEAD, f"foreign keys broken after upgrade: {broken[:3]}"
                        )
                except BaseException:
                    conn.exec_driver_sql("ROLLBACK")
                    raise
                conn.exec_driver_sql("COMMIT")
            finally:
                conn.exec_driver_sql("PRAGMA foreign_keys = ON")
        return result

    def ensure_schema(self) -> None:
        """Upgrade on first use; afterwards a no-op for this object. A newer store is refused."""
        if self._schema_ready:
            return
        with self._lock:
            if self._schema_ready:
                return
            found = self.schema_version()
            if found > upgrades.HEAD:
                raise StoreSchemaError(
                    found,
                    upgrades.HEAD,
                    "upgrade etlops-airflow; this version cannot use the store",
                    store=self.display_url,
                )
            if found != upgrades.HEAD:
                self.upgrade()
            self._schema_ready = True

    def dispose(self) -> None:
        self.engine.dispose()
