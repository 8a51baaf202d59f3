"""File maintenance against other processes and a real second filesystem: a tmpfs mounted
under the root (needs root; skipped with the reason otherwise), a separate process holding a
task-attempt log open for writing, and a separate process appending to a component log
during its copytruncate."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from etlops_airflow.core.maintenance.checkpoints import (
    CheckpointPolicy,
    checkpoint_names,
    execute_checkpoint_plan,
    plan_checkpoint_cleanup,
)
from etlops_airflow.core.maintenance.files import CachePolicy, plan_cache_cleanup, scan_tree, stat_record
from etlops_airflow.core.maintenance.rotation import copytruncate

pytestmark = pytest.mark.integration

NOW = time.time()
DAY = 86400.0


def mount(*args: str) -> subprocess.CompletedProcess[str]:
    """``mount ARGS``; the caller skips with the reason when it fails (not root, container)."""
    try:
        return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no mount command here")


def put(path: Path, size: int, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


def test_cache_cleanup_does_not_enter_a_real_tmpfs_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    point = root / "mounted"
    point.mkdir()
    done = mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        inside = put(point / "deep" / "old.bin", 100, 30 * DAY)
        put(root / "local" / "old.bin", 100, 30 * DAY)
        scan = scan_tree(str(root))
        assert scan.other_filesystem == ["mounted"]
        plan = plan_cache_cleanup(scan, CachePolicy(max_age_s=DAY, target_bytes=0, grace_period_s=0), now=NOW)
        assert [scan.rel(d.record) for d in plan.deletions] == ["local/old.bin"]
        outcome = plan.execute()
        assert outcome.errors == [] and inside.exists()
    finally:
        subprocess.run(["umount", str(point)], check=True, timeout=30)


def test_a_bind_mount_of_the_same_device_is_not_entered(tmp_path: Path) -> None:
    """Same st_dev, so only /proc/self/mountinfo tells: the walk must still stop there."""
    outside = tmp_path / "outside"
    precious = put(outside / "precious.bin", 100, 30 * DAY)
    root = tmp_path / "cache"
    point = root / "bound"
    point.mkdir(parents=True)
    done = mount("--bind", str(outside), str(point))
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.strip()}")
    try:
        assert os.stat(point).st_dev == os.stat(root).st_dev
        plan = plan_cache_cleanup(
            scan_tree(str(root)), CachePolicy(max_age_s=DAY, target_bytes=0, grace_period_s=0), now=NOW
        )
        assert plan.deletions == [] and plan.scan.other_filesystem == ["bound"]
        plan.execute()
        assert precious.exists()
    finally:
        subprocess.run(["umount", str(point)], check=True, timeout=30)


def test_checkpoint_holding_a_mount_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    for name in ("old", "older"):
        put(root / "p" / name / "data.bin", 100, 30 * DAY)
        os.utime(root / "p" / name, (NOW - 30 * DAY, NOW - 30 * DAY))
    point = root / "p" / "old" / "mnt"
    point.mkdir()
    os.utime(root / "p" / "old", (NOW - 30 * DAY, NOW - 30 * DAY))
    done = mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        os.utime(point, (NOW - 30 * DAY, NOW - 30 * DAY))
        put(point / "on_tmpfs.bin", 10, 30 * DAY)
        plan = plan_checkpoint_cleanup(scan_tree(str(root)), CheckpointPolicy(keep_last=0), now=NOW)
        assert checkpoint_names(plan) == ["p/older"] and plan.kept["blocked"] == 1
        assert execute_checkpoint_plan(plan).errors == []
        assert (point / "on_tmpfs.bin").exists()
    finally:
        subprocess.run(["umount", str(point)], check=True, timeout=30)


HOLDER = textwrap.dedent(
    """
    import sys
    with open(sys.argv[1], "a") as log:
        log.write("attempt running\\n"); log.flush()
        print("ready", flush=True)
        sys.stdin.readline()
        log.write("attempt finished\\n")
    """
)


def test_log_rotation_leaves_a_log_another_process_is_writing(tmp_path: Path) -> None:
    from etlops_airflow.operators.maintenance.files import LogRotationOperator

    root = tmp_path / "logs"
    task = root / "dag_id=d" / "run_id=r1" / "task_id=t"
    running = task / "attempt=2.log"
    closed = put(task / "attempt=1.log", 2000, 40 * DAY)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(running)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "ready"
        os.utime(running, (NOW - 60 * DAY, NOW - 60 * DAY))  # looks ancient, is being written
        op = LogRotationOperator(
            task_id="rot", path=str(root), max_files=1, max_size_mb=0.000001, grace_period_s=0
        )
        run = op.run_maintenance({})
        assert run.errors == ()
        plan: dict[str, object] = run.details["plan"]  # type: ignore[assignment]
        assert str(plan["open_file_check"]).startswith("/proc fds of all")
        assert not closed.exists()
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert running.read_text() == "attempt running\nattempt finished\n"


WRITER = textwrap.dedent(
    """
    import os, sys, time
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    deadline = time.monotonic() + float(sys.argv[2])
    stamps = []
    seq = 0
    print("ready", flush=True)
    while time.monotonic() < deadline:
        before = time.monotonic_ns()
        os.write(fd, ("line %09d %s\\n" % (seq, "." * 40)).encode())
        stamps.append("%d %d %d" % (seq, before, time.monotonic_ns()))
        seq += 1
    os.close(fd)
    sys.stdout.write("\\n".join(stamps) + "\\n")
    """
)


def test_copytruncate_against_a_separate_writer_process(tmp_path: Path) -> None:
    """No GIL shared with the writer here: the writer runs flat out on the other core."""
    folder = tmp_path / "scheduler"
    folder.mkdir()
    log = folder / "scheduler.log"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(log), "0.6"], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        result = copytruncate(dir_fd, stat_record("scheduler.log", dir_fd), "scheduler.log.1")
    finally:
        os.close(dir_fd)
    out, _ = writer.communicate(timeout=60)
    stamps = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    present = [
        int(line.split()[1])
        for path in (folder / "scheduler.log.1", log)
        for line in path.read_text().splitlines()
    ]
    assert len(present) == len(set(present)) and present == sorted(present)
    lost = {s[0] for s in stamps} - set(present)
    overlapping = {
        seq
        for seq, before, after in stamps
        if after >= result.window_start_ns and before <= result.window_end_ns
    }
    assert lost <= overlapping
    print(
        f"separate writer: {len(stamps)} lines, copytruncate window {result.window_ns / 1000:.1f} us, "
        f"{result.passes} copy passes, lost {len(lost)}"
    )
