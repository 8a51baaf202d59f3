"""Migrations as plain data: what a migration file declares, after validation.

A migration moves one pipeline from ``from_version`` to ``to_version`` (semver) on one target
database (an Airflow Connection id). It has forward ``steps``, ``rollback`` steps (written
in the file, or the automatic inverses of the forward steps) and ``validations``. Loading
and checking files is :mod:`etlops_airflow.core.migrations.loader`; this module only holds
the shapes that the loader, planner, runner and target share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import semver

STEP_KINDS = ("config_update", "schema_change", "data_transformation", "custom_script")
SCHEMA_OPS = (
    "add_column",
    "drop_column",
    "rename_column",
    "change_column_type",
    "add_index",
    "drop_index",
)
VALIDATION_KINDS = (
    "record_count",
    "data_integrity",
    "schema_compliance",
    "performance_benchmark",
    "custom_validation",
)


class _NoDefault:
    """Marks an ``add_column`` without a ``default`` (``None`` is a NULL default)."""

    _instance: _NoDefault | None = None

    def __new__(cls) -> _NoDefault:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


@dataclass(frozen=True)
class ConfigUpdate:
    """Compare-and-set of one value in the pipeline's JSON config document in the store.

    ``path`` is dotted (``transform.batch_size``); refused unless the current value is ``old``.
    """

    path: str
    old: Any
    new: Any
    kind: str = field(default="config_update", init=False)

    def inverse(self) -> ConfigUpdate:
        return ConfigUpdate(self.path, self.new, self.old)


@dataclass(frozen=True)
class SchemaChange:
    """One change to one table of the target.

    ``op`` is one of SCHEMA_OPS and decides which fields are set:

    - ``add_column``: ``column``, ``type``, ``default`` (NO_DEFAULT when absent), ``nullable``
    - ``drop_column``: ``column``
    - ``rename_column``: ``column`` (the old name) and ``new_name``
    - ``change_column_type``: ``column`` and ``type``
    - ``add_index``: ``index``, ``columns``, ``unique``
    - ``drop_index``: ``index``

    ``type`` is a normalised type from the allowlist (:data:`loader.TYPE_ALLOWLIST`), e.g.
    ``varchar(3)``, ``numeric(12,2)``, ``integer``, ``text``.
    """

    table: str
    op: str
    column: str | None = None
    new_name: str | None = None
    type: str | None = None
    default: Any = NO_DEFAULT
    nullable: bool = True
    index: str | None = None
    columns: tuple[str, ...] = ()
    unique: bool = False
    kind: str = field(default="schema_change", init=False)

    def inverse(self) -> SchemaChange | None:
        """The change that undoes this one, or None when it cannot be derived from the step
        alone (a dropped column's type, an index's columns, a column's old type)."""
        if self.op == "add_column":
            return SchemaChange(self.table, "drop_column", column=self.column)
        if self.op == "rename_column":
            return SchemaChange(self.table, "rename_column", column=self.new_name, new_name=self.column)
        if self.op == "add_index":
            return SchemaChange(self.table, "drop_index", index=self.index)
        return None

    def describe(self) -> str:
        if self.op == "add_column":
            return f"{self.table}: add column {self.column} {self.type}"
        if self.op == "drop_column":
            return f"{self.table}: drop column {self.column}"
        if self.op == "rename_column":
            return f"{self.table}: rename column {self.column} to {self.new_name}"
        if self.op == "change_column_type":
            return f"{self.table}: change type of {self.column} to {self.type}"
        if self.op == "add_index":
            unique = "unique " if self.unique else ""
            return f"{self.table}: add {unique}index {self.index} on ({', '.join(self.columns)})"
        return f"{self.table}: drop index {self.index}"


@dataclass(frozen=True)
class DataTransformation:
    """A registered transformer run in batches of ``batch_size`` inside the step's transaction.

    ``tables`` are the tables it writes (``tables:`` in the file, else ``params.table``):
    they are backed up before the run and compared after a rollback.
    """

    transformer: str
    params: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 1000
    tables: tuple[str, ...] = ()
    kind: str = field(default="data_transformation", init=False)


@dataclass(frozen=True)
class CustomScript:
    """A program run without a shell: ``argv[0]`` is a file inside the migrations folder
    (resolved to ``script``), killed after ``timeout_s``. ``rollback_argv`` (optional) is
    run when the migration is rolled back. ``tables`` (optional) are target tables the
    script writes, backed up like a transformation's."""

    argv: tuple[str, ...]
    script: Path
    timeout_s: float = 300.0
    rollback_argv: tuple[str, ...] | None = None
    tables: tuple[str, ...] = ()
    kind: str = field(default="custom_script", init=False)


Step = ConfigUpdate | SchemaChange | DataTransformation | CustomScript


@dataclass(frozen=True)
class RecordCount:
    """Rows of ``table`` after the steps equal the rows before, within ``tolerance_percent``."""

    table: str
    tolerance_percent: float = 0.0
    before: bool = False
    kind: str = field(default="record_count", init=False)


@dataclass(frozen=True)
class DataIntegrity:
    """No NULL in ``not_null`` columns; with ``foreign_keys`` every foreign key of ``table``
    holds; ``checksum_query`` (a read-only SELECT) gives the same rows before and after."""

    table: str
    not_null: tuple[str, ...] = ()
    foreign_keys: bool = False
    checksum_query: str | None = None
    before: bool = False
    kind: str = field(default="data_integrity", init=False)


@dataclass(frozen=True)
class SchemaCompliance:
    """The reflected ``table`` has exactly ``columns`` (name -> allowlisted type), in any order."""

    table: str
    columns: Mapping[str, str]
    before: bool = False
    kind: str = field(default="schema_compliance", init=False)


@dataclass(frozen=True)
class PerformanceBenchmark:
    """``query`` (read-only) takes at most ``max_ms`` milliseconds: the median of ``runs``."""

    query: str
    max_ms: float
    runs: int = 5
    before: bool = False
    kind: str = field(default="performance_benchmark", init=False)


@dataclass(frozen=True)
class CustomValidation:
    """A validator registered by name (or a ``module:function`` path) with its ``params``."""

    validator: str
    params: Mapping[str, Any] = field(default_factory=dict)
    before: bool = False
    kind: str = field(default="custom_validation", init=False)


Validation = RecordCount | DataIntegrity | SchemaCompliance | PerformanceBenchmark | CustomValidation


@dataclass(frozen=True)
class Migration:
    """One migration file, validated. ``checksum`` is the SHA-256 of its canonical definition
    (the parsed document as sorted, compact JSON): comments and layout do not change it."""

    pipeline: str
    from_version: semver.Version
    to_version: semver.Version
    description: str
    conn_id: str
    steps: tuple[Step, ...]
    rollback: tuple[Step, ...]
    rollback_written: bool
    validations: tuple[Validation, ...]
    source: Path
    checksum: str

    @property
    def key(self) -> str:
        """``<from>-><to>``: the edge this migration is in the version graph."""
        return f"{self.from_version}->{self.to_version}"

    @property
    def tables(self) -> tuple[str, ...]:
        """Every target table a forward or rollback step touches, in first-seen order."""
        seen: dict[str, None] = {}
        for step in (*self.steps, *self.rollback):
            if isinstance(step, SchemaChange):
                seen.setdefault(step.table, None)
            elif isinstance(step, (DataTransformation, CustomScript)):
                for table in step.tables:
                    seen.setdefault(table, None)
        return tuple(seen)

    def describe(self) -> str:
        return f"{self.pipeline} {self.from_version} -> {self.to_version} ({self.source.name})"


@dataclass(frozen=True)
class Plan:
    """The migrations to run, in order, to move ``pipeline`` from ``current`` to ``target``.
    ``direction`` is ``up`` (forward steps) or ``down`` (rollback steps, newest first);
    empty ``migrations`` means already there."""

    pipeline: str
    current: semver.Version
    target: semver.Version
    direction: str
    migrations: tuple[Migration, ...]

    @property
    def tables(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for migration in self.migrations:
            for table in migration.tables:
                seen.setdefault(table, None)
        return tuple(seen)


def as_params(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})
