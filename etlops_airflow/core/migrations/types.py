"""The column types a migration may use: an allowlist, normalised spellings, and how each is
written in SQLite and PostgreSQL DDL. Nothing outside the allowlist reaches the SQL."""

from __future__ import annotations

import re

# normalised base name -> accepted spellings (lower case, single spaces)
_BASES: dict[str, tuple[str, ...]] = {
    "integer": ("integer", "int", "int4"),
    "bigint": ("bigint", "int8"),
    "smallint": ("smallint", "int2"),
    "numeric": ("numeric", "decimal"),
    "real": ("real", "float4"),
    "double precision": ("double precision", "double", "float8", "float"),
    "text": ("text",),
    "varchar": ("varchar", "character varying"),
    "char": ("char", "character"),
    "boolean": ("boolean", "bool"),
    "date": ("date",),
    "timestamp": ("timestamp", "timestamp without time zone"),
    "timestamptz": ("timestamptz", "timestamp with time zone"),
}
_SPELLING = {spelling: base for base, spellings in _BASES.items() for spelling in spellings}
# which bases take parameters, and how many
_PARAMS = {"numeric": (1, 2), "varchar": (1, 1), "char": (1, 1)}
_NEEDS_PARAMS = {"varchar", "char"}
_TYPE_RE = re.compile(r"^\s*([a-z][a-z0-9 ]*?)\s*(?:\(\s*(\d{1,5})\s*(?:,\s*(\d{1,5})\s*)?\))?\s*$")

TYPE_ALLOWLIST = tuple(_BASES)


def normalize_type(text: object) -> str | None:
    """The normalised spelling of an allowlisted type (``VARCHAR( 3 )`` -> ``varchar(3)``,
    ``int`` -> ``integer``), or None when ``text`` is not on the allowlist."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    match = _TYPE_RE.match(text.lower())
    if match is None:
        return None
    name = " ".join(match.group(1).split())
    base = _SPELLING.get(name)
    if base is None:
        return None
    params = [int(p) for p in match.groups()[1:] if p is not None]
    lo, hi = _PARAMS.get(base, (0, 0))
    if params and not lo <= len(params) <= hi:
        return None
    if base in _NEEDS_PARAMS and not params:
        return None
    if any(p == 0 for p in params[:1]) or (len(params) == 2 and params[1] > params[0]):
        return None
    return f"{base}({','.join(map(str, params))})" if params else base


def base_of(normalized: str) -> str:
    return normalized.split("(", 1)[0]


def render_type(normalized: str, dialect: str) -> str:
    """DDL spelling of a normalised type. SQLite keeps the declared name (it decides the
    column's affinity from it); PostgreSQL gets its canonical name."""
    base = base_of(normalized)
    params = normalized[len(base) :]
    if base == "timestamptz":
        return "TIMESTAMP WITH TIME ZONE"
    if base == "timestamp":
        return "TIMESTAMP"
    return f"{base.upper()}{params}"


def allowlist_text() -> str:
    return ", ".join(
        f"{base}(n)" if base in _NEEDS_PARAMS else f"{base}[(p[,s])]" if base == "numeric" else base
        for base in TYPE_ALLOWLIST
    )


def reflected_type(text: object) -> str:
    """A type as the database reports it (PostgreSQL ``format_type``, SQLite's declared type),
    in its normalised allowlist spelling when it has one (``character varying(3)`` ->
    ``varchar(3)``, ``INT`` -> ``integer``), else lower-cased with single spaces (``jsonb``,
    ``""`` for a SQLite column declared without a type)."""
    if not isinstance(text, str):
        return ""
    normalized = normalize_type(text)
    if normalized is not None:
        return normalized
    lowered = " ".join(text.lower().split())
    # PostgreSQL's spelling of an unparameterised varchar/char: keep it recognisable by base
    if lowered in ("character varying", "varchar"):
        return "varchar"
    return lowered


def type_matches(declared: str, reflected: str) -> bool:
    """Whether a reflected type satisfies a declared allowlist type: a declared type without
    parameters (``numeric``, ``varchar``) matches the reflected base whatever its parameters;
    with parameters it must match exactly (both in normalised spelling)."""
    declared_norm = normalize_type(declared) or declared
    if "(" in declared_norm:
        return declared_norm == reflected
    return declared_norm == base_of(reflected)
