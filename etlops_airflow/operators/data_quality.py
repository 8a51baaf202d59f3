"""Data-quality ratios computed in the warehouse and written to the etlops store.

The checks run as one aggregate query in the database (no rows fetched, no pandas): the
database counts, this module divides. Table, schema and column names are looked up in the
database's own catalogue and quoted by its SQLAlchemy dialect; a name that is not there is
refused before any SQL runs. Predicates and ``where`` are the user's own SQL, run as given on
the user's own connection (as with Airflow's ``SQLCheckOperator``): they are only checked to be
non-empty text without ``;``.

The module is imported by DAG files: SQLAlchemy, hooks and the store load inside ``execute()``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from etlops_airflow._validate import is_templated
from etlops_airflow.core.models import MAX_LABEL_VALUE
from etlops_airflow.exceptions import DataQualityCheckFailed, ValidationError, WarehouseError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.engine.reflection import Inspector

# check type -> the key that configures it
CHECK_TYPES: dict[str, str] = {
    "completeness": "columns",  # share of rows with no NULL in the columns
    "uniqueness": "columns",  # distinct value tuples / rows (NULL counts as one value, as in DISTINCT)
    "validity": "predicate",  # share of rows where the predicate is true (NULL = not true)
    "consistency": "predicate",  # the same, for a predicate across columns
}
RATIO_METRIC = "data_quality_ratio"
ROWS_METRIC = "data_quality_rows"
CONN_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,250}")
_PG_TYPES = ("postgres", "postgresql")
_PG_PASSTHROUGH_EXTRA = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout")


@dataclass(frozen=True, slots=True)
class Check:
    """One configured check: ``columns`` for completeness/uniqueness, ``predicate`` otherwise."""

    name: str
    columns: tuple[str, ...] = ()
    predicate: str | None = None


# ---------------------------------------------------------------- validation (parse time and run time)


def user_sql(owner: str, field: str, value: Any, *, final: bool) -> str:
    """A predicate or filter: non-empty text without ``;``. ``final=False`` lets a template through."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, value, "expected non-empty SQL text", owner=owner)
    if not final and is_templated(value):
        return value
    if ";" in value or "\x00" in value:
        raise ValidationError(
            field, value, "must be one SQL expression: no ';' (nor NUL) allowed", owner=owner
        )
    return value


def _name(owner: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValidationError(field, value, "expected a non-empty name without NUL", owner=owner)
    return value


def parse_checks(owner: str, checks: Any, *, final: bool) -> dict[str, Check]:
    """``{"completeness": {"columns": [...]}, "validity": {"predicate": "..."}, ...}`` as Check objects.

    ``final`` is True once templates are rendered (in ``execute()``)."""
    if not isinstance(checks, Mapping) or not checks:
        raise ValidationError(
            "checks", checks, f"expected a non-empty dict keyed by {', '.join(CHECK_TYPES)}", owner=owner
        )
    parsed: dict[str, Check] = {}
    for name, spec in checks.items():
        field = f"checks[{name!r}]"
        if name not in CHECK_TYPES:
            raise ValidationError(
                "checks", name, f"unknown check type; expected one of {', '.join(CHECK_TYPES)}", owner=owner
            )
        key = CHECK_TYPES[name]
        if not isinstance(spec, Mapping) or key not in spec:
            raise ValidationError(field, spec, f"expected a dict with {key!r}", owner=owner)
        extra = set(spec) - {key}
        if extra:
            raise ValidationError(
                field, spec, f"unknown keys {sorted(map(str, extra))!r}; expected only {key!r}", owner=owner
            )
        if key == "columns":
            columns = spec["columns"]
            if isinstance(columns, str) or not isinstance(columns, Sequence) or not columns:
                raise ValidationError(
                    f"{field}.columns", columns, "expected a non-empty list of column names", owner=owner
                )
            names = tuple(_name(owner, f"{field}.columns[{i}]", c) for i, c in enumerate(columns))
            parsed[name] = Check(name, columns=names)
        else:
            parsed[name] = Check(
                name, predicate=user_sql(owner, f"{field}.predicate", spec["predicate"], final=final)
            )
    return parsed


def parse_min_ratio(owner: str, min_ratio: Any, checks: Mapping[str, Check]) -> dict[str, float]:
    if min_ratio is None:
        return {}
    if not isinstance(min_ratio, Mapping):
        raise ValidationError(
            "min_ratio", min_ratio, "expected a dict {check: ratio between 0 and 1}", owner=owner
        )
    parsed: dict[str, float] = {}
    for name, value in min_ratio.items():
        if name not in checks:
            raise ValidationError(
                "min_ratio",
                name,
                f"is not a configured check; configured: {', '.join(checks)}",
                owner=owner,
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValidationError(
                f"min_ratio[{name!r}]", value, "expected a number between 0 and 1", owner=owner
            )
        parsed[name] = float(value)
    return parsed


def _conn_id(owner: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or not CONN_ID_RE.fullmatch(value):
        raise ValidationError(
            field, value, "expected a connection id (letters, digits, _ . -; at most 250)", owner=owner
        )
    return value


def _dataset(owner: str, value: Any, *, final: bool) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError("dataset", value, "expected non-empty text (a label value)", owner=owner)
    if not final and is_templated(value):
        return value
    if len(value) > MAX_LABEL_VALUE or "\x00" in value:
        raise ValidationError(
            "dataset", value, f"a label value: at most {MAX_LABEL_VALUE} characters, no NUL", owner=owner
        )
    return value


# ---------------------------------------------------------------- the query


def build_query(
    checks: Mapping[str, Check],
    table_sql: str,
    columns_sql: Mapping[str, str],
    where: str | None,
) -> str:
    """One aggregate query: the row count, then one count per check, in ``checks`` order.

    ``table_sql`` and ``columns_sql`` are already quoted by the dialect. User SQL (predicates,
    ``where``) sits on lines of its own, so a trailing ``-- comment`` in it ends at its line."""
    filtered = f"{table_sql}\nWHERE (\n{where}\n)" if where else table_sql
    parts = ["COUNT(*)"]
    for i, check in enumerate(checks.values()):
        if check.name == "completeness":
            not_null = " AND ".join(f"{columns_sql[c]} IS NOT NULL" for c in check.columns)
            parts.append(f"SUM(CASE WHEN {not_null} THEN 1 ELSE 0 END)")
        elif check.name == "uniqueness":
            cols = ", ".join(columns_sql[c] for c in check.columns)
            parts.append(f"(SELECT COUNT(*) FROM (SELECT DISTINCT {cols} FROM {filtered}\n) etlops_dq_{i})")
        else:
            parts.append(f"SUM(CASE WHEN (\n{check.predicate}\n) THEN 1 ELSE 0 END)")
    return "SELECT " + ",\n  ".join(parts) + f"\nFROM {filtered}\n"


def ratios_from_counts(
    checks: Mapping[str, Check], row: Sequence[Any]
) -> tuple[int, dict[str, float | None]]:
    """(rows, {check: ratio}); with no rows every ratio is None (there is nothing to measure)."""
    rows = int(row[0] or 0)
    result: dict[str, float | None] = {}
    for name, count in zip(checks, row[1:], strict=True):
        result[name] = None if rows == 0 else int(count or 0) / rows
    return rows, result


# ---------------------------------------------------------------- the warehouse


@dataclass
class Warehouse:
    """A database reached through an Airflow Connection: a SQLAlchemy engine for the catalogue
    and quoting, and ``first(sql)`` that runs the query (through the connection's DbApiHook when
    Airflow has one, else through the engine)."""

    conn_id: str
    engine: Engine
    first: Callable[[str], Sequence[Any]]
    via: str

    def close(self) -> None:
        self.engine.dispose()


def url_for_connection(conn: Any) -> URL:
    """A SQLAlchemy URL for an Airflow Connection, for when no DbApiHook can be built.

    ``Connection.get_uri()`` does not give a SQLAlchemy URL for the two databases we support
    without their providers (``sqlite://%2Fpath`` and ``postgres://``), so those are built from
    the fields; anything else goes through ``get_uri()``. An extra ``sqlalchemy_url`` wins."""
    from importlib.util import find_spec

    from sqlalchemy.engine import URL, make_url

    conn_type = (conn.conn_type or "").lower()
    extra = conn.extra_dejson if getattr(conn, "extra", None) else {}
    if extra.get("sqlalchemy_url"):
        return make_url(str(extra["sqlalchemy_url"]))
    if conn_type == "sqlite":
        path = conn.host or conn.schema
        if not path:
            raise ValueError("the SQLite connection has no file path in host")
        return URL.create("sqlite", database=path)
    if conn_type in _PG_TYPES:
        driver = "postgresql+psycopg" if find_spec("psycopg") else "postgresql"
        return URL.create(
            driver,
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
            query={k: str(extra[k]) for k in _PG_PASSTHROUGH_EXTRA if extra.get(k)},
        )
    return make_url(conn.get_uri())


def open_warehouse(conn_id: str, log: Any) -> Warehouse:
    """The connection's DbApiHook (common-sql) if Airflow can build one, else a SQLAlchemy engine
    from the connection's fields / URI."""
    from airflow.sdk import BaseHook
    from sqlalchemy import create_engine

    from etlops_airflow._log import one_line
    from etlops_airflow._secrets import mask_url_password
    from etlops_airflow.store.engine import mask_url

    try:
        conn: Any = BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise WarehouseError(
            f"conn_id {conn_id!r}: connection not found or unreadable: {one_line(exc)}",
            conn_id=conn_id,
            operation="read connection",
        ) from None

    hook: Any = None
    try:
        from airflow.providers.common.sql.hooks.sql import DbApiHook  # type: ignore[import-untyped]

        candidate = conn.get_hook()
        if isinstance(candidate, DbApiHook):
            hook = candidate
        else:
            log.info(
                "conn_id %r: hook %s is not a common-sql DbApiHook; using a SQLAlchemy engine "
                "from the connection instead",
                conn_id,
                type(candidate).__name__,
            )
    except Exception as exc:
        log.info(
            "conn_id %r (type %r): no Airflow SQL hook (%s); using a SQLAlchemy engine from the "
            "connection instead",
            conn_id,
            conn.conn_type,
            one_line(exc),
        )

    engine: Engine | None = None
    if hook is not None:
        try:
            engine = hook.get_sqlalchemy_engine()
        except Exception as exc:
            log.info(
                "conn_id %r: %s gave no SQLAlchemy engine (%s)", conn_id, type(hook).__name__, one_line(exc)
            )
    if engine is None:
        try:
            url = url_for_connection(conn)
            mask_url_password(url.render_as_string(hide_password=False))
            engine = create_engine(url)
        except Exception as exc:
            known = (conn.conn_type or "").lower() in ("sqlite", *_PG_TYPES)
            hint = "" if known else "; install the Airflow provider for this connection type"
            raise WarehouseError(
                f"conn_id {conn_id!r} (type {conn.conn_type!r}): cannot build a database engine: "
                f"{one_line(exc)}{hint}",
                conn_id=conn_id,
                operation="connect",
            ) from None

    if hook is not None:

        def first_via_hook(sql: str) -> Sequence[Any]:
            row = hook.get_first(sql)
            return tuple(row) if row is not None else ()

        return Warehouse(conn_id, engine, first_via_hook, f"{type(hook).__name__} ({mask_url(engine.url)})")

    def first_via_engine(sql: str) -> Sequence[Any]:
        with engine.connect() as connection:
            # no_parameters: the SQL goes to the driver untouched (no ':name' or '%' processing)
            result = connection.execution_options(no_parameters=True).exec_driver_sql(sql)
            row = result.first()
            connection.rollback()
        return tuple(row) if row is not None else ()

    return Warehouse(conn_id, engine, first_via_engine, f"SQLAlchemy engine {mask_url(engine.url)}")


def _suggest(value: str, names: Sequence[str]) -> str:
    same = [n for n in names if n.lower() == value.lower()]
    return f"; did you mean {same[0]!r}?" if same else ""


def resolve_identifiers(
    owner: str,
    inspector: Inspector,
    schema: str | None,
    table: str,
    columns: Sequence[str],
) -> tuple[str, dict[str, str]]:
    """The quoted table (with its schema) and ``{column: quoted column}``, each checked against
    the database's catalogue first: a name that is not there is refused, never quoted and run."""
    preparer = inspector.dialect.identifier_preparer
    if schema is not None:
        schemas = inspector.get_schema_names()
        if schema not in schemas:
            raise ValidationError(
                "schema", schema, f"no such schema in the database{_suggest(schema, schemas)}", owner=owner
            )
    tables = [*inspector.get_table_names(schema=schema), *inspector.get_view_names(schema=schema)]
    if table not in tables:
        where = f"schema {schema!r}" if schema is not None else "the database"
        raise ValidationError(
            "table", table, f"no such table or view in {where}{_suggest(table, tables)}", owner=owner
        )
    known = [c["name"] for c in inspector.get_columns(table, schema=schema)]
    quoted: dict[str, str] = {}
    for column in columns:
        if column not in known:
            raise ValidationError(
                "column", column, f"no such column in table {table!r}{_suggest(column, known)}", owner=owner
            )
        quoted[column] = preparer.quote(column)
    table_sql = preparer.quote(table)
    if schema is not None:
        table_sql = f"{preparer.quote_schema(schema)}.{table_sql}"
    return table_sql, quoted


# ---------------------------------------------------------------- the operator


class DataQualityCheckOperator(BaseOperator):
    """Measure data-quality ratios of a table in the database and record them as metrics.

    Example::

        DataQualityCheckOperator(
            task_id="orders_quality", conn_id="warehouse", table="orders",
            checks={"completeness": {"columns": ["customer", "amount"]},
                    "uniqueness": {"columns": ["id"]},
                    "validity": {"predicate": "amount >= 0"},
                    "consistency": {"predicate": "shipped_at >= ordered_at"}},
            min_ratio={"completeness": 0.99},
            where="created_at >= '{{ ds }}'",
        )

    Checks (each a ratio between 0 and 1 over the rows that ``where`` keeps):

    * ``completeness``: rows with no NULL in any of ``columns`` / rows;
    * ``uniqueness``: distinct tuples of ``columns`` / rows (all-NULL counts as one value, as
      SQL ``DISTINCT`` does);
    * ``validity`` and ``consistency``: rows where ``predicate`` is true / rows (a predicate that
      is NULL, e.g. ``amount >= 0`` on a NULL amount, counts as not true).

    All checks run as one aggregate query in the database. ``table``, ``schema`` and the columns
    must exist in the database's catalogue and are quoted by its dialect. ``predicate`` and
    ``where`` are SQL run as given on your own connection, like Airflow's ``SQLCheckOperator``:
    they must be one expression without ``;``.

    Each ratio is written as metric ``data_quality_ratio`` labelled ``dataset``, ``check``,
    ``dag_id``, ``task_id``, and the row count as ``data_quality_rows`` (``dataset``, ``dag_id``,
    ``task_id``), in one batch. With no rows there is no ratio: only the row count (0) is
    written, and ``min_ratio`` is not evaluated. Returns ``{check: ratio, "rows": n}`` (XCom).

    :param conn_id: Airflow connection of the database (any common-sql hook; SQLite and
        PostgreSQL also without their providers).
    :param table: table or view name, as the database's catalogue spells it. Templated.
    :param checks: ``{check type: {"columns": [...]} | {"predicate": "..."}}``. Templated.
    :param dataset: the ``dataset`` label; default the table name. Templated.
    :param min_ratio: ``{check: minimum}``; the task fails (``DataQualityCheckFailed``, after the
        metrics are written) when a ratio is below its minimum.
    :param where: SQL filter on the rows measured. Templated.
    :param schema: the table's schema; default the connection's default schema.
    :param etlops_conn_id: store connection; default the ``[etlops]`` store.
    """

    template_fields: Sequence[str] = ("table", "checks", "dataset", "where")
    ui_color = "#eaf0fa"

    def __init__(
        self,
        *,
        conn_id: str,
        table: str,
        checks: dict[str, dict[str, Any]],
        dataset: str | None = None,
        min_ratio: dict[str, float] | None = None,
        where: str | None = None,
        schema: str | None = None,
        etlops_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        owner = f"DataQualityCheckOperator {kwargs.get('task_id', '?')!r}"
        self.conn_id = _conn_id(owner, "conn_id", conn_id)
        self.etlops_conn_id = (
            None if etlops_conn_id is None else _conn_id(owner, "etlops_conn_id", etlops_conn_id)
        )
        self.table = _name(owner, "table", table)
        self.schema = None if schema is None else _name(owner, "schema", schema)
        parsed = parse_checks(owner, checks, final=False)
        self.checks = checks
        self.min_ratio = parse_min_ratio(owner, min_ratio, parsed)
        self.dataset = None if dataset is None else _dataset(owner, dataset, final=False)
        self.where = None if where is None else user_sql(owner, "where", where, final=False)

    def execute(self, context: Any) -> dict[str, float | int | None]:
        from sqlalchemy import inspect

        from etlops_airflow._log import one_line
        from etlops_airflow._secrets import redact

        owner = f"DataQualityCheckOperator {self.task_id!r}"
        checks = parse_checks(owner, self.checks, final=True)
        where = None if self.where is None else user_sql(owner, "where", self.where, final=True)
        table = _name(owner, "table", self.table)
        dataset = _dataset(owner, self.dataset if self.dataset is not None else table, final=True)
        columns = list(dict.fromkeys(c for check in checks.values() for c in check.columns))

        warehouse = open_warehouse(self.conn_id, self.log)
        try:
            try:
                inspector = inspect(warehouse.engine)
            except Exception as exc:
                raise WarehouseError(
                    f"{owner}: conn_id {self.conn_id!r}: cannot read the database catalogue: "
                    f"{redact(one_line(exc))}",
                    conn_id=self.conn_id,
                    operation="inspect",
                ) from None
            table_sql, columns_sql = resolve_identifiers(owner, inspector, self.schema, table, columns)
            sql = build_query(checks, table_sql, columns_sql, where)
            self.log.info("Data-quality query on %s via %s:\n%s", table_sql, warehouse.via, sql)
            try:
                row = warehouse.first(sql)
            except Exception as exc:
                raise WarehouseError(
                    f"{owner}: the data-quality query on {table!r} (conn_id {self.conn_id!r}) failed: "
                    f"{redact(one_line(exc))}; check the predicates and where",
                    conn_id=self.conn_id,
                    operation="query",
                ) from None
        finally:
            warehouse.close()

        rows, ratios = ratios_from_counts(checks, row)
        failures = {
            name: (ratio, minimum)
            for name, minimum in self.min_ratio.items()
            if (ratio := ratios.get(name)) is not None and ratio < minimum
        }
        try:
            self._record(dataset, rows, ratios)
        except Exception as exc:
            if not failures:
                raise
            # the failing ratios matter more than the store: report them, the store error chained
            self.log.error("Data-quality metrics not recorded: %s", redact(one_line(exc)))
            raise DataQualityCheckFailed(owner, dataset, failures) from exc
        if rows == 0:
            self.log.warning(
                "Dataset %r: no rows%s; no ratio for %s%s",
                dataset,
                " match the where filter" if where else "",
                ", ".join(checks),
                " (min_ratio not evaluated)" if self.min_ratio else "",
            )
        if failures:
            raise DataQualityCheckFailed(owner, dataset, failures)
        return {**ratios, "rows": rows}

    def _record(self, dataset: str, rows: int, ratios: Mapping[str, float | None]) -> None:
        """Write the ratios and the row count in one batch; then log each ratio."""
        from etlops_airflow.core.models import MetricPoint
        from etlops_airflow.hooks.store import EtlopsStoreHook

        run_labels = {"dag_id": self.dag_id, "task_id": self.task_id}
        points = [MetricPoint(ROWS_METRIC, rows, {"dataset": dataset, **run_labels})]
        for check, ratio in ratios.items():
            if ratio is not None:
                points.append(
                    MetricPoint(RATIO_METRIC, ratio, {"dataset": dataset, "check": check, **run_labels})
                )
        EtlopsStoreHook(self.etlops_conn_id).store.metrics.write(points)
        for check, ratio in ratios.items():
            minimum = self.min_ratio.get(check)
            shown = "no rows" if ratio is None else f"{ratio:.6g}"
            self.log.info(
                "Dataset %r %s: %s%s", dataset, check, shown, "" if minimum is None else f" (min {minimum:g})"
            )
        self.log.info("Dataset %r: %d row(s); recorded %d metric point(s)", dataset, rows, len(points))
