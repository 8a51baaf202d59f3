"""The profiler against the real process (no fakes): memory, CPU, IO and threads as the OS
reports them. Child processes are in tests/integration/test_profiling_children.py (the unit
tier starts no process)."""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from etlops_airflow import profiling
from etlops_airflow.core.profiling.reader import ProcReader, PsutilReader, Reading, default_reader
from etlops_airflow.core.profiling.session import Session

MB = 1024**2
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture(autouse=True)
def _fresh_profiling() -> Iterator[None]:
    profiling.finish_session()
    yield
    profiling.finish_session()


def _burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def test_a_stage_allocating_300_mb_shows_its_peak() -> None:
    s = Session(sample_interval=0.05)
    with s.stage("allocate"):
        block = b"\x01" * (300 * MB)  # written, so resident
        time.sleep(0.3)  # several samples see it
        del block
    (f,) = s.finish().stages
    assert f.peak_rss_bytes >= 300 * MB
    assert f.peak_rss_bytes - f.end_rss_bytes >= 290 * MB  # the peak is the allocation's
    assert f.samples >= 3


def test_a_peak_between_samples_is_caught_by_the_high_water_mark() -> None:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    now = default_reader().read(children=False).rss_bytes
    size = max(300 * MB, own - now + 64 * MB)  # a new high-water mark for this process
    if size > 2048 * MB:
        pytest.skip("this test process already peaked too high to set a new high-water mark cheaply")
    s = Session(sample_interval=0)  # no sampler: only the stage's start and end are read
    with s.stage("spike"):
        block = b"\x01" * size
        del block
    (f,) = s.finish().stages
    assert f.samples == 0
    assert f.peak_rss_bytes >= now + size - 32 * MB


def test_a_stage_burning_cpu_shows_one_core() -> None:
    s = Session(sample_interval=0.1)
    before, wall = time.process_time(), time.perf_counter()
    with s.stage("burn"):
        _burn(1.0)
    used, wall = time.process_time() - before, time.perf_counter() - wall
    (f,) = s.finish().stages
    # The figure is the process's CPU over the stage's wall time, as the OS counts it: ~100 % of
    # one core when the machine gives the loop a core, less when other processes take it away.
    assert f.cpu_s == pytest.approx(used, abs=0.05)
    assert f.cpu_percent == pytest.approx(used / wall * 100, abs=8)
    if used / wall > 0.9:  # the loop had its core
        assert 85 <= f.cpu_percent <= 115
    cores = f.cpu_percent / f.cpu_percent_machine
    assert cores == pytest.approx(default_reader().cpu_count)


def test_a_stage_writing_50_mb_shows_it_written(tmp_path: Path) -> None:
    s = Session(sample_interval=0.05)
    chunk = b"\x02" * MB
    with s.stage("write"):
        with open(tmp_path / "out.bin", "wb") as out:
            for _ in range(50):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    with s.stage("read"):
        with open(tmp_path / "out.bin", "rb") as f_in:
            while f_in.read(MB):
                pass
    write, read = s.finish().stages
    if write.io_write_bytes is None:
        pytest.skip("this OS gives no IO counters")
    assert write.io_write_bytes >= 50 * MB
    assert write.io_write_ops is not None and write.io_write_ops >= 50
    assert read.io_read_bytes is not None and read.io_read_bytes >= 50 * MB
    assert read.io_write_bytes is not None and read.io_write_bytes < MB


def test_threads_started_in_a_stage_are_seen() -> None:
    s = Session(sample_interval=0.02)
    stop = threading.Event()
    base = default_reader().read(children=False).threads
    with s.stage("threads"):
        workers = [threading.Thread(target=stop.wait) for _ in range(4)]
        for w in workers:
            w.start()
        time.sleep(0.2)
        stop.set()
        for w in workers:
            w.join()
    (f,) = s.finish().stages
    assert f.threads_peak >= base + 4


def test_a_reading_of_this_process() -> None:
    reading = default_reader().read()
    assert isinstance(reading, Reading)
    assert reading.cpu_s > 0 and reading.rss_bytes > 10 * MB and reading.threads >= 1
    assert reading.maxrss_bytes >= reading.rss_bytes * 0.5
    import psutil

    # whatever children this process has (none in the unit tier alone; a full run may have a
    # server an earlier test started), the reading counts them as psutil does
    assert reading.live is not None
    assert reading.live.count == len(psutil.Process().children(recursive=True))
    if sys.platform.startswith("linux"):
        assert reading.io is not None and reading.io.read_bytes > 0


@linux
def test_proc_and_psutil_readers_agree() -> None:
    proc, ps = ProcReader(), PsutilReader()
    a, b = proc.read(), ps.read()
    assert proc.gil_free  # libc reads that keep the GIL
    assert abs(a.rss_bytes - b.rss_bytes) < 20 * MB
    assert a.threads == b.threads
    assert a.io is not None and b.io is not None
    assert abs(a.io.read_bytes - b.io.read_bytes) < MB
    os_reader = ProcReader(gil_free=False)
    assert not os_reader.gil_free and abs(os_reader.read().rss_bytes - a.rss_bytes) < 20 * MB


@linux
def test_reads_hold_no_file_open() -> None:
    reader = ProcReader()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(200):
        reader.read()
    assert len(os.listdir("/proc/self/fd")) == before


def test_the_public_api_with_the_real_reader(tmp_path: Path) -> None:
    rows = list(range(50_000))
    with profiling.profile_stage("transform", records_in=len(rows)):
        with profiling.profile_stage("parse", records_in=len(rows)) as stage:
            parsed = [str(r) for r in rows]
            stage.records_out = len(parsed)
        with profiling.profile_stage("write") as stage:
            (tmp_path / "rows.txt").write_text("\n".join(parsed))
            stage.records_out = len(parsed)
    report = profiling.finish_session()
    assert report is not None
    assert [f.path for f in report.stages] == ["transform", "transform/parse", "transform/write"]
    assert all(f.duration_s > 0 and f.peak_rss_bytes > 0 and f.end_rss_bytes > 0 for f in report.stages)
    parse = report.stages[1]
    assert parse.records_per_s is not None and parse.records_per_s > 1000
    assert report.peak_rss_bytes >= max(f.peak_rss_bytes for f in report.stages)


def test_stage_enter_and_exit_is_cheap() -> None:
    s = Session(sample_interval=1.0)
    with s.stage("warm"):
        pass
    times = []
    for _ in range(300):
        start = time.perf_counter()
        with s.stage("tick"):
            pass
        times.append(time.perf_counter() - start)
    s.finish()
    times.sort()
    assert times[len(times) // 2] < 0.001  # the benchmark's goal is 100 µs; 1 ms here against noise
