"""Airflow's secrets masker, reached from our adapters (never from core/ or store/).

Two maskers exist: the task SDK's (task processes) and Airflow core's (scheduler, API
server, DAG processor). Secrets are registered with, and text is redacted by, both. Free
text also has every ``scheme://user:password@`` password replaced.
"""

from __future__ import annotations

from typing import Any

_MODULES = ("airflow.sdk._shared.secrets_masker", "airflow._shared.secrets_masker")


def _maskers() -> list[Any]:
    import importlib

    found = []
    for name in _MODULES:
        try:
            found.append(importlib.import_module(name))
        except Exception:  # pragma: no cover - a layout of another Airflow version
            continue
    return found


def mask_secret(secret: str) -> None:
    """Hide ``secret`` in every log line Airflow writes from now on (in this process)."""
    if not secret:
        return
    try:
        from airflow.sdk.log import mask_secret as sdk_mask  # also tells the task supervisor

        sdk_mask(secret)
    except Exception:
        pass
    for module in _maskers()[1:]:
        try:
            module.mask_secret(secret)
        except Exception:
            continue


def mask_url_password(url: str) -> None:
    """Register the password of a database URL (and the whole URL) with the maskers."""
    try:
        from sqlalchemy.engine import make_url

        password = make_url(url).password
    except Exception:
        password = None
    if password:
        mask_secret(str(password))
        mask_secret(url)


def redact(text: str) -> str:
    """``text`` with every registered secret and every URL password replaced by ***."""
    from etlops_airflow.store.engine import mask_passwords_in_text

    result = text
    for module in _maskers():
        try:
            redacted = module.redact(result)
        except Exception:
            continue
        if isinstance(redacted, str):
            result = redacted
    return mask_passwords_in_text(result)


SENSITIVE_FIELDS = frozenset({"sqlalchemy_url"})
"""Connection extra keys whose values hold a secret but that Airflow's default names miss."""


def hide_sensitive_fields(fields: frozenset[str] = SENSITIVE_FIELDS) -> None:
    """Make Airflow hide values stored under ``fields`` (Connection extras, Variable names),
    e.g. the ``sqlalchemy_url`` extra of an ``etlops_store`` connection in the connections API.

    Each masker matches keys against its ``sensitive_variables_fields``, which Airflow's own
    set-up (``airflow.settings._configure_secrets_masker``) rebuilds from the masker module's
    ``DEFAULT_SENSITIVE_FIELDS`` plus ``[core] sensitive_var_conn_names``. So the names are
    added to both: to the masker now, and to the defaults for any later re-configuration.
    Cheap (the masker modules are loaded by ``import airflow``); never raises.
    """
    import sys

    wanted = frozenset(name.strip().lower() for name in fields)
    for module in _maskers():
        try:
            for holder in (module, sys.modules.get(f"{module.__name__}.secrets_masker")):
                defaults = getattr(holder, "DEFAULT_SENSITIVE_FIELDS", None)
                if isinstance(defaults, frozenset) and not wanted <= defaults:
                    holder.DEFAULT_SENSITIVE_FIELDS = defaults | wanted  # type: ignore[union-attr]
            masker = module._secrets_masker()
            current = list(masker.sensitive_variables_fields)
            missing = sorted(wanted.difference(current))
            if missing:
                masker.sensitive_variables_fields = current + missing
        except Exception:  # pragma: no cover - a layout of another Airflow version
            continue
