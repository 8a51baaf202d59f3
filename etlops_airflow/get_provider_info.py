"""Provider info for Airflow's providers manager (entry point ``apache_airflow_provider``).

A bad dict here breaks every Airflow process: tests/unit/test_provider_info.py validates it
against Airflow's ``provider_info.schema.json``.
"""

from __future__ import annotations

from typing import Any

from etlops_airflow import __version__
from etlops_airflow.config import OPTIONS, SECTION

INTEGRATION = "etlops"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "etlops-airflow",
        "name": "etlops",
        "description": (
            "Operations for ETL pipelines: alerting on pipeline metrics, profiling of task stages, "
            "maintenance DAGs, versioned pipeline migrations and an operations view."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://pypi.org/project/etlops-airflow/",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "etlops_airflow.operators.metrics",
                    "etlops_airflow.operators.data_quality",
                    "etlops_airflow.operators.alerts",
                    "etlops_airflow.operators.maintenance.database",
                    "etlops_airflow.operators.maintenance.health",
                    "etlops_airflow.operators.maintenance.report",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["etlops_airflow.sensors.metric", "etlops_airflow.sensors.alerts"],
            }
        ],
        "triggers": [{"integration-name": INTEGRATION, "python-modules": ["etlops_airflow.triggers.alerts"]}],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": ["etlops_airflow.hooks.store"]}],
        "connection-types": [
            {
                "connection-type": "etlops_store",
                "hook-class-name": "etlops_airflow.hooks.store.EtlopsStoreHook",
                "hook-name": "etlops store",
            }
        ],
        "notifications": [
            "etlops_airflow.notifications.metric.RecordMetricNotifier",
            "etlops_airflow.notifications.alerts.EtlopsAlertNotifier",
        ],
        # The plugin is registered only by the airflow.plugins entry point: listing it here too makes
        # Airflow report "already registered" when [core] lazy_load_plugins/providers is off.
        "cli": ["etlops_airflow.cli.get_etlops_cli_commands"],
        "config": {
            SECTION: {
                "description": "etlops-airflow: where the operations store lives and what is recorded.",
                "options": {name: dict(spec) for name, spec in OPTIONS.items()},
            }
        },
    }
