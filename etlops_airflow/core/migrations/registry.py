"""Transformers and validators that migration files name.

A ``data_transformation`` step names a transformer; a ``custom_validation`` names a
validator. A name resolves, in order, to: one registered in Python with
:func:`register_transformer` / :func:`register_validator`; an entry point of the group
``etlops_airflow.transformers`` / ``etlops_airflow.validators`` (``name = "pkg.mod:func"``
in the distribution's metadata); or, when it contains a colon, the ``module:attribute`` it
spells.

A transformer is called once per batch with a :class:`TransformBatch` and returns how many
rows it changed; the runner calls it again while a batch comes back full (``== size``)::

    @register_transformer("fill_currency")
    def fill_currency(batch: TransformBatch) -> int:
        table = batch.quote(batch.params["table"])
        return batch.conn.execute(text(
            f"UPDATE {table} SET currency = 'EUR' WHERE id IN "
            f"(SELECT id FROM {table} WHERE currency IS NULL LIMIT :n)"), {"n": batch.size}).rowcount

A validator is called with a read-only connection and its params; it passes by returning
None or True and fails by returning False or a message, or by raising.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from etlops_airflow.exceptions import ValidationError

TRANSFORMER_GROUP = "etlops_airflow.transformers"
VALIDATOR_GROUP = "etlops_airflow.validators"
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*(:[A-Za-z_][A-Za-z0-9_.]*)?$")


@dataclass(frozen=True)
class TransformBatch:
    """One batch of a transformation: ``conn`` is the step's connection (inside its
    transaction), ``number`` counts batches from 0, ``size`` is the step's ``batch_size``."""

    conn: Any
    params: Mapping[str, Any]
    size: int
    number: int
    dialect: str

    def quote(self, identifier: str) -> str:
        """``identifier`` as a quoted SQL name (SQLite and PostgreSQL both use double quotes),
        for a statement built with ``sqlalchemy.text()``: exactly that name, whatever it holds."""
        if not isinstance(identifier, str) or not identifier or "\x00" in identifier:
            raise ValidationError("identifier", identifier, "expected a non-empty name without NUL")
        return '"' + identifier.replace('"', '""') + '"'


Transformer = Callable[[TransformBatch], int]
Validator = Callable[[Any, Mapping[str, Any]], "bool | str | None"]

_transformers: dict[str, Transformer] = {}
_validators: dict[str, Validator] = {}


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValidationError(kind, name, "expected a registered name or a module:function path")
    return name


def register_transformer(name: str) -> Callable[[Transformer], Transformer]:
    """Decorator: make ``func`` the transformer called ``name``."""
    _check_name("transformer", name)

    def decorate(func: Transformer) -> Transformer:
        _register(_transformers, "transformer", name, func)
        return func

    return decorate


def register_validator(name: str) -> Callable[[Validator], Validator]:
    """Decorator: make ``func`` the validator called ``name``."""
    _check_name("validator", name)

    def decorate(func: Validator) -> Validator:
        _register(_validators, "validator", name, func)
        return func

    return decorate


def _register(registry: dict[str, Any], kind: str, name: str, func: Any) -> None:
    """Register ``func``; another function already under ``name`` is replaced, and said so
    (the same function from a re-imported module replaces it quietly)."""
    found = registry.get(name)
    if found is not None and _origin(found) != _origin(func):
        logging.getLogger(__name__).warning(
            "%s %r was %s and is now %s: the last registration wins; give them distinct names",
            kind,
            name,
            _origin(found),
            _origin(func),
        )
    registry[name] = func


def _origin(func: Any) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def _resolve(kind: str, name: str, registered: Mapping[str, Any], group: str) -> Any:
    _check_name(kind, name)
    if name in registered:
        return registered[name]
    for point in entry_points(group=group):
        if point.name == name:
            try:
                return point.load()
            except Exception as exc:
                raise ValidationError(
                    kind, name, f"entry point {point.value!r} of {group} failed to load: {exc}"
                ) from exc
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValidationError(kind, name, f"cannot import it: {exc}") from exc
        if not callable(found):
            raise ValidationError(kind, name, "is not callable")
        return found
    known = ", ".join(sorted(registered)) or "none registered"
    raise ValidationError(
        kind,
        name,
        f"unknown: register it with register_{kind}(), the {group} entry points, "
        f"or write module:function (known: {known})",
    )


def resolve_transformer(name: str) -> Transformer:
    return _resolve("transformer", name, _transformers, TRANSFORMER_GROUP)  # type: ignore[no-any-return]


def resolve_validator(name: str) -> Validator:
    return _resolve("validator", name, _validators, VALIDATOR_GROUP)  # type: ignore[no-any-return]
