"""The one exceptions module: every error the package raises on purpose derives from EtlopsError."""

from __future__ import annotations


class EtlopsError(Exception):
    """Base class of every error etlops-airflow raises on purpose."""


class ConfigError(EtlopsError, ValueError):
    """A configuration value is wrong. Carries the option and the offending value."""

    def __init__(self, option: str, value: object, reason: str) -> None:
        self.option = option
        self.value = value
        self.reason = reason
        super().__init__(f"[etlops] {option} = {value!r}: {reason}")


class StoreError(EtlopsError):
    """The store could not be reached, created or upgraded."""


class StoreSchemaError(StoreError):
    """The store's schema is newer than this package understands, or an upgrade failed."""

    def __init__(self, found: int, expected: int, reason: str) -> None:
        self.found = found
        self.expected = expected
        super().__init__(f"store schema version {found} (this package knows up to {expected}): {reason}")


class InvalidMetricError(EtlopsError, ValueError):
    """A metric point has a bad name, label or value."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"metric {field} {value!r}: {reason}")
