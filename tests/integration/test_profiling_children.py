"""Profiling with real child processes (what SQL clients, Bash commands and pod launchers are to a
task), the import cost of the public module, and the API inside real Airflow tasks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etlops_airflow import profiling
from etlops_airflow.core.profiling.session import Session

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc children"),
]

MB = 1024**2
REPO = Path(__file__).resolve().parents[2]

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_child_burning_cpu_counts_in_the_stage() -> None:
    s = Session(sample_interval=0.05)
    with s.stage("psql"):
        subprocess.run(_python(BURN.format(s=1.0)), check=True)
    (f,) = s.finish().stages
    assert f.cpu_s >= 0.95  # the child's CPU second (plus its start-up and this process's waiting)
    # ~100 % of one core over the stage's wall time when the machine is not oversubscribed.
    assert f.cpu_percent == pytest.approx(f.cpu_s / f.duration_s * 100)
    if f.duration_s < 1.3:
        assert 75 <= f.cpu_percent <= 130
    assert f.children_peak >= 1


def test_a_child_still_running_at_the_stage_end_counts_until_then() -> None:
    s = Session(sample_interval=0.05)
    child = subprocess.Popen(_python(BURN.format(s=5.0)))
    try:
        with s.stage("before"):  # the child runs, not waited for: read live from /proc
            time.sleep(1.0)
        with s.stage("after"):
            time.sleep(0.5)
    finally:
        child.kill()
        child.wait()
    before, after = s.finish().stages
    assert 0.7 <= before.cpu_s <= 1.2
    assert 0.3 <= after.cpu_s <= 0.7  # the same child, only its time in this stage
    assert before.children_peak == after.children_peak == 1


def test_grandchildren_count_when_their_parent_waits_for_them() -> None:
    # A Bash command starting a background worker: bash is the child, the worker a grandchild.
    s = Session(sample_interval=0.05)
    with s.stage("bash"):
        script = f"{sys.executable} -c '{BURN.format(s=1.0)}' & sleep 0.5; wait"
        subprocess.run(["bash", "-c", script], check=True)
    (f,) = s.finish().stages
    assert f.cpu_s >= 0.95
    assert f.children_peak >= 2  # bash and the worker, seen alive by the sampler


def test_child_memory_counts_in_the_stage_peak() -> None:
    s = Session(sample_interval=0.02)
    code = "import time\nb = b'x' * (300 * 1024 * 1024)\ntime.sleep(0.8)\n"
    with s.stage("big_child"):
        subprocess.run(_python(code), check=True)
    (f,) = s.finish().stages
    assert f.peak_rss_bytes >= 300 * MB


def test_child_io_counts_in_the_stage(tmp_path: Path) -> None:
    target = tmp_path / "dump.bin"
    code = (
        "import os, sys\n"
        "with open(sys.argv[1], 'wb') as f:\n"
        "    for _ in range(20): f.write(b'x' * 1048576)\n"
        "    f.flush(); os.fsync(f.fileno())\n"
    )
    s = Session(sample_interval=0.05)
    with s.stage("pg_dump"):
        subprocess.run([*_python(code), str(target)], check=True)
    (f,) = s.finish().stages
    assert f.io_write_bytes is not None and f.io_write_bytes >= 20 * MB


def test_the_whole_task_stage_measures_children_for_the_listener() -> None:
    profiling.start_session(None, sample_interval=0.05)
    stage = profiling.whole_task_stage("run_sql")
    subprocess.run(_python(BURN.format(s=0.5)), check=True)
    with profiling.profile_stage("inner"):
        pass
    report = profiling.finish_session()
    assert report is not None and stage.path == "run_sql"
    whole = next(f for f in report.stages if f.path == "run_sql")
    assert whole.cpu_s >= 0.45 and whole.children_peak >= 1
    assert [f.path for f in report.stages] == ["run_sql", "run_sql/inner"]


def test_importing_the_public_module_stays_cheap() -> None:
    code = (
        "import sys, threading, json\n"
        "before = set(sys.modules)\n"
        "import etlops_airflow.profiling as p\n"
        "@p.profiled(stage='load')\n"
        "def load(rows): return rows\n"
        "added = sorted(set(sys.modules) - before)\n"
        "print(json.dumps({'added': added, 'threads': threading.active_count()}))\n"
    )
    out = subprocess.run(_python(code), capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = [
        m
        for m in result["added"]
        if m.split(".")[0] in ("psutil", "ctypes", "airflow", "sqlalchemy")
        or m.startswith(("etlops_airflow.core.profiling.session", "etlops_airflow.core.profiling.reader"))
    ]
    assert heavy == [] and result["threads"] == 1


def test_outside_airflow_no_airflow_is_imported() -> None:
    code = (
        "import sys\n"
        "from etlops_airflow.profiling import profile_stage, last_report\n"
        "with profile_stage('parse', records_in=3) as s:\n"
        "    s.records_out = 3\n"
        "r = last_report()\n"
        "print(r.stages[0].path, r.stages[0].records_out, 'airflow' in sys.modules)\n"
    )
    out = subprocess.run(_python(code), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["parse", "3", "False"]


@pytest.mark.slow
def test_the_issue_example_inside_real_airflow_tasks(airflow_db: str, tmp_path: Path) -> None:
    from tests.fixtures.airflow import run_dag

    result = run_dag(
        REPO / "tests" / "integration" / "dags_profiling",
        "etlops_profiling_probe",
        env={"ETLOPS_PROFILE_OUT": str(tmp_path)},
    )
    assert result.state == "success", result.output[-4000:]
    transform = json.loads((tmp_path / "transform.json").read_text())
    assert transform["key"]["dag_id"] == "etlops_profiling_probe"
    assert transform["key"]["task_id"] == "transform"
    assert transform["key"]["run_id"] and transform["key"]["try_number"] == 1
    assert [(g["path"], g["records_in"], g["records_out"]) for g in transform["stages"]] == [
        ("parse", 1000, 1000),
        ("enrich", 1000, 1000),
    ]
    loaded = json.loads((tmp_path / "report_load.json").read_text())
    assert loaded["key"]["task_id"] == "load"
    assert [g["path"] for g in loaded["stages"]] == ["load"]
