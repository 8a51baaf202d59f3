"""Test DAG: the profiling API of the issue, as written, inside real Airflow tasks. Each task
writes its session's summary to $ETLOPS_PROFILE_OUT/<task_id>.json for the test to read."""

from __future__ import annotations

import json
import os

from airflow.sdk import DAG, task

from etlops_airflow.profiling import last_report, profile_stage, profiled


def _dump(task_id: str) -> None:
    from etlops_airflow.core.profiling.report import summary

    report = last_report()
    assert report is not None
    with open(os.path.join(os.environ["ETLOPS_PROFILE_OUT"], f"{task_id}.json"), "w") as out:
        json.dump(summary(report), out)


def parse(r: int) -> str:
    return str(r)


with DAG(dag_id="etlops_profiling_probe", schedule=None, tags=["etlops-test"]):

    @task
    def transform(rows: list[int]) -> list[str]:
        with profile_stage("parse", records_in=len(rows)) as stage:
            parsed = [parse(r) for r in rows]
            stage.records_out = len(parsed)
        with profile_stage("enrich", records_in=len(parsed)) as stage:
            enriched = [p + "!" for p in parsed]
            stage.records_out = len(enriched)
        _dump("transform")
        return enriched

    @task
    @profiled(stage="load")  # the whole callable as one stage
    def load(rows: list[str]) -> int:
        return len(rows)

    @task
    def report_load(count: int) -> None:
        assert count == 1000
        _dump("report_load")

    report_load(load(transform(list(range(1000)))))
