"""The target database of a migration: schema changes, fingerprints, backup and restore, and
the figures the validations read. SQLite and PostgreSQL; plain Python and SQLAlchemy.

Safety rules every method follows:

* An identifier from a migration file reaches SQL only after it was found in (or, for a new
  name, checked absent from) the live catalogue, and always quoted by the dialect's
  identifier preparer, so a name round-trips exactly or is refused.
* Types reach SQL only through :func:`types.render_type` of an allowlisted type; an
  ``add_column`` default only as a literal rendered here (numbers, booleans, strings, NULL).
* Values go as bound parameters, in statements whose text holds no identifier from a file;
  statements that do hold one run with no parameters at all (so no driver placeholder
  processing can touch a quoted name).

SQLite runs every change inside one ``BEGIN IMMEDIATE`` transaction with the driver's own
transaction handling switched off, so its DDL is transactional; PostgreSQL DDL is
transactional anyway and runs under ``lock_timeout``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etlops_airflow.core.migrations.model import NO_DEFAULT, SchemaChange
from etlops_airflow.core.migrations.types import base_of, normalize_type, reflected_type, render_type
from etlops_airflow.exceptions import EtlopsError, ValidationError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1; longer names would be cut silently
BACKUP_SCHEMA = "etlops_backup"
_FETCH = 10_000  # rows per fetch when streaming a table
_SQLITE_ATTACH = "etlops_restore_src"


class TargetError(EtlopsError):
    """The target database refused or could not finish an operation. Names the target."""


@dataclass(frozen=True)
class ChangePlan:
    """The SQL one schema change runs, in order, with what a reader should know first."""

    statements: list[str]
    warnings: list[str] = field(default_factory=list)
    rewrites_table: bool = False


@dataclass(frozen=True)
class TableFingerprint:
    """A table's reflected shape and an ordered checksum of its rows. Equal fingerprints mean
    identical schema and data."""

    schema: dict[str, Any]
    rows: int
    checksum: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableFingerprint:
        return cls(dict(data["schema"]), int(data["rows"]), str(data["checksum"]))


# -- SQLite DDL tokens ------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<blob>[xX]'[0-9a-fA-F]*')
  | (?P<str>'(?:[^']|'')*')
  | (?P<ident>"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\]|[^\W\d][\w$]*)
  | (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<punct>.)
    """,
    re.S | re.X,
)
_CONSTRAINT_WORDS = {"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"}
_COLUMN_CONSTRAINT_WORDS = {
    "CONSTRAINT",
    "PRIMARY",
    "NOT",
    "NULL",
    "UNIQUE",
    "CHECK",
    "DEFAULT",
    "COLLATE",
    "REFERENCES",
    "GENERATED",
    "AS",
}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    start: int
    end: int


def _tokens(sql: str) -> list[_Tok]:
    return [_Tok(str(m.lastgroup), m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(sql)]


def _unquote(token: _Tok) -> str:
    text = token.text
    if text[:1] == '"':
        return text[1:-1].replace('""', '"')
    if text[:1] == "`":
        return text[1:-1].replace("``", "`")
    if text[:1] == "[":
        return text[1:-1]
    return text


def _fold(name: str) -> str:
    """SQLite compares identifiers case-insensitively for ASCII letters only."""
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass
class _CreateTable:
    """A ``CREATE TABLE`` statement cut into its definitions (column or table constraint)."""

    items: list[str]
    tail: str  # after the closing parenthesis: WITHOUT ROWID, STRICT

    @classmethod
    def parse(cls, sql: str) -> _CreateTable:
        toks = _tokens(sql)
        depth = 0
        open_at: int | None = None
        items: list[str] = []
        item_start = 0
        for tok in toks:
            if tok.kind != "punct":
                continue
            if tok.text == "(":
                depth += 1
                if depth == 1 and open_at is None:
                    open_at = tok.end
                    item_start = tok.end
            elif tok.text == ")":
                depth -= 1
                if depth == 0 and open_at is not None:
                    items.append(sql[item_start : tok.start])
                    return cls([i.strip() for i in items], sql[tok.end :].strip())
            elif tok.text == "," and depth == 1:
                items.append(sql[item_start : tok.start])
                item_start = tok.end
        raise ValueError("not a CREATE TABLE … ( … ) statement")

    def render(self, quoted_name: str) -> str:
        body = ",\n  ".join(self.items)
        tail = f" {self.tail}" if self.tail else ""
        return f"CREATE TABLE {quoted_name} (\n  {body}\n){tail}"


def _significant(item: str) -> list[_Tok]:
    return [t for t in _tokens(item) if t.kind not in ("ws", "comment")]


def _is_table_constraint(item: str) -> bool:
    toks = _significant(item)
    return bool(toks) and toks[0].kind == "ident" and toks[0].text.upper() in _CONSTRAINT_WORDS


def _item_column(item: str) -> str | None:
    if _is_table_constraint(item):
        return None
    toks = _significant(item)
    return _unquote(toks[0]) if toks else None


def _item_mentions(item: str, column: str) -> bool:
    """Whether a definition names ``column`` of its own table (the parent table and columns
    after REFERENCES are another table's, and do not count)."""
    folded = _fold(column)
    toks = _significant(item)
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok.kind == "ident" and tok.text.upper() == "REFERENCES":
            i += 2  # the parent table
            if i < len(toks) and toks[i].text == "(":
                while i < len(toks) and toks[i].text != ")":
                    i += 1
            i += 1
            continue
        if tok.kind == "ident" and _fold(_unquote(tok)) == folded:
            return True
        i += 1
    return False


def _retype_item(item: str, new_type: str) -> str:
    """A column definition with its type replaced (or added when it had none)."""
    toks = _significant(item)
    name = toks[0]
    start = end = name.end
    i = 1
    while i < len(toks):
        tok = toks[i]
        if (
            tok.kind == "ident"
            and tok.text[:1] not in '"`['
            and tok.text.upper() not in _COLUMN_CONSTRAINT_WORDS
        ):
            end = tok.end
            i += 1
            continue
        if tok.kind == "punct" and tok.text == "(" and end > name.end:
            depth = 0
            while i < len(toks):
                if toks[i].text == "(":
                    depth += 1
                elif toks[i].text == ")":
                    depth -= 1
                    if depth == 0:
                        end = toks[i].end
                        i += 1
                        break
                i += 1
            break
        break
    if end == name.end:
        return f"{item[: name.end]} {new_type}{item[name.end :]}"
    return f"{item[:start]} {new_type}{item[end:]}"


# -- literals ---------------------------------------------------------------------------------------


def render_literal(value: object, dialect: str, field_name: str, owner: str | None = None) -> str:
    """A default value as a SQL literal: None, bool, int, finite float or str (quotes
    doubled; no NUL). Anything else is refused."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(field_name, value, "must be a finite number", owner=owner)
        return repr(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(field_name, value, "must not contain a NUL character", owner=owner)
        body = value.replace("'", "''")
        if dialect == "postgresql" and "\\" in value:
            # E'' reads the same whatever standard_conforming_strings says
            return "E'" + body.replace("\\", "\\\\") + "'"
        return f"'{body}'"
    raise ValidationError(field_name, value, "expected a number, true/false, a string or null", owner=owner)


def _sanitize_label(label: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._-")[:80] or "backup"
    digest = hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{slug}-{digest}"


# -- reflected shapes -------------------------------------------------------------------------------


@dataclass
class _Column:
    name: str
    type: str  # as the database reports it
    nullable: bool
    default: str | None
    pk: int = 0  # position in the primary key, 0 when not in it
    generated: bool = False  # computed: never inserted into
    identity: str = ""  # PostgreSQL: 'a' always, 'd' by default
    generated_expr: str | None = None
    collation: str | None = None


@dataclass
class _Index:
    name: str
    columns: list[str]
    unique: bool
    sql: str | None  # SQLite: CREATE INDEX text (None for a constraint's index); PostgreSQL: indexdef
    constraint: bool = False  # backs a PRIMARY KEY / UNIQUE / EXCLUDE constraint


@dataclass
class _Table:
    name: str
    columns: list[_Column]
    indexes: list[_Index]
    foreign_keys: list[list[Any]]
    sql: str | None = None  # SQLite CREATE TABLE text
    constraints: list[list[str]] = field(default_factory=list)  # PostgreSQL [name, type, def]
    triggers: list[list[str]] = field(default_factory=list)  # [name, sql]
    oid: int | None = None
    reltuples: float = -1.0

    def column(self, name: str) -> _Column | None:
        for col in self.columns:
            if col.name == name:
                return col
        return None

    @property
    def primary_key(self) -> list[str]:
        return [c.name for c in sorted((c for c in self.columns if c.pk), key=lambda c: c.pk)]

    def index(self, name: str) -> _Index | None:
        for idx in self.indexes:
            if idx.name == name:
                return idx
        return None

    def schema(self) -> dict[str, Any]:
        """The JSON-able description a fingerprint compares."""
        out: dict[str, Any] = {
            "columns": [[c.name, reflected_type(c.type), c.nullable, c.default] for c in self.columns],
            "primary_key": self.primary_key,
            "indexes": sorted([i.name, i.columns, i.unique] for i in self.indexes),
            "foreign_keys": sorted(fk[1:] if isinstance(fk[0], int) else fk for fk in self.foreign_keys),
        }
        if self.constraints:
            out["constraints"] = sorted(self.constraints)
        if self.triggers:
            out["triggers"] = sorted(self.triggers)
        return out


# -- the target -------------------------------------------------------------------------------------


class Target:
    """One target database of migrations, reached through a SQLAlchemy engine."""

    def __init__(self, engine: Engine, *, name: str = "target", lock_timeout_s: float = 10.0) -> None:
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ValidationError(
                "target.dialect",
                dialect,
                "unsupported database; use sqlite or postgresql",
                owner=f"target {name!r}",
            )
        self.engine = engine
        self.name = name
        self.dialect: str = dialect
        self.lock_timeout_s = lock_timeout_s
        self._preparer = engine.dialect.identifier_preparer

    def __repr__(self) -> str:
        return f"Target({self.name!r}, {self.dialect})"

    @property
    def owner(self) -> str:
        return f"target {self.name!r}"

    def quote(self, name: str) -> str:
        """``name`` always quoted by the dialect (so it round-trips exactly), for statements
        sent without parameters: the preparer of a pyformat driver (psycopg) doubles every
        ``%`` for the driver's placeholder parsing, which those statements never go through,
        so the doubling is undone (every ``%`` was doubled, so the pairs undo exactly)."""
        quoted = str(self._preparer.quote_identifier(name))
        if getattr(self._preparer, "_double_percents", False):
            quoted = quoted.replace("%%", "%")
        return quoted

    # -- transactions -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction in which DDL is transactional; committed when the block ends,
        rolled back when it raises.

        SQLite: the driver's own transaction handling off, ``BEGIN IMMEDIATE`` (the write lock
        from the start), and foreign-key enforcement off for the transaction, as SQLite's
        table-rebuild procedure requires (a dropped parent table would otherwise cascade). When
        enforcement was on, ``PRAGMA foreign_key_check`` must come back empty before the commit,
        else the transaction is rolled back. PostgreSQL: ``lock_timeout`` for the transaction.
        """
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                with self._sqlite_transaction(conn, write=True):
                    yield conn
                return
            with conn.begin():
                self._sql(conn, "SELECT set_config('lock_timeout', :v, true)", v=f"{self._lock_ms()}ms")
                yield conn

    @contextlib.contextmanager
    def read_only(self) -> Iterator[Connection]:
        """A transaction that cannot write (SQLite ``PRAGMA query_only``; PostgreSQL ``READ
        ONLY``), always rolled back."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                with self._sqlite_transaction(conn, write=False):
                    yield conn
                return
            trans = conn.begin()
            try:
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield conn
            finally:
                trans.rollback()

    def _lock_ms(self) -> int:
        return max(1, int(self.lock_timeout_s * 1000))

    @contextlib.contextmanager
    def _sqlite_transaction(self, conn: Connection, *, write: bool) -> Iterator[None]:
        dbapi = _sqlite_dbapi(conn)
        saved = dbapi.isolation_level
        dbapi.isolation_level = None  # commits nothing: no transaction is open at checkout
        foreign_keys = 0
        if write:
            foreign_keys = int(dbapi.execute("PRAGMA foreign_keys").fetchone()[0])
            if foreign_keys:
                dbapi.execute("PRAGMA foreign_keys = OFF")
        else:
            dbapi.execute("PRAGMA query_only = 1")
            # an engine made by the store begins in the mode this option names (a plain engine
            # ignores it): a deferred BEGIN, so a read takes no write lock
            conn.execution_options(etlops_mode="read")
        try:
            trans = conn.begin()
            try:
                if not dbapi.in_transaction:  # an engine's own "begin" listener may have begun
                    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
                if not write:
                    dbapi.execute("PRAGMA query_only = 1")
                yield
                if write and foreign_keys:
                    bad = dbapi.execute("PRAGMA foreign_key_check").fetchall()
                    if bad:
                        shown = ", ".join(f"{r[0]} rowid {r[1]} -> {r[2]}" for r in bad[:5])
                        raise TargetError(
                            f"{self.owner}: {len(bad)} foreign key violation(s) at commit "
                            f"({shown}); rolled back"
                        )
                if write:
                    trans.commit()
                else:
                    trans.rollback()
            except BaseException:
                if trans.is_active:
                    trans.rollback()
                raise
        finally:
            if write and foreign_keys:
                dbapi.execute("PRAGMA foreign_keys = ON")
            if not write:
                dbapi.execute("PRAGMA query_only = 0")
            dbapi.isolation_level = saved

    @contextlib.contextmanager
    def _conn(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.read_only() as fresh:
                yield fresh

    # -- low-level execution ------------------------------------------------------------------------

    @staticmethod
    def _sql(conn: Connection, sql: str, **params: Any) -> Any:
        """A catalogue statement: fixed text, values bound (no identifier from a file in it)."""
        from sqlalchemy import text

        return conn.execute(text(sql), params)

    @staticmethod
    def _ddl(conn: Connection, sql: str) -> Any:
        """A statement that holds quoted identifiers: sent as is, with no parameters."""
        return conn.execution_options(no_parameters=True).exec_driver_sql(sql)

    def _qualified(self, conn: Connection, table: str) -> str:
        if self.dialect == "postgresql":
            schema = self._sql(conn, "SELECT current_schema()").scalar_one()
            return f"{self.quote(schema)}.{self.quote(table)}"
        return self.quote(table)

    # -- catalogue ----------------------------------------------------------------------------------

    def _reflect(self, conn: Connection, table: str, *, schema: str = "main") -> _Table | None:
        if not isinstance(table, str) or not table or "\x00" in table:
            return None
        if self.dialect == "sqlite":
            return _reflect_sqlite(self, conn, table, schema)
        return _reflect_postgres(self, conn, table)

    def _require_table(self, conn: Connection, table: object, field_name: str) -> _Table:
        found = self._reflect(conn, table) if isinstance(table, str) else None
        if found is None:
            raise ValidationError(field_name, table, "no such table in the target", owner=self.owner)
        return found

    def _relation_names(self, conn: Connection) -> list[str]:
        if self.dialect == "sqlite":
            return [r[0] for r in self._sql(conn, "SELECT name FROM main.sqlite_master")]
        return [
            r[0]
            for r in self._sql(
                conn, "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
            )
        ]

    def _check_new_name(self, field_name: str, name: object) -> str:
        if not isinstance(name, str) or not name:
            raise ValidationError(field_name, name, "expected a non-empty name", owner=self.owner)
        if "\x00" in name:
            raise ValidationError(field_name, name, "must not contain a NUL character", owner=self.owner)
        if len(name.encode("utf-8", "surrogatepass")) > MAX_IDENTIFIER_BYTES:
            raise ValidationError(
                field_name,
                name,
                f"longer than {MAX_IDENTIFIER_BYTES} bytes (PostgreSQL would cut it)",
                owner=self.owner,
            )
        if self.dialect == "sqlite" and _fold(name).startswith("sqlite_"):
            raise ValidationError(
                field_name, name, "names starting sqlite_ are SQLite's own", owner=self.owner
            )
        return name

    def _same_name(self, a: str, b: str) -> bool:
        return _fold(a) == _fold(b) if self.dialect == "sqlite" else a == b

    def _absent_column(self, info: _Table, name: str, field_name: str) -> None:
        if any(self._same_name(c.name, name) for c in info.columns):
            raise ValidationError(
                field_name, name, f"table {info.name!r} already has this column", owner=self.owner
            )

    def _present_column(self, info: _Table, name: object, field_name: str) -> _Column:
        col = info.column(name) if isinstance(name, str) else None
        if col is None:
            raise ValidationError(
                field_name, name, f"table {info.name!r} has no such column", owner=self.owner
            )
        return col

    # -- schema changes -----------------------------------------------------------------------------

    def plan_change(self, change: SchemaChange, conn: Connection | None = None) -> ChangePlan:
        """The statements ``change`` runs on the target as it is now, with warnings.

        Every identifier is checked against the live catalogue and quoted; a wrong one raises
        ValidationError naming the step field (``schema_change.rename_column.from``)."""
        with self._conn(conn) as c:
            return self._plan(c, change)

    def _plan(self, conn: Connection, change: SchemaChange) -> ChangePlan:
        op = change.op
        info = self._require_table(conn, change.table, "schema_change.table")
        table = self._qualified(conn, info.name)
        f = f"schema_change.{op}."
        if op == "add_column":
            name = self._check_new_name(f + "name", change.column)
            self._absent_column(info, name, f + "name")
            type_sql = self._type(change.type, f + "type")
            sql = f"ALTER TABLE {table} ADD COLUMN {self.quote(name)} {type_sql}"
            if change.default is not NO_DEFAULT:
                sql += " DEFAULT " + render_literal(change.default, self.dialect, f + "default", self.owner)
            if not change.nullable:
                sql += " NOT NULL"
            warnings = []
            if self.dialect == "postgresql":
                warnings.append(
                    self._lock_warning(info, "ADD COLUMN with a constant default changes the catalogue only")
                )
                if not change.nullable and change.default in (NO_DEFAULT, None):
                    warnings.append(
                        f"{info.name}: a NOT NULL column without a default fails on a non-empty table"
                    )
            return ChangePlan([sql], warnings, False)
        if op == "drop_column":
            col = self._present_column(info, change.column, f + "name")
            if len(info.columns) == 1:
                raise ValidationError(f + "name", col.name, "is the table's only column", owner=self.owner)
            if self.dialect == "sqlite" and self._sqlite_drop_blocked(info, col):
                return self._sqlite_rebuild(conn, info, drop=col.name)
            warnings = []
            if self.dialect == "postgresql":
                dropped = [i.name for i in info.indexes if col.name in i.columns]
                also = f"; drops index(es) {', '.join(dropped)} with it" if dropped else ""
                warnings.append(self._lock_warning(info, "DROP COLUMN changes the catalogue only" + also))
            return ChangePlan([f"ALTER TABLE {table} DROP COLUMN {self.quote(col.name)}"], warnings, False)
        if op == "rename_column":
            col = self._present_column(info, change.column, f + "from")
            new = self._check_new_name(f + "to", change.new_name)
            self._absent_column(info, new, f + "to")
            warnings = (
                [self._lock_warning(info, "RENAME COLUMN changes the catalogue only")] if self._pg else []
            )
            return ChangePlan(
                [f"ALTER TABLE {table} RENAME COLUMN {self.quote(col.name)} TO {self.quote(new)}"],
                warnings,
                False,
            )
        if op == "change_column_type":
            col = self._present_column(info, change.column, f + "name")
            new_type = self._normalized(change.type, f + "type")
            if self.dialect == "sqlite":
                return self._sqlite_rebuild(conn, info, retype=(col.name, new_type))
            type_sql = render_type(new_type, self.dialect)
            q = self.quote(col.name)
            sql = f"ALTER TABLE {table} ALTER COLUMN {q} TYPE {type_sql} USING {q}::{type_sql}"
            rewrite = not _pg_binary_compatible(reflected_type(col.type), new_type)
            if rewrite:
                what = (
                    f"rewrites the whole table {info.name!r} ({_rows_estimate(info)}) and rebuilds its "
                    "indexes while holding the lock"
                )
            else:
                what = f"{reflected_type(col.type)} -> {new_type} needs no table rewrite"
            return ChangePlan([sql], [self._lock_warning(info, what)], rewrite)
        if op == "add_index":
            name = self._check_new_name(f + "name", change.index)
            if any(self._same_name(existing, name) for existing in self._relation_names(conn)):
                raise ValidationError(
                    f + "name", name, "an index, table or other relation has this name", owner=self.owner
                )
            if not change.columns:
                raise ValidationError(
                    f + "columns", list(change.columns), "expected at least one column", owner=self.owner
                )
            if len(set(change.columns)) != len(change.columns):
                raise ValidationError(
                    f + "columns", list(change.columns), "names a column twice", owner=self.owner
                )
            cols = [self._present_column(info, c, f + "columns").name for c in change.columns]
            unique = "UNIQUE " if change.unique else ""
            target = table if self._pg else self.quote(info.name)
            sql = f"CREATE {unique}INDEX {self.quote(name)} ON {target} ({', '.join(map(self.quote, cols))})"
            warnings = []
            if self._pg:
                warnings.append(
                    f"{info.name}: CREATE INDEX holds a SHARE lock that blocks writes to the table while "
                    f"the index builds over {_rows_estimate(info)}; CREATE INDEX CONCURRENTLY cannot run "
                    "inside the migration's transaction"
                )
            return ChangePlan([sql], warnings, False)
        if op == "drop_index":
            if not isinstance(change.index, str):
                raise ValidationError(f + "name", change.index, "expected an index name", owner=self.owner)
            idx = info.index(change.index)
            if idx is None:
                raise ValidationError(
                    f + "name", change.index, f"table {info.name!r} has no such index", owner=self.owner
                )
            if idx.constraint:
                raise ValidationError(
                    f + "name",
                    idx.name,
                    "belongs to a PRIMARY KEY or UNIQUE constraint of the table",
                    owner=self.owner,
                )
            if self._pg:
                schema = self._sql(conn, "SELECT current_schema()").scalar_one()
                sql = f"DROP INDEX {self.quote(schema)}.{self.quote(idx.name)}"
                return ChangePlan(
                    [sql], [self._lock_warning(info, "DROP INDEX is quick once the lock is held")], False
                )
            return ChangePlan([f"DROP INDEX {self.quote(idx.name)}"], [], False)
        raise ValidationError("schema_change", op, "unknown schema change", owner=self.owner)

    @property
    def _pg(self) -> bool:
        return self.dialect == "postgresql"

    def _normalized(self, type_text: object, field_name: str) -> str:
        normalized = normalize_type(type_text)
        if normalized is None:
            raise ValidationError(field_name, type_text, "not an allowlisted type", owner=self.owner)
        return normalized

    def _type(self, type_text: object, field_name: str) -> str:
        return render_type(self._normalized(type_text, field_name), self.dialect)

    def _lock_warning(self, info: _Table, what: str) -> str:
        return (
            f"{info.name}: ALTER takes an ACCESS EXCLUSIVE lock (reads and writes of the table wait; "
            f"lock_timeout {self._lock_ms()} ms); {what}"
        )

    def apply_change(self, conn: Connection, change: SchemaChange) -> list[str]:
        """Run ``change`` on ``conn`` (inside the caller's transaction); the SQL that ran."""
        plan = self._plan(conn, change)
        if self.dialect == "sqlite" and plan.rewrites_table:
            if int(conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one()):
                raise TargetError(
                    f"{self.owner}: rebuilding {change.table!r} needs foreign keys off; "
                    "run it inside Target.transaction()"
                )
        ran: list[str] = []
        for statement in plan.statements:
            self._ddl(conn, statement)
            ran.append(statement)
        return ran

    def undo_needed(self, conn: Connection, change: SchemaChange) -> bool:
        """False when ``change`` (a rollback step) is already in effect, so there is nothing to
        undo: the index or column it drops is gone, the column it renames already has its new
        name, the column or index it adds is there (same type), the type it sets is set."""
        info = self._reflect(conn, change.table)
        if info is None:
            return True  # let plan_change name the missing table
        op = change.op
        if op == "drop_index":
            return change.index is not None and info.index(change.index) is not None
        if op == "drop_column":
            return change.column is not None and info.column(change.column) is not None
        if op == "rename_column":
            old = info.column(change.column) if change.column else None
            new = info.column(change.new_name) if change.new_name else None
            return not (old is None and new is not None)
        if op == "add_column":
            col = info.column(change.column) if change.column else None
            return col is None or reflected_type(col.type) != normalize_type(change.type)
        if op == "add_index":
            return change.index is None or info.index(change.index) is None
        if op == "change_column_type":
            col = info.column(change.column) if change.column else None
            return col is None or reflected_type(col.type) != normalize_type(change.type)
        return True

    # -- SQLite move-and-copy -----------------------------------------------------------------------

    def _sqlite_drop_blocked(self, info: _Table, col: _Column) -> bool:
        """Whether SQLite's own DROP COLUMN would refuse: the column is in the primary key, an
        index, a foreign key, or named by another definition (a table constraint, a CHECK)."""
        if col.pk or any(col.name in i.columns for i in info.indexes):
            return True
        if any(col.name in fk[1] for fk in info.foreign_keys):
            return True
        parsed = _CreateTable.parse(info.sql or "")
        for item in parsed.items:
            own = _item_column(item)
            if own is not None and _fold(own) == _fold(col.name):
                continue
            if _item_mentions(item, col.name):
                return True
        return False

    def _sqlite_rebuild(
        self,
        conn: Connection,
        info: _Table,
        *,
        drop: str | None = None,
        retype: tuple[str, str] | None = None,
    ) -> ChangePlan:
        """SQLite's table rebuild: the original CREATE TABLE with the one definition edited,
        under a temporary name; rows copied (rowids kept); old table dropped; new one renamed;
        indexes and triggers recreated from their original SQL; the AUTOINCREMENT counter kept."""
        parsed = _CreateTable.parse(info.sql or "")
        warnings: list[str] = []
        if retype is not None:
            name, new_type = retype
            found = False
            for i, item in enumerate(parsed.items):
                own = _item_column(item)
                if own is not None and _fold(own) == _fold(name):
                    parsed.items[i] = _retype_item(item, render_type(new_type, "sqlite"))
                    found = True
            if not found:
                raise TargetError(f"{self.owner}: column {name!r} not found in the DDL of {info.name!r}")
        if drop is not None:
            kept: list[str] = []
            for item in parsed.items:
                own = _item_column(item)
                if own is not None and _fold(own) == _fold(drop):
                    continue
                if own is None and _item_mentions(item, drop):
                    warnings.append(f"{info.name}: table constraint dropped with column {drop!r}: {item}")
                    continue
                if own is not None and _item_mentions(item, drop):
                    raise ValidationError(
                        "schema_change.drop_column.name",
                        drop,
                        f"column {own!r} of {info.name!r} refers to it (CHECK, generated column or default)",
                        owner=self.owner,
                    )
                kept.append(item)
            parsed.items = kept
        existing = {_fold(n) for n in self._relation_names(conn)}
        tmp = "_etlops_rebuild_" + hashlib.sha256(info.name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        while _fold(tmp) in existing:
            tmp += "_"
        q_old, q_tmp = self.quote(info.name), self.quote(tmp)
        columns = [c.name for c in info.columns if not c.generated and c.name != drop]
        cols = ", ".join(map(self.quote, columns))
        statements = [parsed.render(q_tmp)]
        rowid = _sqlite_rowid_name(info, parsed.tail)
        if rowid:
            statements.append(f"INSERT INTO {q_tmp} ({rowid}, {cols}) SELECT {rowid}, {cols} FROM {q_old}")
        else:
            statements.append(f"INSERT INTO {q_tmp} ({cols}) SELECT {cols} FROM {q_old}")
        seq = (
            self._sql(conn, "SELECT seq FROM main.sqlite_sequence WHERE name = :t", t=info.name).first()
            if _has_sqlite_sequence(self, conn)
            else None
        )
        statements.append(f"DROP TABLE {q_old}")
        legacy = int(conn.exec_driver_sql("PRAGMA legacy_alter_table").scalar_one())
        statements.append("PRAGMA legacy_alter_table = ON")  # views naming the old table: no re-check
        statements.append(f"ALTER TABLE {q_tmp} RENAME TO {q_old}")
        statements.append(f"PRAGMA legacy_alter_table = {'ON' if legacy else 'OFF'}")
        for idx in info.indexes:
            if idx.sql is None:
                continue
            if drop is not None and (drop in idx.columns or _item_mentions(idx.sql, drop)):
                warnings.append(f"{info.name}: index {idx.name!r} dropped with column {drop!r}")
                continue
            statements.append(idx.sql)
        for _name, trigger_sql in info.triggers:
            statements.append(trigger_sql)
        if seq is not None:
            statements.append(
                f"UPDATE main.sqlite_sequence SET seq = {int(seq[0])} "
                f"WHERE name = {render_literal(info.name, 'sqlite', 'table')}"
            )
        warnings.insert(
            0, f"{info.name}: SQLite cannot ALTER this in place; the table is rebuilt (every row copied)"
        )
        return ChangePlan(statements, warnings, True)

    # -- fingerprints -------------------------------------------------------------------------------

    def fingerprint(
        self, tables: Sequence[str], conn: Connection | None = None
    ) -> dict[str, TableFingerprint]:
        """Each table's reflected schema, row count and SHA-256 over its rows in primary-key
        order (else ordered by every column), streamed."""
        with self._conn(conn) as c:
            return {t: self._fingerprint(c, t) for t in tables}

    def _fingerprint(self, conn: Connection, table: str, *, schema: str = "main") -> TableFingerprint:
        info = self._reflect(conn, table, schema=schema)
        if info is None:
            raise ValidationError("table", table, "no such table in the target", owner=self.owner)
        rows, checksum = self._checksum(conn, info, schema=schema)
        return TableFingerprint(info.schema(), rows, checksum)

    def _checksum(self, conn: Connection, info: _Table, *, schema: str = "main") -> tuple[int, str]:
        cols = ", ".join(self.quote(c.name) for c in info.columns)
        order = info.primary_key or [c.name for c in info.columns]
        order_sql = ", ".join(self.quote(c) for c in order)
        if self._pg:
            source = self._qualified(conn, info.name)
        else:
            source = f"{self.quote(schema)}.{self.quote(info.name)}"
        sql = f"SELECT {cols} FROM {source} ORDER BY {order_sql}"
        digest = hashlib.sha256()
        count = 0
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        cursor: Any = dbapi.cursor(name="etlops_fingerprint") if self._pg else dbapi.cursor()  # type: ignore[call-arg]
        try:
            if self._pg:
                cursor.itersize = _FETCH
            cursor.execute(sql)
            while True:
                chunk = cursor.fetchmany(_FETCH)
                if not chunk:
                    break
                count += len(chunk)
                digest.update(repr(chunk).encode("utf-8", "surrogatepass"))
        finally:
            cursor.close()
        return count, digest.hexdigest()

    # -- validation primitives ----------------------------------------------------------------------

    def count_rows(self, conn: Connection, table: str) -> int:
        info = self._require_table(conn, table, "table")
        return int(self._ddl(conn, f"SELECT count(*) FROM {self._qualified(conn, info.name)}").scalar_one())

    def null_counts(self, conn: Connection, table: str, columns: Sequence[str]) -> dict[str, int]:
        info = self._require_table(conn, table, "table")
        cols = [self._present_column(info, c, "not_null").name for c in columns]
        if not cols:
            return {}
        exprs = ", ".join(f"count(*) - count({self.quote(c)})" for c in cols)
        row = self._ddl(conn, f"SELECT {exprs} FROM {self._qualified(conn, info.name)}").one()
        return {c: int(n) for c, n in zip(cols, row, strict=True)}

    def foreign_key_violations(self, conn: Connection, table: str) -> list[str]:
        """One line per broken foreign key of ``table`` (SQLite: per row; PostgreSQL: per
        constraint, with the number of rows)."""
        info = self._require_table(conn, table, "table")
        if self.dialect == "sqlite":
            rows = self._ddl(conn, f"PRAGMA foreign_key_check({self.quote(info.name)})").all()
            fks = {fk[0]: fk for fk in info.foreign_keys}
            out = []
            for _t, rowid, parent, fkid in rows:
                fk = fks.get(fkid)
                cols = f" ({', '.join(fk[1])})" if fk else ""
                out.append(f"{info.name} rowid {rowid}{cols}: no matching row in {parent}")
            return out
        out = []
        for name, child_cols, parent, parent_cols in _pg_fk_columns(self, conn, info):
            cond = " AND ".join(f"c.{self.quote(a)} IS NOT NULL" for a in child_cols)
            match = " AND ".join(
                f"p.{self.quote(b)} = c.{self.quote(a)}" for a, b in zip(child_cols, parent_cols, strict=True)
            )
            sql = (
                f"SELECT count(*) FROM {self._qualified(conn, info.name)} c WHERE {cond} "
                f"AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {match})"
            )
            bad = int(self._ddl(conn, sql).scalar_one())
            if bad:
                out.append(
                    f"{info.name}: {bad} row(s) break {name} ({', '.join(child_cols)}) -> "
                    f"{parent}({', '.join(parent_cols)})"
                )
        return out

    def column_types(self, conn: Connection, table: str) -> dict[str, str]:
        """Column name -> reflected type, in allowlist spelling where it has one."""
        info = self._require_table(conn, table, "table")
        return {c.name: reflected_type(c.type) for c in info.columns}

    def _read_statement(self, sql: str) -> str:
        if not isinstance(sql, str) or not sql.strip():
            raise ValidationError("query", sql, "expected one SQL statement", owner=self.owner)
        if "\x00" in sql:
            raise ValidationError("query", sql, "must not contain a NUL character", owner=self.owner)
        return sql

    def _run_read(self, conn: Connection, sql: str) -> Any:
        """One statement through the driver's cursor: SQLite refuses a second statement itself;
        PostgreSQL gets it as a prepared statement, which cannot hold two."""
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        cursor: Any = dbapi.cursor()
        if self._pg:
            cursor.execute(sql, prepare=True)
        else:
            cursor.execute(sql)
        return cursor

    def time_query(self, sql: str, runs: int) -> list[float]:
        """Milliseconds per run of ``sql`` (every row fetched), in a read-only transaction."""
        sql = self._read_statement(sql)
        times: list[float] = []
        with self.read_only() as conn:
            for _ in range(max(1, runs)):
                start = time.perf_counter()
                try:
                    cursor = self._run_read(conn, sql)
                    cursor.fetchall()
                    cursor.close()
                except Exception as exc:
                    raise TargetError(f"{self.owner}: query failed: {_first_line(exc)}") from exc
                times.append((time.perf_counter() - start) * 1000.0)
        return times

    def query_digest(self, sql: str) -> str:
        """SHA-256 over the rows of one read-only query, in the order it returns them."""
        sql = self._read_statement(sql)
        digest = hashlib.sha256()
        with self.read_only() as conn:
            try:
                cursor = self._run_read(conn, sql)
                while True:
                    chunk = cursor.fetchmany(_FETCH)
                    if not chunk:
                        break
                    digest.update(repr(chunk).encode("utf-8", "surrogatepass"))
                cursor.close()
            except Exception as exc:
                raise TargetError(f"{self.owner}: query failed: {_first_line(exc)}") from exc
        return digest.hexdigest()

    # -- backup and restore -------------------------------------------------------------------------

    def backup(
        self, tables: Sequence[str], *, label: str, backup_dir: Path, checksums: bool = True
    ) -> dict[str, Any]:
        """Save ``tables`` so that :meth:`restore` can bring them back exactly.

        SQLite: a copy of the database file made with SQLite's backup API, under
        ``backup_dir`` and named from ``label`` (sanitised). PostgreSQL: a snapshot table per
        table in the ``etlops_backup`` schema (logged, so it survives a crash), with the
        recorded definitions a rebuild needs. Either way, each table's fingerprint at backup
        time (``checksums=False`` records the schema and row count only, with an empty checksum).
        Returns a JSON-able description (the BackupInfo)."""
        tables = list(dict.fromkeys(tables))
        if self.dialect == "sqlite":
            return self._sqlite_backup(tables, label, Path(backup_dir), checksums)
        return self._pg_backup(tables, label, checksums)

    def restore(self, info: Mapping[str, Any]) -> list[str]:
        """Make every backed-up table identical to the backup, schema and rows, whatever
        happened to it since. Returns what was done, one line each.

        SQLite: when nothing outside the backed-up tables changed since the backup (the
        ``sqlite_master`` entries of every other object are the same, and every other table
        holds the same rows, compared with ``EXCEPT`` both ways plus row counts), the whole
        file is copied back with the backup API: fastest, and exact. Otherwise only the
        backed-up tables are restored from the attached backup file, in one ``BEGIN
        IMMEDIATE`` transaction: each is dropped and recreated from the backup's exact DDL, its
        rows copied, its indexes and triggers recreated. Trade-off: the comparison reads every
        other table once (cheap next to copying them, but not free on a big database), and
        between the comparison and the copy another writer could slip a change in (the
        window is the time of one comparison); the per-table path has no such window but
        copies rows through SQL.

        PostgreSQL, in one transaction: foreign keys into and out of the tables are dropped;
        a table whose definition still equals the recorded one is emptied (TRUNCATE) and
        refilled from its snapshot; any other is dropped and rebuilt from the recorded
        definition (columns in order, constraints, indexes, triggers, owned sequences); then
        foreign keys are re-added (checked) and sequence values set back. Grants, comments
        and policies on a rebuilt table are not recorded.
        """
        if info.get("dialect") != self.dialect:
            raise ValidationError(
                "backup.dialect", info.get("dialect"), f"this target is {self.dialect}", owner=self.owner
            )
        if self.dialect == "sqlite":
            return self._sqlite_restore(info)
        return self._pg_restore(info)

    def discard_backup(self, info: Mapping[str, Any]) -> None:
        """Delete a backup (the file, or the snapshot tables). Missing parts are ignored."""
        if info.get("dialect") == "sqlite":
            path = Path(str(info["path"]))
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{path}{suffix}")
            return
        with self.transaction() as conn:
            for entry in info.get("tables", {}).values():
                self._ddl(
                    conn, f"DROP TABLE IF EXISTS {self.quote(BACKUP_SCHEMA)}.{self.quote(entry['snapshot'])}"
                )

    # -- differences from a backup ------------------------------------------------------------------

    def differences(self, info: Mapping[str, Any]) -> list[str]:
        """How each backed-up table now differs from the backup ``info`` (as :meth:`backup`
        returned it), one human-readable line each; empty when every table is identical.

        Identical means: the same reflected schema as recorded at backup time (columns in
        order with types, nullability and defaults; primary key; indexes; foreign keys;
        uniques and checks; triggers; on PostgreSQL also each index's definition and the
        foreign keys into the table), the same AUTOINCREMENT counter or owned-sequence
        position, and the same multiset of rows with exact values. The comparison runs in the
        database, in one read-only snapshot, and stops early: a table whose schema or row
        count differs is not compared row by row.

        Values are compared exactly, not by the equality of their types. SQLite tells apart
        the integer 10, the real 10.0 and the text '10' (``typeof`` is compared wherever a
        column can hold both an integer and an equal real: no declared type, BLOB, or ANY in a
        STRICT table; every other affinity stores one of the two only), text under BINARY
        collation. PostgreSQL compares every type whose equality is not identity through its
        text output (numeric 1.0 differs from 1.00, float -0 from 0), text under the "C"
        collation. A table whose rows are unique by a key that is never NULL (its primary key;
        on SQLite otherwise its rowid, which backup, restore and SQLite's table rebuild all
        keep) is compared by joining the two copies on that key; any other table as a
        multiset (rows grouped with their counts on SQLite, ``EXCEPT ALL`` both ways on
        PostgreSQL), so a duplicated row counts.

        SQLite attaches the backup file read-only (URI ``mode=ro``); PostgreSQL reads the
        snapshot tables in ``etlops_backup``. A missing backup raises TargetError: nothing can
        be compared."""
        if info.get("dialect") != self.dialect:
            raise ValidationError(
                "backup.dialect", info.get("dialect"), f"this target is {self.dialect}", owner=self.owner
            )
        recorded: Mapping[str, Any] = info.get("fingerprints") or {}
        if self.dialect == "sqlite":
            return self._sqlite_differences(info, recorded)
        return self._pg_differences(info, recorded)

    def _sqlite_differences(self, info: Mapping[str, Any], recorded: Mapping[str, Any]) -> list[str]:
        path = str(info["path"])
        if not os.path.isfile(path):
            raise TargetError(f"{self.owner}: backup file {path!r} is missing; nothing compared")
        out: list[str] = []
        with self.engine.connect() as conn:
            conn.rollback()
            dbapi = _sqlite_dbapi(conn)
            saved = dbapi.isolation_level
            dbapi.isolation_level = None
            try:
                dbapi.execute(f"ATTACH DATABASE ? AS {_SQLITE_ATTACH}", (_sqlite_read_only_uri(path),))
                try:
                    with self._sqlite_transaction(conn, write=False):  # one snapshot of both files
                        for table in (str(t) for t in info["tables"]):
                            out.extend(self._sqlite_table_differences(conn, table, recorded.get(table)))
                finally:
                    dbapi.execute(f"DETACH DATABASE {_SQLITE_ATTACH}")
            finally:
                dbapi.isolation_level = saved
        return out

    def _sqlite_table_differences(
        self, conn: Connection, table: str, recorded: Mapping[str, Any] | None
    ) -> list[str]:
        src = _SQLITE_ATTACH
        backup_shape = _reflect_sqlite(self, conn, table, src)
        if backup_shape is None:
            raise TargetError(f"{self.owner}: table {table!r} is not in the backup file; nothing compared")
        shape = _reflect_sqlite(self, conn, table, "main")
        if shape is None:
            return [f"{table}: missing (dropped?)"]
        before = recorded["schema"] if recorded else backup_shape.schema()
        out = _schema_differences(table, _plain(before), _plain(shape.schema()))
        counters = [_sqlite_counter(self, conn, db, table) for db in ("main", src)]
        moved = []
        if counters[0] != counters[1]:
            moved.append(
                f"{table}: AUTOINCREMENT counter is {_shown(counters[0])}, "
                f"the backup has {_shown(counters[1])}"
            )
        if out:
            return out + moved  # the schema differs: no row comparison
        q = self.quote(table)
        now_rows, backup_rows = self._ddl(
            conn, f"SELECT (SELECT count(*) FROM main.{q}), (SELECT count(*) FROM {src}.{q})"
        ).one()
        if now_rows != backup_rows:
            return [f"{table}: {now_rows} row(s), the backup has {backup_rows}", *moved]
        tail = {t.text.upper() for t in _significant(_CreateTable.parse(shape.sql or "").tail)}
        same = [_sqlite_same(self.quote(c.name), c.type, "STRICT" in tail) for c in shape.columns]
        key = _sqlite_unique_key(self, conn, shape, "WITHOUT" in tail)
        if key is not None:
            sql = (
                f"SELECT count(*) FROM main.{q} AS a LEFT JOIN {src}.{q} AS b ON "
                + " AND ".join(f"b.{k} = a.{k}" for k in key)
                + f" WHERE b.{key[0]} IS NULL OR NOT ({' AND '.join(same)})"
            )
            differing = int(self._ddl(conn, sql).scalar_one())
        else:
            differing = int(
                self._ddl(conn, _sqlite_multiset_sql(self, shape, q, "STRICT" in tail)).scalar_one()
            )
        if differing:
            return [f"{table}: {differing} row(s) differ from the backup", *moved]
        return moved

    def _pg_differences(self, info: Mapping[str, Any], recorded: Mapping[str, Any]) -> list[str]:
        entries: Mapping[str, Any] = info["tables"]
        out: list[str] = []
        with self.engine.connect() as conn:
            trans = conn.begin()  # one snapshot, read-only, always rolled back
            try:
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                # the shortest text that reads back as the same float (PostgreSQL 12 and later)
                self._sql(conn, "SELECT set_config('extra_float_digits', '1', true)")
                schema = self._sql(conn, "SELECT current_schema()").scalar_one()
                for table, entry in entries.items():
                    self._check_snapshot(conn, schema, table, entry, "nothing compared")
                    out.extend(self._pg_table_differences(conn, table, entry, recorded.get(table)))
            finally:
                trans.rollback()
        return out

    def _pg_table_differences(
        self, conn: Connection, table: str, entry: Mapping[str, Any], recorded: Mapping[str, Any] | None
    ) -> list[str]:
        shape = self._reflect(conn, table)
        if shape is None:
            return [f"{table}: missing (dropped?)"]
        if not recorded:
            raise TargetError(f"{self.owner}: the backup describes no table {table!r}; nothing compared")
        then: Mapping[str, Any] = _plain(entry["definition"])
        now = _plain(_pg_definition(self, conn, shape))
        out = _schema_differences(table, _plain(recorded["schema"]), _plain(shape.schema()))
        own = self._sql(
            conn, "SELECT CAST(CAST(CAST(:o AS oid) AS regclass) AS text)", o=shape.oid
        ).scalar_one()
        out.extend(_pg_definition_differences(table, then, now, own))
        sequences = {s["sequence"]: (s["value"], s["is_called"]) for s in now["sequences"]}
        moved = []
        for seq in then["sequences"]:
            position = sequences.get(seq["sequence"])
            if position is not None and position != (seq["value"], seq["is_called"]):
                moved.append(
                    f"{table}: sequence {seq['sequence']} is at {position[0]}, the backup has {seq['value']}"
                )
        if out:
            return out + moved
        q_table = self._qualified(conn, table)
        q_snap = f"{self.quote(BACKUP_SCHEMA)}.{self.quote(entry['snapshot'])}"
        now_rows, backup_rows = self._ddl(
            conn, f"SELECT (SELECT count(*) FROM {q_table}), (SELECT count(*) FROM {q_snap})"
        ).one()
        if now_rows != backup_rows:
            return [f"{table}: {now_rows} row(s), the backup has {backup_rows}", *moved]
        columns = [(str(c["name"]), str(c["type"])) for c in then["columns"]]
        if not columns:
            return moved
        key = shape.primary_key
        if key:
            sql = (
                f"SELECT count(*) FROM {q_table} AS a LEFT JOIN {q_snap} AS b ON "
                + " AND ".join(f"b.{self.quote(k)} = a.{self.quote(k)}" for k in key)
                + f" WHERE b.{self.quote(key[0])} IS NULL OR NOT ({_pg_same_rows(self, columns)})"
            )
            differing = int(self._ddl(conn, sql).scalar_one())
        else:
            a = _pg_row_text(self, columns, "")
            sql = (
                f"SELECT (SELECT count(*) FROM (SELECT {a} FROM {q_table} "
                f"EXCEPT ALL SELECT {a} FROM {q_snap}) x), "
                f"(SELECT count(*) FROM (SELECT {a} FROM {q_snap} "
                f"EXCEPT ALL SELECT {a} FROM {q_table}) y)"
            )
            only_now, only_backup = self._ddl(conn, sql).one()
            differing = max(int(only_now), int(only_backup))
        if differing:
            return [f"{table}: {differing} row(s) differ from the backup", *moved]
        return moved

    # SQLite --------------------------------------------------------------------------------------

    def _sqlite_backup(
        self, tables: list[str], label: str, backup_dir: Path, checksums: bool
    ) -> dict[str, Any]:
        backup_dir.mkdir(parents=True, exist_ok=True)
        path = (backup_dir / f"{_sanitize_label(label)}.sqlite").resolve()
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{suffix}")
        with self.engine.connect() as conn:
            for t in tables:
                self._require_table(conn, t, "table")
            conn.rollback()
            dbapi = _sqlite_dbapi(conn)
            dest = sqlite3.connect(str(path))
            try:
                dbapi.backup(dest)
            finally:
                dest.close()
        fingerprints = self._file_fingerprints(path, tables, checksums)
        return {
            "dialect": "sqlite",
            "target": self.name,
            "label": label,
            "path": str(path),
            "tables": tables,
            "fingerprints": {t: fp.as_dict() for t, fp in fingerprints.items()},
            "created_at": datetime.now(timezone.utc).isoformat(),
        }

    def _file_fingerprints(
        self, path: Path, tables: list[str], checksums: bool
    ) -> dict[str, TableFingerprint]:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
        try:
            other = Target(engine, name=self.name)
            with other.read_only() as conn:
                out: dict[str, TableFingerprint] = {}
                for t in tables:
                    if checksums:
                        out[t] = other._fingerprint(conn, t)
                    else:
                        shape = other._require_table(conn, t, "table")
                        out[t] = TableFingerprint(shape.schema(), other.count_rows(conn, t), "")
                return out
        finally:
            engine.dispose()

    def _sqlite_restore(self, info: Mapping[str, Any]) -> list[str]:
        path = str(info["path"])
        if not os.path.isfile(path):
            raise TargetError(f"{self.owner}: backup file {path!r} is missing; nothing restored")
        tables = [str(t) for t in info["tables"]]
        with self.engine.connect() as conn:
            conn.rollback()
            dbapi = _sqlite_dbapi(conn)
            saved = dbapi.isolation_level
            dbapi.isolation_level = None
            try:
                dbapi.execute(f"ATTACH DATABASE ? AS {_SQLITE_ATTACH}", (path,))
                try:
                    unchanged = _sqlite_others_unchanged(dbapi, tables)
                finally:
                    dbapi.execute(f"DETACH DATABASE {_SQLITE_ATTACH}")
                if unchanged:
                    src = sqlite3.connect(path)
                    try:
                        src.backup(dbapi)
                    finally:
                        src.close()
                    return [
                        f"restored the whole database file from {path} "
                        "(nothing else changed since the backup)"
                    ]
                return self._sqlite_restore_tables(dbapi, path, tables)
            finally:
                dbapi.isolation_level = saved

    def _sqlite_restore_tables(self, dbapi: sqlite3.Connection, path: str, tables: list[str]) -> list[str]:
        done: list[str] = []
        src = _SQLITE_ATTACH
        foreign_keys = int(dbapi.execute("PRAGMA foreign_keys").fetchone()[0])
        dbapi.execute("PRAGMA foreign_keys = OFF")
        dbapi.execute(f"ATTACH DATABASE ? AS {src}", (path,))
        try:
            dbapi.execute("BEGIN IMMEDIATE")
            try:
                has_seq_src = bool(
                    dbapi.execute(
                        f"SELECT 1 FROM {src}.sqlite_master WHERE name = 'sqlite_sequence'"
                    ).fetchone()
                )
                has_seq_main = bool(
                    dbapi.execute(
                        "SELECT 1 FROM main.sqlite_master WHERE name = 'sqlite_sequence'"
                    ).fetchone()
                )
                for table in tables:
                    row = dbapi.execute(
                        f"SELECT sql FROM {src}.sqlite_master WHERE type = 'table' AND name = ?", (table,)
                    ).fetchone()
                    if row is None:
                        raise TargetError(f"{self.owner}: table {table!r} is not in the backup file {path!r}")
                    q = self.quote(table)
                    if dbapi.execute(
                        "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?", (table,)
                    ).fetchone():
                        dbapi.execute(f"DROP TABLE main.{q}")
                    dbapi.execute(row[0])
                    done.append(f"{table}: rebuilt from the backup's DDL and rows")
                    cols = [
                        r[0]
                        for r in dbapi.execute(
                            f"SELECT name FROM pragma_table_xinfo(?, '{src}') WHERE hidden = 0 ORDER BY cid",
                            (table,),
                        )
                    ]
                    col_sql = ", ".join(map(self.quote, cols))
                    sql_row = dbapi.execute(
                        f"SELECT sql FROM {src}.sqlite_master WHERE name = ?", (table,)
                    ).fetchone()
                    rowid = _sqlite_rowid_for(dbapi, table, src, str(sql_row[0]))
                    if rowid:
                        dbapi.execute(
                            f"INSERT INTO main.{q} ({rowid}, {col_sql}) "
                            f"SELECT {rowid}, {col_sql} FROM {src}.{q}"
                        )
                    else:
                        dbapi.execute(f"INSERT INTO main.{q} ({col_sql}) SELECT {col_sql} FROM {src}.{q}")
                    for kind, sql in dbapi.execute(
                        f"SELECT type, sql FROM {src}.sqlite_master WHERE tbl_name = ? "
                        "AND type IN ('index', 'trigger') "
                        "AND sql IS NOT NULL ORDER BY type, rowid",
                        (table,),
                    ).fetchall():
                        dbapi.execute(sql)
                        done.append(f"{table}: recreated {kind} from the backup")
                    if has_seq_main:
                        dbapi.execute("DELETE FROM main.sqlite_sequence WHERE name = ?", (table,))
                    if has_seq_src:
                        dbapi.execute(
                            "INSERT INTO main.sqlite_sequence (name, seq) "
                            f"SELECT name, seq FROM {src}.sqlite_sequence "
                            "WHERE name = ?",
                            (table,),
                        )
                if foreign_keys:
                    bad = dbapi.execute("PRAGMA foreign_key_check").fetchall()
                    if bad:
                        raise TargetError(
                            f"{self.owner}: restoring {', '.join(tables)} leaves {len(bad)} foreign key "
                            f"violation(s) (first: {bad[0][0]} rowid {bad[0][1]} -> {bad[0][2]}); rolled back"
                        )
                dbapi.execute("COMMIT")
            except BaseException:
                if dbapi.in_transaction:
                    dbapi.execute("ROLLBACK")
                raise
        finally:
            dbapi.execute(f"DETACH DATABASE {src}")
            if foreign_keys:
                dbapi.execute("PRAGMA foreign_keys = ON")
        return done

    # PostgreSQL ----------------------------------------------------------------------------------

    def _pg_backup(self, tables: list[str], label: str, checksums: bool) -> dict[str, Any]:
        slug = _sanitize_label(label)
        entries: dict[str, Any] = {}
        fingerprints: dict[str, Any] = {}
        with self.engine.connect() as conn:
            with conn.begin():
                self._sql(conn, "SELECT set_config('lock_timeout', :v, true)", v=f"{self._lock_ms()}ms")
                self._ddl(conn, f"CREATE SCHEMA IF NOT EXISTS {self.quote(BACKUP_SCHEMA)}")
            with conn.begin():
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                self._sql(conn, "SELECT set_config('lock_timeout', :v, true)", v=f"{self._lock_ms()}ms")
                schema = self._sql(conn, "SELECT current_schema()").scalar_one()
                for table in tables:
                    shape = self._require_table(conn, table, "table")
                    digest = hashlib.sha256(
                        f"{label}\x00{table}".encode("utf-8", "surrogatepass")
                    ).hexdigest()[:16]
                    snapshot = f"{slug[:40]}_{digest}"
                    q_snap = f"{self.quote(BACKUP_SCHEMA)}.{self.quote(snapshot)}"
                    self._ddl(conn, f"DROP TABLE IF EXISTS {q_snap}")
                    self._ddl(conn, f"CREATE TABLE {q_snap} AS TABLE {self._qualified(conn, table)}")
                    entries[table] = {
                        "snapshot": snapshot,
                        "schema": schema,
                        "definition": _pg_definition(self, conn, shape),
                    }
                    if checksums:
                        fingerprints[table] = self._fingerprint(conn, table).as_dict()
                    else:
                        rows = int(self._ddl(conn, f"SELECT count(*) FROM {q_snap}").scalar_one())
                        fingerprints[table] = TableFingerprint(shape.schema(), rows, "").as_dict()
        return {
            "dialect": "postgresql",
            "target": self.name,
            "label": label,
            "tables": entries,
            "fingerprints": fingerprints,
            "created_at": datetime.now(timezone.utc).isoformat(),
        }

    def _check_snapshot(
        self, conn: Connection, schema: str, table: str, entry: Mapping[str, Any], outcome: str
    ) -> None:
        """The backup of ``table`` was taken from this schema and its snapshot table exists."""
        if entry["schema"] != schema:
            raise TargetError(
                f"{self.owner}: table {table!r} was backed up from schema {entry['schema']!r}, "
                f"the connection is on {schema!r}"
            )
        found = self._sql(
            conn,
            "SELECT 1 FROM pg_class WHERE relnamespace = CAST(:s AS regnamespace) AND relname = :n",
            s=BACKUP_SCHEMA,
            n=entry["snapshot"],
        ).first()
        if found is None:
            raise TargetError(f"{self.owner}: snapshot of {table!r} is missing; {outcome}")

    def _pg_restore(self, info: Mapping[str, Any]) -> list[str]:
        entries: Mapping[str, Any] = info["tables"]
        done: list[str] = []
        with self.transaction() as conn:
            schema = self._sql(conn, "SELECT current_schema()").scalar_one()
            for table, entry in entries.items():
                self._check_snapshot(conn, schema, table, entry, "nothing restored")
            current = {t: self._reflect(conn, t) for t in entries}
            # 1. foreign keys into and out of every restored table go first
            dropped: set[tuple[str, str]] = set()
            for shape in current.values():
                if shape is None:
                    continue
                for child, name, _def in _pg_foreign_keys_touching(self, conn, shape):
                    if (child, name) not in dropped:
                        self._ddl(conn, f"ALTER TABLE {child} DROP CONSTRAINT {self.quote(name)}")
                        dropped.add((child, name))
            # 2. each table: refill or rebuild
            for table, entry in entries.items():
                definition = entry["definition"]
                shape = self._reflect(conn, table)
                q_snap = f"{self.quote(BACKUP_SCHEMA)}.{self.quote(entry['snapshot'])}"
                q_table = f"{self.quote(schema)}.{self.quote(table)}"
                now = _pg_definition(self, conn, shape) if shape is not None else None
                cols = [c for c in definition["columns"] if not c["generated_expr"]]
                col_sql = ", ".join(self.quote(c["name"]) for c in cols)
                overriding = " OVERRIDING SYSTEM VALUE" if any(c["identity"] for c in cols) else ""
                if now is not None and _pg_same_shape(now, definition):
                    # Emptied and refilled; the keys and indexes are built again once the rows are
                    # in (one sort each), which is far quicker than maintaining them row by row.
                    self._ddl(conn, f"TRUNCATE {q_table}")
                    keys = [c for c in definition["constraints"] if c[1] in ("p", "u", "x")]
                    for name, _kind, _def in keys:
                        self._ddl(conn, f"ALTER TABLE {q_table} DROP CONSTRAINT {self.quote(name)}")
                    for name, _def in definition["indexes"]:
                        self._ddl(conn, f"DROP INDEX {self.quote(schema)}.{self.quote(name)}")
                    self._ddl(
                        conn, f"INSERT INTO {q_table} ({col_sql}){overriding} SELECT {col_sql} FROM {q_snap}"
                    )
                    self._pg_add_keys(conn, q_table, keys, definition["indexes"])
                    done.append(f"{table}: definition unchanged; emptied and refilled from the snapshot")
                else:
                    done.extend(
                        self._pg_rebuild(conn, table, q_table, q_snap, definition, now, col_sql, overriding)
                    )
            # 3. foreign keys back, then sequence values
            wanted: dict[tuple[str, str], str] = {}
            for entry in entries.values():
                for child, name, definition in entry["definition"]["foreign_keys"]:
                    wanted[(child, name)] = definition
            for (child, name), definition in wanted.items():
                exists = self._sql(
                    conn,
                    "SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(:c) AND conname = :n",
                    c=child,
                    n=name,
                ).first()
                if exists is None:
                    self._ddl(conn, f"ALTER TABLE {child} ADD CONSTRAINT {self.quote(name)} {definition}")
                    done.append(f"{child}: foreign key {name} re-added")
            for table, entry in entries.items():
                for seq in entry["definition"]["sequences"]:
                    seq_name = seq["sequence"]
                    if seq["kind"] == "i":
                        seq_name = self._sql(
                            conn,
                            "SELECT pg_get_serial_sequence(:t, :c)",
                            t=f"{self.quote(schema)}.{self.quote(table)}",
                            c=seq["column"],
                        ).scalar_one()
                    if seq_name is None or seq["value"] is None:
                        continue
                    self._sql(
                        conn,
                        "SELECT setval(CAST(:s AS regclass), :v, :called)",
                        s=seq_name,
                        v=int(seq["value"]),
                        called=bool(seq["is_called"]),
                    )
                    done.append(f"{table}: sequence {seq_name} set back to {seq['value']}")
        return done

    def _pg_add_keys(
        self,
        conn: Connection,
        q_table: str,
        constraints: Sequence[Sequence[str]],
        indexes: Sequence[Sequence[str]],
    ) -> None:
        """Recorded constraints (keys first, then checks) and indexes, added to the table."""
        order = {"p": 0, "u": 1, "x": 2, "c": 3}
        for name, _kind, cdef in sorted(constraints, key=lambda c: (order.get(c[1], 9), c[0])):
            self._ddl(conn, f"ALTER TABLE {q_table} ADD CONSTRAINT {self.quote(name)} {cdef}")
        for _name, indexdef in indexes:
            self._ddl(conn, indexdef)

    def _pg_rebuild(
        self,
        conn: Connection,
        table: str,
        q_table: str,
        q_snap: str,
        definition: Mapping[str, Any],
        now: Mapping[str, Any] | None,
        col_sql: str,
        overriding: str,
    ) -> list[str]:
        done: list[str] = []
        views: list[tuple[str, str]] = []
        if now is not None:
            for seq in now["sequences"]:
                if seq["kind"] == "a":  # keep serial sequences alive across the DROP
                    self._ddl(conn, f"ALTER SEQUENCE {seq['sequence']} OWNED BY NONE")
            # plain views on the table are dropped and made again on the rebuilt table; one
            # that names a column the recorded shape lacks fails, and so the whole restore
            views = _pg_dependent_views(conn, q_table)
            for view, _definition in views:
                self._ddl(conn, f"DROP VIEW {view}")
            self._ddl(conn, f"DROP TABLE {q_table}")
        for seq in definition["sequences"]:
            if seq["kind"] != "a":
                continue
            if self._sql(conn, "SELECT to_regclass(:s)", s=seq["sequence"]).scalar_one() is None:
                spec = seq["spec"]
                self._ddl(
                    conn,
                    f"CREATE SEQUENCE {seq['sequence']} AS {spec['type']} "
                    f"INCREMENT BY {int(spec['increment'])} MINVALUE {int(spec['min'])} "
                    f"MAXVALUE {int(spec['max'])} START WITH {int(spec['start'])} "
                    f"CACHE {int(spec['cache'])}{' CYCLE' if spec['cycle'] else ' NO CYCLE'}",
                )
                done.append(f"{table}: sequence {seq['sequence']} recreated")
        column_defs = []
        for c in definition["columns"]:
            parts = [self.quote(c["name"]), c["type"]]
            if c["collation"]:
                parts.append(f"COLLATE {c['collation']}")
            if c["identity"]:
                parts.append(
                    "GENERATED ALWAYS AS IDENTITY"
                    if c["identity"] == "a"
                    else "GENERATED BY DEFAULT AS IDENTITY"
                )
            elif c["generated_expr"]:
                parts.append(f"GENERATED ALWAYS AS ({c['generated_expr']}) STORED")
            elif c["default"] is not None:
                parts.append(f"DEFAULT {c['default']}")
            if not c["nullable"]:
                parts.append("NOT NULL")
            column_defs.append(" ".join(parts))
        self._ddl(conn, f"CREATE TABLE {q_table} ({', '.join(column_defs)})")
        self._ddl(conn, f"INSERT INTO {q_table} ({col_sql}){overriding} SELECT {col_sql} FROM {q_snap}")
        self._pg_add_keys(conn, q_table, definition["constraints"], definition["indexes"])
        for _name, triggerdef in definition["triggers"]:
            self._ddl(conn, triggerdef)
        for seq in definition["sequences"]:
            if seq["kind"] == "a":
                self._ddl(
                    conn, f"ALTER SEQUENCE {seq['sequence']} OWNED BY {q_table}.{self.quote(seq['column'])}"
                )
        done.extend(self._pg_access(conn, table, q_table, definition))
        for view, view_sql in views:
            self._ddl(conn, f"CREATE VIEW {view} AS {view_sql}")
            done.append(f"{table}: view {view} made again")
        done.insert(0, f"{table}: definition changed; rebuilt from the recorded definition and the snapshot")
        return done

    def _pg_access(
        self, conn: Connection, table: str, q_table: str, definition: Mapping[str, Any]
    ) -> list[str]:
        """The rebuilt table's owner, grants and comment as recorded. An owner this user may
        not set is reported, not fatal (the rows and shape are what the restore promises)."""
        done: list[str] = []
        owner = definition.get("owner")
        if owner and owner != self._sql(conn, "SELECT current_user::regrole::text").scalar_one():
            try:
                with conn.begin_nested():
                    self._ddl(conn, f"ALTER TABLE {q_table} OWNER TO {owner}")
            except Exception as exc:
                done.append(f"{table}: owner {owner} not set back: {_first_line(exc)}")
        for grantee, privilege, grantable in definition.get("grants", []):
            if privilege not in _PG_PRIVILEGES:
                continue
            option = " WITH GRANT OPTION" if grantable else ""
            self._ddl(conn, f"GRANT {privilege} ON {q_table} TO {grantee}{option}")
        if definition.get("comment") is not None:
            literal = render_literal(definition["comment"], "postgresql", "comment")
            self._ddl(conn, f"COMMENT ON TABLE {q_table} IS {literal}")
        return done


# -- helpers (module level so the class stays readable) -----------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _sqlite_dbapi(conn: Connection) -> sqlite3.Connection:
    dbapi = conn.connection.dbapi_connection
    if not isinstance(dbapi, sqlite3.Connection):
        raise TargetError(f"expected the sqlite3 driver, got {type(dbapi).__name__}")
    return dbapi


def _rows_estimate(info: _Table) -> str:
    if info.reltuples < 0:
        return "an unknown number of rows (never analyzed; pg_class.reltuples)"
    return f"~{int(info.reltuples):,} rows (pg_class.reltuples)"


def _pg_binary_compatible(old: str, new: str) -> bool:
    """ALTER COLUMN TYPE changes that PostgreSQL makes without rewriting the table."""
    if old == new:
        return True
    ob, nb = base_of(old), base_of(new)
    if ob == "varchar" and nb == "text":
        return True
    if ob == "varchar" and nb == "varchar":
        if old == "varchar":
            return False
        return new == "varchar" or int(new[8:-1]) >= int(old[8:-1])
    if ob == "numeric" and nb == "numeric":
        if new == "numeric":
            return True
        if old == "numeric":
            return False
        op, os_ = (list(map(int, old[8:-1].split(","))) + [0])[:2]
        np_, ns = (list(map(int, new[8:-1].split(","))) + [0])[:2]
        return ns == os_ and np_ >= op
    return False


def _has_sqlite_sequence(target: Target, conn: Connection) -> bool:
    return (
        target._sql(
            conn, "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
        ).first()
        is not None
    )


def _sqlite_rowid_name(info: _Table, tail: str) -> str | None:
    """The name to copy a rowid table's rowids through, or None (WITHOUT ROWID, or an
    INTEGER PRIMARY KEY that already is the rowid)."""
    if "WITHOUT" in tail.upper():
        return None
    pk = [c for c in info.columns if c.pk]
    if len(pk) == 1 and pk[0].type.upper() == "INTEGER":
        return None
    used = {_fold(c.name) for c in info.columns}
    for alias in ("rowid", "_rowid_", "oid"):
        if alias not in used:
            return alias
    return None


def _sqlite_rowid_for(dbapi: sqlite3.Connection, table: str, schema: str, sql: str) -> str | None:
    cols = dbapi.execute(
        f"SELECT name, type, pk FROM pragma_table_xinfo(?, '{schema}') ORDER BY cid", (table,)
    ).fetchall()
    shape = _Table(table, [_Column(n, t, True, None, pk=p) for n, t, p in cols], [], [])
    return _sqlite_rowid_name(shape, _CreateTable.parse(sql).tail)


def _reflect_sqlite(target: Target, conn: Connection, table: str, schema: str) -> _Table | None:
    from sqlalchemy import text

    if schema not in ("main", _SQLITE_ATTACH):
        raise ValueError(schema)

    def q(sql: str, **params: Any) -> list[Any]:
        return list(conn.execute(text(sql), params))

    row = q(f"SELECT sql FROM {schema}.sqlite_master WHERE type = 'table' AND name = :t", t=table)
    if not row:
        return None
    columns = [
        _Column(
            name=r[0],
            type=r[1] or "",
            nullable=not r[2],
            default=r[3],
            pk=int(r[4]),
            generated=int(r[5]) in (2, 3),
        )
        for r in q(
            'SELECT name, type, "notnull", dflt_value, pk, hidden '
            "FROM pragma_table_xinfo(:t, :s) ORDER BY cid",
            t=table,
            s=schema,
        )
    ]
    index_sql = {
        r[0]: r[1]
        for r in q(
            f"SELECT name, sql FROM {schema}.sqlite_master WHERE type = 'index' AND tbl_name = :t", t=table
        )
    }
    indexes = []
    for name, unique, origin in q(
        'SELECT name, "unique", origin FROM pragma_index_list(:t, :s)', t=table, s=schema
    ):
        cols = [
            r[0] if r[0] is not None else "<expression>"
            for r in q("SELECT name FROM pragma_index_info(:i, :s) ORDER BY seqno", i=name, s=schema)
        ]
        indexes.append(_Index(name, cols, bool(unique), index_sql.get(name), constraint=origin != "c"))
    fks: dict[int, list[Any]] = {}
    for r in q(
        'SELECT id, seq, "table", "from", "to", on_update, on_delete FROM pragma_foreign_key_list(:t, :s) '
        "ORDER BY id, seq",
        t=table,
        s=schema,
    ):
        entry = fks.setdefault(int(r[0]), [int(r[0]), [], r[2], [], r[5], r[6]])
        entry[1].append(r[3])
        entry[3].append(r[4])
    triggers = [
        [r[0], r[1]]
        for r in q(
            f"SELECT name, sql FROM {schema}.sqlite_master "
            "WHERE type = 'trigger' AND tbl_name = :t ORDER BY rowid",
            t=table,
        )
    ]
    shape = _Table(table, columns, indexes, [], sql=row[0][0], triggers=triggers)
    shape.foreign_keys = [fk for _id, fk in sorted(fks.items())]
    return shape


def _sqlite_others_unchanged(dbapi: sqlite3.Connection, tables: list[str]) -> bool:
    """Whether every object of the database outside ``tables`` is as in the attached backup:
    the same sqlite_master entries, and the same rows in every other table."""
    src = _SQLITE_ATTACH
    placeholders = ", ".join("?" for _ in tables)
    entries = (
        f"SELECT type, name, tbl_name, sql FROM {{db}}.sqlite_master WHERE tbl_name NOT IN ({placeholders})"
    )
    for a, b in (("main", src), (src, "main")):
        diff = dbapi.execute(
            f"SELECT count(*) FROM ({entries.format(db=a)} EXCEPT {entries.format(db=b)})", (*tables, *tables)
        ).fetchone()[0]
        if diff:
            return False
    others = [
        r[0]
        for r in dbapi.execute(
            f"SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT IN ({placeholders}) "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
            tables,
        )
    ]
    for name in others:
        q = '"' + name.replace('"', '""') + '"'
        for a, b in (("main", src), (src, "main")):
            if dbapi.execute(
                f"SELECT EXISTS (SELECT * FROM {a}.{q} EXCEPT SELECT * FROM {b}.{q})"
            ).fetchone()[0]:
                return False
        counts = [dbapi.execute(f"SELECT count(*) FROM {db}.{q}").fetchone()[0] for db in ("main", src)]
        if counts[0] != counts[1]:
            return False
    has_seq = dbapi.execute(f"SELECT 1 FROM {src}.sqlite_master WHERE name = 'sqlite_sequence'").fetchone()
    if (
        has_seq
        and dbapi.execute("SELECT 1 FROM main.sqlite_master WHERE name = 'sqlite_sequence'").fetchone()
    ):
        seq = f"SELECT name, seq FROM {{db}}.sqlite_sequence WHERE name NOT IN ({placeholders})"
        for a, b in (("main", src), (src, "main")):
            if dbapi.execute(
                f"SELECT EXISTS ({seq.format(db=a)} EXCEPT {seq.format(db=b)})", (*tables, *tables)
            ).fetchone()[0]:
                return False
    # the schema cookie aside, a backed-up table absent in one but present in the other is fine:
    # the file copy brings it back as it was
    return True


def _reflect_postgres(target: Target, conn: Connection, table: str) -> _Table | None:
    from sqlalchemy import text

    def q(sql: str, **params: Any) -> list[Any]:
        return list(conn.execute(text(sql), params))

    found = q(
        "SELECT c.oid, c.reltuples FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
        "AND c.relname = :t AND c.relkind IN ('r', 'p')",
        t=table,
    )
    if not found:
        return None
    oid, reltuples = int(found[0][0]), float(found[0][1])
    pk_cols = q(
        "SELECT a.attname FROM pg_constraint k "
        "CROSS JOIN LATERAL unnest(k.conkey) WITH ORDINALITY u(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum "
        "WHERE k.conrelid = :oid AND k.contype = 'p' ORDER BY u.ord",
        oid=oid,
    )
    pk_pos = {r[0]: i + 1 for i, r in enumerate(pk_cols)}
    columns = [
        _Column(
            name=r[0],
            type=r[1],
            nullable=bool(r[2]),
            default=r[3] if not r[5] else None,
            pk=pk_pos.get(r[0], 0),
            generated=bool(r[5]),
            identity=r[4] or "",
            generated_expr=r[3] if r[5] else None,
            collation=r[6],
        )
        for r in q(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated <> '', "
            "CASE WHEN a.attcollation <> t.typcollation THEN quote_ident(co.collname) END "
            "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "LEFT JOIN pg_collation co ON co.oid = a.attcollation "
            "WHERE a.attrelid = :oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            oid=oid,
        )
    ]
    indexes = [
        _Index(
            name=r[0],
            columns=list(r[1]),
            unique=bool(r[2]),
            sql=r[3],
            constraint=bool(r[4]),
        )
        for r in q(
            "SELECT i.relname, ARRAY(SELECT coalesce(a.attname, '<expression>') "
            "FROM unnest(x.indkey::int2[]) WITH ORDINALITY u(attnum, ord) "
            "LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = u.attnum ORDER BY u.ord), "
            "x.indisunique, pg_get_indexdef(x.indexrelid), "
            "EXISTS (SELECT 1 FROM pg_constraint k "
            "WHERE k.conindid = x.indexrelid AND k.conrelid = x.indrelid) "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = :oid ORDER BY i.relname",
            oid=oid,
        )
    ]
    constraints = [
        [r[0], r[1], r[2]]
        for r in q(
            "SELECT conname, contype::text, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = :oid AND contype <> 'f' ORDER BY conname",
            oid=oid,
        )
    ]
    fks = [
        [r[0], r[1]]
        for r in q(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = :oid AND contype = 'f' "
            "ORDER BY conname",
            oid=oid,
        )
    ]
    triggers = [
        [r[0], r[1]]
        for r in q(
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = :oid AND NOT tgisinternal "
            "ORDER BY tgname",
            oid=oid,
        )
    ]
    shape = _Table(table, columns, indexes, fks, constraints=constraints, triggers=triggers, oid=oid)
    shape.reltuples = reltuples
    return shape


def _pg_fk_columns(
    target: Target, conn: Connection, info: _Table
) -> list[tuple[str, list[str], str, list[str]]]:
    from sqlalchemy import text

    out = []
    for name, conkey, confrelid, confkey in conn.execute(
        text(
            "SELECT conname, conkey, confrelid, confkey FROM pg_constraint "
            "WHERE conrelid = :oid AND contype = 'f'"
        ),
        {"oid": info.oid},
    ):

        def names(rel: int, nums: list[int]) -> list[str]:
            rows: dict[int, str] = dict(
                conn.execute(
                    text("SELECT attnum, attname FROM pg_attribute WHERE attrelid = :r AND attnum = ANY(:n)"),
                    {"r": rel, "n": list(nums)},
                ).all()
            )
            return [rows[n] for n in nums]

        parent = conn.execute(
            text("SELECT CAST(CAST(:r AS regclass) AS text)"), {"r": confrelid}
        ).scalar_one()
        out.append((name, names(int(info.oid or 0), conkey), parent, names(int(confrelid), confkey)))
    return out


def _pg_foreign_keys_touching(target: Target, conn: Connection, info: _Table) -> list[tuple[str, str, str]]:
    """(table as regclass text, constraint name, definition) of every foreign key into or out of
    ``info``'s table."""
    from sqlalchemy import text

    return [
        (r[0], r[1], r[2])
        for r in conn.execute(
            text(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE contype = 'f' AND (conrelid = :oid OR confrelid = :oid) ORDER BY 1, 2"
            ),
            {"oid": info.oid},
        )
    ]


def _pg_definition(target: Target, conn: Connection, info: _Table) -> dict[str, Any]:
    """Everything a rebuild of ``info``'s table needs, JSON-able."""
    from sqlalchemy import text

    sequences = []
    for seq, column, kind, typ, start, inc, mx, mn, cache, cycle in conn.execute(
        text(
            "SELECT s.oid::regclass::text, a.attname, d.deptype::text, "
            "format_type(p.seqtypid, NULL), p.seqstart, "
            "p.seqincrement, p.seqmax, p.seqmin, p.seqcache, p.seqcycle "
            "FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
            "JOIN pg_sequence p ON p.seqrelid = s.oid "
            "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
            "WHERE d.classid = 'pg_class'::regclass AND d.refobjid = :oid "
            "AND d.deptype IN ('a', 'i') ORDER BY 1"
        ),
        {"oid": info.oid},
    ):
        last = (
            conn.execution_options(no_parameters=True)
            .exec_driver_sql(f"SELECT last_value, is_called FROM {seq}")
            .one()
        )
        sequences.append(
            {
                "sequence": seq,
                "column": column,
                "kind": kind,
                "value": int(last[0]),
                "is_called": bool(last[1]),
                "spec": {
                    "type": typ,
                    "start": int(start),
                    "increment": int(inc),
                    "max": int(mx),
                    "min": int(mn),
                    "cache": int(cache),
                    "cycle": bool(cycle),
                },
            }
        )
    return {
        "columns": [
            {
                "name": c.name,
                "type": c.type,
                "nullable": c.nullable,
                "default": c.default,
                "identity": c.identity,
                "generated_expr": c.generated_expr,
                "collation": c.collation,
            }
            for c in info.columns
        ],
        "constraints": [list(c) for c in info.constraints],
        "indexes": [[i.name, i.sql] for i in info.indexes if not i.constraint],
        "triggers": [list(t) for t in info.triggers],
        "foreign_keys": [list(fk) for fk in _pg_foreign_keys_touching(target, conn, info)],
        "sequences": sequences,
        **_pg_access_of(conn, info),
    }


_PG_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"}


def _pg_access_of(conn: Connection, info: _Table) -> dict[str, Any]:
    """Owner, table-level grants (the owner's own aside) and comment of a table. Role names
    come as regrole text, quoted where they need it; PUBLIC for grantee 0."""
    from sqlalchemy import text

    owner, comment = conn.execute(
        text(
            "SELECT relowner::regrole::text, obj_description(oid, 'pg_class') FROM pg_class WHERE oid = :oid"
        ),
        {"oid": info.oid},
    ).one()
    grants = [
        [r[0], r[1], bool(r[2])]
        for r in conn.execute(
            text(
                "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, "
                "a.privilege_type, a.is_grantable FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a "
                "WHERE c.oid = :oid AND a.grantee <> c.relowner ORDER BY 1, 2"
            ),
            {"oid": info.oid},
        )
    ]
    return {"owner": owner, "grants": grants, "comment": comment}


def _pg_dependent_views(conn: Connection, q_table: str) -> list[tuple[str, str]]:
    """(view as regclass text, its definition) of every plain view reading the table."""
    from sqlalchemy import text

    return [
        (r[0], r[1])
        for r in conn.execute(
            text(
                "SELECT DISTINCT v.oid::regclass::text, pg_get_viewdef(v.oid) FROM pg_depend d "
                "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
                "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = CAST(:t AS regclass) "
                "AND v.oid <> d.refobjid AND v.relkind = 'v' ORDER BY 1"
            ),
            {"t": q_table},
        )
    ]


def _pg_same_shape(now: Mapping[str, Any], recorded: Mapping[str, Any]) -> bool:
    """Whether a table's current definition equals the recorded one (sequence values aside)."""
    keys = ("columns", "constraints", "indexes", "triggers")
    strip = json.loads(json.dumps({k: now[k] for k in keys})) == json.loads(
        json.dumps({k: recorded[k] for k in keys})
    )
    same_sequences = [(s["sequence"], s["column"], s["kind"]) for s in now["sequences"]] == [
        (s["sequence"], s["column"], s["kind"]) for s in recorded["sequences"]
    ]
    return bool(strip and same_sequences)


# -- differences from a backup (helpers) -----------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples as lists), so a recorded and a fresh description compare."""
    return json.loads(json.dumps(value))


def _shown(value: object) -> str:
    return "none" if value is None else str(value)


def _names(items: Sequence[str]) -> str:
    return ", ".join(items)


def _by_name(entries: Sequence[Sequence[Any]]) -> dict[str, list[Any]]:
    return {str(e[0]): list(e[1:]) for e in entries}


def _schema_differences(table: str, before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What differs between two table descriptions (:meth:`_Table.schema`), one line each."""
    out: list[str] = []
    cols_b = {c[0]: c[1:] for c in before.get("columns", [])}
    cols_n = {c[0]: c[1:] for c in now.get("columns", [])}
    order_b, order_n = list(cols_b), list(cols_n)
    new = [n for n in order_n if n not in cols_b]
    gone = [n for n in order_b if n not in cols_n]
    if (
        len(new) == len(gone) == 1
        and order_n.index(new[0]) == order_b.index(gone[0])
        and cols_n[new[0]] == cols_b[gone[0]]
    ):
        out.append(f"{table}: column {gone[0]} of the backup is now named {new[0]} (renamed?)")
    else:
        out.extend(f"{table}: column {n} is not in the backup" for n in new)
        out.extend(f"{table}: column {n} of the backup is missing (dropped?)" for n in gone)
    for name in order_n:
        if name not in cols_b:
            continue
        (type_b, null_b, default_b), (type_n, null_n, default_n) = cols_b[name], cols_n[name]
        if type_b != type_n:
            out.append(
                f"{table}: column {name} is {type_n or 'untyped'}, the backup has {type_b or 'untyped'}"
            )
        if null_b != null_n:
            null = {True: "nullable", False: "NOT NULL"}
            out.append(f"{table}: column {name} is {null[bool(null_n)]}, the backup has {null[bool(null_b)]}")
        if default_b != default_n:
            out.append(
                f"{table}: column {name} defaults to {_shown(default_n)}, the backup to {_shown(default_b)}"
            )
    if [n for n in order_b if n in cols_n] != [n for n in order_n if n in cols_b]:
        out.append(f"{table}: columns in another order ({_names(order_n)}; the backup: {_names(order_b)})")
    if before.get("primary_key") != now.get("primary_key"):
        out.append(
            f"{table}: primary key ({_names(now.get('primary_key') or [])}), "
            f"the backup has ({_names(before.get('primary_key') or [])})"
        )
    idx_b, idx_n = _by_name(before.get("indexes", [])), _by_name(now.get("indexes", []))

    def index_text(entry: list[Any]) -> str:
        return f"({_names(entry[0])}){' unique' if entry[1] else ''}"

    for name, entry in idx_n.items():
        if name not in idx_b:
            out.append(f"{table}: index {name} {index_text(entry)} is not in the backup")
        elif idx_b[name] != entry:
            out.append(
                f"{table}: index {name} is on {index_text(entry)}, the backup's on {index_text(idx_b[name])}"
            )
    out.extend(f"{table}: index {n} of the backup is missing" for n in idx_b if n not in idx_n)

    def fk_text(entry: list[Any]) -> str:
        if len(entry) == 2:  # PostgreSQL: name, definition
            return f"{entry[0]} {entry[1]}"
        cols, parent, parent_cols = entry[0], entry[1], entry[2]
        return f"({_names(cols)}) -> {parent}({_names([str(c) for c in parent_cols if c is not None])})"

    fks_b, fks_n = before.get("foreign_keys", []), now.get("foreign_keys", [])
    out.extend(f"{table}: foreign key {fk_text(fk)} is not in the backup" for fk in fks_n if fk not in fks_b)
    out.extend(
        f"{table}: foreign key {fk_text(fk)} of the backup is missing" for fk in fks_b if fk not in fks_n
    )
    for key, what in (("constraints", "constraint"), ("triggers", "trigger")):
        got_b, got_n = _by_name(before.get(key, [])), _by_name(now.get(key, []))
        for name, entry in got_n.items():
            if name not in got_b:
                out.append(f"{table}: {what} {name} ({entry[-1]}) is not in the backup")
            elif got_b[name] != entry:
                out.append(f"{table}: {what} {name} is {entry[-1]}, the backup has {got_b[name][-1]}")
        out.extend(f"{table}: {what} {n} of the backup is missing" for n in got_b if n not in got_n)
    known = {"columns", "primary_key", "indexes", "foreign_keys", "constraints", "triggers"}
    for key in sorted((set(before) | set(now)) - known):
        if before.get(key) != now.get(key):
            out.append(f"{table}: {key} differ from the backup")
    return out


def _sqlite_read_only_uri(path: str) -> str:
    """A URI that opens ``path`` read-only, whatever characters the path holds."""
    from urllib.parse import quote

    return f"file:{quote(os.path.abspath(path))}?mode=ro"


def _sqlite_counter(target: Target, conn: Connection, db: str, table: str) -> int | None:
    """The table's AUTOINCREMENT counter in ``db`` (main or the attached backup), or None."""
    if db not in ("main", _SQLITE_ATTACH):
        raise ValueError(db)
    has = target._sql(
        conn, f"SELECT 1 FROM {db}.sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    ).first()
    row = (
        target._sql(conn, f"SELECT seq FROM {db}.sqlite_sequence WHERE name = :t", t=table).first()
        if has
        else None
    )
    return None if row is None else int(row[0])


def _sqlite_needs_typeof(declared: str, strict: bool) -> bool:
    """Whether a column can hold both an integer and a real that compare equal (10 and 10.0):
    only where no affinity converts one into the other, that is BLOB affinity (no type, or a
    type naming BLOB) and ANY in a STRICT table. INTEGER and NUMERIC affinity store an
    integral real as an integer, REAL affinity every integer as a real, TEXT affinity numbers
    as text (SQLite's rules for column affinity, in their order)."""
    upper = declared.upper()
    if strict:
        return upper.strip() == "ANY"
    if "INT" in upper or "CHAR" in upper or "CLOB" in upper or "TEXT" in upper:
        return False
    return "BLOB" in upper or not upper.strip()


def _sqlite_same(quoted: str, declared: str, strict: bool) -> str:
    """SQL: the column holds the same value in rows ``a`` and ``b`` (NULLs equal), exactly."""
    same = f"a.{quoted} IS b.{quoted} COLLATE BINARY"
    if _sqlite_needs_typeof(declared, strict):
        same += f" AND typeof(a.{quoted}) = typeof(b.{quoted})"
    return f"({same})"


def _sqlite_unique_key(
    target: Target, conn: Connection, shape: _Table, without_rowid: bool
) -> list[str] | None:
    """Quoted columns (or the rowid) that tell every row of the table apart and are never
    NULL, in both copies, or None. The primary key when it is the rowid (INTEGER PRIMARY
    KEY), of a WITHOUT ROWID table, or NOT NULL throughout; else the rowid."""
    pk = shape.primary_key
    if pk:
        by_name = {c.name: c for c in shape.columns}
        rowid_alias = not without_rowid and (
            target._sql(
                conn, "SELECT 1 FROM pragma_index_list(:t, 'main') WHERE origin = 'pk'", t=shape.name
            ).first()
            is None
        )
        if without_rowid or rowid_alias or not any(by_name[c].nullable for c in pk):
            return [target.quote(c) for c in pk]
    if without_rowid:
        return None
    used = {_fold(c.name) for c in shape.columns}
    for alias in ("rowid", "_rowid_", "oid"):
        if alias not in used:
            return [alias]
    return None


def _sqlite_multiset_sql(target: Target, shape: _Table, q: str, strict: bool) -> str:
    """SQL: how many rows of the table are not matched, counting duplicates, by a row of the
    backup (both copies grouped with their counts in one pass)."""
    select: list[str] = []
    group: list[str] = []
    for i, col in enumerate(shape.columns):
        quoted = target.quote(col.name)
        select.append(f"{quoted} AS c{i}")
        group.append(f"c{i} COLLATE BINARY")
        if _sqlite_needs_typeof(col.type, strict):
            select.append(f"typeof({quoted}) AS t{i}")
            group.append(f"t{i}")
    cols = ", ".join(select)
    return (
        "SELECT coalesce(sum(CASE WHEN d > 0 THEN d ELSE 0 END), 0) FROM ("
        f"SELECT sum(s) AS d FROM (SELECT {cols}, 1 AS s FROM main.{q} "
        f"UNION ALL SELECT {cols}, -1 AS s FROM {_SQLITE_ATTACH}.{q}) "
        f"GROUP BY {', '.join(group)} HAVING sum(s) <> 0)"
    )


# PostgreSQL types whose equality is identity (no two distinct values compare equal); text
# types only under a deterministic collation, so they are compared under "C".
_PG_EXACT = re.compile(r"(smallint|integer|bigint|boolean|date|uuid|bytea|text|character varying(\(\d+\))?)")
_PG_TEXT = re.compile(r"(text|character varying(\(\d+\))?)")


def _pg_row_text(target: Target, columns: Sequence[tuple[str, str]], alias: str) -> str:
    """A select list that is equal for two rows exactly when their values are identical:
    exact types as they are (text under "C"), the others together as one row's text."""
    prefix = f"{alias}." if alias else ""
    parts: list[str] = []
    others: list[str] = []
    for name, typ in columns:
        quoted = prefix + target.quote(name)
        if _PG_TEXT.fullmatch(typ):
            parts.append(f'{quoted} COLLATE "C"')
        elif _PG_EXACT.fullmatch(typ):
            parts.append(quoted)
        else:
            others.append(quoted)
    if others:
        parts.append(f"CAST(ROW({', '.join(others)}) AS text)")
    return ", ".join(parts)


def _pg_same_rows(target: Target, columns: Sequence[tuple[str, str]]) -> str:
    """SQL: rows ``a`` and ``b`` hold identical values (NULLs equal)."""
    same: list[str] = []
    others_a: list[str] = []
    others_b: list[str] = []
    for name, typ in columns:
        quoted = target.quote(name)
        if _PG_TEXT.fullmatch(typ):
            same.append(f'a.{quoted} COLLATE "C" IS NOT DISTINCT FROM b.{quoted}')
        elif _PG_EXACT.fullmatch(typ):
            same.append(f"a.{quoted} IS NOT DISTINCT FROM b.{quoted}")
        else:
            others_a.append(f"a.{quoted}")
            others_b.append(f"b.{quoted}")
    if others_a:
        same.append(f"CAST(ROW({', '.join(others_a)}) AS text) = CAST(ROW({', '.join(others_b)}) AS text)")
    return " AND ".join(same)


def _pg_definition_differences(
    table: str, then: Mapping[str, Any], now: Mapping[str, Any], own: str
) -> list[str]:
    """What :func:`_pg_definition` records beyond the table description and now differs:
    identity, generated expression and collation of a column, an index's definition, foreign
    keys of other tables into this one, the owned sequences."""
    out: list[str] = []
    cols_then = {c["name"]: c for c in then["columns"]}
    for col in now["columns"]:
        old = cols_then.get(col["name"])
        if old is None:
            continue
        for key, what in (
            ("identity", "identity"),
            ("generated_expr", "generated as"),
            ("collation", "collation"),
        ):
            if (col.get(key) or None) != (old.get(key) or None):
                out.append(
                    f"{table}: column {col['name']} {what} {_shown(col.get(key) or None)}, "
                    f"the backup {_shown(old.get(key) or None)}"
                )
    idx_then = {str(i[0]): str(i[1]) for i in then["indexes"]}
    for name, indexdef in ((str(i[0]), str(i[1])) for i in now["indexes"]):
        if name in idx_then and idx_then[name] != indexdef:
            out.append(f"{table}: index {name} is {indexdef}; the backup has {idx_then[name]}")
    fk_then = {tuple(fk) for fk in then["foreign_keys"] if fk[0] != own}
    fk_now = {tuple(fk) for fk in now["foreign_keys"] if fk[0] != own}
    out.extend(
        f"{table}: foreign key {fk[1]} of {fk[0]} into it is not in the backup"
        for fk in sorted(fk_now - fk_then)
    )
    out.extend(
        f"{table}: foreign key {fk[1]} of {fk[0]} into it, in the backup, is missing"
        for fk in sorted(fk_then - fk_now)
    )

    def owned(definition: Mapping[str, Any]) -> list[str]:
        return [f"{s['sequence']} ({s['column']})" for s in definition["sequences"]]

    if owned(now) != owned(then):
        out.append(
            f"{table}: owned sequences {_names(owned(now)) or 'none'}, "
            f"the backup has {_names(owned(then)) or 'none'}"
        )
    return out
