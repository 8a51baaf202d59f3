"""Per-task cost of the outcome listener, as a task process pays it.

Each sample is a fresh interpreter with airflow.sdk already imported (as in a task process).
Baseline: the task's end without etlops. Ours: the same plus recording the outcome into a
SQLite store (first use in the process: import, engine, schema check, one upsert).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

SAMPLES = int(os.environ.get("ETLOPS_BENCH_SAMPLES", "15"))

PROBE = """
import sys, time
import airflow.sdk
from airflow.sdk import DAG, BaseOperator
from airflow.sdk.configuration import conf
from datetime import datetime, timezone
from types import SimpleNamespace
ti = SimpleNamespace(dag_id="d", task_id="t", run_id="r%d" % time.time_ns(), map_index=-1, try_number=1,
                     start_date=datetime.now(timezone.utc), end_date=datetime.now(timezone.utc),
                     state="success", hostname="h")
start = time.perf_counter()
if sys.argv[1] == "ours":
    from etlops_airflow.listeners.outcomes import record_task_instance
    assert record_task_instance(ti, "success")
print((time.perf_counter() - start) * 1000)
"""


def sample(mode: str, env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AIRFLOW__ETLOPS__STORE_URL": f"sqlite:///{tmp}/bench.db"}
        sample("ours", env)  # creates the schema once, as the first task ever would
        base = [sample("baseline", env) for _ in range(SAMPLES)]
        ours = [sample("ours", env) for _ in range(SAMPLES)]
    b, o = statistics.median(base), statistics.median(ours)
    print(
        f"task end without etlops {b:6.2f} ms   with the outcome listener {o:6.2f} ms   "
        f"added {o - b:+6.2f} ms per task   (median of {SAMPLES} fresh processes, SQLite store)"
    )


if __name__ == "__main__":
    main()
