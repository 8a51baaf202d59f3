"""The etlops API, mounted by the plugin at ``/etlops`` on Airflow's API server.

Every route sits behind Airflow's auth manager (plugin view access). DAG-scoped data is
filtered in SQL to the DAGs the user may read, before any ``LIMIT``: task outcomes by their
DAG, metric series by their ``dag_id`` label (series without one are visible to all).
"""

# No ``from __future__ import annotations`` here: FastAPI resolves the route annotations at runtime.
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_view
from fastapi import Depends, FastAPI, HTTPException, Query

from etlops_airflow.exceptions import ConfigError, StoreError, ValidationError

MAX_SERIES_POINTS = 10_000  # buckets x series in one /api/metrics/{name} answer


def _authorized_dag_ids(user: Any) -> list[str]:
    from airflow.api_fastapi.app import get_auth_manager

    return sorted(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


@contextmanager
def _answers() -> Iterator[None]:
    """Bad input is a 400 naming the field; a misconfigured or unreachable store a 503 naming
    it (password masked)."""
    try:
        yield
    except ConfigError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None
    except ValidationError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    except StoreError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None


def create_app(store_factory: Callable[[], Any] | None = None) -> FastAPI:
    from etlops_airflow.runtime import get_store

    store = store_factory or get_store

    app = FastAPI(
        title="etlops-airflow",
        description="Operations data of etlops-airflow: task outcomes and metrics.",
        dependencies=[Depends(requires_access_view(AccessView.PLUGINS))],
    )

    @app.get("/api/store")
    def store_status() -> dict[str, Any]:
        with _answers():
            status = store().status()
        return {key: status[key] for key in ("url", "dialect", "schema_version", "schema_head")}

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
        with _answers():
            rows = store().outcomes.query(
                dag_id=dag_id, states=state, since=since, dag_ids=allowed, limit=limit
            )
        return [asdict(row) for row in rows]

    @app.get("/api/metrics")
    def metric_names(user: GetUserDep) -> list[str]:
        with _answers():
            return list(store().metrics.names(dag_ids=_authorized_dag_ids(user)))

    @app.get("/api/metrics/{name}")
    def metric_series(
        user: GetUserDep,
        name: str,
        window: Annotated[float, Query(gt=0, le=366 * 86400)] = 3600,
        step: Annotated[float, Query(gt=0)] = 60,
        fn: str = "avg",
        max_points: Annotated[int, Query(ge=10, le=MAX_SERIES_POINTS)] = 2000,
    ) -> dict[str, Any]:
        """Bucketed series per label set. ``step`` is raised when ``window / step`` times the
        number of series would exceed ``max_points``; the answer says the step used."""
        allowed = _authorized_dag_ids(user)
        with _answers():
            metrics = store().metrics
            n_series = metrics.count_series(name, dag_ids=allowed)
            room = max_points - 2 * n_series  # each series may get two partial buckets at the edges
            if room <= 0:
                raise ValidationError(
                    "max_points", max_points, f"too small for the {n_series} series of {name!r}"
                )
            used = max(step, math.ceil(window * n_series / room))
            end = time.time()
            series = metrics.series(
                name, step=used, fn=fn, start=end - window, end=end, dag_ids=allowed, max_points=max_points
            )
        return {
            "name": name,
            "fn": fn,
            "step": used,
            "series": [{"labels": s.labels, "points": s.points} for s in series],
        }

    return app
