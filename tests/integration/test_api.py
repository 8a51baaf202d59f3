"""The plugin's API on Airflow's real API server app: behind Airflow's auth, DAG-filtered in SQL.

The module runs ``create_app("core")`` with a test auth manager (``tests/fixtures/auth.py``):
SimpleAuthManager, except that the user ``partial`` may read only ``dag_a`` and ``dag_c``.
Other users may read the DAGs registered in Airflow's metadata DB (here the demo DAG,
``etlops_demo_pipeline``), as with SimpleAuthManager.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etlops_airflow.core.models import MetricPoint, TaskOutcome
from etlops_airflow.store import Store
from tests.fixtures.auth import DOTTED_PATH, PARTIAL_DAG_IDS, PARTIAL_USER

REPO = Path(__file__).resolve().parents[2]
DEMO_DAG = "etlops_demo_pipeline"  # registered in Airflow; readable by admin, not by "partial"
MAX_WINDOW = 366 * 86400

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(airflow_db: str) -> Iterator[Any]:
    """A TestClient on Airflow's core API app, with the test auth manager for this module only."""
    # Register the demo DAG in the metadata DB, as the DAG processor would.
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags")}
    subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "reserialize"],
        env=env,
        cwd=airflow_db,
        check=True,
        capture_output=True,
        timeout=300,
    )
    from airflow.api_fastapi import app as airflow_app
    from fastapi.testclient import TestClient

    from tests.fixtures.auth import PartialDagAuthManager

    # Airflow reads [core] auth_manager when the app is created and keeps the instance in a
    # process-wide singleton, which it reuses while it is an instance of the configured class:
    # our subclass would outlive this module unless the singleton is dropped afterwards.
    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW__CORE__AUTH_MANAGER", DOTTED_PATH)
    airflow_app.purge_cached_app()
    try:
        with TestClient(airflow_app.create_app("core")) as client:
            assert type(airflow_app.get_auth_manager()) is PartialDagAuthManager
            yield client
    finally:
        patch.undo()
        airflow_app.purge_cached_app()


def _token(username: str, role: str | None) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role)))


def _as(username: str, role: str | None = "viewer") -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(username, role)}"}


ADMIN = ("admin", "admin")
PARTIAL = (PARTIAL_USER, "viewer")


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Store]:
    """An empty store, configured as the ``[etlops]`` store the API reads."""
    from etlops_airflow import runtime

    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", f"sqlite:///{tmp_path / 'api.db'}")
    runtime.reset()
    yield runtime.get_store()
    runtime.reset()


# -- every route is behind Airflow's auth --------------------------------------------------------


def _etlops_routes(api: Any) -> list[tuple[str, str]]:
    """(method, path) of every route of the etlops app as mounted on Airflow's app."""
    from fastapi import FastAPI
    from starlette.routing import Mount

    (mount,) = [r for r in api.app.routes if isinstance(r, Mount) and r.path == "/etlops"]
    app = mount.app
    if not isinstance(app, FastAPI):  # the plugin's LazyASGIApp builds it on first use
        app = app._get()
    assert isinstance(app, FastAPI)
    # FastAPI's own schema and docs routes would skip the app's dependencies: they are off, and
    # the schema is one of the app's routes. Every route, including any added later, is checked.
    assert (app.openapi_url, app.docs_url, app.redoc_url) == (None, None, None)
    found = []
    for route in app.routes:
        path = getattr(route, "path", None)
        assert isinstance(path, str), route
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            key = (method, "/etlops" + re.sub(r"\{[^}]+\}", "probe", path))
            # A route that reads a body needs a valid probe body, or its answers below would be
            # FastAPI's 422 rather than auth's or the store's.
            assert getattr(route, "body_field", None) is None or key in PROBE_BODIES, key
            found.append(key)
    return found


# A valid body for every route that reads one (checked by _etlops_routes).
PROBE_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/etlops/api/alerts/silences"): {"matchers": {"rule_id": "probe"}, "duration": "1m"},
}


def _forged_admin_token() -> str:
    """A well-formed admin token signed with another key."""
    import jwt

    real = _token(*ADMIN)
    header = jwt.get_unverified_header(real)
    claims = jwt.decode(real, options={"verify_signature": False})
    return str(jwt.encode(claims, "not-the-api-secret-" + "x" * 48, algorithm=header["alg"]))


# Routes that answer without reading the store: the page, its assets and the schema.
STORE_FREE = {"/etlops/openapi.json", "/etlops/ui", "/etlops/ui/", "/etlops/ui/static/probe"}


def test_every_route_refuses_anonymous_and_bad_tokens(api: Any, store: Store) -> None:
    routes = _etlops_routes(api)
    assert ("GET", "/etlops/api/outcomes") in routes and ("GET", "/etlops/api/store") in routes
    # The schema, the page and its assets are in the list too.
    assert {("GET", path) for path in STORE_FREE} <= set(routes)
    for path in ("pipelines", "health", "profiles", "maintenance", "migrations", "metrics"):
        assert ("GET", f"/etlops/api/{path}") in routes, path
    # The alert routes, changes included, are in the list (so every check below covers them).
    assert {
        ("GET", "/etlops/api/alerts"),
        ("POST", "/etlops/api/alerts/probe/ack"),
        ("POST", "/etlops/api/alerts/silences"),
        ("DELETE", "/etlops/api/alerts/silences/probe"),
    } <= set(routes)
    bad_tokens = {"garbage": "not-a-token", "forged": _forged_admin_token()}
    for method, path in routes:
        body = PROBE_BODIES.get((method, path))
        assert api.request(method, path, json=body).status_code == 401, (method, path)
        for kind, token in bad_tokens.items():
            response = api.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 403, (kind, method, path, response.text)
        # Authenticated but without plugin access (a user with no role): refused too.
        response = api.request(method, path, json=body, headers=_as("nobody", None))
        assert response.status_code == 403, (method, path)
    # The same requests with a valid token are answered (so the refusals above are auth's).
    assert api.get("/etlops/api/store", headers=_as(*ADMIN)).status_code == 200
    for method, path in routes:
        response = api.request(method, path, json=PROBE_BODIES.get((method, path)), headers=_as(*ADMIN))
        assert response.status_code not in (401, 403, 422), (method, path, response.text)
    assert [s["matchers"] for s in _alerts(api, ADMIN)["silences"]] == [{"rule_id": ["probe"]}]


def test_every_route_answers_a_misconfigured_store_naming_the_option(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etlops_airflow import runtime

    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", "not-a-url")
    runtime.reset()
    try:
        for method, path in _etlops_routes(api):
            if path in STORE_FREE:
                continue
            body = PROBE_BODIES.get((method, path))
            response = api.request(method, path, json=body, headers=_as(*ADMIN))  # a 500 would raise
            assert response.status_code == 503, (method, path, response.text)
            assert "store_url" in response.json()["detail"], (method, path)
    finally:
        runtime.reset()


# -- outcomes: filtered to readable DAGs before LIMIT ---------------------------------------------


def test_outcomes_are_filtered_before_limit(api: Any, store: Store) -> None:
    now = time.time()
    mine = [TaskOutcome("dag_a", "load", f"run_a{i}", 1, "success", end_ts=now - 1000 + i) for i in range(5)]
    newer_forbidden = [
        TaskOutcome(DEMO_DAG, "load", f"run_d{i}", 1, "failed", end_ts=now - 100 + i) for i in range(50)
    ]
    for outcome in mine + newer_forbidden:
        store.outcomes.record(outcome)

    response = api.get("/etlops/api/outcomes?limit=5", headers=_as(*PARTIAL))
    assert response.status_code == 200, response.text
    assert [(r["dag_id"], r["run_id"]) for r in response.json()] == [
        ("dag_a", o.run_id) for o in reversed(mine)
    ]
    # The forbidden rows are there and newest: a user who may read that DAG gets them first.
    response = api.get("/etlops/api/outcomes?limit=5", headers=_as(*ADMIN))
    assert [r["dag_id"] for r in response.json()] == [DEMO_DAG] * 5

    forbidden = api.get(f"/etlops/api/outcomes?dag_id={DEMO_DAG}", headers=_as(*PARTIAL))
    assert forbidden.status_code == 403, forbidden.text
    assert DEMO_DAG in forbidden.json()["detail"]
    allowed = api.get("/etlops/api/outcomes?dag_id=dag_a&limit=3", headers=_as(*PARTIAL))
    assert [r["run_id"] for r in allowed.json()] == ["run_a4", "run_a3", "run_a2"]


# -- metrics: series with a dag_id label only for users who may read that DAG --------------------


def test_metric_series_follow_dag_access(api: Any, store: Store) -> None:
    ts = time.time() - 30
    assert {"dag_a", "dag_c"} == PARTIAL_DAG_IDS
    store.metrics.write(
        [
            MetricPoint("rows_loaded", 1, {"dag_id": "dag_a", "table": "orders"}, ts),
            MetricPoint("rows_loaded", 2, {"dag_id": DEMO_DAG, "table": "orders"}, ts),
            MetricPoint("demo_only", 3, {"dag_id": DEMO_DAG}, ts),
            MetricPoint("dag_c_only", 4, {"dag_id": "dag_c"}, ts),  # dag_c is not in Airflow
            MetricPoint("host_cpu", 5, {"host": "w1"}, ts),  # no dag_id: visible to all
        ]
    )

    def names(user: tuple[str, str]) -> list[str]:
        response = api.get("/etlops/api/metrics", headers=_as(*user))
        assert response.status_code == 200, response.text
        return list(response.json()["names"])

    def series(user: tuple[str, str], name: str) -> list[tuple[dict[str, str], list[float]]]:
        response = api.get(f"/etlops/api/metrics/{name}?window=600&step=600&fn=sum", headers=_as(*user))
        assert response.status_code == 200, response.text
        return [(s["labels"], [p[1] for p in s["points"]]) for s in response.json()["series"]]

    assert names(PARTIAL) == ["dag_c_only", "host_cpu", "rows_loaded"]
    assert names(ADMIN) == ["demo_only", "host_cpu", "rows_loaded"]

    assert series(PARTIAL, "rows_loaded") == [({"dag_id": "dag_a", "table": "orders"}, [1.0])]
    assert series(ADMIN, "rows_loaded") == [({"dag_id": DEMO_DAG, "table": "orders"}, [2.0])]
    assert series(PARTIAL, "demo_only") == []
    assert series(PARTIAL, "dag_c_only") == [({"dag_id": "dag_c"}, [4.0])]
    assert series(ADMIN, "dag_c_only") == []
    for user in (PARTIAL, ADMIN):
        assert series(user, "host_cpu") == [({"host": "w1"}, [5.0])]


# -- metrics: the number of buckets is bounded ----------------------------------------------------


@pytest.mark.parametrize("max_points", [None, 100])
def test_metric_buckets_are_bounded(api: Any, store: Store, max_points: int | None) -> None:
    n_series, per_series = 3, 1500
    end = time.time()
    spacing = (MAX_WINDOW - 60) / per_series
    store.metrics.write(
        [
            MetricPoint("busy", float(i), {"worker": f"w{s}"}, end - 30 - i * spacing)
            for s in range(n_series)
            for i in range(per_series)
        ]
    )
    query = f"window={MAX_WINDOW}&step=0.001" + (f"&max_points={max_points}" if max_points else "")
    response = api.get(f"/etlops/api/metrics/busy?{query}", headers=_as(*ADMIN))
    assert response.status_code == 200, response.text
    body = response.json()
    limit = max_points or 2000  # the route's default
    total = sum(len(s["points"]) for s in body["series"])
    assert len(body["series"]) == n_series
    assert limit // 2 < total <= limit, total  # the data fill most buckets: the bound is what holds
    step = body["step"]
    assert step > 0.001
    # Raised enough that every bucket the window touches (at most ceil(window / step) + 1 per
    # series) fits in max_points, and no more than needed (about window x series / max_points).
    assert n_series * (math.ceil(MAX_WINDOW / step) + 1) <= limit
    assert step <= 2 * MAX_WINDOW * n_series / limit


def test_unknown_bucket_function_is_a_400_naming_fn(api: Any, store: Store) -> None:
    store.metrics.write([MetricPoint("rows_loaded", 10, {"table": "orders"}, time.time() - 30)])
    response = api.get("/etlops/api/metrics/rows_loaded?fn=median", headers=_as(*ADMIN))
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("fn 'median'")


def test_too_many_series_for_max_points_is_a_400_naming_max_points(api: Any, store: Store) -> None:
    ts = time.time() - 30
    store.metrics.write([MetricPoint("busy", 1, {"worker": f"w{i}"}, ts) for i in range(5)])
    response = api.get("/etlops/api/metrics/busy?max_points=10", headers=_as(*ADMIN))
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("max_points 10:")
    assert api.get("/etlops/api/metrics/busy?max_points=15", headers=_as(*ADMIN)).status_code == 200


# -- alerts: read filtered to readable DAGs; changes need edit rights ------------------------------

VIEWER = ("viewer", "viewer")  # may read every DAG, edit none
PARTIAL_EDITOR = (PARTIAL_USER, "user")  # may read and edit dag_a and dag_c only
UNKNOWN_FP = "0" * 24


def _alerts(api: Any, user: tuple[str, str], query: str = "") -> dict[str, Any]:
    response = api.get(f"/etlops/api/alerts{query}", headers=_as(*user))
    assert response.status_code == 200, response.text
    return dict(response.json())


def _fingerprints(api: Any, user: tuple[str, str], query: str = "") -> set[str]:
    return {a["fingerprint"] for a in _alerts(api, user, query)["alerts"]}


def _seed_alerts(store: Store) -> dict[str, str]:
    """Three firing alerts: of dag_a (partial may read it), of the demo DAG (partial may not),
    and one without a dag_id (everyone may read it). Returns their fingerprints."""
    now = time.time()

    def fire(rule_id: str, **labels: str) -> str:
        alert, started = store.alerts.raise_alert(
            rule_id,
            {"rule_id": rule_id, "severity": "high", **labels},
            {"summary": f"{rule_id} breached"},
            now=now,
        )
        assert started and alert.state == "firing"
        return alert.fingerprint

    return {
        "mine": fire("rows-low", dag_id="dag_a", table="orders"),
        "forbidden": fire("rows-low", dag_id=DEMO_DAG, table="orders"),
        "global": fire("disk-full", host="w1"),
    }


def _resolve(store: Store, fp: str) -> None:
    """Resolve a stored alert the way an evaluation does."""
    from dataclasses import replace

    alert = store.alerts.get(fp)
    assert alert is not None
    now = time.time()
    resolved = replace(alert, state="resolved", resolved_at=now, last_eval_at=now)
    store.alerts.commit_evaluation([resolved], [], [], {}, [], now=now)


def _notes(store: Store, fp: str) -> list[str | None]:
    from sqlalchemy import select

    from etlops_airflow.store import schema

    tr = schema.alert_transitions
    with store.db.read("test: transition notes") as conn:
        return [
            r.note for r in conn.execute(select(tr.c.note).where(tr.c.fingerprint == fp).order_by(tr.c.id))
        ]


def test_alerts_are_filtered_to_readable_dags(api: Any, store: Store) -> None:
    fps = _seed_alerts(store)
    partial = _alerts(api, PARTIAL)
    assert {a["fingerprint"] for a in partial["alerts"]} == {fps["mine"], fps["global"]}
    assert DEMO_DAG not in json.dumps(partial)
    mine = next(a for a in partial["alerts"] if a["fingerprint"] == fps["mine"])
    assert mine["labels"] == {"rule_id": "rows-low", "severity": "high", "dag_id": "dag_a", "table": "orders"}
    assert (mine["rule_id"], mine["state"], mine["severity"]) == ("rows-low", "firing", "high")
    assert mine["annotations"] == {"summary": "rows-low breached"}
    assert mine["acked_by"] is None and mine["active_since"] is not None
    # dag_a is not in Airflow's metadata DB: other users see the demo DAG's alert instead.
    assert _fingerprints(api, ADMIN) == {fps["forbidden"], fps["global"]}
    assert _fingerprints(api, VIEWER) == {fps["forbidden"], fps["global"]}
    assert _fingerprints(api, PARTIAL, "?rule_id=disk-full") == {fps["global"]}


def test_alerts_state_filter(api: Any, store: Store) -> None:
    fps = _seed_alerts(store)
    _resolve(store, fps["global"])
    assert _fingerprints(api, PARTIAL, "?state=firing") == {fps["mine"]}
    assert _fingerprints(api, PARTIAL, "?state=resolved") == {fps["global"]}
    assert _fingerprints(api, PARTIAL, "?state=pending") == set()
    assert _fingerprints(api, PARTIAL, "?state=firing&state=resolved") == {fps["mine"], fps["global"]}
    response = api.get("/etlops/api/alerts?state=bogus", headers=_as(*PARTIAL))
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("state 'bogus':")


def test_acknowledging_needs_edit_rights(api: Any, store: Store) -> None:
    fps = _seed_alerts(store)
    for fp in (fps["forbidden"], fps["global"]):
        refused = api.post(f"/etlops/api/alerts/{fp}/ack", headers=_as(*VIEWER))
        assert refused.status_code == 403, refused.text
        assert "edit rights" in refused.json()["detail"]
        alert = store.alerts.get(fp)
        assert alert is not None and alert.acked_by is None and alert.acked_at is None
        assert _notes(store, fp) == ["raised by a callback"]  # nothing recorded

    before = time.time()
    response = api.post(f"/etlops/api/alerts/{fps['forbidden']}/ack", headers=_as(*ADMIN))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["fingerprint"], body["state"], body["acked_by"]) == (fps["forbidden"], "firing", "admin")
    assert before <= body["acked_at"] <= time.time()
    stored = store.alerts.get(fps["forbidden"])
    assert stored is not None and stored.acked_by == "admin" and stored.state == "firing"
    assert _notes(store, fps["forbidden"]) == ["raised by a callback", "acknowledged by admin"]
    (shown,) = [a for a in _alerts(api, VIEWER)["alerts"] if a["fingerprint"] == fps["forbidden"]]
    assert shown["acked_by"] == "admin"

    # A user with edit rights on dag_a (not an admin) acknowledges its alert.
    response = api.post(f"/etlops/api/alerts/{fps['mine']}/ack", headers=_as(*PARTIAL_EDITOR))
    assert response.status_code == 200, response.text
    assert response.json()["acked_by"] == PARTIAL_USER
    assert _notes(store, fps["mine"])[-1] == f"acknowledged by {PARTIAL_USER}"


def test_acknowledging_an_unreadable_alert_does_not_reveal_it(api: Any, store: Store) -> None:
    fps = _seed_alerts(store)
    unknown = api.post(f"/etlops/api/alerts/{UNKNOWN_FP}/ack", headers=_as(*PARTIAL_EDITOR))
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["detail"] == f"no alert {UNKNOWN_FP!r}"
    for user in (PARTIAL_EDITOR, PARTIAL):
        hidden = api.post(f"/etlops/api/alerts/{fps['forbidden']}/ack", headers=_as(*user))
        assert hidden.status_code == 404, hidden.text
        # the same answer as for an alert that does not exist
        assert hidden.json()["detail"] == f"no alert {fps['forbidden']!r}"
        assert DEMO_DAG not in hidden.text
    alert = store.alerts.get(fps["forbidden"])
    assert alert is not None and alert.acked_by is None


def test_acknowledging_a_resolved_alert_is_refused(api: Any, store: Store) -> None:
    fps = _seed_alerts(store)
    _resolve(store, fps["forbidden"])
    response = api.post(f"/etlops/api/alerts/{fps['forbidden']}/ack", headers=_as(*ADMIN))
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"fingerprint {fps['forbidden']!r}:") and "resolved, not firing" in detail
    alert = store.alerts.get(fps["forbidden"])
    assert alert is not None and alert.acked_by is None
    response = api.post(f"/etlops/api/alerts/{UNKNOWN_FP}/ack", headers=_as(*ADMIN))
    assert response.status_code == 404 and UNKNOWN_FP in response.json()["detail"], response.text


def _silence(api: Any, user: tuple[str, str], matchers: dict[str, Any], **extra: Any) -> Any:
    return api.post("/etlops/api/alerts/silences", headers=_as(*user), json={"matchers": matchers, **extra})


def test_silence_is_created_and_ended(api: Any, store: Store) -> None:
    before = time.time()
    response = _silence(
        api, ADMIN, {"rule_id": "rows-low", "dag_id": DEMO_DAG}, duration="30m", comment="deploying"
    )
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["matchers"] == {"rule_id": ["rows-low"], "dag_id": [DEMO_DAG]}
    assert (made["created_by"], made["comment"]) == ("admin", "deploying")
    assert before <= made["starts_at"] <= time.time()
    assert made["ends_at"] == pytest.approx(made["starts_at"] + 1800)
    assert made["ends_at"] == pytest.approx(time.time() + 1800, abs=60)
    assert [s.id for s in store.alerts.silences()] == [made["id"]]
    assert _alerts(api, VIEWER)["silences"] == [made]

    # A viewer may not end it.
    refused = api.delete(f"/etlops/api/alerts/silences/{made['id']}", headers=_as(*VIEWER))
    assert refused.status_code == 403, refused.text
    assert [s.id for s in store.alerts.silences()] == [made["id"]]

    ended = api.delete(f"/etlops/api/alerts/silences/{made['id']}", headers=_as(*ADMIN))
    assert ended.status_code == 200, ended.text
    assert ended.json() == {"id": made["id"], "ended": True}
    assert store.alerts.silences() == []
    assert _alerts(api, ADMIN)["silences"] == []
    kept = store.alerts.silence_by_id(made["id"])
    assert kept is not None and kept.ends_at <= time.time()

    again = api.delete(f"/etlops/api/alerts/silences/{made['id']}", headers=_as(*ADMIN))
    assert again.status_code == 409, again.text
    assert "already over" in again.json()["detail"]
    unknown = api.delete("/etlops/api/alerts/silences/no-such-silence", headers=_as(*ADMIN))
    assert unknown.status_code == 404, unknown.text
    assert "no-such-silence" in unknown.json()["detail"]


def test_silence_input_is_checked(api: Any, store: Store) -> None:
    for duration in ("soon", "0s", "400d"):
        response = _silence(api, ADMIN, {"rule_id": "rows-low"}, duration=duration)
        assert response.status_code == 400, (duration, response.text)
        assert response.json()["detail"].startswith("duration "), (duration, response.text)
    response = _silence(api, ADMIN, {})
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("matchers ")
    assert store.alerts.silences() == []


def test_silencing_needs_edit_rights(api: Any, store: Store) -> None:
    refused = _silence(api, VIEWER, {"rule_id": "rows-low"}, duration="1h")
    assert refused.status_code == 403, refused.text
    assert "edit rights" in refused.json()["detail"]
    # partial may edit dag_a, not the demo DAG (nor a silence naming both)
    for dag_ids in (DEMO_DAG, [DEMO_DAG], ["dag_a", DEMO_DAG]):
        refused = _silence(api, PARTIAL_EDITOR, {"dag_id": dag_ids}, duration="1h")
        assert refused.status_code == 403, (dag_ids, refused.text)
    assert store.alerts.silences() == []
    allowed = _silence(api, PARTIAL_EDITOR, {"dag_id": "dag_a", "rule_id": "rows-low"}, duration="1h")
    assert allowed.status_code == 201, allowed.text
    assert allowed.json()["created_by"] == PARTIAL_USER
    assert [s.id for s in store.alerts.silences()] == [allowed.json()["id"]]


def test_silences_of_unreadable_dags_are_not_shown(api: Any, store: Store) -> None:
    theirs = store.alerts.silence({"dag_id": DEMO_DAG}, duration_s=3600, created_by="admin", comment="x")
    both = store.alerts.silence({"dag_id": ["dag_a", DEMO_DAG]}, duration_s=3600, created_by="admin")
    mine = store.alerts.silence({"dag_id": "dag_a"}, duration_s=3600, created_by="admin")
    general = store.alerts.silence({"rule_id": "disk-full"}, duration_s=3600, created_by="admin")
    shown = _alerts(api, PARTIAL)["silences"]
    assert {s["id"] for s in shown} == {mine.id, general.id}
    assert DEMO_DAG not in json.dumps(shown)
    # dag_a is not in Airflow's metadata DB: other users do not see the silences naming it.
    assert {s["id"] for s in _alerts(api, ADMIN)["silences"]} == {theirs.id, general.id}
    # Ending one is refused as if it did not exist.
    for silence_id in (theirs.id, both.id):
        hidden = api.delete(f"/etlops/api/alerts/silences/{silence_id}", headers=_as(*PARTIAL_EDITOR))
        assert hidden.status_code == 404, hidden.text
        assert DEMO_DAG not in hidden.text
    assert len(store.alerts.silences()) == 4
    ended = api.delete(f"/etlops/api/alerts/silences/{mine.id}", headers=_as(*PARTIAL_EDITOR))
    assert ended.status_code == 200, ended.text


# -- store status ----------------------------------------------------------------------------------


def test_store_status(api: Any, store: Store) -> None:
    store.metrics.write(
        [MetricPoint("rows_loaded", 10, {"table": "orders"}, time.time())]
    )  # creates the schema
    api.cookies.update({"_token": _token("viewer", "viewer")})  # the UI's cookie works as well
    try:
        response = api.get("/etlops/api/store")
    finally:
        api.cookies.clear()
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["schema_version"] == status["schema_head"] >= 1
    assert status["url"] == store.display_url
    assert status["dialect"] == "sqlite"


@pytest.mark.postgres
def test_store_status_masks_the_password(
    api: Any, postgres_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etlops_airflow import runtime

    url = postgres_server.create_database("etlops_api").replace(
        f"//{postgres_server.user}@", f"//{postgres_server.user}:Pw-6f1c2e9a@"
    )  # trust auth: any password is accepted
    monkeypatch.setenv("AIRFLOW__ETLOPS__STORE_URL", url)
    runtime.reset()
    try:
        runtime.get_store().upgrade()
        response = api.get("/etlops/api/store", headers=_as(*ADMIN))
    finally:
        runtime.reset()
    assert response.status_code == 200, response.text
    assert "Pw-6f1c2e9a" not in response.text
    status = response.json()
    assert status["url"] == url.replace(":Pw-6f1c2e9a@", ":***@")
    assert status["dialect"] == "postgresql"
    assert status["schema_version"] == status["schema_head"]


# -- secrets: Airflow's own connections API hides our sqlalchemy_url extra ------------------------


def test_connections_api_masks_the_sqlalchemy_url_extra(api: Any) -> None:
    from airflow import settings

    conn_id = "etlops_store_masking_probe"
    password = "Pw-3b8d0c71e5"
    extra = {"sqlalchemy_url": f"postgresql+psycopg://etl:{password}@db.example:5432/etl", "dialect": "x"}
    admin = _as(*ADMIN)
    created = api.post(
        "/api/v2/connections",
        headers=admin,
        json={"connection_id": conn_id, "conn_type": "etlops_store", "extra": json.dumps(extra)},
    )
    assert created.status_code == 201, created.text
    try:

        def shown() -> dict[str, Any]:
            response = api.get(f"/api/v2/connections/{conn_id}", headers=admin)
            assert response.status_code == 200, response.text
            assert password not in response.text
            return dict(json.loads(response.json()["extra"]))

        assert shown() == {"sqlalchemy_url": "***", "dialect": "x"}
        # Airflow configures its maskers from DEFAULT_SENSITIVE_FIELDS and [core] at start;
        # doing that again (after the plugin was loaded) must not bring the URL back.
        settings._configure_secrets_masker()
        assert shown() == {"sqlalchemy_url": "***", "dialect": "x"}
    finally:
        assert api.delete(f"/api/v2/connections/{conn_id}", headers=admin).status_code == 204


@pytest.fixture
def api_server(api: Any, tmp_path: Path) -> Iterator[str]:
    """A real ``airflow api-server`` (two uvicorn worker processes) on the session's metadata DB,
    with Airflow's default auth manager. Yields its base URL."""
    import signal
    import socket

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__AUTH_MANAGER"}
    log_path = tmp_path / "api-server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "-H", "127.0.0.1", "-p", str(port), "-w", "2"],
            env=env,
            cwd=env["AIRFLOW_HOME"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers too: stopped together below
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, log_path.read_text(errors="replace")[-3000:]
            try:
                if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.25)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


def test_api_server_masks_the_sqlalchemy_url_extra(api_server: str) -> None:
    """The same, on a real API server: its start (worker processes configuring their maskers
    and loading the plugins) keeps the extra hidden."""
    import httpx

    conn_id = "etlops_store_server_probe"
    password = "Pw-a9e47d20c6"
    extra = {"sqlalchemy_url": f"postgresql+psycopg://etl:{password}@db.example/etl"}
    with httpx.Client(base_url=api_server, headers=_as(*ADMIN), timeout=30) as client:
        created = client.post(
            "/api/v2/connections",
            json={"connection_id": conn_id, "conn_type": "etlops_store", "extra": json.dumps(extra)},
        )
        assert created.status_code == 201, created.text
        try:
            for _ in range(4):  # either worker may answer
                response = client.get(f"/api/v2/connections/{conn_id}")
                assert response.status_code == 200, response.text
                assert password not in response.text
                assert json.loads(response.json()["extra"]) == {"sqlalchemy_url": "***"}
        finally:
            assert client.delete(f"/api/v2/connections/{conn_id}").status_code == 204
