"""DAGs for the alerting end-to-end test: a pipeline that fails while ETLOPS_TEST_FAIL is set,
and an evaluation DAG that runs the rule file once."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, task

from etlops_airflow.operators.alerts import EvaluateAlertRulesOperator

with DAG("etlops_e2e_orders", schedule=None, start_date=datetime(2024, 1, 1), default_args={"retries": 0}):

    @task
    def load() -> int:
        if os.environ.get("ETLOPS_TEST_FAIL") == "1":
            raise RuntimeError("warehouse unreachable")
        return 42

    load()

with DAG("etlops_e2e_evaluate", schedule=None, start_date=datetime(2024, 1, 1)):
    EvaluateAlertRulesOperator(
        task_id="evaluate", rules_file=os.environ.get("ETLOPS_TEST_RULES", "/nonexistent")
    )
