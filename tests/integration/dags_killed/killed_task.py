"""Test DAG whose tasks die by SIGKILL, as under the out-of-memory killer. In its own folder:
``dag.test()`` runs tasks in its own process, so only a real executor may run this DAG."""

from __future__ import annotations

import os
import signal
from datetime import timedelta

from airflow.sdk import DAG, task

with DAG(dag_id="etlops_killed_task", schedule=None, tags=["etlops-test"]):

    @task
    def killed() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    @task(retries=1, retry_delay=timedelta(seconds=0))
    def killed_once(**context: object) -> int:
        if getattr(context["ti"], "try_number", 1) == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return 1

    @task
    def after_killed() -> None:
        pass

    killed() >> after_killed()
    killed_once()
