"""Checkpoint cleanup: plan (plain data) and its execution.

Layout: one folder per pipeline directly under the root; each entry of a pipeline folder is
one checkpoint, a file or a directory. A checkpoint's time is the newest mtime anywhere in
it (files and folders), its size the bytes of its files (hard links once).

Per pipeline, the newest ``keep_last`` checkpoints always stay; the others go when older than
the retention. Never removed, and not counted among the ``keep_last``: checkpoints modified
within the grace period (being written), lock/temp names (``*.tmp``, ``*.part`` …), symlinks
(a ``latest -> ckpt-42`` link is not a checkpoint), and checkpoints holding something the
scan could not enter (another filesystem, an unreadable folder). Entries directly in the root
are not in a pipeline: left alone.

A directory checkpoint is removed by :func:`remove_tree`: through directory fds opened with
``O_NOFOLLOW``, never into another filesystem, after its signature (newest mtime, files,
bytes) was read again and found as planned.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

from etlops_airflow.core.maintenance.files import (
    KEEP_PATTERNS,
    SAMPLE,
    DirChain,
    TreeScan,
    keep_regex,
    mount_points_under,
    open_root,
    paused_gc,
)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 256
KEPT_REASONS = ("keep_last", "within_retention", "active", "lock_or_temp", "blocked", "symlinks")


@dataclass(frozen=True)
class CheckpointPolicy:
    retention_s: float = 7 * 86400.0
    keep_last: int = 3
    grace_period_s: float = 300.0
    keep_patterns: tuple[str, ...] = KEEP_PATTERNS


@dataclass
class Checkpoint:
    pipeline: str
    name: str
    is_dir: bool
    dev: int
    ino: int
    last_ns: int
    files: int = 0
    bytes: int = 0
    mtime_ns: int = 0  # the entry's own mtime (files: re-checked before unlink)
    size: int = 0  # the entry's own size (files)
    blocked: bool = False

    def signature(self) -> tuple[int, int, int]:
        return (self.last_ns, self.files, self.bytes)


@dataclass
class CheckpointPlan:
    scan: TreeScan
    policy: CheckpointPolicy
    now: float
    pipelines: dict[str, list[Checkpoint]]  # newest first
    remove: list[Checkpoint]
    kept: dict[str, int]
    ignored: list[str]

    def summary(self, sample: int = SAMPLE) -> dict[str, object]:
        per_pipeline: dict[str, object] = {}
        removing: dict[str, list[Checkpoint]] = {}
        for item in self.remove:
            removing.setdefault(item.pipeline, []).append(item)
        for name in sorted(self.pipelines)[:50]:
            gone = removing.get(name, [])
            per_pipeline[name] = {
                "checkpoints": len(self.pipelines[name]),
                "remove": [
                    {
                        "name": c.name,
                        "bytes": c.bytes,
                        "age_days": round((self.now * 1e9 - c.last_ns) / 86400e9, 2),
                    }
                    for c in gone[:sample]
                ],
            }
        return {
            "root": self.scan.root,
            "policy": {
                "retention_s": self.policy.retention_s,
                "keep_last": self.policy.keep_last,
                "grace_period_s": self.policy.grace_period_s,
            },
            "scanned": {"entries": self.scan.entries, "dirs": len(self.scan.dirs)},
            "pipelines": len(self.pipelines),
            "checkpoints": sum(len(v) for v in self.pipelines.values()),
            "remove": {
                "checkpoints": len(self.remove),
                "files": sum(c.files for c in self.remove),
                "bytes": sum(c.bytes for c in self.remove),
            },
            "kept": dict(self.kept),
            "per_pipeline": per_pipeline,
            "ignored": self.ignored[:sample],
            "other_filesystem": self.scan.other_filesystem[:sample],
        }


def plan_checkpoint_cleanup(scan: TreeScan, policy: CheckpointPolicy, *, now: float) -> CheckpointPlan:
    """Group the scanned tree into pipelines and checkpoints and select what goes."""
    with paused_gc():
        return _plan(scan, policy, now)


def _plan(scan: TreeScan, policy: CheckpointPolicy, now: float) -> CheckpointPlan:
    now_ns = int(now * 1e9)
    grace_ns = now_ns - int(policy.grace_period_s * 1e9)
    retention_ns = now_ns - int(policy.retention_s * 1e9)
    kept_name = keep_regex(policy.keep_patterns)
    dirs = scan.dirs
    checkpoints: dict[tuple[str, str], Checkpoint] = {}
    pipelines: dict[str, list[Checkpoint]] = {}
    ignored: list[str] = []
    kept = dict.fromkeys(KEPT_REASONS, 0)
    # the checkpoint each directory belongs to (index -> key), from the top down
    owner: dict[int, tuple[str, str]] = {}
    for index, here in enumerate(dirs):
        depth = len(here.parts)
        if depth == 1:
            pipelines.setdefault(here.parts[0], [])
            if here.blocked:
                ignored.append(here.rel + "/ (unreadable or holds another filesystem)")
        elif depth == 2:
            key = (here.parts[0], here.parts[1])
            checkpoints[key] = Checkpoint(
                key[0], key[1], True, here.dev, here.ino, here.mtime_ns, mtime_ns=here.mtime_ns
            )
            owner[index] = key
        elif depth > 2:
            key = owner[here.parent]
            owner[index] = key
            checkpoint = checkpoints[key]
            checkpoint.last_ns = max(checkpoint.last_ns, here.mtime_ns)
        if depth >= 2 and here.blocked:
            checkpoints[owner[index]].blocked = True
    seen_inodes: set[tuple[str, str, int, int]] = set()  # hard links: once per checkpoint
    for rec in scan.records:
        here = dirs[rec.dir]
        depth = len(here.parts)
        if depth == 0:
            ignored.append(rec.name)
            continue
        if depth == 1:
            if stat.S_ISLNK(rec.mode):
                kept["symlinks"] += 1
                continue
            if not stat.S_ISREG(rec.mode):
                ignored.append(scan.rel(rec))
                continue
            key = (here.parts[0], rec.name)
            checkpoint = checkpoints[key] = Checkpoint(
                key[0], key[1], False, rec.dev, rec.ino, rec.mtime_ns, mtime_ns=rec.mtime_ns, size=rec.size
            )
        else:
            checkpoint = checkpoints[owner[rec.dir]]
            checkpoint.last_ns = max(checkpoint.last_ns, rec.mtime_ns)
        if stat.S_ISREG(rec.mode):
            checkpoint.files += 1
            link = (checkpoint.pipeline, checkpoint.name, rec.dev, rec.ino)
            if rec.nlink == 1 or link not in seen_inodes:
                checkpoint.bytes += rec.size
                if rec.nlink > 1:
                    seen_inodes.add(link)
        elif depth > 1:
            checkpoint.files += 1  # symlinks and specials inside are removed with the folder
    for checkpoint in checkpoints.values():
        pipelines.setdefault(checkpoint.pipeline, []).append(checkpoint)

    remove: list[Checkpoint] = []
    for name in sorted(pipelines):
        group = pipelines[name]
        group.sort(key=lambda c: (c.last_ns, c.name), reverse=True)
        ranked = 0
        for checkpoint in group:
            if kept_name is not None and kept_name(checkpoint.name) is not None:
                kept["lock_or_temp"] += 1
            elif checkpoint.blocked:
                kept["blocked"] += 1
            elif checkpoint.last_ns > grace_ns:
                kept["active"] += 1
            elif ranked < policy.keep_last:
                ranked += 1
                kept["keep_last"] += 1
            elif checkpoint.last_ns >= retention_ns:
                ranked += 1
                kept["within_retention"] += 1
            else:
                ranked += 1
                remove.append(checkpoint)
    return CheckpointPlan(scan, policy, now, pipelines, remove, kept, ignored)


# ------------------------------------------------------------------------------ execution


class TreeChanged(Exception):
    """A directory is not as planned (changed inode, newer content, another filesystem)."""


@dataclass
class CheckpointOutcome:
    removed: int = 0
    deleted_files: int = 0
    deleted_bytes: int = 0
    kept_changed: list[str] = field(default_factory=list)
    vanished: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "removed_checkpoints": self.removed,
            "deleted_files": self.deleted_files,
            "deleted_bytes": self.deleted_bytes,
            "kept_changed": self.kept_changed[:SAMPLE],
            "vanished": self.vanished,
        }


def tree_signature(parent_fd: int, name: str, expect: tuple[int, int]) -> tuple[int, int, int]:
    """(newest mtime, entries that are not folders, bytes) of the folder ``name``, read the
    same way the scan did. :class:`TreeChanged` on another inode or another filesystem."""
    newest = files = size = 0
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[int, str, tuple[int, int], int]] = [(parent_fd, name, expect, 0)]
    opened: list[int] = []
    try:
        while stack:
            parent, entry_name, (dev, ino), depth = stack.pop()
            if depth > MAX_DEPTH:
                raise TreeChanged(f"deeper than {MAX_DEPTH} levels")
            fd = os.open(entry_name, _DIR_FLAGS, dir_fd=parent)
            opened.append(fd)
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (dev, ino):
                raise TreeChanged(entry_name)
            newest = max(newest, st.st_mtime_ns)
            with os.scandir(fd) as entries:
                for entry in entries:
                    est = entry.stat(follow_symlinks=False)
                    if est.st_dev != expect[0]:
                        raise TreeChanged(f"{entry.name}: another filesystem")
                    if stat.S_ISDIR(est.st_mode):
                        stack.append((fd, entry.name, (est.st_dev, est.st_ino), depth + 1))
                        continue
                    newest = max(newest, est.st_mtime_ns)
                    files += 1
                    if stat.S_ISREG(est.st_mode):
                        if est.st_nlink == 1 or (est.st_dev, est.st_ino) not in seen:
                            size += est.st_size
                            if est.st_nlink > 1:
                                seen.add((est.st_dev, est.st_ino))
    finally:
        for fd in opened:
            os.close(fd)
    return newest, files, size


def remove_tree(parent_fd: int, name: str, expect: tuple[int, int], depth: int = 0) -> tuple[int, int]:
    """Remove the folder ``name`` (in ``parent_fd``) and everything in it: no symlink is
    followed (a symlink inside is unlinked, its target untouched), nothing on another
    filesystem is entered (:class:`TreeChanged`, the rest stays). Returns (files, bytes)."""
    if depth > MAX_DEPTH:
        raise TreeChanged(f"deeper than {MAX_DEPTH} levels")
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    files = size = 0
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != expect:
            raise TreeChanged(name)
        with os.scandir(fd) as entries:
            listed = list(entries)
        for entry in listed:
            try:
                est = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(est.st_mode):
                    if est.st_dev != st.st_dev:
                        raise TreeChanged(f"{entry.name}: another filesystem")
                    got = remove_tree(fd, entry.name, (est.st_dev, est.st_ino), depth + 1)
                    files += got[0]
                    size += got[1]
                else:
                    os.unlink(entry.name, dir_fd=fd)
                    files += 1
                    if stat.S_ISREG(est.st_mode) and est.st_nlink == 1:
                        size += est.st_size
            except FileNotFoundError:
                continue
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)
    return files, size


def execute_checkpoint_plan(plan: CheckpointPlan) -> CheckpointOutcome:
    """Remove the planned checkpoints, each re-checked just before."""
    out = CheckpointOutcome()
    scan = plan.scan
    try:
        root_fd = open_root(scan.root)
    except OSError as exc:
        out.errors.append(f"cannot open root {scan.root!r}: {exc.strerror or exc}")
        return out
    mounts = mount_points_under(scan.root)
    chain = DirChain(root_fd)
    by_pipeline = {d.parts[0]: d for d in scan.dirs if len(d.parts) == 1}
    try:
        for checkpoint in plan.remove:
            rel = f"{checkpoint.pipeline}/{checkpoint.name}"
            folder = by_pipeline[checkpoint.pipeline]
            try:
                fd = chain.open(folder.parts, (folder.dev, folder.ino))
                if checkpoint.is_dir:
                    if any(m == rel or m.startswith(rel + "/") for m in mounts):
                        raise TreeChanged("holds a mount point")
                    found = tree_signature(fd, checkpoint.name, (checkpoint.dev, checkpoint.ino))
                    if found != checkpoint.signature():
                        raise TreeChanged("changed since the scan")
                    files, size = remove_tree(fd, checkpoint.name, (checkpoint.dev, checkpoint.ino))
                else:
                    st = os.lstat(checkpoint.name, dir_fd=fd)
                    if (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size) != (
                        checkpoint.dev,
                        checkpoint.ino,
                        checkpoint.mtime_ns,
                        checkpoint.size,
                    ) or not stat.S_ISREG(st.st_mode):
                        raise TreeChanged("changed since the scan")
                    os.unlink(checkpoint.name, dir_fd=fd)
                    files, size = 1, checkpoint.bytes
            except FileNotFoundError:
                out.vanished += 1
                continue
            except TreeChanged:
                out.kept_changed.append(rel)
                continue
            except OSError as exc:
                if exc.errno == errno.ESTALE:  # a folder replaced since the scan
                    out.kept_changed.append(rel)
                else:
                    out.errors.append(f"cannot remove checkpoint {rel!r}: {exc.strerror or exc}")
                continue
            out.removed += 1
            out.deleted_files += files
            out.deleted_bytes += size
    finally:
        chain.close()
    return out


def checkpoint_names(plan: CheckpointPlan) -> Sequence[str]:
    """``pipeline/name`` of every checkpoint the plan removes (for logs and tests)."""
    return [f"{c.pipeline}/{c.name}" for c in plan.remove]
