"""DAG files import our modules at parse time: they must not drag in heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

DAG_FACING = [
    "etlops_airflow",
    "etlops_airflow.operators.metrics",
    "etlops_airflow.operators.data_quality",
    "etlops_airflow.operators.alerts",
    "etlops_airflow.operators.migrations",
    "etlops_airflow.migrations",
    "etlops_airflow.sensors.metric",
    "etlops_airflow.sensors.alerts",
    "etlops_airflow.notifications.metric",
    "etlops_airflow.notifications.alerts",
    "etlops_airflow.notifications.slack",
    "etlops_airflow.notifications.email",
    "etlops_airflow.hooks.store",
    "etlops_airflow.plugins",
    "etlops_airflow.listeners.outcomes",
    "etlops_airflow.listeners.dag_runs",
    "etlops_airflow.listeners.profiling",
    "etlops_airflow.runtime",
]
HEAVY = (
    "fastapi",
    "starlette",
    "slack_sdk",
    "psycopg",
    "sqlalchemy.dialects",
    "sqlalchemy.orm",
    "etlops_airflow.store",
)

PROBE = """
import json, sys
from airflow.sdk import DAG, BaseOperator, BaseSensorOperator, BaseNotifier, BaseHook, task
before = set(sys.modules)
for name in {modules!r}:
    __import__(name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_dag_facing_modules_add_no_heavy_imports() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=DAG_FACING)], capture_output=True, text=True, check=True
    )
    added = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = [m for m in added if m.startswith(HEAVY)]
    assert heavy == [], f"DAG-facing imports pulled in {heavy}"


def test_package_root_is_lazy() -> None:
    code = (
        "import sys, etlops_airflow; print('etlops_airflow.metrics' in sys.modules, 'airflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    code = "import etlops_airflow; print(etlops_airflow.record_metric.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "etlops_airflow.metrics"


@pytest.mark.parametrize(
    "module",
    [
        "etlops_airflow.store",
        "etlops_airflow.core",
        "etlops_airflow.core.models",
        "etlops_airflow.core.compare",
        "etlops_airflow.store.upgrades",
    ],
)
def test_core_and_store_import_no_airflow(module: str) -> None:
    # The acceptance check, as anyone can run it: python -c "import etlops_airflow.store"
    code = (
        f"import sys, {module}, json; "
        "print(json.dumps(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
