"""The built-in validations of a migration, run against its target.

:func:`capture` takes the figures a validation compares with (before the steps run);
:func:`check` runs the validation and says whether it holds, with a message that names the
table, the columns and the figures. Every read happens in a read-only transaction.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from etlops_airflow.core.migrations.model import (
    CustomValidation,
    DataIntegrity,
    PerformanceBenchmark,
    RecordCount,
    SchemaCompliance,
    Validation,
)
from etlops_airflow.core.migrations.target import Target
from etlops_airflow.core.migrations.types import normalize_type, type_matches
from etlops_airflow.exceptions import EtlopsError, ValidationError


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of one validation: ``ok``, a message naming what was checked and the
    figures, and the figures themselves (JSON-able)."""

    kind: str
    ok: bool
    message: str
    figures: dict[str, Any] = field(default_factory=dict)


def capture(target: Target, validation: Validation) -> dict[str, Any] | None:
    """The figures ``validation`` compares against, taken before the steps: the row count of
    a ``record_count``, the digest of a ``data_integrity`` checksum query; None otherwise."""
    if isinstance(validation, RecordCount):
        with target.read_only() as conn:
            return {"rows": target.count_rows(conn, validation.table)}
    if isinstance(validation, DataIntegrity) and validation.checksum_query:
        return {"checksum": target.query_digest(validation.checksum_query)}
    return None


def check(target: Target, validation: Validation, before: Mapping[str, Any] | None) -> ValidationResult:
    """Run ``validation`` against ``target``. A validation that cannot be evaluated (a table
    gone, a failing query) fails with the reason; it never raises for that."""
    kind = validation.kind
    try:
        if isinstance(validation, RecordCount):
            return _record_count(target, validation, before)
        if isinstance(validation, DataIntegrity):
            return _data_integrity(target, validation, before)
        if isinstance(validation, SchemaCompliance):
            return _schema_compliance(target, validation)
        if isinstance(validation, PerformanceBenchmark):
            return _performance(target, validation)
        if isinstance(validation, CustomValidation):
            return _custom(target, validation)
    except (EtlopsError, ValueError) as exc:
        return ValidationResult(kind, False, f"{_subject(validation)}: could not check: {exc}", {})
    except Exception as exc:  # a database error: report it as the validation's failure
        return ValidationResult(
            kind, False, f"{_subject(validation)}: could not check: {_first_line(exc)}", {}
        )
    raise ValidationError("validation", kind, "unknown validation kind")


def _subject(validation: Validation) -> str:
    table = getattr(validation, "table", None)
    if table:
        return str(table)
    if isinstance(validation, CustomValidation):
        return f"validator {validation.validator}"
    return validation.kind


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _record_count(target: Target, v: RecordCount, before: Mapping[str, Any] | None) -> ValidationResult:
    with target.read_only() as conn:
        after = target.count_rows(conn, v.table)
    tolerance = f"tolerance {v.tolerance_percent:g}%"
    if not before or "rows" not in before:
        return ValidationResult(
            v.kind,
            False,
            f"{v.table}: {after} rows after; no count was taken before ({tolerance})",
            {"after": after},
        )
    prior = int(before["rows"])
    allowed = prior * v.tolerance_percent / 100.0
    ok = abs(after - prior) <= allowed
    figures = {"before": prior, "after": after, "tolerance_percent": v.tolerance_percent}
    return ValidationResult(
        v.kind, ok, f"{v.table}: {after} rows after, {prior} before ({tolerance})", figures
    )


def _data_integrity(target: Target, v: DataIntegrity, before: Mapping[str, Any] | None) -> ValidationResult:
    problems: list[str] = []
    figures: dict[str, Any] = {}
    with target.read_only() as conn:
        if v.not_null:
            nulls = target.null_counts(conn, v.table, v.not_null)
            figures["nulls"] = nulls
            problems += [f"{n} NULL(s) in {c}" for c, n in nulls.items() if n]
        if v.foreign_keys:
            broken = target.foreign_key_violations(conn, v.table)
            figures["foreign_key_violations"] = len(broken)
            if broken:
                shown = "; ".join(broken[:5]) + (f"; … {len(broken) - 5} more" if len(broken) > 5 else "")
                problems.append(f"{len(broken)} foreign key violation(s): {shown}")
    if v.checksum_query:
        digest = target.query_digest(v.checksum_query)
        figures["checksum_after"] = digest
        prior = (before or {}).get("checksum")
        figures["checksum_before"] = prior
        if prior is None:
            problems.append("checksum query: no digest was taken before")
        elif prior != digest:
            problems.append(f"checksum query rows changed (before {prior[:12]}…, after {digest[:12]}…)")
    checked = []
    if v.not_null:
        checked.append(f"no NULLs in {', '.join(v.not_null)}")
    if v.foreign_keys:
        checked.append("foreign keys hold")
    if v.checksum_query:
        checked.append("checksum query unchanged")
    if problems:
        return ValidationResult(v.kind, False, f"{v.table}: " + "; ".join(problems), figures)
    return ValidationResult(
        v.kind, True, f"{v.table}: " + ("; ".join(checked) or "nothing to check"), figures
    )


def _schema_compliance(target: Target, v: SchemaCompliance) -> ValidationResult:
    with target.read_only() as conn:
        reflected = target.column_types(conn, v.table)
    missing = [c for c in v.columns if c not in reflected]
    extra = [c for c in reflected if c not in v.columns]
    wrong = [
        f"{c} is {reflected[c] or 'untyped'}, declared {normalize_type(t) or t}"
        for c, t in v.columns.items()
        if c in reflected and not type_matches(t, reflected[c])
    ]
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if extra:
        problems.append(f"undeclared column(s) {', '.join(extra)}")
    problems += wrong
    figures = {"reflected": reflected, "declared": dict(v.columns)}
    if problems:
        return ValidationResult(v.kind, False, f"{v.table}: " + "; ".join(problems), figures)
    return ValidationResult(
        v.kind, True, f"{v.table}: {len(reflected)} columns match the declared names and types", figures
    )


def _performance(target: Target, v: PerformanceBenchmark) -> ValidationResult:
    runs = max(1, int(v.runs))
    times = target.time_query(v.query, runs + 1)[1:]  # the first run warms caches up
    median = statistics.median(times)
    ok = median <= v.max_ms
    figures = {"median_ms": round(median, 3), "max_ms": v.max_ms, "runs_ms": [round(t, 3) for t in times]}
    verdict = "within" if ok else "over"
    return ValidationResult(
        v.kind,
        ok,
        f"query median {median:.1f} ms over {runs} run(s), {verdict} the limit of {v.max_ms:g} ms",
        figures,
    )


def _custom(target: Target, v: CustomValidation) -> ValidationResult:
    from etlops_airflow.core.migrations.registry import resolve_validator

    validator = resolve_validator(v.validator)
    try:
        with target.read_only() as conn:
            answer = validator(conn, dict(v.params))
    except Exception as exc:
        return ValidationResult(
            v.kind, False, f"validator {v.validator}: raised {type(exc).__name__}: {_first_line(exc)}", {}
        )
    if answer is None or answer is True:
        return ValidationResult(v.kind, True, f"validator {v.validator}: passed", {})
    if answer is False:
        return ValidationResult(v.kind, False, f"validator {v.validator}: failed", {})
    return ValidationResult(v.kind, False, f"validator {v.validator}: {answer}", {"answer": str(answer)})
