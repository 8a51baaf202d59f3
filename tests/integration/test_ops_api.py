"""The Operations view's API, page and assets on Airflow's real API server app.

Same set-up as ``test_api.py`` (whose fixtures this module uses): Airflow's ``create_app("core")``
with the test auth manager, where the user ``partial`` may read only ``dag_a`` and ``dag_c``
and the other users the DAGs registered in Airflow (the demo DAG among them). Every route of the
app refusing anonymous users and bad tokens is checked there, over the routes listed from the
app (this module's routes included).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from etlops_airflow.store import Store
from tests.integration import test_api as base
from tests.integration.ops_seed import SCRIPT_DESCRIPTION, Seeded, seed, seed_migrations
from tests.integration.test_api import ADMIN, DEMO_DAG, PARTIAL, VIEWER, _as

# The API fixtures of test_api.py: Airflow's app with the test auth manager, an empty store.
api = base.api
store = base.store

pytestmark = pytest.mark.integration

MINE = "dag_a"  # partial may read it; it is not in Airflow's metadata DB, so admin may not
PAGE_CALLS = (
    "/etlops/api/alerts",
    "/etlops/api/pipelines",
    "/etlops/api/health",
    "/etlops/api/metrics",
    "/etlops/api/profiles",
    "/etlops/api/maintenance",
    "/etlops/api/migrations",
)


@pytest.fixture
def seeded(store: Store) -> Seeded:
    return seed(store, MINE, DEMO_DAG)


def _get(api: Any, path: str, user: tuple[str, str] = PARTIAL, status: int = 200) -> Any:
    response = api.get(path, headers=_as(*user))
    assert response.status_code == status, (path, response.text)
    return response.json()


# -- the navigation entry, the page and its assets ------------------------------------------------


def test_plugin_adds_operations_to_the_navigation(api: Any) -> None:
    plugins = _get(api, "/api/v2/plugins", ADMIN)["plugins"]
    (etlops,) = [p for p in plugins if p["name"] == "etlops"]
    (view,) = etlops["external_views"]
    assert view["name"] == "Operations" and view["destination"] == "nav" and view["url_route"]
    # Relative: the UI resolves it against its <base href>, i.e. under the [api] base_url prefix.
    assert view["href"] == "etlops/ui/" and not view["icon"].startswith("/")
    page = api.get("/" + view["href"], headers=_as(*VIEWER))
    assert page.status_code == 200 and "<title>Operations" in page.text
    assert api.get("/" + view["icon"], headers=_as(*VIEWER)).headers["content-type"] == "image/svg+xml"


def test_page_links_versioned_assets_served_with_cache_headers(api: Any) -> None:
    page = api.get("/etlops/ui/", headers=_as(*VIEWER))
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # Relative links only: the page works under any base_url prefix.
    assert 'src="static/ops.js?v=' in page.text and 'href="static/ops.css?v=' in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from another origin

    for name in ("ops.js", "ops.css"):
        version = page.text.split(f"static/{name}?v=", 1)[1].split('"', 1)[0]
        pinned = api.get(f"/etlops/ui/static/{name}?v={version}", headers=_as(*VIEWER))
        assert pinned.status_code == 200 and pinned.content
        assert pinned.headers["cache-control"] == "private, max-age=31536000, immutable"
        etag = pinned.headers["etag"]
        assert version in etag
        # Without the current version: cached, but revalidated; unchanged -> 304 without a body.
        loose = api.get(f"/etlops/ui/static/{name}", headers=_as(*VIEWER))
        assert loose.headers["cache-control"] == "private, no-cache" and loose.headers["etag"] == etag
        again = api.get(f"/etlops/ui/static/{name}", headers={**_as(*VIEWER), "If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
    assert (
        api.get("/etlops/ui/static/ops.js", headers=_as(*VIEWER))
        .headers["content-type"]
        .startswith("text/javascript")
    )
    missing = api.get("/etlops/ui/static/..%2Fapi.py", headers=_as(*VIEWER))
    assert missing.status_code == 404
    # Without a slash the page redirects relatively (right under any prefix).
    redirect = api.get("/etlops/ui", headers=_as(*VIEWER), follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"] == "ui/"


def test_page_never_puts_data_into_html() -> None:
    """The page builds its DOM from text only: no innerHTML, outerHTML, insertAdjacentHTML,
    document.write or eval anywhere in its script."""
    from importlib import resources

    script = (resources.files("etlops_airflow.plugins") / "static" / "ops.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert "textContent" in script


def test_openapi_schema_is_behind_auth(api: Any) -> None:
    assert api.get("/etlops/openapi.json").status_code == 401
    bad = api.get("/etlops/openapi.json", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 403
    schema = _get(api, "/etlops/openapi.json", VIEWER)
    assert schema["info"]["title"] == "etlops-airflow"
    for path in ("/api/pipelines", "/api/health", "/api/metrics", "/api/alerts", "/api/profiles"):
        assert path in schema["paths"], path
    assert "/api/maintenance" in schema["paths"] and "/api/migrations" in schema["paths"]
    assert "/ui/" not in schema["paths"]
    # FastAPI's unauthenticated defaults are not served.
    for path in ("/etlops/docs", "/etlops/redoc", "/etlops/docs/oauth2-redirect"):
        assert api.get(path).status_code == 404, path
        assert api.get(path, headers=_as(*ADMIN)).status_code == 404, path


# -- metrics: current values and history -----------------------------------------------------------


def test_metrics_current_values_and_history(api: Any, seeded: Seeded) -> None:
    body = _get(api, "/etlops/api/metrics?window=21600")
    assert body["names"] == ["host_cpu_percent", "rows_loaded"]
    assert "THEIRS" not in json.dumps(body)
    metrics = {m["name"]: m for m in body["metrics"]}
    assert set(metrics) == {"host_cpu_percent", "rows_loaded"}  # the first names when none is named
    (rows,) = metrics["rows_loaded"]["series"]
    assert rows["labels"] == {"dag_id": MINE, "table": "orders"}
    assert rows["current"]["value"] == 171.0  # the newest of the 72 points (100 + 71)
    assert rows["current"]["ts"] == pytest.approx(seeded.now - 300 + 1, abs=0.01)
    # 72 points over 6 hours, bucketed by the step the answer names, summed back to the total
    step = metrics["rows_loaded"]["step"]
    assert step >= 60 and len(rows["points"]) <= 600
    body = _get(api, f"/etlops/api/metrics?window=21600&fn=sum&name=rows_loaded&step={step}")
    (rows,) = body["metrics"][0]["series"]
    assert sum(v for _, v in rows["points"]) == sum(100 + i for i in range(72))
    assert all(body["start"] - step < t < body["end"] for t, _ in rows["points"])  # bucket starts

    # The user who may read the other DAG sees its series, not dag_a's.
    admin = _get(api, "/etlops/api/metrics?name=rows_loaded", ADMIN)
    assert [s["labels"]["table"] for s in admin["metrics"][0]["series"]] == ["THEIRS"]


def test_metrics_filters(api: Any, seeded: Seeded) -> None:
    # label filter
    body = _get(api, "/etlops/api/metrics?name=rows_loaded&name=host_cpu_percent&label=host:w1", ADMIN)
    by_name = {m["name"]: m["series"] for m in body["metrics"]}
    assert by_name["rows_loaded"] == [] and [s["labels"] for s in by_name["host_cpu_percent"]] == [
        {"host": "w1"}
    ]
    assert body["labels"] == {"host": "w1"}
    # time filter: an hour ending three hours ago; the current value is the newest before then
    end = seeded.now - 3 * 3600
    body = _get(api, f"/etlops/api/metrics?name=rows_loaded&window=3600&end={end}&step=300&fn=count")
    (rows,) = body["metrics"][0]["series"]
    assert (body["start"], body["end"]) == (pytest.approx(end - 3600), pytest.approx(end))
    assert sum(v for _, v in rows["points"]) == 12  # one point every 5 minutes
    assert rows["current"]["ts"] < end and rows["current"]["value"] == 100 + 35
    # bad input: 400 naming the field and the value
    for query, field in (
        ("label=oops", "label 'oops'"),
        ("name=bad%20name", "metric: name 'bad name'"),
        ("fn=median", "fn 'median'"),
        ("end=-5", "end -5.0"),
    ):
        response = api.get(f"/etlops/api/metrics?{query}", headers=_as(*PARTIAL))
        assert response.status_code == 400, (query, response.text)
        assert response.json()["detail"].startswith(field), (query, response.text)
    too_many = "&".join(f"name=m{i}" for i in range(21))
    response = api.get(f"/etlops/api/metrics?{too_many}", headers=_as(*PARTIAL))
    assert response.status_code == 400 and response.json()["detail"].startswith("name 21"), response.text


# -- pipelines ---------------------------------------------------------------------------------------


def test_pipelines_per_readable_dag(api: Any, seeded: Seeded) -> None:
    body = _get(api, "/etlops/api/pipelines?window=86400")
    assert "THEIRS" not in json.dumps(body) and DEMO_DAG not in json.dumps(body)
    (mine,) = body["pipelines"]
    assert mine["dag_id"] == MINE
    assert [r["run_id"] for r in mine["last_runs"]] == ["run_2", "run_1", "run_0"]
    assert [r["state"] for r in mine["last_runs"]] == ["success", "failed", "success"]
    assert mine["last_state"] == "success"
    assert (mine["runs"]["runs"], mine["runs"]["success"], mine["runs"]["failed"]) == (3, 2, 1)
    assert mine["runs"]["avg_duration_s"] == 60.0
    assert mine["task_tries"] == {"success": 2, "failed": 1}
    # records: out of the session's last top-level stage (load: 1000), over its 20 s
    assert (mine["records"], mine["records_per_s"], mine["profiled_sessions"]) == (1000, 50.0, 1)
    assert mine["last_stage"]["task_id"] == "etl" and mine["last_stage"]["stage"] == "load"
    assert mine["last_stage"]["run_id"] == "run_2"
    assert mine["active_runs"] == []  # nothing runs in Airflow
    # last runs are limited per DAG; the window limits the counts, not the last runs
    body = _get(api, "/etlops/api/pipelines?window=5400&runs=2")
    (mine,) = body["pipelines"]
    assert [r["run_id"] for r in mine["last_runs"]] == ["run_2", "run_1"]
    assert mine["runs"]["runs"] == 1 and mine["records"] == 1000

    admin = _get(api, "/etlops/api/pipelines", ADMIN)
    (theirs,) = admin["pipelines"]
    assert theirs["dag_id"] == DEMO_DAG and theirs["last_state"] == "failed" and theirs["records"] == 50000


def test_pipelines_show_runs_in_progress_from_airflow(api: Any, store: Store) -> None:
    """A run in progress is read from Airflow's metadata DB, with its running task."""
    from datetime import datetime, timezone

    from airflow.models.dag_version import DagVersion
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import delete, insert, select
    from uuid6 import uuid7

    run_id = "ops_view_probe_run"
    with create_session() as session:
        version = session.scalars(select(DagVersion).where(DagVersion.dag_id == DEMO_DAG)).first()
        assert version is not None
        run = DagRun(
            dag_id=DEMO_DAG,
            run_id=run_id,
            run_type=DagRunType.MANUAL,
            state=DagRunState.RUNNING,
            triggered_by=DagRunTriggeredByType.TEST,
        )
        session.add(run)
        session.flush()
        session.execute(
            insert(TaskInstance.__table__).values(
                id=uuid7(),
                dag_id=DEMO_DAG,
                task_id="transform",
                run_id=run_id,
                map_index=-1,
                try_number=1,
                pool="default_pool",
                state=TaskInstanceState.RUNNING,
                dag_version_id=version.id,
                start_date=datetime.now(timezone.utc),
            )
        )
    try:
        admin = _get(api, "/etlops/api/pipelines", ADMIN)
        (demo,) = [p for p in admin["pipelines"] if p["dag_id"] == DEMO_DAG]
        (active,) = demo["active_runs"]
        assert active["run_id"] == run_id and active["state"] == "running"
        assert [(t["task_id"], t["state"]) for t in active["tasks"]] == [("transform", "running")]
        assert _get(api, "/etlops/api/pipelines")["pipelines"] == []  # partial may not read it
    finally:
        with create_session() as session:
            session.execute(delete(TaskInstance).where(TaskInstance.run_id == run_id))
            session.execute(delete(DagRun).where(DagRun.run_id == run_id))


# -- health ------------------------------------------------------------------------------------------


def test_health_components_and_live_system_figures(api: Any, seeded: Seeded) -> None:
    body = _get(api, "/etlops/api/health")
    components = {c["component"]: c for c in body["components"]}
    assert components["database"]["status"] == "healthy"
    assert components["filesystem"]["status"] == "degraded"
    assert components["filesystem"]["reasons"] == ["free space 15 % under 20 %"]
    assert components["filesystem"]["checked_at"] == pytest.approx(seeded.now - 120)
    system = body["system"]
    assert system["cpu_count"] >= 1 and 0 < system["memory"]["percent"] < 100
    assert 0 < system["memory"]["used_bytes"] < system["memory"]["total_bytes"]
    assert 0 < system["disk"]["free_bytes"] <= system["disk"]["total_bytes"]
    assert system["uptime_s"] > 0 and 0 <= system["process_uptime_s"]
    assert system["network"]["bytes_recv"] is None or system["network"]["bytes_recv"] >= 0
    time.sleep(1.1)  # rates are measured between requests at least a second apart
    system = _get(api, "/etlops/api/health")["system"]
    assert system["cpu_percent"] is not None and 0 <= system["cpu_percent"] <= 100
    assert system["network"]["recv_per_s"] is None or system["network"]["recv_per_s"] >= 0


def test_health_without_checks_is_empty(api: Any, store: Store) -> None:
    body = _get(api, "/etlops/api/health")
    assert body["components"] == [] and body["system"]["memory"]["total_bytes"] > 0


# -- profiles, maintenance, migrations ------------------------------------------------------------------


def test_profiles_with_stages_and_findings(api: Any, seeded: Seeded) -> None:
    body = _get(api, "/etlops/api/profiles")
    (session,) = body["sessions"]
    assert session["id"] == seeded.session_mine and session["dag_id"] == MINE
    assert [s["path"] for s in session["stages"]] == ["extract", "transform", "transform/enrich", "load"]
    assert session["stages"][1]["started_at"] - session["started_at"] == pytest.approx(4.0)
    (finding,) = session["findings"]
    assert (finding["kind"], finding["stage"], finding["severity"]) == ("cpu", "transform", "high")
    assert session["recommendations"] == [f"{MINE}: cache the customers lookup"]
    assert body["totals"]["sessions"] == 1 and body["totals"]["findings"]["cpu"] == 1
    # one session by id; one of a DAG the user may not read does not exist for them
    one = _get(api, f"/etlops/api/profiles?session_id={seeded.session_mine}")
    assert [s["id"] for s in one["sessions"]] == [seeded.session_mine]
    hidden = _get(api, f"/etlops/api/profiles?session_id={seeded.session_theirs}", status=404)
    assert "THEIRS" not in json.dumps(hidden)
    assert _get(api, f"/etlops/api/profiles?session_id={seeded.session_theirs}", ADMIN)["sessions"]
    _get(api, f"/etlops/api/profiles?dag_id={DEMO_DAG}", status=403)
    # since: on the session's start
    assert _get(api, f"/etlops/api/profiles?since={seeded.now - 60}")["sessions"] == []


def test_maintenance_runs_and_what_they_freed(api: Any, seeded: Seeded) -> None:
    body = _get(api, "/etlops/api/maintenance")
    assert "THEIRS" not in json.dumps(body)
    # runs of DAGs partial may not read are left out; runs from no DAG are shown
    shown = [(r["task"], r["dry_run"]) for r in body["runs"]]
    assert shown == [("health_check", False), ("cache_cleanup", True), ("cache_cleanup", False)]
    totals = {t["task"]: t for t in body["totals"]}
    assert totals["cache_cleanup"]["runs"] == 2 and totals["cache_cleanup"]["dry_runs"] == 1
    assert totals["cache_cleanup"]["freed_bytes"] == 3 * 2**20  # the dry run freed nothing
    assert totals["cache_cleanup"]["freed_files"] == 12
    admin = _get(api, "/etlops/api/maintenance", ADMIN)
    totals = {t["task"]: t for t in admin["totals"]}
    assert totals["checkpoint_cleanup"]["freed_bytes"] == 2**30
    (theirs,) = [r for r in admin["runs"] if r["id"] == seeded.maintenance_theirs]
    assert theirs["dag_id"] == DEMO_DAG and theirs["ok"] is True
    assert [r["task"] for r in _get(api, "/etlops/api/maintenance?task=health_check")["runs"]] == [
        "health_check"
    ]
    bad = api.get("/etlops/api/maintenance?task=nope", headers=_as(*PARTIAL))
    assert bad.status_code == 400 and bad.json()["detail"].startswith("task 'nope'"), bad.text


def test_migration_ledger_and_step_log(api: Any, store: Store) -> None:
    ids = seed_migrations(store, MINE, DEMO_DAG)
    body = _get(api, "/etlops/api/migrations")
    assert [r["pipeline"] for r in body["runs"]] == ["orders"]
    (run,) = body["runs"]
    assert (run["from_version"], run["to_version"], run["state"], run["dag_id"]) == (
        "1.0.0",
        "1.1.0",
        "success",
        MINE,
    )
    assert body["steps"] is None
    assert {"pipeline": "orders", "version": "1.1.0"}.items() <= body["versions"][0].items()
    steps = _get(api, f"/etlops/api/migrations?run_id={ids[MINE]}")["steps"]
    assert [(s["phase"], s["state"], s["sql"]) for s in steps] == [
        ("step", "success", ["ALTER TABLE orders ADD COLUMN note TEXT"])
    ]
    hidden = _get(api, f"/etlops/api/migrations?run_id={ids[DEMO_DAG]}", status=404)
    assert "THEIRS" not in json.dumps(hidden)
    admin = _get(api, f"/etlops/api/migrations?run_id={ids[DEMO_DAG]}", ADMIN)
    assert [r["state"] for r in admin["runs"]] == ["rolled_back"]
    assert admin["steps"][0]["error"] == "THEIRS: column exists"


# -- alerts as the page shows them ---------------------------------------------------------------------


def test_alerts_with_counts_and_markup_kept_as_data(api: Any, seeded: Seeded) -> None:
    body = _get(api, "/etlops/api/alerts?state=firing&state=pending")
    assert {a["fingerprint"] for a in body["alerts"]} == {seeded.alert_mine, seeded.alert_global}
    assert body["counts"] == {"critical": {"firing": 1}, "medium": {"firing": 1}}
    (mine,) = [a for a in body["alerts"] if a["fingerprint"] == seeded.alert_mine]
    assert mine["annotations"]["description"] == SCRIPT_DESCRIPTION  # the page shows it as text
    # a viewer may not acknowledge; the alert stays unacknowledged
    refused = api.post(f"/etlops/api/alerts/{seeded.alert_global}/ack", headers=_as(*VIEWER))
    assert refused.status_code == 403, refused.text
    assert _get(api, "/etlops/api/alerts", VIEWER)["alerts"][0]["acked_by"] is None


def test_alerts_resolved_long_ago_are_left_out_on_request(api: Any, store: Store, seeded: Seeded) -> None:
    from dataclasses import replace

    alert = store.alerts.get(seeded.alert_global)
    assert alert is not None
    resolved_at = seeded.now - 7200
    resolved = replace(alert, state="resolved", resolved_at=resolved_at, last_eval_at=resolved_at)
    store.alerts.commit_evaluation([resolved], [], [], {}, [], now=resolved_at)
    everything = {a["fingerprint"] for a in _get(api, "/etlops/api/alerts")["alerts"]}
    assert everything == {seeded.alert_mine, seeded.alert_global}
    recent = _get(api, f"/etlops/api/alerts?resolved_since={seeded.now - 3600}")["alerts"]
    assert [a["fingerprint"] for a in recent] == [seeded.alert_mine]  # the firing one stays
    older = _get(api, f"/etlops/api/alerts?resolved_since={seeded.now - 10800}")["alerts"]
    assert {a["fingerprint"] for a in older} == everything


def test_a_user_sees_nothing_of_dags_they_may_not_read(api: Any, store: Store, seeded: Seeded) -> None:
    seed_migrations(store, MINE, DEMO_DAG)
    for path in PAGE_CALLS:
        text = json.dumps(_get(api, path))
        assert "THEIRS" not in text and DEMO_DAG not in text, path
        # and the user who may read it sees it (so the check above can fail)
        if path not in ("/etlops/api/health",):
            assert "THEIRS" in json.dumps(_get(api, path, ADMIN)) or DEMO_DAG in json.dumps(
                _get(api, path, ADMIN)
            ), path
