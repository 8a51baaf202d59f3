"""Test-wide set-up: a throwaway AIRFLOW_HOME before anything imports Airflow."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Must happen at import time: Airflow reads its configuration when first imported.
_HOME = tempfile.mkdtemp(prefix="etlops-test-airflow-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__API_AUTH__JWT_SECRET"] = "etlops-test-jwt-secret-" + "0123456789abcdef" * 4
os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin,viewer:viewer"
os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = os.path.join(_HOME, "passwords.json")
for _name in list(os.environ):
    if _name.startswith("AIRFLOW__ETLOPS__") or _name.startswith("AIRFLOW_CONN_"):
        del os.environ[_name]

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.airflow",
    "tests.fixtures.smtp_server",
    "tests.fixtures.slack_server",
]


def pytest_collection_modifyitems(config: object, items: list[object]) -> None:
    """Everything under tests/integration is in the integration tier (``make unit`` skips it)."""
    import pytest

    for item in items:
        if "tests/integration/" in str(getattr(item, "path", "")):
            item.add_marker(pytest.mark.integration)  # type: ignore[attr-defined]


def pytest_sessionfinish(session: object, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)
