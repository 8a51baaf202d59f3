"""Read an Airflow Connection wherever our code runs.

In a task, the Task SDK's ``BaseHook.get_connection`` asks the API server. In the API server
(the etlops app) and in ``airflow etlops`` commands there is no task context: the SDK looks
only at its secrets backends (environment variables, configured backends), so a Connection
kept in Airflow's metadata DB is found through Airflow's own lookup, which includes it.
"""

from __future__ import annotations

from typing import Any


def get_connection(conn_id: str) -> Any:
    """The Connection ``conn_id``; raises the SDK's error when no lookup finds it."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as sdk_error:
        try:
            from airflow.models.connection import Connection
            from airflow.sdk.execution_time import task_runner

            if getattr(task_runner, "SUPERVISOR_COMMS", None) is not None:
                raise sdk_error  # inside a task: the API server's answer stands
            return Connection.get_connection_from_secrets(conn_id)
        except Exception:
            raise sdk_error from None
