"""DAG parse cost added by etlops-airflow: the same DAG with and without our API (ms and ratio).

Each sample is a fresh interpreter that imports one DAG file, as a DAG processor's parsing
process does; baseline and ours alternate so drift hits both equally, and the figure is
the median of the paired differences (CPU time).

* "airflow first": the interpreter imports ``airflow.sdk`` (which every DAG file needs)
  before the clock starts; the clock then covers the DAG file, our imports included. This
  is the precise figure for what our package adds.
* "whole file": the clock covers everything, Airflow's own ~3 s import included; that
  import alone varies by a few hundred ms from run to run here, so this figure is noisy.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

SAMPLES = int(os.environ.get("ETLOPS_BENCH_SAMPLES", "25"))

# Both DAG files share the same extract/load tasks; only the last two steps differ.
HEADER = """
from airflow.sdk import DAG, task
"""
TASKS = """
    @task
    def extract():
        return [1, 2, 3]

    @task
    def load(rows):
        return len(rows)
"""

BASELINE = (
    HEADER
    + """
with DAG(dag_id="orders_daily", schedule="@daily", tags=["bench"]):
"""
    + TASKS
    + """
    @task
    def record(n):
        return n

    @task
    def wait():
        return True

    record(load(extract())) >> wait()
"""
)

OURS = (
    HEADER
    + """
from etlops_airflow.notifications.metric import RecordMetricNotifier
from etlops_airflow.operators.metrics import RecordMetricsOperator
from etlops_airflow.sensors.metric import MetricSensor

with DAG(dag_id="orders_daily", schedule="@daily", tags=["bench"],
         on_failure_callback=RecordMetricNotifier("dag_run_failures")):
"""
    + TASKS
    + """
    record = RecordMetricsOperator(
        task_id="record",
        metrics=[{"name": "rows_loaded", "value": "{{ ti.xcom_pull(task_ids='load') }}"}],
    )
    wait = MetricSensor(task_id="wait", metric="rows_loaded", fn="sum", window=3600, threshold=1)
    load(extract()) >> record >> wait
"""
)

# cold: the clock starts before anything is imported; warm: after airflow.sdk is loaded.
COLD = """
import time
start = time.process_time()
import runpy, sys
runpy.run_path(sys.argv[1])
print((time.process_time() - start) * 1000)
"""
WARM = """
import runpy, sys, time
import airflow.sdk
from airflow.sdk import DAG, task
start = time.process_time()
runpy.run_path(sys.argv[1])
print((time.process_time() - start) * 1000)
"""


# Like an installed package (pip compiles bytecode at install), let the warm-up runs cache .pyc files.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def sample(path: str, warm: bool) -> float:
    out = subprocess.run(
        [sys.executable, "-c", WARM if warm else COLD, path],
        capture_output=True,
        text=True,
        check=True,
        env=ENV,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base_path, ours_path = os.path.join(tmp, "baseline_dag.py"), os.path.join(tmp, "etlops_dag.py")
        with open(base_path, "w") as f:
            f.write(BASELINE)
        with open(ours_path, "w") as f:
            f.write(OURS)
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
            kind = "airflow first" if warm else "whole file"
            print(
                f"{kind:<14} without etlops {b:8.1f} ms   with etlops {o:8.1f} ms   "
                f"added {added:+6.1f} ms (IQR {low:+.1f}..{high:+.1f})   ratio {o / b:.3f}   "
                f"(median of {SAMPLES} pairs)"
            )


if __name__ == "__main__":
    main()
