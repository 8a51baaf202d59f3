"""Evaluations are real processes here: one SIGKILLed between its commit and its delivery, and
several started at once. Neither repeats nor loses a notification."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from etlops_airflow.core.models import MetricPoint
from etlops_airflow.store import Store
from tests.fixtures.slack_server import SlackServer

pytestmark = pytest.mark.integration

RULES = """
receivers:
  ops: {type: slack, conn_id: slack_hook}
routes:
  - receivers: [ops]
    group_wait: 0s
rules:
  - id: slow-load
    severity: high
    condition: {type: metric_threshold, metric: rows_loaded, labels: {table: orders},
                fn: sum, window: 1h, op: "<", threshold: 100}
"""

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    from etlops_airflow import alerting
    from etlops_airflow.core.alerts.rules import load_rules
    from etlops_airflow.store import Store

    url, rules_path, mode = sys.argv[1:4]
    store = Store.from_url(url)
    if mode == "kill-after-commit":
        commit = store.alerts.commit_evaluation

        def commit_then_die(*args, **kwargs):
            created = commit(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would, before any delivery
            return created

        store.alerts.commit_evaluation = commit_then_die
    summary = alerting.run_evaluation(load_rules(rules_path), store=store, lock_wait_s=60)
    print("SUMMARY=" + json.dumps(summary.as_dict()), flush=True)
    """
)


@pytest.fixture
def setup(tmp_path: Path, slack_server: SlackServer) -> tuple[str, Path, Path, dict[str, str]]:
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    store = Store.from_url(url)
    store.upgrade()
    store.metrics.write([MetricPoint("rows_loaded", 40, {"table": "orders"}, time.time())])
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    child = tmp_path / "evaluate.py"
    child.write_text(CHILD)
    env = {
        **os.environ,
        "AIRFLOW_CONN_SLACK_HOOK": json.dumps(
            {"conn_type": "slackwebhook", "password": slack_server.webhook_url}
        ),
    }
    return url, rules, child, env


def _run(child: Path, url: str, rules: Path, mode: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(child), url, str(rules), mode],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _summary(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=120)
    lines = [line for line in out.splitlines() if line.startswith("SUMMARY=")]
    assert lines, f"exit {proc.returncode}\n{out[-2000:]}\n{err[-3000:]}"
    return json.loads(lines[-1].removeprefix("SUMMARY="))  # type: ignore[no-any-return]


def test_killed_between_commit_and_delivery_the_next_run_sends_it_once(
    setup: tuple[str, Path, Path, dict[str, str]], slack_server: SlackServer
) -> None:
    url, rules, child, env = setup
    killed = _run(child, url, rules, "kill-after-commit", env)
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    store = Store.from_url(url)
    assert [a.state for a in store.alerts.alerts()] == ["firing"]  # the decision was committed ...
    assert [r.status for r in store.alerts.outbox()] == ["pending"]  # ... and its notification with it
    assert slack_server.requests_to(slack_server.webhook_path) == []  # but nothing was sent
    # the next evaluation: not blocked by the dead process's lock, sends the pending row once
    started = time.monotonic()
    summary = _summary(_run(child, url, rules, "normal", env))
    assert time.monotonic() - started < 30
    assert (summary["fired"], summary["queued"], summary["sent"]) == (0, 0, 1)
    assert _summary(_run(child, url, rules, "normal", env))["sent"] == 0
    assert len(slack_server.requests_to(slack_server.webhook_path)) == 1
    assert [r.status for r in store.alerts.outbox()] == ["sent"]


def test_evaluations_started_at_once_send_one_message(
    setup: tuple[str, Path, Path, dict[str, str]], slack_server: SlackServer
) -> None:
    url, rules, child, env = setup
    procs = [_run(child, url, rules, "normal", env) for _ in range(4)]
    summaries = [_summary(p) for p in procs]
    assert sorted(s["sent"] for s in summaries) == [0, 0, 0, 1]  # type: ignore[type-var]
    assert sum(s["fired"] for s in summaries) == 1  # type: ignore[misc]
    assert len(slack_server.requests_to(slack_server.webhook_path)) == 1
