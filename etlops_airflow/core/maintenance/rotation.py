"""Log rotation for an Airflow log folder: plan (plain data) and its execution.

Layout handled (Airflow 3.3, checked in ``config_templates/config.yml`` and
``utils/log/file_task_handler.py`` / ``dag_processing/manager.py``):

* **Task-attempt logs** — ``[logging] log_filename_template`` defaults to
  ``dag_id=…/run_id=…/task_id=…/[map_index=…/]attempt=N.log``; one file per attempt, written
  (append mode) only while the attempt runs. The triggerer writes a deferred attempt's
  trigger output next to it as ``attempt=N.log.trigger.<job id>.log``. Every file named
  ``attempt=N.log`` (plus such ``.….log`` companions and ``.gz`` forms) is recognised
  wherever it is, so a custom template that keeps the ``attempt=N.log`` file name works. A
  *task* is the attempt's folder with the ``run_id=…`` level left out (the same task across
  runs; each ``map_index`` is its own task); one *attempt* is the log with its companions.
  Rules, in order: attempts last written more than ``max_age_days`` ago are deleted; per task
  only the newest ``max_files`` attempts stay; then the oldest go until all attempt logs take
  at most ``max_size_bytes`` (sizes as found, before this run's compression); the closed ones
  left are gzip-compressed in place (``attempt=N.log.gz``, mtime kept).
  An attempt is *active*, and never touched nor counted out, when one of its files was
  modified within the grace period, has an mtime in the future, or is open for writing by a
  process (``/proc/*/fd``; where that cannot be read, the grace period alone protects it).
  Airflow's local log reader globs ``attempt=N.log*`` and reads text: it cannot show a
  ``.gz`` (it logs a read error) — compress only what nobody needs to read in the UI.
* **Dated component logs** — the DAG processor writes one file per DAG file under
  ``[logging] dag_processor_child_process_log_directory`` (``<base>/dag_processor`` by
  default) as ``YYYY-MM-DD/<bundle>/<path>.log``, plus a ``latest`` symlink; Airflow 2's
  scheduler did the same under ``scheduler/``. Files in a ``YYYY-MM-DD`` folder of a
  component folder are deleted by age only (closed, not recent); emptied folders are pruned.
* **Long-running component logs** — regular files directly in a component folder (or a
  component given as an absolute file/folder, e.g. the ``airflow-scheduler.log`` a daemonised
  component writes in ``AIRFLOW_HOME``) are rotated logrotate-style with *copytruncate* and
  *delaycompress*: ``name`` → ``name.1`` (copy, then truncate ``name`` in place so the
  writer keeps its fd), the previous ``name.1`` → ``name.2.gz``, … keeping ``max_files``
  copies; empty files are not rotated (``notifempty``). Symlinks are never followed nor
  rotated.

Everything else under the root is left alone and counted as ``ignored``.
"""

from __future__ import annotations

import errno
import gzip
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from etlops_airflow.core.maintenance.files import (
    NO_OPEN_FILES,
    SAMPLE,
    DeleteOutcome,
    Deletion,
    DirChain,
    OpenFiles,
    Record,
    ScannedDir,
    TreeScan,
    execute_deletions,
    open_root,
    paused_gc,
    prunable_dirs,
)

ATTEMPT_RE = re.compile(r"attempt=(?P<n>\d+)\.log(?P<extra>(?:\.[^/]+)?\.log)?(?P<gz>\.gz)?\Z")
COPY_RE = re.compile(r"(?P<base>.+)\.(?P<n>[1-9]\d{0,5})(?P<gz>\.gz)?\Z")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
TMP_SUFFIX = ".etlops-tmp"
"""Our own in-progress files (``.<name>.etlops-tmp``): left over only by a crash, deleted
once older than the grace period."""
GZIP_LEVEL = 6
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LogPolicy:
    max_files: int = 10
    max_size_bytes: int = 100 * 1024 * 1024
    max_age_s: float = 30 * 86400.0
    compress: bool = True
    grace_period_s: float = 300.0


@dataclass
class Attempt:
    """One task attempt: its log and companions (trigger logs, ``.gz`` forms)."""

    task: str
    number: int
    files: list[Record]
    size: int = 0
    last_ns: int = 0
    active: bool = False


@dataclass
class Rotation:
    """copytruncate + delaycompress of one long-running log ``live`` in directory ``dir``.

    Order: ``delete`` (copies that would exceed max_files), ``shift`` (rename, highest
    first), ``compress`` (``name.1`` → ``name.2.gz``), then copy ``name`` → ``name.1`` and
    truncate ``name``."""

    scan: TreeScan
    dir: int
    live: Record
    delete: list[Record]
    shift: list[tuple[Record, str]]
    compress: tuple[Record, str] | None
    copy_to: str

    @property
    def path(self) -> str:
        return os.path.join(self.scan.root, self.scan.rel(self.live))

    def summary(self) -> dict[str, object]:
        return {
            "file": self.path,
            "bytes": self.live.size,
            "copy_to": self.copy_to,
            "shift": [f"{rec.name} -> {new}" for rec, new in self.shift],
            "compress": f"{self.compress[0].name} -> {self.compress[1]}" if self.compress else None,
            "delete": [{"name": rec.name, "bytes": rec.size} for rec in self.delete],
        }


@dataclass
class LogPlan:
    """What a log rotation would do; :func:`execute_log_plan` does it."""

    scan: TreeScan
    policy: LogPolicy
    now: float
    open_check: str
    attempts: int
    tasks: int
    attempt_bytes: int
    active: int
    deletions: list[Deletion]
    compress: list[Record]
    rotations: list[Rotation]
    component_scans: list[TreeScan]
    prune: list[int]
    ignored: list[str]
    skipped: dict[str, int]
    missing_components: list[str] = field(default_factory=list)

    def summary(self, sample: int = SAMPLE) -> dict[str, object]:
        by_reason: dict[str, dict[str, int]] = {}
        for item in self.deletions:
            slot = by_reason.setdefault(item.reason, {"files": 0, "bytes": 0})
            slot["files"] += 1
            slot["bytes"] += item.bytes
        deleted_task_bytes = sum(d.bytes for d in self.deletions if d.reason in ("age", "count", "size"))
        return {
            "root": self.scan.root,
            "policy": {
                "max_files": self.policy.max_files,
                "max_size_bytes": self.policy.max_size_bytes,
                "max_age_s": self.policy.max_age_s,
                "compress": self.policy.compress,
                "grace_period_s": self.policy.grace_period_s,
            },
            "open_file_check": self.open_check,
            "scanned": {"entries": self.scan.entries, "dirs": len(self.scan.dirs)},
            "task_logs": {
                "tasks": self.tasks,
                "attempts": self.attempts,
                "bytes": self.attempt_bytes,
                "active_attempts": self.active,
                "after_bytes": self.attempt_bytes - deleted_task_bytes,
                "delete": {
                    reason: by_reason.get(reason, {"files": 0, "bytes": 0})
                    for reason in ("age", "count", "size")
                },
                "compress": {"files": len(self.compress), "bytes": sum(r.size for r in self.compress)},
            },
            "dated_component_logs": {"delete": by_reason.get("dated_age", {"files": 0, "bytes": 0})},
            "leftover_temp_files": by_reason.get("leftover", {"files": 0, "bytes": 0}),
            "component_logs": [r.summary() for r in self.rotations],
            "components_not_found": list(self.missing_components),
            "prune_dirs": len(self.prune),
            "skipped": dict(self.skipped),
            "ignored": {"files": len(self.ignored), "sample": self.ignored[:sample]},
            "other_filesystem": self.scan.other_filesystem[:sample],
            "sample": [
                {"path": self.scan.rel(d.record), "bytes": d.bytes, "reason": d.reason}
                for d in self.deletions[:sample]
            ]
            + [
                {"path": self.scan.rel(r), "bytes": r.size, "reason": "compress"}
                for r in self.compress[:sample]
            ],
        }


def task_key(rel_dir: str) -> str:
    """The task an attempt folder belongs to: the folder without its ``run_id=…`` level."""
    return "/".join(part for part in rel_dir.split("/") if not part.startswith("run_id="))


def shallow_scan(path: str) -> TreeScan:
    """The entries directly in ``path`` (no descent), as a :class:`TreeScan` rooted there."""
    scan = TreeScan(root=path)
    try:
        fd = open_root(path)
    except OSError as exc:
        scan.errors.append(f"cannot open {path!r}: {exc.strerror or exc}")
        return scan
    try:
        st = os.fstat(fd)
        here = ScannedDir("", (), -1, st.st_dev, st.st_ino, st.st_mtime_ns)
        scan.dirs.append(here)
        with os.scandir(fd) as entries:
            for entry in entries:
                here.entries += 1
                try:
                    est = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if not stat.S_ISDIR(est.st_mode):
                    scan.records.append(
                        Record(
                            0,
                            entry.name,
                            est.st_mode,
                            est.st_dev,
                            est.st_ino,
                            est.st_nlink,
                            est.st_size,
                            est.st_atime_ns,
                            est.st_mtime_ns,
                        )
                    )
        scan.entries = here.entries
    except OSError as exc:
        scan.errors.append(f"cannot read {path!r}: {exc.strerror or exc}")
    finally:
        os.close(fd)
    return scan


def scan_component(path: str) -> TreeScan:
    """A component given as an absolute path: a folder (its files) or one file (that file
    and its numbered copies, from a shallow scan of its folder)."""
    try:
        is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError as exc:
        scan = TreeScan(root=path)
        scan.errors.append(f"cannot read component log {path!r}: {exc.strerror or exc}")
        return scan
    if is_dir:
        return shallow_scan(path)
    folder, name = os.path.split(path)
    scan = shallow_scan(folder)
    scan.records = [
        r
        for r in scan.records
        if r.name == name or ((m := COPY_RE.match(r.name)) is not None and m.group("base") == name)
    ]
    return scan


def plan_log_rotation(
    scan: TreeScan,
    policy: LogPolicy,
    *,
    now: float,
    components: Sequence[str] = (),
    component_scans: Sequence[TreeScan] = (),
    open_files: OpenFiles = NO_OPEN_FILES,
) -> LogPlan:
    """Decide what to delete, compress and rotate under ``scan.root``.

    ``components`` are folder names relative to the root (``scheduler``, ``dag_processor``);
    ``component_scans`` are shallow scans of components given as absolute paths (a folder,
    or a file's folder filtered to that file by the caller)."""
    with paused_gc():
        return _plan(scan, policy, now, components, component_scans, open_files)


def _plan(
    scan: TreeScan,
    policy: LogPolicy,
    now: float,
    components: Sequence[str],
    component_scans: Sequence[TreeScan],
    open_files: OpenFiles,
) -> LogPlan:
    now_ns = int(now * 1e9)
    grace_ns = now_ns - int(policy.grace_period_s * 1e9)
    age_ns = now_ns - int(policy.max_age_s * 1e9)
    writing = open_files.writing
    component_set = {c.strip("/") for c in components}
    dirs = scan.dirs
    # which scanned dirs are component folders / dated folders below them
    component_dirs: set[int] = set()
    dated_dirs: set[int] = set()
    for index, here in enumerate(dirs):
        if index == 0:
            continue
        if here.rel in component_set:
            component_dirs.add(index)
        elif here.parent in component_dirs and DATE_RE.match(here.parts[-1]):
            dated_dirs.add(index)
        elif here.parent in dated_dirs:
            dated_dirs.add(index)

    skipped = {"open_for_writing": 0, "recent": 0, "symlinks": 0, "gz_exists": 0}
    attempts: dict[tuple[int, int], Attempt] = {}
    deletions: list[Deletion] = []
    ignored: list[str] = []
    live_by_dir: dict[int, list[Record]] = {}
    copies_by_dir: dict[int, list[Record]] = {}
    for rec in scan.records:
        mode = rec.mode
        if stat.S_ISLNK(mode):
            skipped["symlinks"] += 1
            continue
        if not stat.S_ISREG(mode):
            ignored.append(scan.rel(rec))
            continue
        busy = (rec.dev, rec.ino) in writing
        recent = rec.mtime_ns > grace_ns
        if rec.name.startswith(".") and rec.name.endswith(TMP_SUFFIX):
            if not busy and not recent:
                deletions.append(Deletion(rec, rec.size, "leftover"))
            continue
        if rec.dir in component_dirs:
            if COPY_RE.match(rec.name):
                copies_by_dir.setdefault(rec.dir, []).append(rec)
            else:
                live_by_dir.setdefault(rec.dir, []).append(rec)
            continue
        if rec.dir in dated_dirs:
            if busy:
                skipped["open_for_writing"] += 1
            elif recent:
                skipped["recent"] += 1
            elif rec.mtime_ns < age_ns:
                deletions.append(Deletion(rec, rec.size, "dated_age"))
            continue
        match = ATTEMPT_RE.match(rec.name)
        if match is None:
            ignored.append(scan.rel(rec))
            continue
        key = (rec.dir, int(match.group("n")))
        attempt = attempts.get(key)
        if attempt is None:
            attempt = attempts[key] = Attempt(task_key(dirs[rec.dir].rel), key[1], [])
        attempt.files.append(rec)
        attempt.size += rec.size
        attempt.last_ns = max(attempt.last_ns, rec.mtime_ns)
        if busy or recent:
            if not attempt.active:
                skipped["open_for_writing" if busy else "recent"] += 1
            attempt.active = True

    # task-attempt rules: age, count per task, total size
    by_task: dict[str, list[Attempt]] = {}
    for attempt in attempts.values():
        by_task.setdefault(attempt.task, []).append(attempt)
    gone: dict[int, str] = {}  # id(attempt) -> reason
    for group in by_task.values():
        group.sort(key=lambda a: (a.last_ns, a.number), reverse=True)
        for rank, attempt in enumerate(group):
            if attempt.active:
                continue
            if attempt.last_ns < age_ns:
                gone[id(attempt)] = "age"
            elif rank >= policy.max_files:
                gone[id(attempt)] = "count"
    total = sum(a.size for a in attempts.values())
    left = total - sum(a.size for a in attempts.values() if id(a) in gone)
    if left > policy.max_size_bytes:
        pool = sorted(
            (a for a in attempts.values() if not a.active and id(a) not in gone),
            key=lambda a: (a.last_ns, a.task, a.number),
        )
        for attempt in pool:
            if left <= policy.max_size_bytes:
                break
            gone[id(attempt)] = "size"
            left -= attempt.size
    compress: list[Record] = []
    ordered = sorted(attempts.values(), key=lambda a: (a.last_ns, a.task, a.number))
    for attempt in ordered:
        reason = gone.get(id(attempt))
        if reason is not None:
            deletions.extend(Deletion(rec, rec.size, reason) for rec in attempt.files)
        elif policy.compress and not attempt.active:
            names = {rec.name for rec in attempt.files}
            for rec in attempt.files:
                if rec.name.endswith(".gz"):
                    continue
                if rec.name + ".gz" in names:
                    skipped["gz_exists"] += 1
                    continue
                compress.append(rec)

    rotations: list[Rotation] = []
    for index in sorted(live_by_dir):
        rotations.extend(_rotations(scan, index, live_by_dir[index], copies_by_dir.get(index, []), policy))
    for extra in component_scans:
        if not extra.dirs:
            continue
        live = [r for r in extra.records if stat.S_ISREG(r.mode) and not COPY_RE.match(r.name)]
        copies = [r for r in extra.records if stat.S_ISREG(r.mode) and COPY_RE.match(r.name)]
        rotations.extend(_rotations(extra, 0, live, copies, policy))
    for index, copies in copies_by_dir.items():
        bases = {r.name for r in live_by_dir.get(index, [])}
        for rec in copies:
            match = COPY_RE.match(rec.name)
            if match is None or match.group("base") not in bases:
                ignored.append(scan.rel(rec))  # a copy without its live log: left alone

    prune = prunable_dirs(
        scan, deletions, older_than_ns=grace_ns, protected=component_dirs, only_above_deletions=True
    )
    return LogPlan(
        scan=scan,
        policy=policy,
        now=now,
        open_check=open_files.describe(),
        attempts=len(attempts),
        tasks=len(by_task),
        attempt_bytes=total,
        active=sum(1 for a in attempts.values() if a.active),
        deletions=deletions,
        compress=compress,
        rotations=rotations,
        component_scans=list(component_scans),
        prune=prune,
        ignored=ignored,
        skipped=skipped,
        missing_components=sorted(component_set - {dirs[i].rel for i in component_dirs}),
    )


def _rotations(
    scan: TreeScan, index: int, live: list[Record], copies: list[Record], policy: LogPolicy
) -> list[Rotation]:
    out: list[Rotation] = []
    for rec in sorted(live, key=lambda r: r.name):
        if rec.size == 0:
            continue  # notifempty
        numbered: dict[int, Record] = {}
        for copy in copies:
            match = COPY_RE.match(copy.name)
            if match and match.group("base") == rec.name:
                numbered.setdefault(int(match.group("n")), copy)
        delete = [numbered[n] for n in sorted(numbered) if n >= policy.max_files]
        shift: list[tuple[Record, str]] = []
        squeeze: tuple[Record, str] | None = None
        for n in sorted((n for n in numbered if n < policy.max_files), reverse=True):
            copy = numbered[n]
            gz = copy.name.endswith(".gz")
            if n == 1 and not gz and policy.compress:
                squeeze = (copy, f"{rec.name}.2.gz")
            else:
                shift.append((copy, f"{rec.name}.{n + 1}{'.gz' if gz else ''}"))
        out.append(Rotation(scan, index, rec, delete, shift, squeeze, f"{rec.name}.1"))
    return out


# ------------------------------------------------------------------------------ execution


class Changed(Exception):
    """The file is not the one the plan saw (rewritten, appended to, replaced)."""


@dataclass
class CopyTruncate:
    """What one copytruncate did. Lines appended between ``window_start_ns`` (the last size
    check, after which nothing more is copied) and ``window_end_ns`` (the truncate) are lost:
    that is copytruncate's inherent window (logrotate documents the same)."""

    copied: int
    passes: int
    window_start_ns: int
    window_end_ns: int

    @property
    def window_ns(self) -> int:
        return self.window_end_ns - self.window_start_ns


def _same(st: os.stat_result, rec: Record) -> bool:
    return (
        st.st_dev == rec.dev
        and st.st_ino == rec.ino
        and st.st_size == rec.size
        and st.st_mtime_ns == rec.mtime_ns
        and stat.S_ISREG(st.st_mode)
    )


def _no_clobber_move(dir_fd: int, src: str, dst: str) -> None:
    """Rename ``src`` to ``dst`` in one directory, refusing to replace an existing ``dst``
    (``link`` + ``unlink``: ``rename`` would silently overwrite)."""
    os.link(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    os.unlink(src, dir_fd=dir_fd)


def gzip_file(dir_fd: int, rec: Record, dest: str, *, remove_source: bool = True) -> int:
    """Compress ``rec`` (in ``dir_fd``) into ``dest`` keeping its mode and times; unlink the
    source afterwards when it is still exactly as planned. Returns the compressed size.

    Written to ``.<dest>.etlops-tmp``, fsynced, then linked to ``dest`` (never replacing an
    existing file). :class:`Changed` when the source is not the planned file or was written
    to during the compression (the ``.gz`` is then discarded and the source kept)."""
    tmp = f".{dest}{TMP_SUFFIX}"
    src = os.open(rec.name, _READ, dir_fd=dir_fd)
    try:
        st = os.fstat(src)
        if not _same(st, rec):
            raise Changed(rec.name)
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            os.unlink(tmp, dir_fd=dir_fd)  # ours, left by an interrupted run
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            with os.fdopen(out, "wb", closefd=False) as raw:
                with gzip.GzipFile(
                    filename=rec.name,
                    mode="wb",
                    compresslevel=GZIP_LEVEL,
                    fileobj=raw,
                    mtime=int(st.st_mtime),
                ) as packed:
                    with os.fdopen(os.dup(src), "rb") as source:
                        shutil.copyfileobj(source, packed, _CHUNK)
            os.fchmod(out, stat.S_IMODE(st.st_mode))
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.fsync(out)
            size = os.fstat(out).st_size
        except BaseException:
            os.close(out)
            os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.close(out)
        if not _same(os.fstat(src), rec):
            os.unlink(tmp, dir_fd=dir_fd)
            raise Changed(rec.name)
        try:
            _no_clobber_move(dir_fd, tmp, dest)
        except FileExistsError:
            os.unlink(tmp, dir_fd=dir_fd)
            raise
        if remove_source:
            if not _same(os.lstat(rec.name, dir_fd=dir_fd), rec):
                raise Changed(rec.name)  # appended after all: keep both (.gz holds its head)
            os.unlink(rec.name, dir_fd=dir_fd)
        return size
    finally:
        os.close(src)


def copytruncate(
    dir_fd: int,
    rec: Record,
    dest: str,
    *,
    max_passes: int = 64,
    in_window: Callable[[], None] | None = None,
) -> CopyTruncate:
    """Copy the live log ``rec`` to ``dest`` and truncate it in place (its writers keep
    their fds; they must write in append mode, as Python's ``FileHandler`` does, or the next
    write leaves a hole of NULs up to their old offset).

    The copy repeats until a size check finds nothing new (at most ``max_passes``; a writer
    faster than the copy then also loses what it appended during the last pass), then the
    file is truncated at once. Lines appended inside the window — from the last size check
    to the end of the ``ftruncate`` — are lost; nothing else is lost, duplicated or torn
    (each ``O_APPEND`` write lands wholly before or after the truncate). The window is a
    few system calls, ~20 µs measured; it stretches when this process is descheduled in it or
    the truncate has many cached pages to free: with a writer process appending flat out on
    the other core of this shared 2-core machine it measured 1–6 ms, losing 7 to ~3,600 of
    that writer's ~450k lines. Its bounds are returned.
    ``in_window`` is called inside the window (tests widen it)."""
    src = os.open(rec.name, _READ, dir_fd=dir_fd)
    trunc = -1
    out = -1
    try:
        st = os.fstat(src)
        if (st.st_dev, st.st_ino) != (rec.dev, rec.ino) or not stat.S_ISREG(st.st_mode):
            raise Changed(rec.name)
        trunc = os.open(rec.name, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        if os.fstat(trunc).st_ino != rec.ino:
            raise Changed(rec.name)
        out = os.open(
            dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
        )
        os.fchmod(out, stat.S_IMODE(st.st_mode))
        copied = 0
        passes = 0
        while True:
            start = time.monotonic_ns()  # anything appended after this may be lost
            size = os.fstat(src).st_size
            if size > copied:
                copied = _copy_range(src, out, copied, size)
                passes += 1
                if passes < max_passes:
                    continue
            break
        if in_window is not None:
            in_window()
        os.ftruncate(trunc, 0)
        end = time.monotonic_ns()
        os.fsync(out)
        return CopyTruncate(copied, passes, start, end)
    finally:
        for fd in (out, trunc, src):
            if fd >= 0:
                os.close(fd)


def _copy_range(src: int, dst: int, start: int, stop: int) -> int:
    """Copy bytes [start, stop) of ``src`` to the same offsets of ``dst``; returns the offset
    reached (less than ``stop`` only if the source shrank meanwhile)."""
    offset = start
    while offset < stop:
        try:
            done = os.copy_file_range(src, dst, stop - offset, offset, offset)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            done = -1
        if done == -1:
            chunk = os.pread(src, min(_CHUNK, stop - offset), offset)
            done = len(chunk)
            if done:
                os.pwrite(dst, chunk, offset)
        if done == 0:
            return offset  # shrank meanwhile
        offset += done
    return offset


@dataclass
class LogOutcome:
    deleted: DeleteOutcome
    compressed_files: int = 0
    compressed_from: int = 0
    compressed_to: int = 0
    rotated: list[dict[str, object]] = field(default_factory=list)
    kept_changed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        return (
            self.deleted.deleted_bytes
            + self.compressed_from
            - self.compressed_to
            + sum(int(str(r.get("freed_bytes", 0))) for r in self.rotated)
        )

    @property
    def freed_files(self) -> int:
        return self.deleted.deleted_files + sum(int(str(r.get("deleted_files", 0))) for r in self.rotated)

    @property
    def changed(self) -> int:
        return (
            self.deleted.deleted_files
            + self.deleted.pruned_dirs
            + self.compressed_files
            + sum(1 for r in self.rotated if r.get("rotated"))
        )

    def as_dict(self) -> dict[str, object]:
        return {
            **self.deleted.as_dict(),
            "compressed_files": self.compressed_files,
            "compressed_bytes": {"before": self.compressed_from, "after": self.compressed_to},
            "rotated": self.rotated,
            "kept_changed_during_run": len(self.kept_changed) + len(self.deleted.kept_changed),
        }


def execute_log_plan(
    plan: LogPlan,
    *,
    recheck_open: Callable[[], OpenFiles] | None = None,
    in_window: Callable[[], None] | None = None,
) -> LogOutcome:
    """Carry out ``plan``: deletions (re-checked), compressions, then component rotations.

    ``recheck_open`` takes a fresh open-files snapshot just before: a planned file that a
    process opened for writing since the scan is kept (``kept_changed``)."""
    deletions = plan.deletions
    compress = plan.compress
    kept: list[str] = []
    if recheck_open is not None:
        writing = recheck_open().writing
        if writing:
            deletions = [d for d in deletions if (d.record.dev, d.record.ino) not in writing]
            compress = [r for r in compress if (r.dev, r.ino) not in writing]
            kept = [
                plan.scan.rel(r)
                for r in [d.record for d in plan.deletions] + plan.compress
                if (r.dev, r.ino) in writing
            ]
    deleted = (
        execute_deletions(plan.scan, deletions, plan.prune) if deletions or plan.prune else DeleteOutcome()
    )
    outcome = LogOutcome(deleted=deleted, kept_changed=kept)
    if deleted.errors:
        outcome.errors.extend(deleted.errors)
    if compress:
        _compress_all(plan.scan, compress, outcome)
    for rotation in plan.rotations:
        outcome.rotated.append(_rotate(rotation, plan.policy, outcome, in_window))
    return outcome


def _compress_all(scan: TreeScan, records: Sequence[Record], outcome: LogOutcome) -> None:
    try:
        root_fd = open_root(scan.root)
    except OSError as exc:
        outcome.errors.append(f"cannot open root {scan.root!r}: {exc.strerror or exc}")
        return
    chain = DirChain(root_fd)
    try:
        for rec in sorted(records, key=lambda r: r.dir):
            where = scan.dirs[rec.dir]
            rel = scan.rel(rec)
            try:
                fd = chain.open(where.parts, (where.dev, where.ino))
                size = gzip_file(fd, rec, rec.name + ".gz")
            except FileNotFoundError:
                continue
            except FileExistsError:
                outcome.kept_changed.append(rel)
                continue
            except (Changed, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno != errno.ESTALE:
                    outcome.errors.append(f"cannot compress {rel!r}: {exc.strerror or exc}")
                else:
                    outcome.kept_changed.append(rel)
                continue
            outcome.compressed_files += 1
            outcome.compressed_from += rec.size
            outcome.compressed_to += size
    finally:
        chain.close()


def _rotate(
    rotation: Rotation, policy: LogPolicy, outcome: LogOutcome, in_window: Callable[[], None] | None
) -> dict[str, object]:
    scan = rotation.scan
    where = scan.dirs[rotation.dir]
    report: dict[str, object] = {"file": rotation.path, "rotated": False}
    try:
        root_fd = open_root(scan.root)
    except OSError as exc:
        outcome.errors.append(f"cannot open {scan.root!r}: {exc.strerror or exc}")
        return report
    chain = DirChain(root_fd)
    freed = deleted = 0
    try:
        fd = chain.open(where.parts, (where.dev, where.ino))
        for rec in rotation.delete:
            try:
                if _same(os.lstat(rec.name, dir_fd=fd), rec):
                    os.unlink(rec.name, dir_fd=fd)
                    freed += rec.size
                    deleted += 1
            except FileNotFoundError:
                pass
        for rec, new in rotation.shift:
            _no_clobber_move(fd, rec.name, new)
        if rotation.compress is not None:
            rec, new = rotation.compress
            packed = gzip_file(fd, rec, new)
            freed += rec.size - packed
        result = copytruncate(fd, rotation.live, rotation.copy_to, in_window=in_window)
        report.update(
            rotated=True,
            copied_bytes=result.copied,
            copy_passes=result.passes,
            loss_window_us=round(result.window_ns / 1000, 1),
        )
    except (OSError, Changed) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        outcome.errors.append(f"cannot rotate {rotation.path!r}: {detail}")
    finally:
        chain.close()
    report.update(freed_bytes=freed, deleted_files=deleted)
    return report
