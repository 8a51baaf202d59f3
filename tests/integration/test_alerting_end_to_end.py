"""End to end with `airflow dags test`: a DAG that fails three runs in a row trips
`pipeline_failure` and the Slack stand-in (bot token) receives one message; after a green
run, the resolve arrives as a thread reply and the original message is marked resolved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from etlops_airflow.store import Store
from tests.fixtures.slack_server import TOKEN, SlackServer

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "tests" / "integration" / "dags_alerting"

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = """
receivers:
  ops: {type: slack, conn_id: slack_ops, channel: "#etl-alerts"}
routes:
  - receivers: [ops]
    group_wait: 0s
    group_interval: 1s
rules:
  - id: orders-failing
    name: Orders pipeline failing
    severity: critical
    condition: {type: pipeline_failure, dag_id: etlops_e2e_orders, consecutive: 3}
    description: "{{ dag_id }} failed {{ value }} runs in a row"
"""


def _dags_test(dag_id: str, date: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", dag_id, date],
        env=env,
        cwd=os.environ["AIRFLOW_HOME"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_three_failed_runs_fire_once_and_a_green_run_resolves_in_the_thread(
    airflow_db: str, tmp_path: Path, slack_server: SlackServer
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__ETLOPS__STORE_URL": store_url,
        "AIRFLOW_CONN_SLACK_OPS": json.dumps(
            {"conn_type": "slack", "password": TOKEN, "extra": {"base_url": slack_server.api_url}}
        ),
        "ETLOPS_TEST_RULES": str(rules),
    }
    failing = {**env, "ETLOPS_TEST_FAIL": "1"}
    for day in ("2024-01-01", "2024-01-02"):
        assert _dags_test("etlops_e2e_orders", day, failing).returncode != 0
    evaluate = _dags_test("etlops_e2e_evaluate", "2024-01-02T12:00:00", env)
    assert evaluate.returncode == 0, evaluate.stdout[-3000:] + evaluate.stderr[-3000:]
    assert slack_server.requests_to("/api/chat.postMessage") == []  # two failures: not yet

    assert _dags_test("etlops_e2e_orders", "2024-01-03", failing).returncode != 0
    for hour in ("13", "14"):  # the second evaluation has nothing new to say
        evaluate = _dags_test("etlops_e2e_evaluate", f"2024-01-03T{hour}:00:00", env)
        assert evaluate.returncode == 0, evaluate.stdout[-3000:] + evaluate.stderr[-3000:]
    (fired,) = slack_server.requests_to("/api/chat.postMessage")
    assert "Orders pipeline failing" in fired.body["text"]
    assert "etlops_e2e_orders failed 3 runs in a row" in json.dumps(fired.body["blocks"])

    green = _dags_test("etlops_e2e_orders", "2024-01-04", env)
    assert green.returncode == 0, green.stdout[-3000:] + green.stderr[-3000:]
    evaluate = _dags_test("etlops_e2e_evaluate", "2024-01-04T12:00:00", env)
    assert evaluate.returncode == 0, evaluate.stdout[-3000:] + evaluate.stderr[-3000:]
    posts = slack_server.requests_to("/api/chat.postMessage")
    assert len(posts) == 2
    original = next(m for m in slack_server.messages.values() if m.thread_ts is None)
    assert posts[1].body["thread_ts"] == original.ts
    (update,) = slack_server.requests_to("/api/chat.update")
    assert update.body["ts"] == original.ts
    store = Store.from_url(store_url)
    assert [(t.from_state, t.to_state) for t in store.alerts.transitions()] == [
        ("inactive", "firing"),
        ("firing", "resolved"),
    ]
    assert [r.state for r in store.dag_runs.query(dag_id="etlops_e2e_orders")] == [
        "success",
        "failed",
        "failed",
        "failed",
    ]
