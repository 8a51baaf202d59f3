"""Live figures of the machine the API server runs on, for ``/etlops/api/health``.

CPU use and network rates are differences between two samples: the sampler keeps the last one
and moves it on when at least ``MIN_INTERVAL_S`` have passed, so a page that polls every few
seconds gets rates over its own polling interval, and two requests in quick succession get the
same figures rather than noise over a few milliseconds. The first sample is taken when the app
is built; the first request, when it comes sooner than ``FIRST_INTERVAL_S`` after, waits for the
rest of that interval so that it has one to measure over.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

MIN_INTERVAL_S = 1.0
FIRST_INTERVAL_S = 0.25
_IDLE_FIELDS = ("idle", "iowait")


@dataclass(frozen=True)
class _Sample:
    at: float
    busy: float
    total: float
    sent: int | None
    recv: int | None


def _take() -> _Sample:
    import psutil  # type: ignore[import-untyped, unused-ignore]

    cpu = psutil.cpu_times()
    total = float(sum(cpu))
    idle = float(sum(getattr(cpu, name, 0.0) for name in _IDLE_FIELDS))
    net = psutil.net_io_counters()
    return _Sample(
        time.monotonic(),
        total - idle,
        total,
        None if net is None else int(net.bytes_sent),
        None if net is None else int(net.bytes_recv),
    )


class SystemSampler:
    """CPU, memory, disk, network IO and uptime of this machine (and this process)."""

    def __init__(self, disk_path: str) -> None:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        self.disk_path = disk_path
        self._lock = threading.Lock()
        self._base = _take()
        self._rates: dict[str, float | None] = {"cpu_percent": None, "sent_per_s": None, "recv_per_s": None}
        self._process_started = psutil.Process().create_time()

    def _advance(self) -> tuple[dict[str, float | None], _Sample]:
        with self._lock:
            now = _take()
            elapsed = now.at - self._base.at
            if self._rates["cpu_percent"] is None and elapsed < FIRST_INTERVAL_S:
                # The first request after start: measure over a short interval rather than none.
                time.sleep(FIRST_INTERVAL_S - elapsed)
                now = _take()
                elapsed = now.at - self._base.at
            if elapsed >= MIN_INTERVAL_S or self._rates["cpu_percent"] is None:
                total = now.total - self._base.total
                busy = now.busy - self._base.busy
                self._rates = {
                    "cpu_percent": round(100.0 * busy / total, 1) if total > 0 else 0.0,
                    "sent_per_s": None
                    if now.sent is None or self._base.sent is None
                    else max(0.0, (now.sent - self._base.sent) / elapsed),
                    "recv_per_s": None
                    if now.recv is None or self._base.recv is None
                    else max(0.0, (now.recv - self._base.recv) / elapsed),
                }
                self._base = now
            return dict(self._rates), now

    def figures(self) -> dict[str, Any]:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        rates, sample = self._advance()
        memory = psutil.virtual_memory()
        try:
            disk = psutil.disk_usage(self.disk_path)
            disk_figures: dict[str, Any] = {
                "path": self.disk_path,
                "total_bytes": int(disk.total),
                "used_bytes": int(disk.used),
                "free_bytes": int(disk.free),
                "percent": float(disk.percent),
            }
        except OSError as exc:
            disk_figures = {"path": self.disk_path, "error": f"{type(exc).__name__}: {exc}"}
        try:
            load_1m: float | None = float(os.getloadavg()[0])
        except OSError:
            load_1m = None
        now = time.time()
        boot = float(psutil.boot_time())
        return {
            "cpu_percent": rates["cpu_percent"],
            "cpu_count": psutil.cpu_count() or 0,
            "load_1m": load_1m,
            "memory": {
                "total_bytes": int(memory.total),
                "used_bytes": int(memory.total - memory.available),
                "available_bytes": int(memory.available),
                "percent": float(memory.percent),
            },
            "disk": disk_figures,
            "network": {
                "bytes_sent": sample.sent,
                "bytes_recv": sample.recv,
                "sent_per_s": rates["sent_per_s"],
                "recv_per_s": rates["recv_per_s"],
            },
            "boot_time": boot,
            "uptime_s": max(0.0, now - boot),
            "process_uptime_s": max(0.0, now - self._process_started),
            "sampled_at": now,
        }
