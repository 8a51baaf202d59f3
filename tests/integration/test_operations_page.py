"""The Operations page in a real browser, on a real Airflow API server.

Starts ``airflow api-server`` with the plugin on a free port, under a ``[api] base_url`` with a
path prefix, on a store seeded with something of every capability; logs in through Airflow's
own login page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by
selenium), opens **Operations** from the navigation and checks what a user sees: alerts by
severity, metric charts, pipelines and health, an acknowledgement taking effect, a profile's
waterfall and findings, the maintenance runs and the migration ledger. Screenshots of each
view are saved in the test's ``tmp_path``.

Never skipped in CI (CI=true): a missing browser fails the run there (``.ci/run`` installs
it). Outside CI a missing browser skips the test with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from etlops_airflow.store import Store
from tests.integration.ops_seed import SCRIPT_DESCRIPTION, Seeded, seed, seed_migrations

REPO = Path(__file__).resolve().parents[2]
DEMO_DAG = "etlops_demo_pipeline"  # registered in Airflow below: the admin may read it
HIDDEN_DAG = "not_in_airflow"  # not registered: nobody may read it
PREFIX = "/airflow-prefix"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (test extra)")
    if missing:
        reason = (
            f"no browser for the Operations page test: missing {', '.join(missing)} "
            "(apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    base: str  # with the prefix, no trailing slash
    store: Store
    seeded: Seeded
    migration_runs: dict[str, str]


@pytest.fixture(scope="module")
def server(airflow_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _need_browser()
    import httpx

    home = tmp_path_factory.mktemp("ops-page")
    store_url = f"sqlite:///{home / 'etlops.db'}"
    store = Store.from_url(store_url)
    store.upgrade()
    seeded = seed(store, DEMO_DAG, HIDDEN_DAG)
    migration_runs = seed_migrations(store, DEMO_DAG, HIDDEN_DAG)

    port = _free_port()
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": "admin", "viewer": "viewer"}))
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__AUTH_MANAGER"}
    env.update(
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__ETLOPS__STORE_URL=store_url,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin,viewer:viewer",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}{PREFIX}/",
    )
    # Register the demo DAG in the metadata DB, as the DAG processor would.
    subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "reserialize"],
        env=env,
        cwd=airflow_db,
        check=True,
        capture_output=True,
        timeout=300,
    )
    log_path = home / "api-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            cwd=airflow_db,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}{PREFIX}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            try:
                if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        yield Server(base, store, seeded, migration_runs)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        store.dispose()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1500,1100",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def _wait(driver: Any, condition: Any, what: str, timeout: float = 30) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        labels = [e.get_attribute("aria-label") for e in driver.find_elements("css selector", "[aria-label]")]
        raise AssertionError(
            f"timed out waiting for {what} at {driver.current_url}; labelled elements: {labels}; "
            f"page text:\n{_text(driver)[:1500]}"
        ) from None


def _text(driver: Any) -> str:
    try:
        return str(driver.find_element("tag name", "body").text)
    except Exception as exc:  # the page may be between loads
        return f"(no body: {exc})"


def _css(driver: Any, selector: str) -> list[Any]:
    return list(driver.find_elements("css selector", selector))


def _show(driver: Any, view: str) -> None:
    """Click a tab of the Operations page and wait for its content."""
    driver.find_element("css selector", f'#tabs button[data-view="{view}"]').click()
    _wait(
        driver, lambda d: d.find_element("id", "content").get_attribute("data-view") == view, f"view {view}"
    )


def test_operations_page_in_a_browser(server: Server, browser: Any, tmp_path: Path) -> None:
    driver = browser
    seeded = server.seeded

    # Log in through Airflow's own login page.
    driver.get(f"{server.base}/")
    _wait(driver, lambda d: d.find_elements("name", "username"), "Airflow's login form")
    driver.find_element("name", "username").send_keys("admin")
    driver.find_element("name", "password").send_keys("admin")
    driver.find_element("css selector", "button[type=submit]").click()
    _wait(
        driver,
        lambda d: "/auth/" not in d.current_url and d.find_elements("css selector", "[aria-label=Dags]"),
        "the Airflow UI",
    )

    # Open Operations from the navigation: the page renders in an iframe inside the UI.
    # The top-level navigation entry is labelled with the view's name.
    xpath = "//*[self::a or self::button][@aria-label='Operations']"
    entry = _wait(driver, lambda d: d.find_elements("xpath", xpath), "the Operations navigation entry")[0]
    entry.click()
    frame = _wait(
        driver, lambda d: d.find_elements("css selector", "iframe[title='Operations']"), "the iframe"
    )[0]
    assert frame.get_attribute("src").startswith(f"{server.base}/etlops/ui/"), frame.get_attribute("src")
    assert driver.current_url.startswith(f"{server.base}/plugin/"), driver.current_url
    driver.switch_to.frame(frame)

    # Overview: alerts by severity, health, pipelines, charts.
    _wait(driver, lambda d: _css(d, "svg.chart polyline"), "a metric chart")
    critical = driver.find_element("css selector", '#alert-tiles .tile[data-severity="critical"] .v')
    assert critical.text == "1"
    medium = driver.find_element("css selector", '#alert-tiles .tile[data-severity="medium"] .v')
    assert medium.text == "1"
    charts = {box.get_attribute("data-metric") for box in _css(driver, "#charts .chart-box")}
    assert charts == {"host_cpu_percent", "rows_loaded"}
    assert (
        len(_css(driver, '#charts .chart-box[data-metric="rows_loaded"] polyline')) == 1
    )  # the hidden DAG's is not there
    health = {
        t.get_attribute("data-component"): t.text for t in _css(driver, "#health-tiles .tile[data-component]")
    }
    assert "degraded" in health["filesystem"] and "healthy" in health["database"]
    assert {t.get_attribute("data-system") for t in _css(driver, "#health-tiles .tile[data-system]")} == {
        "CPU",
        "Memory",
        "Disk",
        "Network",
        "Uptime",
    }
    (row,) = _css(driver, f'#pipelines-table tr[data-dag="{DEMO_DAG}"]')
    link = row.find_element("css selector", "a.af-link")
    # Links go to the Airflow UI, under the base_url prefix, in the whole window.
    assert link.get_attribute("href") == f"{server.base}/dags/{DEMO_DAG}"
    assert link.get_attribute("target") == "_top"
    run_links = [a.get_attribute("href") for a in row.find_elements("css selector", ".runs a")]
    assert run_links[-1] == f"{server.base}/dags/{DEMO_DAG}/runs/run_2"
    assert "THEIRS" not in _text(driver)
    driver.save_screenshot(str(tmp_path / "1-overview.png"))

    # Filters live in the URL: a metric picked stays picked after a reload.
    driver.find_element("css selector", '#metric-pick input[value="host_cpu_percent"]').click()
    _wait(
        driver,
        lambda d: {b.get_attribute("data-metric") for b in _css(d, "#charts .chart-box")} == {"rows_loaded"},
        "one chart",
    )
    assert "metric=rows_loaded" in driver.execute_script("return location.search")
    driver.refresh()
    driver.switch_to.default_content()
    frame = _wait(
        driver, lambda d: d.find_elements("css selector", "iframe[title='Operations']"), "the iframe"
    )[0]
    driver.switch_to.frame(frame)
    _wait(
        driver,
        lambda d: {b.get_attribute("data-metric") for b in _css(d, "#charts .chart-box")} == {"rows_loaded"},
        "the kept filter",
    )

    # Alerts: the rule description with markup shows as text; acknowledge changes the state.
    _show(driver, "alerts")
    row = _wait(
        driver,
        lambda d: d.find_elements("css selector", f'tr[data-fingerprint="{seeded.alert_mine}"]'),
        "the alert",
    )[0]
    assert row.find_element("css selector", ".description").text == SCRIPT_DESCRIPTION
    assert (
        driver.execute_script("return document.querySelectorAll('#content script, #content img').length") == 0
    )
    assert driver.execute_script("return document.title") == "Operations · etlops"
    assert _css(driver, f'tr[data-fingerprint="{seeded.alert_theirs}"]') == []
    driver.save_screenshot(str(tmp_path / "2-alerts.png"))
    row.find_element("css selector", "button.ack-button").click()
    acked = _wait(
        driver,
        lambda d: d.find_elements("css selector", f'tr[data-fingerprint="{seeded.alert_mine}"] .acked-by'),
        "the acknowledgement",
    )[0]
    assert acked.text.startswith("acknowledged by admin")
    assert not _css(driver, f'tr[data-fingerprint="{seeded.alert_mine}"] button.ack-button')
    stored = server.store.alerts.get(seeded.alert_mine)
    assert stored is not None and stored.acked_by == "admin"
    driver.save_screenshot(str(tmp_path / "3-acknowledged.png"))

    # Profiles: the newest session's stage waterfall and findings.
    _show(driver, "profiles")
    stages = _wait(
        driver, lambda d: d.find_elements("css selector", "#profile-waterfall g.stage"), "the waterfall"
    )
    assert [s.get_attribute("data-path") for s in stages] == [
        "extract",
        "transform",
        "transform/enrich",
        "load",
    ]
    finding = driver.find_element("css selector", "#findings-table tr.finding")
    assert "transform" in finding.text and "96 %" in finding.text
    assert len(_css(driver, "#sessions-table tbody tr")) == 1
    driver.save_screenshot(str(tmp_path / "4-profile.png"))

    # Maintenance runs and the migration ledger.
    _show(driver, "maintenance")
    totals = driver.find_element("id", "maintenance-totals").text
    assert "cache_cleanup" in totals and "3.0 MiB" in totals
    driver.save_screenshot(str(tmp_path / "5-maintenance.png"))
    _show(driver, "migrations")
    (run_row,) = _css(driver, "#migration-runs tbody tr")
    assert "orders" in run_row.text and "1.0.0 → 1.1.0" in run_row.text and "success" in run_row.text
    run_row.find_element("css selector", "button").click()
    _wait(driver, lambda d: d.find_elements("id", "migration-steps"), "the step log")
    assert "ALTER TABLE" in driver.find_element("id", "migration-steps").text
    driver.save_screenshot(str(tmp_path / "6-migrations.png"))

    for name in ("1-overview", "2-alerts", "3-acknowledged", "4-profile", "5-maintenance", "6-migrations"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000, name
