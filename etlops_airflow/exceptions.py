"""The one exceptions module: every error the package raises on purpose derives from EtlopsError.

Errors about input carry the field and the value (``ValidationError`` and its subclasses);
store errors carry the store (masked URL) and the operation, never the SQL parameters.
"""

from __future__ import annotations

from collections.abc import Mapping


class EtlopsError(Exception):
    """Base class of every error etlops-airflow raises on purpose."""


class ValidationError(EtlopsError, ValueError):
    """A value given to etlops is wrong. Names the field and the value (and who was given it)."""

    def __init__(self, field: str, value: object, reason: str, *, owner: str | None = None) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        self.owner = owner
        prefix = f"{owner}: " if owner else ""
        super().__init__(f"{prefix}{field} {_show(value)}: {reason}")


def _show(value: object, limit: int = 120) -> str:
    """``repr`` of a value, shortened so that a huge input does not flood a log line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ConfigError(ValidationError):
    """A configuration value is wrong. Carries the option and the offending value."""

    def __init__(self, option: str, value: object, reason: str) -> None:
        super().__init__(option, value, reason)
        self.option = option
        self.args = (f"[etlops] {option} = {_show(value)}: {reason}",)

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidMetricError(ValidationError):
    """A metric point has a bad name, label, value or timestamp."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(field, value, reason, owner="metric")


class InvalidOutcomeError(ValidationError):
    """A task outcome has a bad field."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(field, value, reason, owner="task outcome")


class InvalidDagRunOutcomeError(InvalidOutcomeError):
    """A DAG-run outcome has a bad field."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        ValidationError.__init__(self, field, value, reason, owner="DAG run outcome")


class InvalidProfileError(ValidationError):
    """A profiling report (session, stage or finding) has a bad field."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(field, value, reason, owner="profile")


class SourcedError(ValidationError):
    """A value read from a file is wrong: names the file (``source``), the item in it, the
    field and the value."""

    def __init__(
        self, field: str, value: object, reason: str, *, source: str | None = None, item: str | None = None
    ) -> None:
        self.source = source
        self.item = item
        where = ": ".join(part for part in (source, item) if part)
        super().__init__(field, value, reason, owner=where or None)


class RuleError(SourcedError):
    """An alert rule file, rule, receiver or route is wrong. Names the file, the rule id (or
    the receiver / route), the field and the value."""


class MigrationFileError(SourcedError):
    """A migration file is wrong. Names the file, the step (``step 3``, ``rollback 2``,
    ``validation 1``), the field and the value."""


class MigrationFolderError(ValidationError):
    """A migrations folder holds several wrong files: ``errors`` lists every problem."""

    def __init__(self, folder: str, errors: list[MigrationFileError]) -> None:
        self.errors = errors
        super().__init__("migrations_dir", folder, f"{len(errors)} problem(s)")
        self.args = (
            f"migrations folder {folder!r} has {len(errors)} problem(s):\n"
            + "\n".join(f"  - {e}" for e in errors),
        )

    def __str__(self) -> str:
        return str(self.args[0])


class MigrationRefused(EtlopsError):
    """A migration run may not start: the pipeline is locked by another run, a crashed run
    waits for ``recover``, an applied migration changed (``repair``), or no path exists."""


class MigrationFailed(EtlopsError):
    """A migration run failed. ``state`` says what the target was left as: ``rolled_back``
    (identical to before the run) or ``failed`` (restoring failed too: see the step log)."""

    def __init__(self, message: str, *, run_id: str, state: str) -> None:
        self.run_id = run_id
        self.state = state
        super().__init__(message)


class DataQualityCheckFailed(EtlopsError):
    """One or more ratios are below their ``min_ratio``. ``failures`` maps each failing check to
    ``(ratio, minimum)``; the metrics were written before this was raised."""

    def __init__(self, owner: str, dataset: str, failures: Mapping[str, tuple[float, float]]) -> None:
        self.owner = owner
        self.dataset = dataset
        self.failures = dict(failures)
        listed = ", ".join(
            f"{check} {ratio:.6g} < min {minimum:.6g}" for check, (ratio, minimum) in failures.items()
        )
        super().__init__(
            f"{owner}: {len(failures)} data-quality check(s) below their minimum "
            f"on dataset {dataset!r}: {listed}"
        )


class WarehouseError(EtlopsError):
    """The warehouse connection could not be opened, inspected or queried. Names the
    connection and the operation; passwords are masked."""

    def __init__(self, message: str, *, conn_id: str, operation: str) -> None:
        self.conn_id = conn_id
        self.operation = operation
        super().__init__(message)


class MaintenanceFailed(EtlopsError):
    """A maintenance run could not do its job; the run (and what it did do) is recorded."""


class StoreError(EtlopsError):
    """The store could not be reached or refused an operation.

    ``store`` is the masked URL, ``operation`` what was being done; the message holds the
    driver's first line only (never the statement's parameters).
    """

    def __init__(self, message: str, *, store: str | None = None, operation: str | None = None) -> None:
        self.store = store
        self.operation = operation
        super().__init__(message)


class StoreSchemaError(StoreError):
    """The store's schema is newer than this package understands, or an upgrade failed."""

    def __init__(self, found: int, expected: int, reason: str, *, store: str | None = None) -> None:
        self.found = found
        self.expected = expected
        where = f"store {store}: " if store else "store "
        super().__init__(
            f"{where}schema version {found} (this package knows up to {expected}): {reason}",
            store=store,
            operation="schema upgrade",
        )
