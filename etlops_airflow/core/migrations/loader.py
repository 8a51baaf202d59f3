"""Load and check a migrations folder: every problem is found here, when the folder is read
(so at DAG parse time), and named by file, step and field.

A folder holds YAML files, one migration each, in any layout (``<pipeline>/<version>.yaml``
is the convention). ``custom_script`` programs live in the folder too: their ``argv[0]`` is a
path relative to the folder and may not leave it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import semver

from etlops_airflow.core.durations import parse_duration
from etlops_airflow.core.migrations.model import (
    NO_DEFAULT,
    SCHEMA_OPS,
    STEP_KINDS,
    VALIDATION_KINDS,
    ConfigUpdate,
    CustomScript,
    CustomValidation,
    DataIntegrity,
    DataTransformation,
    Migration,
    PerformanceBenchmark,
    RecordCount,
    SchemaChange,
    SchemaCompliance,
    Step,
    Validation,
)
from etlops_airflow.core.migrations.registry import NAME_RE
from etlops_airflow.core.migrations.types import allowlist_text, normalize_type
from etlops_airflow.exceptions import MigrationFileError, MigrationFolderError, ValidationError

PIPELINE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")
CONN_ID_RE = re.compile(r"^[\w.\-]{1,250}$")
CONFIG_PATH_RE = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's limit; SQLite accepts the same names so both agree
TOP_KEYS = (
    "pipeline",
    "from_version",
    "to_version",
    "description",
    "target",
    "steps",
    "rollback",
    "validations",
)


@dataclass(frozen=True)
class MigrationSet:
    """Every migration of a folder, checked."""

    root: Path
    migrations: tuple[Migration, ...]

    def pipelines(self) -> list[str]:
        return sorted({m.pipeline for m in self.migrations})

    def for_pipeline(self, pipeline: str) -> tuple[Migration, ...]:
        found = tuple(m for m in self.migrations if m.pipeline == pipeline)
        if not found:
            known = ", ".join(self.pipelines()) or "none"
            raise ValidationError(
                "pipeline", pipeline, f"has no migrations in {str(self.root)!r} (pipelines there: {known})"
            )
        return found

    def find(self, pipeline: str, from_version: str, to_version: str) -> Migration:
        for m in self.for_pipeline(pipeline):
            if str(m.from_version) == from_version and str(m.to_version) == to_version:
                return m
        raise ValidationError("migration", f"{from_version}->{to_version}", f"not in pipeline {pipeline!r}")


def checksum_of(document: Any) -> str:
    """SHA-256 of the canonical form of a parsed migration document."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_migrations(root: str | os.PathLike[str], pipeline: str | None = None) -> MigrationSet:
    """Read and check every ``*.yaml`` / ``*.yml`` under ``root``. Raises
    :class:`MigrationFileError` (one problem) or :class:`MigrationFolderError` (several)."""
    folder = Path(root)
    if not folder.is_dir():
        raise ValidationError("migrations_dir", str(root), "is not a directory")
    folder = folder.resolve()
    errors: list[MigrationFileError] = []
    migrations: list[Migration] = []
    for path in sorted(_yaml_files(folder)):
        try:
            migrations.append(load_file(path, folder))
        except MigrationFileError as exc:
            errors.append(exc)
    seen: dict[tuple[str, str, str], Migration] = {}
    for m in migrations:
        key = (m.pipeline, str(m.from_version), str(m.to_version))
        if key in seen:
            errors.append(
                MigrationFileError(
                    "to_version",
                    str(m.to_version),
                    f"the migration {m.from_version} -> {m.to_version} of {m.pipeline!r} is also "
                    f"defined in {_rel(seen[key].source, folder)}",
                    source=_rel(m.source, folder),
                )
            )
        seen[key] = m
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise MigrationFolderError(str(folder), errors)
    result = MigrationSet(folder, tuple(migrations))
    if pipeline is not None:
        result.for_pipeline(pipeline)
    return result


def _yaml_files(folder: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.endswith((".yaml", ".yml")) and not name.startswith("."):
                yield Path(dirpath) / name


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def load_file(path: Path, root: Path) -> Migration:
    """Read and check one migration file (``root`` is the migrations folder)."""
    import yaml

    source = _rel(path, root)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise MigrationFileError("file", source, f"cannot be read: {exc}", source=source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise MigrationFileError(
            "file", source, f"is not valid YAML{where}: {problem}", source=source
        ) from None
    return _Parser(source, root).migration(document, path)


class _Parser:
    def __init__(self, source: str, root: Path) -> None:
        self.source = source
        self.root = root

    def fail(self, field: str, value: object, reason: str, item: str | None = None) -> MigrationFileError:
        return MigrationFileError(field, value, reason, source=self.source, item=item)

    # -- the document -------------------------------------------------------------------
    def migration(self, doc: Any, path: Path) -> Migration:
        if not isinstance(doc, dict):
            raise self.fail(
                "file", type(doc).__name__, "expected a mapping with pipeline, versions and steps"
            )
        for key in doc:
            if key not in TOP_KEYS:
                raise self.fail(str(key), doc[key], f"unknown field (expected {', '.join(TOP_KEYS)})")
        pipeline = self.required(doc, "pipeline", None)
        if not isinstance(pipeline, str) or not PIPELINE_RE.fullmatch(pipeline):
            raise self.fail("pipeline", pipeline, "expected a name of letters, digits, _ . - (at most 200)")
        from_version = self.version(doc, "from_version")
        to_version = self.version(doc, "to_version")
        if not to_version > from_version:
            raise self.fail(
                "to_version", str(to_version), f"must be greater than from_version {from_version}"
            )
        description = doc.get("description", "")
        if not isinstance(description, str):
            raise self.fail("description", description, "expected text")
        target = self.required(doc, "target", None)
        if not isinstance(target, dict) or set(target) != {"conn_id"}:
            raise self.fail("target", target, "expected {conn_id: <an Airflow connection id>}")
        conn_id = target["conn_id"]
        if not isinstance(conn_id, str) or not CONN_ID_RE.fullmatch(conn_id):
            raise self.fail("target.conn_id", conn_id, "expected a connection id (letters, digits, _ . -)")
        raw_steps = self.required(doc, "steps", None)
        if not isinstance(raw_steps, list) or not raw_steps:
            raise self.fail("steps", raw_steps, "expected a non-empty list of steps")
        steps = tuple(self.step(raw, f"step {n}") for n, raw in enumerate(raw_steps, 1))
        rollback_written = "rollback" in doc
        if rollback_written:
            raw_rollback = doc["rollback"]
            if not isinstance(raw_rollback, list):
                raise self.fail("rollback", raw_rollback, "expected a list of steps")
            rollback = tuple(self.step(raw, f"rollback {n}") for n, raw in enumerate(raw_rollback, 1))
            self.check_rollback_covers(steps, rollback)
        else:
            rollback = self.automatic_rollback(steps)
        raw_validations = doc.get("validations", [])
        if not isinstance(raw_validations, list):
            raise self.fail("validations", raw_validations, "expected a list of validations")
        validations = tuple(
            self.validation(raw, f"validation {n}") for n, raw in enumerate(raw_validations, 1)
        )
        return Migration(
            pipeline=pipeline,
            from_version=from_version,
            to_version=to_version,
            description=description,
            conn_id=conn_id,
            steps=steps,
            rollback=rollback,
            rollback_written=rollback_written,
            validations=validations,
            source=path,
            checksum=checksum_of(doc),
        )

    def required(self, mapping: Mapping[str, Any], key: str, item: str | None, prefix: str = "") -> Any:
        if key not in mapping or mapping[key] is None:
            raise self.fail(f"{prefix}{key}", None, "is required", item)
        return mapping[key]

    def version(self, doc: Mapping[str, Any], key: str) -> semver.Version:
        raw = self.required(doc, key, None)
        if not isinstance(raw, str):
            raise self.fail(key, raw, "expected a semver version in quotes or as x.y.z, e.g. 1.2.0")
        try:
            return semver.Version.parse(raw)
        except ValueError as exc:
            raise self.fail(key, raw, f"is not a semver version: {exc}") from None

    def only_one_key(
        self, raw: Any, kinds: tuple[str, ...], item: str, what: str
    ) -> tuple[str, dict[str, Any]]:
        if not isinstance(raw, dict) or len(raw) != 1:
            raise self.fail(what, raw, f"expected one of {', '.join(kinds)} as a single-key mapping", item)
        kind, body = next(iter(raw.items()))
        if kind not in kinds:
            raise self.fail(what, kind, f"unknown {what} (expected one of {', '.join(kinds)})", item)
        if not isinstance(body, dict):
            raise self.fail(kind, body, "expected a mapping of fields", f"{item} ({kind})")
        return kind, body

    def fields(self, body: Mapping[str, Any], allowed: tuple[str, ...], item: str, prefix: str) -> None:
        for key in body:
            if key not in allowed:
                raise self.fail(
                    f"{prefix}{key}", body[key], f"unknown field (expected {', '.join(allowed)})", item
                )

    # -- steps -------------------------------------------------------------------------
    def step(self, raw: Any, item: str) -> Step:
        kind, body = self.only_one_key(raw, STEP_KINDS, item, "step")
        item = f"{item} ({kind})"
        parse: Callable[[dict[str, Any], str], Step] = getattr(self, f"step_{kind}")
        return parse(body, item)

    def step_config_update(self, body: dict[str, Any], item: str) -> Step:
        self.fields(body, ("path", "old", "new"), item, "config_update.")
        path = self.required(body, "path", item, "config_update.")
        if not isinstance(path, str) or not CONFIG_PATH_RE.fullmatch(path):
            raise self.fail(
                "config_update.path", path, "expected a dotted path such as transform.batch_size", item
            )
        for key in ("old", "new"):
            if key not in body:
                raise self.fail(f"config_update.{key}", None, "is required (null for an absent value)", item)
            field = f"config_update.{key}"
            value = body[key]
            _json_value(value, lambda reason: self.fail(field, value, reason, item))  # noqa: B023
        if body["old"] == body["new"]:
            raise self.fail(
                "config_update.new", body["new"], "equals old: the step would change nothing", item
            )
        return ConfigUpdate(path, body["old"], body["new"])

    def step_schema_change(self, body: dict[str, Any], item: str) -> Step:
        table = self.identifier(
            self.required(body, "table", item, "schema_change."), "schema_change.table", item
        )
        ops = [key for key in body if key != "table"]
        if len(ops) != 1 or ops[0] not in SCHEMA_OPS:
            raise self.fail(
                "schema_change",
                ops,
                f"expected exactly one change besides table: one of {', '.join(SCHEMA_OPS)}",
                item,
            )
        op = ops[0]
        spec = body[op]
        prefix = f"schema_change.{op}."
        if not isinstance(spec, dict):
            raise self.fail(f"schema_change.{op}", spec, "expected a mapping of fields", item)

        def ident(key: str) -> str:
            return self.identifier(self.required(spec, key, item, prefix), prefix + key, item)

        if op == "add_column":
            self.fields(spec, ("name", "type", "default", "nullable"), item, prefix)
            nullable = spec.get("nullable", True)
            if not isinstance(nullable, bool):
                raise self.fail(prefix + "nullable", nullable, "expected true or false", item)
            default = spec["default"] if "default" in spec else NO_DEFAULT
            if default is not NO_DEFAULT:
                _literal(default, lambda reason: self.fail(prefix + "default", default, reason, item))
            if not nullable and default in (NO_DEFAULT, None):
                raise self.fail(
                    prefix + "nullable", False, "a NOT NULL column added to a table needs a default", item
                )
            return SchemaChange(
                table,
                op,
                column=ident("name"),
                type=self.type(spec, prefix, item),
                default=default,
                nullable=nullable,
            )
        if op == "drop_column":
            self.fields(spec, ("name",), item, prefix)
            return SchemaChange(table, op, column=ident("name"))
        if op == "rename_column":
            self.fields(spec, ("from", "to"), item, prefix)
            old, new = ident("from"), ident("to")
            if old == new:
                raise self.fail(prefix + "to", new, "equals from", item)
            return SchemaChange(table, op, column=old, new_name=new)
        if op == "change_column_type":
            self.fields(spec, ("name", "type"), item, prefix)
            return SchemaChange(table, op, column=ident("name"), type=self.type(spec, prefix, item))
        if op == "add_index":
            self.fields(spec, ("name", "columns", "unique"), item, prefix)
            columns = self.required(spec, "columns", item, prefix)
            if not isinstance(columns, list) or not columns:
                raise self.fail(
                    prefix + "columns", columns, "expected a non-empty list of column names", item
                )
            names = tuple(self.identifier(c, prefix + "columns", item) for c in columns)
            if len(set(names)) != len(names):
                raise self.fail(prefix + "columns", columns, "names a column twice", item)
            unique = spec.get("unique", False)
            if not isinstance(unique, bool):
                raise self.fail(prefix + "unique", unique, "expected true or false", item)
            return SchemaChange(table, op, index=ident("name"), columns=names, unique=unique)
        self.fields(spec, ("name",), item, prefix)
        return SchemaChange(table, op, index=ident("name"))

    def step_data_transformation(self, body: dict[str, Any], item: str) -> Step:
        prefix = "data_transformation."
        self.fields(body, ("transformer", "params", "batch_size", "tables"), item, prefix)
        name = self.required(body, "transformer", item, prefix)
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise self.fail(
                prefix + "transformer", name, "expected a registered name or module:function", item
            )
        params = body.get("params", {}) or {}
        if not isinstance(params, dict):
            raise self.fail(prefix + "params", params, "expected a mapping", item)
        batch_size = body.get("batch_size", 1000)
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or not 1 <= batch_size <= 10_000_000
        ):
            raise self.fail(
                prefix + "batch_size", batch_size, "expected a whole number from 1 to 10000000", item
            )
        tables = self.tables(body, params, item, prefix)
        if not tables:
            raise self.fail(
                prefix + "tables",
                None,
                "say which tables it writes (tables: [...] or params.table): they are "
                "backed up before the run",
                item,
            )
        return DataTransformation(name, params, batch_size, tables)

    def step_custom_script(self, body: dict[str, Any], item: str) -> Step:
        prefix = "custom_script."
        self.fields(body, ("argv", "timeout", "rollback_argv", "tables"), item, prefix)
        argv = self.argv(self.required(body, "argv", item, prefix), prefix + "argv", item)
        script = self.script(argv[0], prefix + "argv", item)
        timeout = parse_duration(
            body.get("timeout", "5m"),
            lambda reason: self.fail(prefix + "timeout", body.get("timeout"), reason, item),
        )
        rollback_argv = None
        if body.get("rollback_argv") is not None:
            rollback_argv = self.argv(body["rollback_argv"], prefix + "rollback_argv", item)
            self.script(rollback_argv[0], prefix + "rollback_argv", item)
        return CustomScript(argv, script, timeout, rollback_argv, self.tables(body, {}, item, prefix))

    def argv(self, raw: Any, field: str, item: str) -> tuple[str, ...]:
        if not isinstance(raw, list) or not raw or not all(isinstance(a, (str, int, float)) for a in raw):
            raise self.fail(field, raw, "expected a non-empty list of arguments (no shell is used)", item)
        args = tuple(str(a) for a in raw)
        if any("\x00" in a for a in args):
            raise self.fail(field, raw, "an argument holds a NUL character", item)
        return args

    def script(self, program: str, field: str, item: str) -> Path:
        if os.path.isabs(program):
            raise self.fail(field, program, "must be a path relative to the migrations folder", item)
        resolved = (self.root / program).resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise self.fail(field, program, f"leaves the migrations folder {str(self.root)!r}", item)
        if not resolved.is_file():
            raise self.fail(field, program, f"no such file in the migrations folder {str(self.root)!r}", item)
        if not os.access(resolved, os.X_OK):
            raise self.fail(field, program, "is not executable (chmod +x it)", item)
        return resolved

    def tables(
        self, body: Mapping[str, Any], params: Mapping[str, Any], item: str, prefix: str
    ) -> tuple[str, ...]:
        raw = body.get("tables")
        if raw is None:
            raw = [params["table"]] if isinstance(params.get("table"), str) else []
        if not isinstance(raw, list):
            raise self.fail(prefix + "tables", raw, "expected a list of table names", item)
        return tuple(dict.fromkeys(self.identifier(t, prefix + "tables", item) for t in raw))

    def identifier(self, value: Any, field: str, item: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(field, value, "expected a non-empty name", item)
        if "\x00" in value:
            raise self.fail(field, value, "a name may not hold a NUL character", item)
        if len(value.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
            raise self.fail(
                field,
                value,
                f"is longer than {MAX_IDENTIFIER_BYTES} bytes (PostgreSQL would truncate it)",
                item,
            )
        return value

    def type(self, spec: Mapping[str, Any], prefix: str, item: str) -> str:
        raw = self.required(spec, "type", item, prefix)
        normalized = normalize_type(raw)
        if normalized is None:
            raise self.fail(prefix + "type", raw, f"not an allowed type (allowed: {allowlist_text()})", item)
        return normalized

    # -- rollback ----------------------------------------------------------------------
    def automatic_rollback(self, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        undo: list[Step] = []
        for n, step in enumerate(steps, 1):
            if isinstance(step, ConfigUpdate):
                undo.append(step.inverse())
            elif isinstance(step, SchemaChange):
                inverse = step.inverse()
                if inverse is None:
                    raise self.fail(
                        "rollback",
                        None,
                        f"{step.op} ({step.describe()}) has no automatic inverse: write a rollback: list "
                        "that undoes it",
                        f"step {n} (schema_change)",
                    )
                undo.append(inverse)
            elif isinstance(step, CustomScript) and step.rollback_argv is not None:
                program = (self.root / step.rollback_argv[0]).resolve()
                undo.append(CustomScript(step.rollback_argv, program, step.timeout_s, None, step.tables))
        return tuple(reversed(undo))

    def check_rollback_covers(self, steps: tuple[Step, ...], rollback: tuple[Step, ...]) -> None:
        """A written rollback must undo every forward config and schema change: its automatic
        inverse, or (for a change with none) the change that recreates what it removed."""
        for n, step in enumerate(steps, 1):
            if isinstance(step, ConfigUpdate):
                expected: Step | None = step.inverse()
                if expected not in rollback:
                    raise self.fail(
                        "rollback",
                        None,
                        f"does not undo it: expected config_update {{path: {step.path}, old: {step.new!r}, "
                        f"new: {step.old!r}}}",
                        f"step {n} (config_update)",
                    )
            elif isinstance(step, SchemaChange):
                inverse = step.inverse()
                if inverse is not None:
                    if not any(_same_change(inverse, r) for r in rollback):
                        raise self.fail(
                            "rollback",
                            None,
                            f"does not undo it: expected {inverse.describe()}",
                            f"step {n} (schema_change)",
                        )
                elif not any(_recreates(step, r) for r in rollback):
                    wanted = {
                        "drop_column": f"add_column {step.column} on {step.table}",
                        "change_column_type": f"change_column_type of {step.column} on {step.table} back",
                        "drop_index": f"add_index {step.index} on {step.table}",
                    }[step.op]
                    raise self.fail(
                        "rollback",
                        None,
                        f"{step.op} has no automatic inverse and the rollback does not undo it "
                        f"(expected {wanted})",
                        f"step {n} (schema_change)",
                    )

    # -- validations -------------------------------------------------------------------
    def validation(self, raw: Any, item: str) -> Validation:
        kind, body = self.only_one_key(raw, VALIDATION_KINDS, item, "validation")
        item = f"{item} ({kind})"
        prefix = f"{kind}."
        before = body.get("before", False)
        if not isinstance(before, bool):
            raise self.fail(prefix + "before", before, "expected true or false", item)
        if kind == "record_count":
            self.fields(body, ("table", "tolerance_percent", "before"), item, prefix)
            tolerance = body.get("tolerance_percent", 0)
            if (
                isinstance(tolerance, bool)
                or not isinstance(tolerance, (int, float))
                or not 0 <= tolerance <= 100
            ):
                raise self.fail(
                    prefix + "tolerance_percent", tolerance, "expected a number from 0 to 100", item
                )
            table = self.identifier(self.required(body, "table", item, prefix), prefix + "table", item)
            return RecordCount(table, float(tolerance), before)
        if kind == "data_integrity":
            self.fields(body, ("table", "not_null", "foreign_keys", "checksum_query", "before"), item, prefix)
            table = self.identifier(self.required(body, "table", item, prefix), prefix + "table", item)
            not_null = body.get("not_null", [])
            if not isinstance(not_null, list):
                raise self.fail(prefix + "not_null", not_null, "expected a list of column names", item)
            foreign_keys = body.get("foreign_keys", False)
            if not isinstance(foreign_keys, bool):
                raise self.fail(prefix + "foreign_keys", foreign_keys, "expected true or false", item)
            query = body.get("checksum_query")
            if query is not None:
                query = self.query(query, prefix + "checksum_query", item)
            if not not_null and not foreign_keys and query is None:
                raise self.fail(
                    prefix[:-1], body, "checks nothing: give not_null, foreign_keys or checksum_query", item
                )
            columns = tuple(self.identifier(c, prefix + "not_null", item) for c in not_null)
            return DataIntegrity(table, columns, foreign_keys, query, before)
        if kind == "schema_compliance":
            self.fields(body, ("table", "columns", "before"), item, prefix)
            table = self.identifier(self.required(body, "table", item, prefix), prefix + "table", item)
            columns = self.required(body, "columns", item, prefix)
            if not isinstance(columns, dict) or not columns:
                raise self.fail(
                    prefix + "columns", columns, "expected a mapping of column name to type", item
                )
            declared: dict[str, str] = {}
            for name, type_text in columns.items():
                column = self.identifier(name, prefix + "columns", item)
                normalized = normalize_type(type_text)
                if normalized is None:
                    raise self.fail(
                        f"{prefix}columns.{column}",
                        type_text,
                        f"not an allowed type (allowed: {allowlist_text()})",
                        item,
                    )
                declared[column] = normalized
            return SchemaCompliance(table, declared, before)
        if kind == "performance_benchmark":
            self.fields(body, ("query", "max_ms", "runs", "before"), item, prefix)
            query = self.query(self.required(body, "query", item, prefix), prefix + "query", item)
            max_ms = self.required(body, "max_ms", item, prefix)
            if (
                isinstance(max_ms, bool)
                or not isinstance(max_ms, (int, float))
                or not 0 < max_ms <= 3_600_000
            ):
                raise self.fail(prefix + "max_ms", max_ms, "expected a positive number of milliseconds", item)
            runs = body.get("runs", 5)
            if isinstance(runs, bool) or not isinstance(runs, int) or not 1 <= runs <= 100:
                raise self.fail(prefix + "runs", runs, "expected a whole number from 1 to 100", item)
            return PerformanceBenchmark(query, float(max_ms), runs, before)
        self.fields(body, ("validator", "params", "before"), item, prefix)
        name = self.required(body, "validator", item, prefix)
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise self.fail(prefix + "validator", name, "expected a registered name or module:function", item)
        params = body.get("params", {}) or {}
        if not isinstance(params, dict):
            raise self.fail(prefix + "params", params, "expected a mapping", item)
        return CustomValidation(name, params, before)

    def query(self, value: Any, field: str, item: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, value, "expected one SELECT statement", item)
        text = value.strip().rstrip(";").strip()
        if ";" in text or not re.match(r"(?is)^(select|with)\b", text):
            raise self.fail(
                field, value, "expected one SELECT (or WITH … SELECT) statement; it runs read-only", item
            )
        return text


def _same_change(a: SchemaChange, b: Step) -> bool:
    return isinstance(b, SchemaChange) and (a.table, a.op, a.column, a.new_name, a.index) == (
        b.table,
        b.op,
        b.column,
        b.new_name,
        b.index,
    )


def _recreates(step: SchemaChange, candidate: Step) -> bool:
    if not isinstance(candidate, SchemaChange) or candidate.table != step.table:
        return False
    if step.op == "drop_column":
        return candidate.op == "add_column" and candidate.column == step.column
    if step.op == "change_column_type":
        return (
            candidate.op == "change_column_type"
            and candidate.column == step.column
            and candidate.type != step.type
        )
    return candidate.op == "add_index" and candidate.index == step.index


def _json_value(value: Any, fail: Callable[[str], Exception]) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise fail("expected a JSON value (text, number, true/false, null, list or mapping)") from None


def _literal(value: Any, fail: Callable[[str], Exception]) -> None:
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise fail("expected a finite number")
        return
    if isinstance(value, str):
        if "\x00" in value:
            raise fail("text may not hold a NUL character")
        return
    raise fail("expected text, a number, true/false or null")
