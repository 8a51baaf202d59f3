"""A per-host lock for maintenance tasks: ``flock`` on a file, released by the kernel when the
holder exits or crashes (no stale lock file to clean up, unlike a PID file in /tmp)."""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def host_lock(directory: str, name: str) -> Iterator[bool]:
    """Yields True when this process holds ``name`` on this host, False when another does."""
    os.makedirs(directory, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:200]
    fd = os.open(os.path.join(directory, f"{safe}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
