"""The etlops API, mounted by the plugin at ``/etlops`` on Airflow's API server.

Every route sits behind Airflow's auth manager (plugin view access); outcomes are
further limited to the DAGs the user may read.
"""

# No ``from __future__ import annotations`` here: FastAPI resolves the route annotations at runtime.
import time
from dataclasses import asdict
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_view
from fastapi import Depends, FastAPI, HTTPException, Query


def _authorized_dag_ids(user: Any) -> set[str]:
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def create_app() -> FastAPI:
    from etlops_airflow.store import get_store
    from etlops_airflow.store.upgrades import HEAD

    app = FastAPI(
        title="etlops-airflow",
        description="Operations data of etlops-airflow: task outcomes and metrics.",
        dependencies=[Depends(requires_access_view(AccessView.PLUGINS))],
    )

    @app.get("/api/store")
    def store_status() -> dict[str, Any]:
        store = get_store()
        return {
            "url": store.display_url,
            "dialect": store.dialect,
            "schema_version": store.schema_version(),
            "schema_head": HEAD,
        }

    @app.get("/api/outcomes")
    def outcomes(
        user: GetUserDep,
        dag_id: str | None = None,
        state: Annotated[list[str] | None, Query()] = None,
        since: float | None = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 200,
    ) -> list[dict[str, Any]]:
        allowed = _authorized_dag_ids(user)
        if dag_id is not None and dag_id not in allowed:
            raise HTTPException(status_code=403, detail=f"no read access to DAG {dag_id!r}")
        rows = get_store().outcomes(dag_id=dag_id, states=state, since=since, limit=limit)
        return [asdict(row) for row in rows if row.dag_id in allowed]

    @app.get("/api/metrics")
    def metric_names() -> list[str]:
        return get_store().metric_names()

    @app.get("/api/metrics/{name}")
    def metric_series(
        name: str,
        window: Annotated[float, Query(gt=0, le=366 * 86400)] = 3600,
        step: Annotated[float, Query(gt=0)] = 60,
        fn: str = "avg",
    ) -> dict[str, Any]:
        try:
            series = get_store().series(name, step=step, fn=fn, window=window, end=time.time())
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return {
            "name": name,
            "fn": fn,
            "step": step,
            "series": [{"labels": s.labels, "points": s.points} for s in series],
        }

    return app
