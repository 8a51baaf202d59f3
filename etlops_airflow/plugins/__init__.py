"""The ``etlops`` Airflow plugin: outcome listeners (task tries, DAG runs), the profiling listener,
the etlops API app and the **Operations** entry in the Airflow UI navigation.

Every Airflow process imports this module (workers at task start), so it only
defines classes and adds one name to the secrets masker; the FastAPI app is built on
its first request, in the API server.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from etlops_airflow._secrets import hide_sensitive_fields
from etlops_airflow.listeners import dag_runs as _dag_run_listener
from etlops_airflow.listeners import outcomes as _outcome_listener
from etlops_airflow.listeners import profiling as _profiling_listener

# Every Airflow process loads its plugins after configuring the secrets masker: from here
# on its connection API, UI and logs hide our ``sqlalchemy_url`` extra (it holds a password).
hide_sensitive_fields()


class LazyASGIApp:
    """An ASGI app that builds the real FastAPI app on first use."""

    def __init__(self, factory: str) -> None:
        self._factory = factory
        self._app: Any = None

    def _get(self) -> Any:
        if self._app is None:
            import importlib

            module_name, _, attr = self._factory.partition(":")
            self._app = getattr(importlib.import_module(module_name), attr)()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._get()(scope, receive, send)


class EtlopsPlugin(AirflowPlugin):
    name = "etlops"
    listeners = [_outcome_listener, _dag_run_listener, _profiling_listener]
    fastapi_apps = [
        {
            "app": LazyASGIApp("etlops_airflow.plugins.api:create_app"),
            "url_prefix": "/etlops",
            "name": "etlops API",
        }
    ]
    # The page renders inside the Airflow UI (an iframe, same origin: the UI's session cookie
    # travels). The UI resolves a relative href against its <base href>, the [api] base_url, so
    # the entry works under any prefix.
    external_views = [
        {
            "name": "Operations",
            "href": "etlops/ui/",
            "destination": "nav",
            "url_route": "etlops-operations",
            "nav_top_level": True,
            "icon": "etlops/ui/static/icon.svg",
        }
    ]
