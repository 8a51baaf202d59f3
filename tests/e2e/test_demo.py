"""`make demo`'s script brings up a real Airflow (standalone) with etlops-airflow in it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(url: str, token: str | None = None, data: dict[str, str] | None = None) -> tuple[int, object]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    home = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(VENV=sys.prefix, ETLOPS_DEMO_PORT=str(port), ETLOPS_DEMO_HOME=str(home))
    log = open(home / "demo.log", "w")
    proc = subprocess.Popen(
        ["bash", str(REPO / "scripts" / "demo.sh")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"demo exited with {proc.returncode}:\n{(home / 'demo.log').read_text()[-4000:]}")
            try:
                if _request(f"{base}/api/v2/version")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"demo did not answer on {base}:\n{(home / 'demo.log').read_text()[-4000:]}")
            time.sleep(2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        # standalone's components shut down on their own time: wait for the whole group
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            proc.poll()
            time.sleep(1)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()
    text = (home / "demo.log").read_text()
    assert "login: admin / admin" in text


def test_demo_serves_airflow_with_etlops(demo: str) -> None:
    status, body = _request(f"{demo}/auth/token", data={"username": "admin", "password": "admin"})
    assert status in (200, 201), status
    token = body["access_token"]  # type: ignore[index]

    status, providers = _request(f"{demo}/api/v2/providers", token)
    assert status == 200
    assert "etlops-airflow" in [p["package_name"] for p in providers["providers"]]  # type: ignore[index]

    status, plugins = _request(f"{demo}/api/v2/plugins", token)
    assert "etlops" in [p["name"] for p in plugins["plugins"]]  # type: ignore[index]

    assert _request(f"{demo}/etlops/api/store")[0] == 401
    status, store = _request(f"{demo}/etlops/api/store", token)
    from etlops_airflow.store.upgrades import HEAD

    assert status == 200 and store["schema_version"] == store["schema_head"] == HEAD  # type: ignore[index]

    deadline = time.monotonic() + 120  # the DAG processor parses dags/ shortly after start
    while True:
        _, dags = _request(f"{demo}/api/v2/dags", token)
        if "etlops_demo_pipeline" in [d["dag_id"] for d in dags["dags"]]:  # type: ignore[index]
            break
        assert time.monotonic() < deadline, dags
        time.sleep(3)
