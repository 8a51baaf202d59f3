"""Alert evaluation: the rules in ``[etlops] alert_rules_file``, evaluated against the etlops store.

Each scheduled run evaluates the rules every ``[etlops] alert_evaluation_interval`` (1 minute)
until the next run is due (``[etlops] alert_evaluation_schedule``, hourly), waiting in the
triggerer in between: rules are evaluated every minute while Airflow's metadata DB gets one DAG
run an hour (24 a day, not 1,440). A manual run evaluates once. Notifications go to Slack and
e-mail through the rule file's routes; what cannot be delivered stays in the store's outbox for
the next evaluation.

Paused on creation. A rule file that does not load is an import error of this DAG naming
the file, the rule, the field and the value.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from etlops_airflow import config
from etlops_airflow.operators.alerts import EvaluateAlertRulesOperator

RULES_FILE = config.get("alert_rules_file").strip()
SCHEDULE = config.get_schedule("alert_evaluation_schedule")
INTERVAL = config.get_duration("alert_evaluation_interval")
BUDGET = config.get_duration("alert_delivery_budget")
ATTEMPTS = config.get_int("alert_max_delivery_attempts", minimum=1)


with DAG(
    dag_id="etlops_alerting",
    schedule=SCHEDULE,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    tags=["etlops", "alerting"],
    doc_md=__doc__,
):
    EvaluateAlertRulesOperator(
        task_id="evaluate",
        rules_file=RULES_FILE or None,  # None: the task is skipped, saying which option to set
        evaluate_for=max(0.0, config.schedule_period_s(SCHEDULE) - INTERVAL),
        interval=INTERVAL,
        delivery_budget=BUDGET,
        max_delivery_attempts=ATTEMPTS,
    )
