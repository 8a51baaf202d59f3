"""Cache cleanup, and the safe file-tree primitives the log and checkpoint cleanups share.

A cleanup is two steps: :func:`scan_tree` then a ``plan_*`` function decide, as plain data,
what would be deleted and why (a :class:`CachePlan`); :func:`execute_deletions` carries the
plan out. A dry run stops after the plan, so it reports exactly what a real run would do.

Confinement rules (every walk and every deletion here):

* the walk goes through directory file descriptors opened with ``O_NOFOLLOW``: a symlink is
  never followed (a symlink itself may be deleted, never its target);
* a directory on another filesystem (another ``st_dev``, or a mount point listed in
  ``/proc/self/mountinfo``, which also catches same-device bind mounts) is not entered;
* just before a file is unlinked it is ``lstat``-ed again relative to its directory fd: same
  device, inode, mtime and size as in the plan, or it is kept (it was rewritten meanwhile);
  a directory whose inode changed since the scan is not touched at all;
* a file that vanished meanwhile is ignored (``FileNotFoundError``), any other failure is an
  error of the run;
* hard links are counted once, by ``(st_dev, st_ino)``;
* files modified within the grace period, lock/temp names (:data:`KEEP_PATTERNS`) and files
  some process holds open (:func:`open_files`) are never selected.

Speed: one ``os.scandir`` per directory and one ``lstat`` per entry (``DirEntry.stat``, i.e.
``fstatat`` relative to the directory), deletions with ``os.unlink(name, dir_fd=…)`` grouped
per directory; directory fds are reused along the current path.
"""

from __future__ import annotations

import errno
import fnmatch
import gc
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

KEEP_PATTERNS: tuple[str, ...] = ("*.lock", "*.tmp", "*.part", ".~lock*")
"""Names never deleted by a cleanup: lock files and files still being written by their owner."""

SAMPLE = 20
"""How many paths a plan summary lists (the counts and bytes always cover everything)."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class StatResult(Protocol):
    """What the scan reads from a stat: ``os.stat_result`` or a test double."""

    @property
    def st_mode(self) -> int: ...
    @property
    def st_ino(self) -> int: ...
    @property
    def st_dev(self) -> int: ...
    @property
    def st_nlink(self) -> int: ...
    @property
    def st_size(self) -> int: ...
    @property
    def st_atime_ns(self) -> int: ...
    @property
    def st_mtime_ns(self) -> int: ...


LstatFn = Callable[..., StatResult]
"""``lstat(name, dir_fd=fd)``; the default reads ``DirEntry.stat(follow_symlinks=False)``."""


# ---------------------------------------------------------------------------------- scanning


class Record(NamedTuple):
    """One scanned entry that is not a directory (file, symlink, fifo, socket, device)."""

    dir: int  # index in TreeScan.dirs
    name: str
    mode: int
    dev: int
    ino: int
    nlink: int
    size: int
    atime_ns: int
    mtime_ns: int


@dataclass
class ScannedDir:
    """One directory of the tree. ``entries`` counts its direct children of every kind."""

    rel: str  # relative to the root, "" for the root itself
    parts: tuple[str, ...]
    parent: int
    dev: int
    ino: int
    mtime_ns: int
    entries: int = 0
    blocked: bool = False  # unreadable, or holds something the scan did not enter


@dataclass
class TreeScan:
    """Everything :func:`scan_tree` saw, confined to the root's filesystem."""

    root: str
    dirs: list[ScannedDir] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    entries: int = 0  # every entry seen, directories included
    other_filesystem: list[str] = field(default_factory=list)  # relative paths not entered
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.dirs)

    def rel(self, record: Record) -> str:
        base = self.dirs[record.dir].rel
        return f"{base}/{record.name}" if base else record.name


def stat_record(name: str, dir_fd: int, dir_index: int = 0) -> Record:
    """A :class:`Record` of ``name`` in ``dir_fd`` (``lstat``), as the scan would make it."""
    st = os.lstat(name, dir_fd=dir_fd)
    return Record(
        dir_index,
        name,
        st.st_mode,
        st.st_dev,
        st.st_ino,
        st.st_nlink,
        st.st_size,
        st.st_atime_ns,
        st.st_mtime_ns,
    )


def mount_points_under(root: str, mountinfo: str = "/proc/self/mountinfo") -> set[str]:
    """Mount points strictly below ``root`` (real path), from ``/proc/self/mountinfo``.

    Catches bind mounts of the same device, which ``st_dev`` alone does not. Empty where the
    file does not exist (not Linux)."""
    real = os.path.realpath(root).rstrip("/") + "/"
    found: set[str] = set()
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as handle:
            for line in handle:
                fields = line.split(" ", 5)
                if len(fields) < 5:
                    continue
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
                if point.startswith(real):
                    found.add(point[len(real) :].rstrip("/"))
    except OSError:
        pass
    return found


class _Replaced(OSError):
    """A directory's inode is not the one the scan saw (moved or replaced meanwhile)."""


class DirChain:
    """Directory fds along one path below a root fd, reused between calls (a depth-first walk
    or a per-directory deletion opens each directory once). Every component is opened with
    ``O_NOFOLLOW | O_DIRECTORY`` relative to its parent: no symlink is ever followed."""

    def __init__(self, root_fd: int) -> None:
        self._parts: list[str] = []
        self._fds: list[int] = [root_fd]

    @property
    def root_fd(self) -> int:
        return self._fds[0]

    def open(self, parts: Sequence[str], expect: tuple[int, int] | None = None) -> int:
        """The fd of ``root/parts…``; ``expect`` = (dev, ino) it must have (else _Replaced)."""
        common = 0
        limit = min(len(parts), len(self._parts))
        while common < limit and self._parts[common] == parts[common]:
            common += 1
        for fd in self._fds[common + 1 :]:
            os.close(fd)
        del self._fds[common + 1 :]
        del self._parts[common:]
        for part in parts[common:]:
            fd = os.open(part, _DIR_FLAGS, dir_fd=self._fds[-1])
            self._fds.append(fd)
            self._parts.append(part)
        fd = self._fds[-1]
        if expect is not None and parts:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != expect:
                raise _Replaced(errno.ESTALE, "directory replaced since the scan")
        return fd

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        self._parts.clear()


def open_root(root: str) -> int:
    """An fd of the root directory (the root path itself may be a symlink: it is the user's
    choice; nothing below it is followed)."""
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def scan_tree(root: str, *, lstat: LstatFn | None = None, mount_points: set[str] | None = None) -> TreeScan:
    """Walk ``root`` once: every directory (same filesystem, not a mount point, no symlink
    followed) and one :class:`Record` per other entry. An unreadable root leaves ``dirs``
    empty and says why in ``errors``; an unreadable directory below is an error too (its
    content is unknown) and the walk carries on.

    ``lstat`` replaces ``DirEntry.stat(follow_symlinks=False)`` (tests fake another device)."""
    scan = TreeScan(root=root)
    try:
        root_fd = open_root(root)
    except OSError as exc:
        scan.errors.append(f"cannot open root {root!r}: {exc.strerror or exc}")
        return scan
    chain = DirChain(root_fd)
    try:
        st = os.fstat(root_fd)
        root_dev = st.st_dev
        scan.dirs.append(ScannedDir("", (), -1, st.st_dev, st.st_ino, st.st_mtime_ns))
        mounts = mount_points_under(root) if mount_points is None else mount_points
        with paused_gc():
            _walk(scan, chain, root_dev, lstat, mounts)
    finally:
        chain.close()
    return scan


def _walk(scan: TreeScan, chain: DirChain, root_dev: int, lstat: LstatFn | None, mounts: set[str]) -> None:
    dirs = scan.dirs
    records = scan.records
    append = records.append
    s_isdir = stat.S_ISDIR
    stack = [0]
    seen = 0
    while stack:
        index = stack.pop()
        here = dirs[index]
        try:
            fd = chain.open(here.parts, (here.dev, here.ino))
            iterator = os.scandir(fd)
        except FileNotFoundError:
            continue  # vanished since its parent was read
        except OSError as exc:
            here.blocked = True
            scan.errors.append(f"cannot read directory {here.rel or '.'!r}: {exc.strerror or exc}")
            continue
        count = 0
        prefix = here.rel + "/" if here.rel else ""
        with iterator:
            for entry in iterator:
                count += 1
                try:
                    st = entry.stat(follow_symlinks=False) if lstat is None else lstat(entry.name, dir_fd=fd)
                except FileNotFoundError:
                    count -= 1
                    continue
                except OSError as exc:
                    here.blocked = True
                    scan.errors.append(f"cannot stat {prefix + entry.name!r}: {exc.strerror or exc}")
                    continue
                if st.st_dev != root_dev or (mounts and prefix + entry.name in mounts):
                    here.blocked = True
                    scan.other_filesystem.append(prefix + entry.name)
                    continue
                if s_isdir(st.st_mode):
                    dirs.append(
                        ScannedDir(
                            prefix + entry.name,
                            (*here.parts, entry.name),
                            index,
                            st.st_dev,
                            st.st_ino,
                            st.st_mtime_ns,
                        )
                    )
                    stack.append(len(dirs) - 1)
                else:
                    append(
                        Record(
                            index,
                            entry.name,
                            st.st_mode,
                            st.st_dev,
                            st.st_ino,
                            st.st_nlink,
                            st.st_size,
                            st.st_atime_ns,
                            st.st_mtime_ns,
                        )
                    )
        here.entries = count
        seen += count
    scan.entries = seen


# ---------------------------------------------------------------------------- open files


@dataclass(frozen=True)
class OpenFiles:
    """Files some process holds open, by ``(st_dev, st_ino)``, read from ``/proc/*/fd``.

    ``writing`` are those open for writing (``fdinfo`` flags O_WRONLY or O_RDWR). ``available``
    is False without ``/proc`` (then only the grace period protects files being written);
    ``unreadable`` counts processes whose fds this process may not read (not root)."""

    any: frozenset[tuple[int, int]] = frozenset()
    writing: frozenset[tuple[int, int]] = frozenset()
    processes: int = 0
    unreadable: int = 0
    available: bool = False

    @property
    def complete(self) -> bool:
        return self.available and self.unreadable == 0

    def describe(self) -> str:
        if not self.available:
            return "no /proc: grace period only"
        if self.unreadable:
            return (
                f"/proc fds of {self.processes - self.unreadable} of {self.processes} processes "
                f"({self.unreadable} unreadable: grace period only for them)"
            )
        return f"/proc fds of all {self.processes} processes"


NO_OPEN_FILES = OpenFiles()


def open_files(devices: Iterable[int], proc: str = "/proc") -> OpenFiles:
    """The files on ``devices`` that any process holds open (and those open for writing).

    Every fd of every readable process is ``stat``-ed (the kernel follows the fd to the open
    file), so a writer in another mount namespace or container is seen too: the match is by
    ``(dev, ino)``, not by path. Sockets, pipes and anonymous inodes are skipped by their link
    text. A process that ends meanwhile is skipped."""
    wanted = set(devices)
    if not os.path.isdir(os.path.join(proc, "self", "fd")):
        return OpenFiles()
    held: set[tuple[int, int]] = set()
    writing: set[tuple[int, int]] = set()
    processes = unreadable = 0
    access = os.O_ACCMODE
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        processes += 1
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except PermissionError:
            unreadable += 1
            continue
        except OSError:
            processes -= 1  # ended, or a kernel thread without fds
            continue
        for fd in fds:
            link = f"{fd_dir}/{fd}"
            try:
                if not os.readlink(link).startswith("/"):
                    continue
                st = os.stat(link)
            except OSError:
                continue
            if st.st_dev not in wanted:
                continue
            key = (st.st_dev, st.st_ino)
            held.add(key)
            try:
                with open(f"{proc}/{pid}/fdinfo/{fd}", encoding="ascii") as info:
                    for line in info:
                        if line.startswith("flags:"):
                            if int(line.split()[1], 8) & access in (os.O_WRONLY, os.O_RDWR):
                                writing.add(key)
                            break
            except (OSError, ValueError):
                writing.add(key)  # unknown mode: assume the worst
    return OpenFiles(frozenset(held), frozenset(writing), processes, unreadable, True)


# --------------------------------------------------------------------------------- deletion


class Deletion(NamedTuple):
    """One entry a plan deletes, as scanned. ``bytes`` is what it frees in the tree (hard
    links: the inode's size on one of its links, 0 on the others)."""

    record: Record
    bytes: int
    reason: str


@dataclass
class DeleteOutcome:
    """What :func:`execute_deletions` did."""

    deleted_files: int = 0
    deleted_bytes: int = 0
    pruned_dirs: int = 0
    kept_changed: list[str] = field(default_factory=list)  # rewritten/replaced since the scan
    vanished: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "deleted_files": self.deleted_files,
            "deleted_bytes": self.deleted_bytes,
            "pruned_dirs": self.pruned_dirs,
            "kept_changed": len(self.kept_changed),
            "kept_changed_sample": self.kept_changed[:SAMPLE],
            "vanished": self.vanished,
        }


def prunable_dirs(
    scan: TreeScan,
    deletions: Iterable[Deletion],
    *,
    older_than_ns: int,
    protected: Iterable[int] = (),
    only_above_deletions: bool = False,
) -> list[int]:
    """Directories left empty once ``deletions`` are done (and already-empty ones), deepest
    first; never the root, a blocked directory, one in ``protected``, nor one modified after
    ``older_than_ns`` (someone may be about to write in it). ``only_above_deletions``: only
    directories that hold (at any depth) something deleted."""
    dirs = scan.dirs
    remaining = [d.entries for d in dirs]
    touched: set[int] | None = set() if only_above_deletions else None
    for item in deletions:
        index = item.record.dir
        remaining[index] -= 1
        if touched is not None:
            while index > 0 and index not in touched:
                touched.add(index)
                index = dirs[index].parent
    keep = set(protected)
    keep.add(0)
    pruned: list[int] = []
    # children are appended after their parent: walking the indexes backwards is bottom-up
    for index in range(len(dirs) - 1, 0, -1):
        here = dirs[index]
        if touched is not None and index not in touched:
            continue
        if remaining[index] == 0 and not here.blocked and index not in keep and here.mtime_ns < older_than_ns:
            pruned.append(index)
            remaining[here.parent] -= 1
    return pruned


def execute_deletions(
    scan: TreeScan, deletions: Sequence[Deletion], prune: Sequence[int] = ()
) -> DeleteOutcome:
    """Unlink the planned entries, then remove the planned empty directories.

    Each directory is reopened from the root without following symlinks and must still be
    the scanned inode; each entry is ``lstat``-ed again and must match the plan (device,
    inode, mtime, size), else it is kept and listed in ``kept_changed``."""
    out = DeleteOutcome()
    try:
        root_fd = open_root(scan.root)
    except OSError as exc:
        out.errors.append(f"cannot open root {scan.root!r}: {exc.strerror or exc}")
        return out
    chain = DirChain(root_fd)
    dirs = scan.dirs
    try:
        root_st = os.fstat(root_fd)
        if not dirs or (root_st.st_dev, root_st.st_ino) != (dirs[0].dev, dirs[0].ino):
            out.errors.append(f"root {scan.root!r} was replaced since the scan: nothing deleted")
            return out
        order = sorted(range(len(deletions)), key=lambda i: deletions[i].record.dir)
        current = -1
        fd = -1
        for i in order:
            item = deletions[i]
            rec = item.record
            if rec.dir != current:
                current = rec.dir
                where = dirs[current]
                try:
                    fd = chain.open(where.parts, (where.dev, where.ino))
                except FileNotFoundError:
                    fd = -1
                except _Replaced:
                    fd = -2
                except OSError as exc:
                    fd = -3
                    out.errors.append(f"cannot open directory {where.rel!r}: {exc.strerror or exc}")
            if fd < 0:
                if fd == -1:
                    out.vanished += 1
                elif fd == -2:
                    out.kept_changed.append(_join(dirs[rec.dir].rel, rec.name))
                continue
            _unlink_checked(fd, item, dirs[rec.dir].rel, out)
        for index in prune:
            _rmdir_checked(chain, dirs, index, out)
    finally:
        chain.close()
    return out


def _join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


def _unlink_checked(fd: int, item: Deletion, base: str, out: DeleteOutcome) -> None:
    rec = item.record
    try:
        st = os.lstat(rec.name, dir_fd=fd)
    except FileNotFoundError:
        out.vanished += 1
        return
    except OSError as exc:
        out.errors.append(f"cannot stat {_join(base, rec.name)!r}: {exc.strerror or exc}")
        return
    if (
        st.st_ino != rec.ino
        or st.st_dev != rec.dev
        or st.st_mtime_ns != rec.mtime_ns
        or st.st_size != rec.size
        or stat.S_ISDIR(st.st_mode)
    ):
        out.kept_changed.append(_join(base, rec.name))
        return
    try:
        os.unlink(rec.name, dir_fd=fd)
    except FileNotFoundError:
        out.vanished += 1
        return
    except OSError as exc:
        out.errors.append(f"cannot delete {_join(base, rec.name)!r}: {exc.strerror or exc}")
        return
    out.deleted_files += 1
    out.deleted_bytes += item.bytes


def _rmdir_checked(chain: DirChain, dirs: Sequence[ScannedDir], index: int, out: DeleteOutcome) -> None:
    here = dirs[index]
    parent = dirs[here.parent]
    try:
        fd = chain.open(parent.parts, (parent.dev, parent.ino))
        st = os.lstat(here.parts[-1], dir_fd=fd)
        if (st.st_dev, st.st_ino) != (here.dev, here.ino) or not stat.S_ISDIR(st.st_mode):
            return  # replaced since the scan: not ours to remove
        os.rmdir(here.parts[-1], dir_fd=fd)
    except FileNotFoundError:
        return
    except _Replaced:
        return
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return  # something was created in it meanwhile: keep it
        out.errors.append(f"cannot remove directory {here.rel!r}: {exc.strerror or exc}")
        return
    out.pruned_dirs += 1


# ---------------------------------------------------------------------------- cache cleanup


def keep_regex(patterns: Sequence[str]) -> Callable[[str], re.Match[str] | None] | None:
    """``match(name)`` of one regex for all the glob patterns (None: no pattern)."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match


@dataclass(frozen=True)
class CachePolicy:
    """What a cache cleanup deletes. Ages are of the last use: the later of atime and mtime
    (with ``noatime`` mounts that is the mtime)."""

    max_age_s: float
    target_bytes: int
    grace_period_s: float = 300.0
    keep_patterns: tuple[str, ...] = KEEP_PATTERNS


@dataclass
class CachePlan:
    """What a cache cleanup would delete and why; executing it is :meth:`execute`."""

    scan: TreeScan
    policy: CachePolicy
    now: float
    deletions: list[Deletion]
    prune: list[int]
    tree_bytes: int
    files: int
    symlinks: int
    skipped: dict[str, int]
    linked_outside: int

    @property
    def planned_bytes(self) -> int:
        return sum(d.bytes for d in self.deletions)

    @property
    def after_bytes(self) -> int:
        return self.tree_bytes - self.planned_bytes

    def summary(self, sample: int = SAMPLE) -> dict[str, object]:
        """The plan as JSON-able data (what the dry run reports and the real run records)."""
        by_reason: dict[str, dict[str, int]] = {}
        for item in self.deletions:
            slot = by_reason.setdefault(item.reason, {"files": 0, "bytes": 0})
            slot["files"] += 1
            slot["bytes"] += item.bytes
        scan = self.scan
        return {
            "root": scan.root,
            "policy": {
                "max_age_s": self.policy.max_age_s,
                "target_bytes": self.policy.target_bytes,
                "grace_period_s": self.policy.grace_period_s,
                "keep_patterns": list(self.policy.keep_patterns),
            },
            "scanned": {
                "entries": scan.entries,
                "dirs": len(scan.dirs),
                "files": self.files,
                "symlinks": self.symlinks,
                "bytes": self.tree_bytes,
            },
            "delete": {
                "files": len(self.deletions),
                "bytes": self.planned_bytes,
                "by_age": by_reason.get("age", {"files": 0, "bytes": 0}),
                "by_size": by_reason.get("size", {"files": 0, "bytes": 0}),
            },
            "prune_dirs": len(self.prune),
            "after_bytes": self.after_bytes,
            "target_met": self.after_bytes <= self.policy.target_bytes,
            "skipped": dict(self.skipped),
            "linked_outside_tree": self.linked_outside,
            "other_filesystem": scan.other_filesystem[:sample],
            "sample": [
                {"path": scan.rel(d.record), "bytes": d.bytes, "reason": d.reason}
                for d in self.deletions[:sample]
            ],
        }

    def execute(self) -> DeleteOutcome:
        return execute_deletions(self.scan, self.deletions, self.prune)


def plan_cache_cleanup(
    scan: TreeScan, policy: CachePolicy, *, now: float, open_files: OpenFiles = NO_OPEN_FILES
) -> CachePlan:
    """Select: every file (or symlink) unused for ``max_age_s``; then, oldest use first,
    more until the tree is at most ``target_bytes``; then the directories left empty.

    Never selected: files modified within the grace period (or in the future), lock/temp
    names, files held open, specials (fifos, sockets, devices), and an inode with a link that
    is itself not selectable. A hard-linked inode counts once and goes with all its links in
    the tree. Symlinks count their own (tiny) size."""
    with paused_gc():
        return _plan_cache_cleanup(scan, policy, now, open_files)


def _plan_cache_cleanup(scan: TreeScan, policy: CachePolicy, now: float, open_files: OpenFiles) -> CachePlan:
    now_ns = int(now * 1e9)
    age_limit = now_ns - int(policy.max_age_s * 1e9)
    grace_limit = now_ns - int(policy.grace_period_s * 1e9)
    kept_name = keep_regex(policy.keep_patterns)
    held = open_files.any
    recent = lock_or_temp = held_open = special = hard_link_kept = 0
    s_isreg = stat.S_ISREG
    s_islnk = stat.S_ISLNK

    deletions: list[Deletion] = []
    add = deletions.append
    # (last use, dir, name, size, record or hard links) of candidates too young for the age rule;
    # (dir, name) is unique, so sorting never compares the last item
    younger: list[tuple[int, int, str, int, Record | list[Record]]] = []
    linked: dict[tuple[int, int], list[Record]] = {}
    blocked_inodes: set[tuple[int, int]] = set()
    counted_inodes: set[tuple[int, int]] = set()
    tree_bytes = files = symlinks = freed = 0
    for rec in scan.records:
        mode = rec.mode
        if s_isreg(mode):
            files += 1
            if rec.nlink > 1:
                key = (rec.dev, rec.ino)
                if key not in counted_inodes:
                    counted_inodes.add(key)
                    tree_bytes += rec.size
            else:
                tree_bytes += rec.size
        elif s_islnk(mode):
            symlinks += 1
            tree_bytes += rec.size
        else:
            special += 1
            continue
        if rec.mtime_ns > grace_limit:
            recent += 1
            blocked = True
        elif kept_name is not None and kept_name(rec.name) is not None:
            lock_or_temp += 1
            blocked = True
        elif held and (rec.dev, rec.ino) in held:
            held_open += 1
            blocked = True
        else:
            blocked = False
        if rec.nlink > 1 and s_isreg(mode):
            key = (rec.dev, rec.ino)
            if blocked:
                blocked_inodes.add(key)
            else:
                linked.setdefault(key, []).append(rec)
            continue
        if blocked:
            continue
        used = rec.atime_ns if rec.atime_ns > rec.mtime_ns and s_isreg(mode) else rec.mtime_ns
        if used < age_limit:
            add(Deletion(rec, rec.size, "age"))
            freed += rec.size
        else:
            younger.append((used, rec.dir, rec.name, rec.size, rec))

    linked_outside = 0
    for key, links in linked.items():
        if key in blocked_inodes:
            hard_link_kept += len(links)
            continue
        first = links[0]
        if first.nlink > len(links):
            linked_outside += 1
        used = max(first.atime_ns, first.mtime_ns)
        if used < age_limit:
            _take(deletions, links, first.size, "age")
            freed += first.size
        else:
            younger.append((used, first.dir, first.name, first.size, links))

    if tree_bytes - freed > policy.target_bytes and younger:
        younger.sort()
        for _used, _dir, _name, size, what in younger:
            if tree_bytes - freed <= policy.target_bytes:
                break
            if isinstance(what, list):
                _take(deletions, what, size, "size")
            else:
                add(Deletion(what, size, "size"))
            freed += size
    prune = prunable_dirs(scan, deletions, older_than_ns=grace_limit)
    return CachePlan(
        scan=scan,
        policy=policy,
        now=now,
        deletions=deletions,
        prune=prune,
        tree_bytes=tree_bytes,
        files=files,
        symlinks=symlinks,
        skipped={
            "recent": recent,
            "lock_or_temp": lock_or_temp,
            "open": held_open,
            "special": special,
            "hard_link_kept": hard_link_kept,
        },
        linked_outside=linked_outside,
    )


def _take(out: list[Deletion], links: list[Record], size: int, reason: str) -> None:
    out.append(Deletion(links[0], size, reason))
    for rec in links[1:]:
        out.append(Deletion(rec, 0, reason))


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building ~10^5 small tuples (they hold no
    cycles; the collector's passes over them doubled the planning time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def summarize_errors(*groups: Iterable[str]) -> list[str]:
    """All errors of a run, in order, each once."""
    seen: dict[str, None] = {}
    for group in groups:
        for item in group:
            seen.setdefault(item, None)
    return list(seen)


def as_json_safe(value: Any) -> Any:
    """Plans hold only JSON types; this guards the few tuples (lists in JSON)."""
    if isinstance(value, dict):
        return {str(k): as_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json_safe(v) for v in value]
    return value
