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
from fastapi import Body, Depends, FastAPI, HTTPException, Query

from etlops_airflow.exceptions import ConfigError, StoreError, ValidationError

MAX_SERIES_POINTS = 10_000  # buckets x series in one /api/metrics/{name} answer


def _may_edit(user: Any, dag_ids: list[str]) -> bool:
    """Changes to alerts need edit rights on their DAGs (on DAGs in general when none is named)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    manager = get_auth_manager()
    if not dag_ids:
        return bool(manager.is_authorized_dag(method="PUT", user=user))
    return all(manager.is_authorized_dag(method="PUT", details=DagDetails(id=d), user=user) for d in dag_ids)


def _require_edit(user: Any, dag_ids: list[str], what: str) -> None:
    if not _may_edit(user, dag_ids):
        scope = f"DAG(s) {', '.join(map(repr, dag_ids))}" if dag_ids else "DAGs"
        raise HTTPException(status_code=403, detail=f"{what} needs edit rights on {scope}")


def _alert_json(alert: Any) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "rule_id": alert.rule_id,
        "state": alert.state,
        "severity": alert.labels.get("severity"),
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "value": alert.value,
        "pending_since": alert.pending_since,
        "active_since": alert.active_since,
        "resolved_at": alert.resolved_at,
        "last_eval_at": alert.last_eval_at,
        "acked_by": alert.acked_by,
        "acked_at": alert.acked_at,
    }


def _silence_json(silence: Any) -> dict[str, Any]:
    return {
        "id": silence.id,
        "matchers": {k: list(v) for k, v in silence.matchers.items()},
        "starts_at": silence.starts_at,
        "ends_at": silence.ends_at,
        "created_by": silence.created_by,
        "comment": silence.comment,
    }


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
            if used > step and used > 3600:  # raised past an hour: whole hours, which the rollups answer
                used = math.ceil(used / 3600) * 3600
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

    @app.get("/api/alerts")
    def alerts(
        user: GetUserDep,
        state: Annotated[list[str] | None, Query()] = None,
        rule_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> dict[str, Any]:
        """Alerts (pending, firing, resolved) of the DAGs the user may read, and active silences."""
        allowed = _authorized_dag_ids(user)
        with _answers():
            if state is not None:
                for item in state:
                    if item not in ("pending", "firing", "resolved"):
                        raise ValidationError("state", item, "expected pending, firing or resolved")
            found = store().alerts.alerts(states=state, rule_id=rule_id, dag_ids=allowed, limit=limit)
            # A silence naming a DAG the user may not read is not shown (it would reveal the DAG).
            silences = [
                s for s in store().alerts.silences() if set(s.matchers.get("dag_id", ())) <= set(allowed)
            ]
        return {"alerts": [_alert_json(a) for a in found], "silences": [_silence_json(s) for s in silences]}

    @app.post("/api/alerts/{fingerprint}/ack")
    def acknowledge(user: GetUserDep, fingerprint: str) -> dict[str, Any]:
        """Acknowledge a firing alert: no more repeats; its resolve notice is still sent."""
        with _answers():
            alert = store().alerts.get(fingerprint)
            if alert is None or (
                alert.labels.get("dag_id") and alert.labels["dag_id"] not in _authorized_dag_ids(user)
            ):
                raise HTTPException(status_code=404, detail=f"no alert {fingerprint!r}")
            dag_id = alert.labels.get("dag_id")
            _require_edit(user, [dag_id] if dag_id else [], "acknowledging an alert")
            acked = store().alerts.acknowledge(fingerprint, user.get_name())
        return _alert_json(acked)

    @app.post("/api/alerts/silences", status_code=201)
    def silence(
        user: GetUserDep,
        matchers: Annotated[dict[str, str | list[str]], Body()],
        duration: Annotated[str, Body()] = "2h",
        comment: Annotated[str, Body(max_length=2000)] = "",
    ) -> dict[str, Any]:
        """Mute alerts whose labels match every matcher (rule_id, severity or any label)."""
        from etlops_airflow.core.durations import parse_duration

        with _answers():
            dag_ids = matchers.get("dag_id", [])
            dag_ids = [dag_ids] if isinstance(dag_ids, str) else list(dag_ids)
            _require_edit(user, dag_ids, "silencing alerts")  # who may, before what is wrong
            seconds = parse_duration(duration, lambda reason: ValidationError("duration", duration, reason))
            made = store().alerts.silence(
                matchers, duration_s=seconds, created_by=user.get_name(), comment=comment
            )
        return _silence_json(made)

    @app.delete("/api/alerts/silences/{silence_id}")
    def unsilence(user: GetUserDep, silence_id: str) -> dict[str, Any]:
        """End a silence now."""
        with _answers():
            found = store().alerts.silence_by_id(silence_id)
            if found is None or not set(found.matchers.get("dag_id", ())) <= set(_authorized_dag_ids(user)):
                raise HTTPException(status_code=404, detail=f"no silence {silence_id!r}")
            _require_edit(user, list(found.matchers.get("dag_id", [])), "ending a silence")
            if not store().alerts.unsilence(silence_id):
                raise HTTPException(status_code=409, detail=f"silence {silence_id!r} is already over")
        return {"id": silence_id, "ended": True}

    return app
