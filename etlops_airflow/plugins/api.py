"""The etlops API and the Operations page, mounted by the plugin at ``/etlops`` on Airflow's
API server.

Every route sits behind Airflow's auth manager (plugin view access), the OpenAPI schema
(``/openapi.json``), the page (``/ui/``) and its assets included: FastAPI's own schema and docs
routes, which would skip the app's dependencies, are turned off. DAG-scoped data is filtered in
SQL to the DAGs the user may read, before any ``LIMIT``: task outcomes, DAG runs, profiles and
maintenance runs by their DAG, metric series and alerts by their ``dag_id`` label (those without
one are visible to all). Changes (acknowledge, silence) need edit rights on the DAGs concerned.
"""

# No ``from __future__ import annotations`` here: FastAPI resolves the route annotations at runtime.
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_view
from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from etlops_airflow.exceptions import ConfigError, StoreError, ValidationError

MAX_SERIES_POINTS = 10_000  # buckets x series in one /api/metrics/{name} answer
MAX_WINDOW_S = 366 * 86400
MAX_METRIC_NAMES = 20  # metrics with history in one /api/metrics answer
DEFAULT_METRIC_NAMES = 6  # ... when none is named


class DataResponse(Response):
    """JSON written straight from plain dicts, lists and numbers (what the routes build): no
    per-value walk through FastAPI's encoder, which costs more than the query on a big answer."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


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


def _step_for(window: float, step: float, n_series: int, max_points: int, name: str) -> float:
    """``step`` raised so that ``n_series`` series over ``window`` fit in ``max_points`` buckets;
    past an hour, whole hours (which the rollups answer)."""
    room = max_points - 2 * n_series  # each series may get two partial buckets at the edges
    if room <= 0:
        raise ValidationError("max_points", max_points, f"too small for the {n_series} series of {name!r}")
    used = max(step, math.ceil(window * n_series / room))
    if used > step and used > 3600:
        used = math.ceil(used / 3600) * 3600
    return float(used)


def _label_filter(items: list[str] | None) -> dict[str, str]:
    """``label=key:value`` parameters as a label filter (label names hold no ``:``)."""
    labels: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise ValidationError("label", item, "expected name:value, e.g. table:orders")
        labels[key] = value
    return labels


def _time_span(window: float, end: float | None) -> tuple[float, float]:
    now = time.time()
    if end is not None and (not math.isfinite(end) or end <= 0):
        raise ValidationError("end", end, "expected seconds since the epoch")
    return (now if end is None else end) - window, now if end is None else end


def _session_json(stored: Any) -> dict[str, Any]:
    report = stored.report
    return {
        "id": stored.id,
        "recorded_at": stored.recorded_at,
        "dag_id": report.key.dag_id,
        "task_id": report.key.task_id,
        "run_id": report.key.run_id,
        "map_index": report.key.map_index,
        "try_number": report.key.try_number,
        "started_at": report.started_at,
        "duration_s": report.duration_s,
        "peak_rss_bytes": report.peak_rss_bytes,
        "peak_cpu_percent": report.peak_cpu_percent,
        "records_per_s": report.records_per_s,
        "stages": [asdict(stage) for stage in report.stages],
        "findings": [asdict(finding) for finding in report.findings],
        "recommendations": list(report.recommendations),
    }


def _maintenance_json(stored: Any) -> dict[str, Any]:
    run = stored.run
    return {
        "id": stored.id,
        "recorded_at": stored.recorded_at,
        "task": run.task,
        "target": run.target,
        "started_at": run.started_at,
        "duration_s": run.duration_s,
        "dry_run": run.dry_run,
        "ok": not run.errors,
        "looked_at": run.looked_at,
        "changed": run.changed,
        "freed_bytes": run.freed_bytes,
        "freed_rows": run.freed_rows,
        "freed_files": run.freed_files,
        "errors": list(run.errors),
        "details": run.details,
        "dag_id": run.dag_id,
        "task_id": run.task_id,
        "run_id": run.run_id,
    }


def _migration_run_json(run: Any) -> dict[str, Any]:
    fields = ("id", "pipeline", "from_version", "to_version", "direction", "state", "owner")
    return {name: getattr(run, name) for name in fields} | {
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "error": run.error,
        "dag_id": run.dag_id,
        "dag_run_id": run.dag_run_id,
        "migrations": list(run.migrations),
    }


def _step_json(step: Any) -> dict[str, Any]:
    fields = ("run_id", "seq", "migration", "phase", "index", "kind", "state", "started_at", "ended_at")
    return {name: getattr(step, name) for name in fields} | {
        "description": getattr(step, "description", None),
        "sql": list(step.sql),
        "error": step.error,
        "detail": step.detail,
    }


def _disk_path() -> str:
    import os

    from airflow.configuration import AIRFLOW_HOME

    return os.path.abspath(AIRFLOW_HOME)


def create_app(store_factory: Callable[[], Any] | None = None) -> FastAPI:
    from etlops_airflow.plugins.page import CSP, IMMUTABLE, REVALIDATE, load_assets
    from etlops_airflow.plugins.system import SystemSampler
    from etlops_airflow.runtime import get_store

    store = store_factory or get_store
    page_html, assets = load_assets()
    sampler = SystemSampler(_disk_path())

    app = FastAPI(
        title="etlops-airflow",
        description=(
            "Operations data of etlops-airflow: metrics, pipelines, health, alerts, profiles, "
            "maintenance and migrations, behind Airflow's auth."
        ),
        dependencies=[Depends(requires_access_view(AccessView.PLUGINS))],
        # FastAPI's own schema and docs routes skip the app's dependencies: served below instead.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_schema() -> JSONResponse:
        """The OpenAPI schema of this API (the page's API view renders it)."""
        return JSONResponse(app.openapi())

    # -- the Operations page --------------------------------------------------------------------

    @app.get("/ui", include_in_schema=False)
    def page_without_slash() -> RedirectResponse:
        # Relative, so that it holds under any [api] base_url prefix and proxy.
        return RedirectResponse("ui/", status_code=307)

    @app.get("/ui/", include_in_schema=False)
    def page() -> Response:
        return Response(
            page_html,
            media_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin",
            },
        )

    @app.get("/ui/static/{name}", include_in_schema=False)
    def static_asset(request: Request, name: str, v: str | None = None) -> Response:
        asset = assets.get(name)
        if asset is None:
            raise HTTPException(status_code=404, detail=f"no asset {name!r}")
        headers = {
            "ETag": asset.etag,
            "Cache-Control": IMMUTABLE if v == asset.version else REVALIDATE,
            "X-Content-Type-Options": "nosniff",
        }
        if asset.etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    # -- the API ----------------------------------------------------------------------------------

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
    def metrics(
        user: GetUserDep,
        name: Annotated[list[str] | None, Query()] = None,
        label: Annotated[list[str] | None, Query()] = None,
        window: Annotated[float, Query(gt=0, le=MAX_WINDOW_S)] = 6 * 3600,
        end: float | None = None,
        step: Annotated[float, Query(gt=0)] = 60,
        fn: str = "avg",
        max_points: Annotated[int, Query(ge=10, le=MAX_SERIES_POINTS)] = 600,
    ) -> DataResponse:
        """Every visible metric name, and for the named metrics (the first six when none is
        named) each matching series' current value (its newest point up to ``end``) and history
        over ``[end - window, end)``, bucketed in SQL (rollups for whole hours and days).
        ``label=name:value`` (repeatable) keeps the series whose labels include those. ``step``
        is raised so that each metric's answer holds at most ``max_points`` points."""
        allowed = _authorized_dag_ids(user)
        with _answers():
            labels = _label_filter(label)
            start, stop = _time_span(window, end)
            metrics_store = store().metrics
            names = metrics_store.names(dag_ids=allowed)
            if name:
                wanted = list(dict.fromkeys(name))
                if len(wanted) > MAX_METRIC_NAMES:
                    raise ValidationError("name", len(wanted), f"at most {MAX_METRIC_NAMES} names at once")
            else:
                wanted = names[:DEFAULT_METRIC_NAMES]
            current: dict[tuple[str, str], dict[str, Any]] = {}
            for latest in metrics_store.latest(wanted, labels=labels, before=end, dag_ids=allowed):
                key = json.dumps(latest.labels, sort_keys=True)
                current[(latest.name, key)] = {"ts": latest.ts, "value": latest.value}
            history = metrics_store.history(
                wanted,
                step_for=lambda metric, n_series: _step_for(window, step, n_series, max_points, metric),
                fn=fn,
                labels=labels,
                start=start,
                end=stop,
                dag_ids=allowed,
                max_points=max_points,
            )
            answer = []
            for metric in wanted:
                used, series = history[metric]
                by_labels = {json.dumps(s.labels, sort_keys=True): s for s in series}
                keys = [key for owner, key in current if owner == metric]
                rows = []
                for key in sorted(set(keys) | set(by_labels)):
                    found = by_labels.get(key)
                    rows.append(
                        {
                            "labels": json.loads(key),
                            "current": current.get((metric, key)),
                            "points": found.points if found else [],
                        }
                    )
                answer.append({"name": metric, "step": used, "series": rows})
        return DataResponse(
            {"names": names, "start": start, "end": stop, "fn": fn, "labels": labels, "metrics": answer}
        )

    @app.get("/api/metrics/{name}")
    def metric_series(
        user: GetUserDep,
        name: str,
        window: Annotated[float, Query(gt=0, le=MAX_WINDOW_S)] = 3600,
        step: Annotated[float, Query(gt=0)] = 60,
        fn: str = "avg",
        max_points: Annotated[int, Query(ge=10, le=MAX_SERIES_POINTS)] = 2000,
    ) -> DataResponse:
        """Bucketed series per label set. ``step`` is raised when ``window / step`` times the
        number of series would exceed ``max_points``; the answer says the step used."""
        allowed = _authorized_dag_ids(user)
        with _answers():
            metrics = store().metrics
            used = _step_for(window, step, metrics.count_series(name, dag_ids=allowed), max_points, name)
            end = time.time()
            series = metrics.series(
                name, step=used, fn=fn, start=end - window, end=end, dag_ids=allowed, max_points=max_points
            )
        return DataResponse(
            {
                "name": name,
                "fn": fn,
                "step": used,
                "series": [{"labels": s.labels, "points": s.points} for s in series],
            }
        )

    @app.get("/api/alerts")
    def alerts(
        user: GetUserDep,
        state: Annotated[list[str] | None, Query()] = None,
        rule_id: str | None = None,
        resolved_since: float | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> DataResponse:
        """Alerts (pending, firing, resolved) of the DAGs the user may read, and active silences.
        ``resolved_since`` (seconds since the epoch) leaves out alerts resolved before then."""
        allowed = _authorized_dag_ids(user)
        with _answers():
            if state is not None:
                for item in state:
                    if item not in ("pending", "firing", "resolved"):
                        raise ValidationError("state", item, "expected pending, firing or resolved")
            found = store().alerts.alerts(
                states=state, rule_id=rule_id, dag_ids=allowed, limit=limit, resolved_since=resolved_since
            )
            # A silence naming a DAG the user may not read is not shown (it would reveal the DAG).
            silences = [
                s for s in store().alerts.silences() if set(s.matchers.get("dag_id", ())) <= set(allowed)
            ]
        counts: dict[str, dict[str, int]] = {}
        for a in found:
            per_state = counts.setdefault(a.labels.get("severity") or "none", {})
            per_state[a.state] = per_state.get(a.state, 0) + 1
        return DataResponse(
            {
                "alerts": [_alert_json(a) for a in found],
                "silences": [_silence_json(s) for s in silences],
                "counts": counts,
            }
        )

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

    @app.get("/api/pipelines")
    def pipelines(
        user: GetUserDep,
        window: Annotated[float, Query(gt=0, le=MAX_WINDOW_S)] = 86400,
        runs: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> DataResponse:
        """Per DAG the user may read that has anything recorded, or a run in progress: its last
        ``runs`` finished runs (state, duration), runs and task tries per state in the window
        (by end time; whole days or hours from the rollups when they hold them),
        the records its profiled tasks processed and their throughput, the stage it last reached
        and, from Airflow, the runs in progress with the tasks running in them."""
        from etlops_airflow.plugins.airflow_state import active_runs

        allowed = _authorized_dag_ids(user)
        since = time.time() - window
        with _answers():
            s = store()
            latest = s.dag_runs.latest_per_dag(per_dag=runs, dag_ids=allowed)
            counts = s.maintenance.pipeline_counts(since, time.time(), dag_ids=allowed)
            records = s.profiles.pipeline_records(since=since, dag_ids=allowed)
        active = active_runs(allowed)
        answer = []
        for dag_id in sorted(set(latest) | set(counts) | set(records) | set(active)):
            counted = counts.get(dag_id)
            profiled = records.get(dag_id)
            last = latest.get(dag_id, [])
            answer.append(
                {
                    "dag_id": dag_id,
                    "last_state": last[0].state if last else None,
                    "last_runs": [asdict(run) for run in last],
                    "runs": {
                        "runs": sum(counted.runs.values()) if counted else 0,
                        "success": counted.runs.get("success", 0) if counted else 0,
                        "failed": counted.runs.get("failed", 0) if counted else 0,
                        "avg_duration_s": counted.avg_duration_s if counted else None,
                        "max_duration_s": counted.duration_max if counted else None,
                    },
                    "task_tries": dict(counted.tries) if counted else {},
                    "records": None if profiled is None else profiled.records,
                    "records_per_s": None if profiled is None else profiled.records_per_s,
                    "profiled_sessions": 0 if profiled is None else profiled.sessions,
                    "last_stage": None
                    if profiled is None
                    else {
                        "task_id": profiled.last_task_id,
                        "run_id": profiled.last_run_id,
                        "stage": profiled.last_stage,
                        "ended_at": profiled.last_stage_end,
                    },
                    "active_runs": active.get(dag_id, []),
                }
            )
        return DataResponse({"window": window, "since": since, "pipelines": answer})

    @app.get("/api/health")
    def health(user: GetUserDep) -> DataResponse:
        """The newest health-check verdict on each component (from the maintenance health-check
        runs in the store) and live figures of the API server's machine."""
        allowed = set(_authorized_dag_ids(user))
        with _answers():
            records = store().maintenance.last_health()
        components = []
        for record in records.values():
            readable = record.dag_id is None or record.dag_id in allowed
            components.append(
                {
                    "component": record.component,
                    "status": record.status,
                    "reasons": list(record.reasons),
                    "latency_s": record.latency_s,
                    "figures": record.figures,
                    "checked_at": record.checked_at,
                    # The DAG that checked, only for users who may read it.
                    "dag_id": record.dag_id if readable else None,
                    "task_id": record.task_id if readable else None,
                }
            )
        return DataResponse({"components": components, "system": sampler.figures()})

    @app.get("/api/profiles")
    def profiles(
        user: GetUserDep,
        dag_id: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        session_id: Annotated[int | None, Query(ge=1)] = None,
        since: float | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 20,
    ) -> DataResponse:
        """Profiling sessions, newest first, each with its stages (a waterfall) and findings;
        or the one ``session_id``. With figures over the same sessions (findings per kind)."""
        allowed = _authorized_dag_ids(user)
        if dag_id is not None and dag_id not in allowed:
            raise HTTPException(status_code=403, detail=f"no read access to DAG {dag_id!r}")
        with _answers():
            s = store()
            if session_id is not None:
                found = s.profiles.get(session_id, dag_ids=allowed)
                if found is None:
                    raise HTTPException(status_code=404, detail=f"no profile session {session_id!r}")
                sessions = [found]
            else:
                sessions = s.profiles.sessions(
                    dag_id=dag_id, task_id=task_id, run_id=run_id, since=since, dag_ids=allowed, limit=limit
                )
            stats = s.profiles.stats(since=since, dag_ids=[dag_id] if dag_id else allowed)
        return DataResponse(
            {
                "sessions": [_session_json(x) for x in sessions],
                "totals": asdict(stats.overall),
            }
        )

    @app.get("/api/maintenance")
    def maintenance(
        user: GetUserDep,
        task: str | None = None,
        since: float | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> DataResponse:
        """Maintenance runs, newest first (of the DAGs the user may read, and runs started
        elsewhere), and per task type what the real runs freed."""
        allowed = _authorized_dag_ids(user)
        with _answers():
            s = store()
            found = s.maintenance.runs(task, since, dag_ids=allowed, limit=limit)
            totals = s.maintenance.totals(since=since, dag_ids=allowed)
        return DataResponse(
            {"runs": [_maintenance_json(r) for r in found], "totals": [asdict(t) for t in totals]}
        )

    @app.get("/api/migrations")
    def migrations(
        user: GetUserDep,
        pipeline: str | None = None,
        run_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> DataResponse:
        """The migration ledger, newest first (runs started from DAGs the user may read, and
        runs started outside any DAG), each pipeline's current version, and with ``run_id`` the
        step log of that run in execution order."""
        allowed = _authorized_dag_ids(user)
        with _answers():
            ledger = store().migrations
            runs = ledger.runs(pipeline, dag_ids=allowed, limit=limit)
            versions = ledger.versions()
            steps = None
            if run_id is not None:
                run = ledger.get_run(run_id)
                if run is None or (run.dag_id is not None and run.dag_id not in allowed):
                    raise HTTPException(status_code=404, detail=f"no migration run {run_id!r}")
                steps = [_step_json(step) for step in ledger.steps(run_id)]
        return DataResponse(
            {
                "runs": [_migration_run_json(r) for r in runs],
                "versions": [
                    {
                        "pipeline": v.pipeline,
                        "version": v.version,
                        "updated_at": v.updated_at,
                        "run_id": v.run_id,
                    }
                    for v in versions
                ],
                "steps": steps,
            }
        )

    return app
