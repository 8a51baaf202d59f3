"""DAG parse cost added by etlops-airflow: the same DAG with and without our API (ms and ratio).

Each sample is a fresh interpreter that imports one DAG file, as a DAG processor's parsing
process does; baseline and ours alternate so drift hits both equally. "cold" times the whole
file import (Airflow included); "warm" preloads airflow.sdk first and times only the DAG file.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

SAMPLES = int(os.environ.get("ETLOPS_BENCH_SAMPLES", "25"))

BASELINE = """
from datetime import timedelta
from airflow.sdk import DAG, task

with DAG(dag_id="orders_daily", schedule="@daily", tags=["bench"]):
    @task
    def extract():
        return [1, 2, 3]

    @task
    def load(rows):
        return len(rows)

    @task
    def record(n):
        return n

    @task
    def wait():
        return True

    record(load(extract())) >> wait()
"""

OURS = """
from datetime import timedelta
from airflow.sdk import DAG, task
from etlops_airflow.notifications.metric import RecordMetricNotifier
from etlops_airflow.operators.metrics import RecordMetricsOperator
from etlops_airflow.sensors.metric import MetricSensor

with DAG(dag_id="orders_daily", schedule="@daily", tags=["bench"],
         on_failure_callback=RecordMetricNotifier("dag_run_failures")):
    @task
    def extract():
        return [1, 2, 3]

    @task
    def load(rows):
        return len(rows)

    record = RecordMetricsOperator(
        task_id="record",
        metrics=[{"name": "rows_loaded", "value": "{{ ti.xcom_pull(task_ids='load') }}"}],
    )
    wait = MetricSensor(task_id="wait", metric="rows_loaded", fn="sum", window=3600, threshold=1)
    load(extract()) >> record >> wait
"""

PROBE = """
import sys, time, runpy
{preload}
start = time.perf_counter()
runpy.run_path(sys.argv[1])
print((time.perf_counter() - start) * 1000)
"""


def sample(path: str, warm: bool) -> float:
    preload = "import airflow.sdk; from airflow.sdk import DAG, task" if warm else ""
    code = PROBE.format(preload=preload) if warm else PROBE.format(preload="")
    if not warm:
        code = code.replace("start = time.perf_counter()\n", "")
        code = "import time\nstart = time.perf_counter()\n" + code
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code, path], capture_output=True, text=True, env=env, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base_path, ours_path = os.path.join(tmp, "baseline_dag.py"), os.path.join(tmp, "etlops_dag.py")
        with open(base_path, "w") as f:
            f.write(textwrap.dedent(BASELINE))
        with open(ours_path, "w") as f:
            f.write(textwrap.dedent(OURS))
        for warm in (False, True):
            sample(base_path, warm), sample(ours_path, warm)  # compile caches, page cache
            base, ours = [], []
            for _ in range(SAMPLES):
                base.append(sample(base_path, warm))
                ours.append(sample(ours_path, warm))
            b, o = statistics.median(base), statistics.median(ours)
            # Paired differences cancel the drift a 2.7 s interpreter start-up brings.
            diffs = sorted(y - x for x, y in zip(base, ours, strict=True))
            added = statistics.median(diffs)
            low, high = diffs[len(diffs) // 4], diffs[(3 * len(diffs)) // 4]
            kind = "warm (airflow.sdk preloaded)" if warm else "cold (fresh interpreter)"
            print(
                f"{kind:<30} without etlops {b:8.1f} ms   with etlops {o:8.1f} ms   "
                f"added {added:+6.1f} ms (IQR {low:+.1f}..{high:+.1f})   ratio {o / b:.3f}   "
                f"(median of {SAMPLES} pairs)"
            )


if __name__ == "__main__":
    main()
