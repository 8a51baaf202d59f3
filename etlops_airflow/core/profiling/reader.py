"""Readings of the process and its child processes: what stages and samples are built from.

A :class:`Reading` is one look at the process: CPU time, resident memory (now and its
high-water mark), threads, IO counters, and the same for its child processes. A stage takes
one full reading when it starts and one when it ends; the sampler takes cheap readings in
between (peaks), with the live children only every few samples.

:class:`ProcReader` (Linux) reads only cheap sources: ``getrusage`` for CPU and high-water
marks, ``/proc/self/stat`` for RSS and threads, ``/proc/self/io`` for IO, and
``/proc/<pid>/task/<tid>/children`` to walk the live children. Its files are read through
libc with the GIL held (``ctypes.PyDLL``): a read of a ``/proc`` file takes a few
microseconds, while releasing the GIL for it would hand the GIL to a busy main thread and
cost the sampler a whole switch interval to get it back. Nothing stays open between readings.

:class:`PsutilReader` is for systems without ``/proc`` (macOS): psutil where needed, IO
counters ``None`` where psutil has none.

What "children" covers: CPU of finished children comes from ``RUSAGE_CHILDREN`` (children that
were waited for, and their waited-for descendants); live descendants are read one by one.
Linux adds the IO of waited-for children to the parent's ``/proc/self/io``.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "IoCounters",
    "LiveChildren",
    "ProcReader",
    "PsutilReader",
    "Reader",
    "Reading",
    "available_cpus",
    "default_reader",
]

_MAX_READ = 1 << 16  # /proc files we read are far smaller; a children list is capped here


@dataclass(frozen=True, slots=True)
class IoCounters:
    """Bytes and calls through read/write system calls: files, pipes and sockets."""

    read_bytes: int = 0
    write_bytes: int = 0
    read_ops: int = 0
    write_ops: int = 0

    def __add__(self, other: IoCounters) -> IoCounters:
        return IoCounters(
            self.read_bytes + other.read_bytes,
            self.write_bytes + other.write_bytes,
            self.read_ops + other.read_ops,
            self.write_ops + other.write_ops,
        )


@dataclass(frozen=True, slots=True)
class LiveChildren:
    """The live descendants of the process at one reading (children, grandchildren …)."""

    count: int = 0
    cpu_s: float = 0.0  # their CPU time, including their own finished children
    rss_bytes: int = 0
    io: IoCounters = IoCounters()  # of the children whose counters could be read


@dataclass(frozen=True, slots=True)
class Reading:
    """One look at the process. ``live`` is ``None`` when the live children were not read this
    time; ``io`` is ``None`` when IO was not read or the OS does not say."""

    cpu_s: float  # user + system CPU of the process, all threads
    rss_bytes: int  # resident memory of the process now
    maxrss_bytes: int = 0  # the process's resident high-water mark since it started
    threads: int = 1
    reaped_cpu_s: float = 0.0  # CPU of finished (waited-for) children
    reaped_maxrss_bytes: int = 0  # high-water mark of the largest finished child
    live: LiveChildren | None = None
    io: IoCounters | None = None  # the process and its finished children (Linux)

    @property
    def total_cpu_s(self) -> float:
        return self.cpu_s + self.reaped_cpu_s + (self.live.cpu_s if self.live is not None else 0.0)

    @property
    def total_rss_bytes(self) -> int:
        return self.rss_bytes + (self.live.rss_bytes if self.live is not None else 0)

    @property
    def total_io(self) -> IoCounters | None:
        if self.io is None:
            return None
        return self.io + self.live.io if self.live is not None else self.io


class Reader(Protocol):
    """What a session reads the process with (tests pass a fake)."""

    cpu_count: int

    def read(self, *, children: bool = True, io: bool = True) -> Reading: ...

    def close(self) -> None: ...


def available_cpus() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _maxrss_bytes(value: int) -> int:
    # ru_maxrss is in kilobytes on Linux and the BSDs, in bytes on macOS.
    return int(value) if sys.platform == "darwin" else int(value) * 1024


# -- reading /proc files ------------------------------------------------------------------------


def _os_read_file(path: bytes) -> bytes | None:
    """Read a small file with the os module (releases the GIL around each system call)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        size = 0
        while size < _MAX_READ:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _gil_holding_read_file() -> Callable[[bytes], bytes | None] | None:
    """A reader of small files through libc that keeps the GIL (ctypes.PyDLL), or None."""
    try:
        import ctypes

        libc = ctypes.PyDLL(None, use_errno=True)
        c_open = libc.open
        c_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
        c_open.restype = ctypes.c_int
        c_read = libc.read
        c_read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
        c_read.restype = ctypes.c_ssize_t
        c_close = libc.close
        c_close.argtypes = [ctypes.c_int]
        c_close.restype = ctypes.c_int
    except Exception:
        return None
    flags = os.O_RDONLY | os.O_CLOEXEC
    create_buffer = ctypes.create_string_buffer
    string_at = ctypes.string_at
    size = 4096

    def read_file(path: bytes) -> bytes | None:
        fd = c_open(path, flags)
        if fd < 0:
            return None
        try:
            buf = create_buffer(size)  # one per call: two threads may read at once
            n = c_read(fd, buf, size)
            if n < 0:
                return None
            if n < size:
                return string_at(buf, n)
            parts = [string_at(buf, n)]
            total = n
            while total < _MAX_READ:
                n = c_read(fd, buf, size)
                if n <= 0:
                    break
                parts.append(string_at(buf, n))
                total += n
            return b"".join(parts)
        finally:
            c_close(fd)

    return read_file


def _parse_stat(data: bytes) -> tuple[int, int, int]:
    """(CPU ticks including waited-for children, threads, RSS pages) from /proc/<pid>/stat."""
    # The command name (field 2) is in parentheses and may hold spaces and parentheses.
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state); field n is fields[n - 3]: utime 14, stime 15, cutime 16,
    # cstime 17, num_threads 20, rss 24.
    ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks, int(fields[17]), int(fields[21])


def _parse_io(data: bytes) -> IoCounters:
    values: dict[bytes, int] = {}
    for line in data.splitlines():
        key, _, value = line.partition(b":")
        if value:
            values[key.strip()] = int(value)
    return IoCounters(
        read_bytes=values.get(b"rchar", 0),
        write_bytes=values.get(b"wchar", 0),
        read_ops=values.get(b"syscr", 0),
        write_ops=values.get(b"syscw", 0),
    )


def _pids(data: bytes | None) -> list[int]:
    return [int(p) for p in data.split()] if data else []


class ProcReader:
    """Linux: cheap reads of ``/proc`` and ``getrusage``.

    ``gil_free=False`` reads files with the os module instead of libc (for comparison in the
    benchmark: each read then hands the GIL to a busy main thread)."""

    def __init__(self, *, max_children: int = 256, gil_free: bool = True) -> None:
        self.cpu_count = available_cpus()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._tick = float(os.sysconf("SC_CLK_TCK"))
        self._max_children = max_children
        read_file = _gil_holding_read_file() if gil_free else None
        self._read_file: Callable[[bytes], bytes | None] = read_file or _os_read_file
        self.gil_free = read_file is not None
        stat = self._read_file(b"/proc/self/stat")
        if not stat:
            raise OSError("/proc/self/stat cannot be read")
        self._has_io = self._read_file(b"/proc/self/io") is not None
        pid = os.getpid()
        self._children_files = self._read_file(f"/proc/{pid}/task/{pid}/children".encode()) is not None
        self._fallback: _PsutilChildren | None = None

    def close(self) -> None:
        """Nothing stays open between readings."""

    def read(self, *, children: bool = True, io: bool = True) -> Reading:
        own = resource.getrusage(resource.RUSAGE_SELF)
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        stat = self._read_file(b"/proc/self/stat")
        if not stat:
            raise OSError("/proc/self/stat cannot be read")
        _, threads, rss_pages = _parse_stat(stat)
        counters = None
        if io and self._has_io:
            data = self._read_file(b"/proc/self/io")
            counters = _parse_io(data) if data else None
        return Reading(
            cpu_s=own.ru_utime + own.ru_stime,
            rss_bytes=rss_pages * self._page,
            maxrss_bytes=_maxrss_bytes(own.ru_maxrss),
            threads=threads,
            reaped_cpu_s=reaped.ru_utime + reaped.ru_stime,
            reaped_maxrss_bytes=_maxrss_bytes(reaped.ru_maxrss),
            live=self._live_children(io) if children else None,
            io=counters,
        )

    def _live_children(self, io: bool) -> LiveChildren:
        if not self._children_files:  # a kernel without CONFIG_PROC_CHILDREN
            if self._fallback is None:
                self._fallback = _PsutilChildren(self._max_children)
            return self._fallback.read(io)
        pid = os.getpid()
        # Children are listed per thread that forked them: every Python thread (the kernel's
        # per-thread list; threads started outside Python are not seen, their finished
        # children still count through RUSAGE_CHILDREN).
        tids = {pid}
        for thread in threading.enumerate():
            if thread.native_id is not None:
                tids.add(thread.native_id)
        todo: list[int] = []
        for tid in tids:
            todo.extend(_pids(self._read_file(f"/proc/{pid}/task/{tid}/children".encode())))
        seen: set[int] = set()
        ticks = rss_pages = 0
        total_io = IoCounters()
        read_file = self._read_file
        while todo and len(seen) < self._max_children:
            child = todo.pop()
            if child in seen:
                continue
            seen.add(child)
            stat = read_file(f"/proc/{child}/stat".encode())
            if not stat:  # gone since it was listed
                continue
            try:
                cpu_ticks, _, pages = _parse_stat(stat)
            except (ValueError, IndexError):
                continue
            ticks += cpu_ticks
            rss_pages += pages
            if io:
                data = read_file(f"/proc/{child}/io".encode())
                if data:
                    total_io = total_io + _parse_io(data)
            todo.extend(_pids(read_file(f"/proc/{child}/task/{child}/children".encode())))
        return LiveChildren(len(seen), ticks / self._tick, rss_pages * self._page, total_io)


def _psutil_io(counters: Any) -> IoCounters:
    return IoCounters(
        int(getattr(counters, "read_chars", counters.read_bytes)),
        int(getattr(counters, "write_chars", counters.write_bytes)),
        int(counters.read_count),
        int(counters.write_count),
    )


class _PsutilChildren:
    """Live descendants through psutil (slower: ~1 ms, one call per figure, each releasing the GIL)."""

    def __init__(self, max_children: int, process: Any = None) -> None:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        self._psutil = psutil
        self._process = process if process is not None else psutil.Process()
        self._max_children = max_children

    def read(self, io: bool) -> LiveChildren:
        psutil = self._psutil
        count = 0
        cpu = 0.0
        rss = 0
        total_io = IoCounters()
        for child in self._process.children(recursive=True)[: self._max_children]:
            try:
                with child.oneshot():
                    times = child.cpu_times()
                    cpu += times.user + times.system + times.children_user + times.children_system
                    rss += child.memory_info().rss
                    if io and hasattr(child, "io_counters"):
                        total_io = total_io + _psutil_io(child.io_counters())
                count += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return LiveChildren(count, cpu, rss, total_io)


class PsutilReader:
    """Systems without ``/proc`` (macOS): getrusage for CPU and high-water marks, psutil for
    resident memory, threads, IO (where psutil has it) and live children."""

    def __init__(self, *, max_children: int = 256) -> None:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        self.cpu_count = available_cpus()
        self._process: Any = psutil.Process()
        self._children = _PsutilChildren(max_children, self._process)
        self._has_io = hasattr(self._process, "io_counters")
        self.gil_free = False

    def close(self) -> None:
        """Nothing stays open between readings."""

    def read(self, *, children: bool = True, io: bool = True) -> Reading:
        own = resource.getrusage(resource.RUSAGE_SELF)
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        process = self._process
        counters = _psutil_io(process.io_counters()) if io and self._has_io else None
        return Reading(
            cpu_s=own.ru_utime + own.ru_stime,
            rss_bytes=int(process.memory_info().rss),
            maxrss_bytes=_maxrss_bytes(own.ru_maxrss),
            threads=int(process.num_threads()),
            reaped_cpu_s=reaped.ru_utime + reaped.ru_stime,
            reaped_maxrss_bytes=_maxrss_bytes(reaped.ru_maxrss),
            live=self._children.read(io) if children else None,
            io=counters,
        )


def default_reader() -> Reader:
    """The cheapest reader this system supports: ``/proc`` on Linux, psutil elsewhere."""
    if sys.platform.startswith("linux"):
        try:
            return ProcReader()
        except OSError:
            pass
    return PsutilReader()
