"""Rule descriptions are Jinja templates, rendered in Jinja's sandbox (a rule file cannot
reach Python objects through them) with the alert's fields: ``{{ dag_id }} failed {{ value }}
runs in a row``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import Undefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # Unknown names render empty (a label may be missing on one alert of a rule), never crash.
    return ImmutableSandboxedEnvironment(autoescape=False, undefined=Undefined)


def check_template(text: str, fail: Callable[[str], Exception]) -> None:
    """Refuse a template that does not compile, naming the line."""
    from jinja2 import TemplateSyntaxError

    try:
        _environment().from_string(text)
    except TemplateSyntaxError as exc:
        raise fail(f"template error at line {exc.lineno}: {exc.message}") from None


def render(text: str, context: Mapping[str, Any]) -> str:
    """The rendered text; a template that fails at render time shows the error instead of the
    text (a notification is never lost to a template)."""
    try:
        return str(_environment().from_string(text).render(**context))
    except Exception as exc:  # SecurityError, TypeError in a filter, …
        return f"{text} [template error: {type(exc).__name__}: {exc}]"
