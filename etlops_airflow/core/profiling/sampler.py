"""The sampler: a daemon thread that reads the process every ``interval`` while stages are open.

Each sample is a cheap reading (no IO counters; live children only every ``children_every``-th
sample) handed to ``on_reading``. The thread starts when a stage opens, idles while none is
open, ends by itself after ``linger`` seconds without an open stage, and ends at once on
:meth:`Sampler.stop`. Nothing is kept open between samples.

Being on time while the task's main thread holds the GIL (a pure-Python loop): a thread that
wakes up must wait for the GIL, one *switch interval* (5 ms by default), and again after every
call that releases it. So, while the thread lives:

* the interpreter's switch interval is lowered to ``switch_interval`` (1 ms) and restored when
  the last sampler ends (unless someone else changed it meanwhile). A shorter interval only
  matters when a thread waits for the GIL: a lone busy thread runs as before (the benchmark
  measures it);
* readings never release the GIL (see :mod:`.reader`), so one sample costs one GIL hand-over;
* the thread wakes up early by the time it recently needed from waking to a finished reading
  (the median of the last few samples, at most two switch intervals): when the main thread
  holds the GIL, the reading lands on the scheduled instant instead of a switch interval late;
  when it does not, the lead shrinks to the wake-up cost.

``latencies()`` gives, per sample, the time of the finished reading minus its scheduled time
(negative: early).
"""

from __future__ import annotations

import collections
import math
import os
import sys
import threading
import time
from collections.abc import Callable

from etlops_airflow.core.profiling.reader import Reader, Reading

__all__ = ["Sampler"]

# -- the interpreter's switch interval, lowered while at least one sampler thread lives ----------

_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved: float | None = None
_switch_ours: float | None = None


def _lower_switch_interval(target: float) -> None:
    global _switch_users, _switch_saved, _switch_ours
    with _switch_lock:
        _switch_users += 1
        if _switch_users == 1:
            current = sys.getswitchinterval()
            if current > target:
                _switch_saved = current
                sys.setswitchinterval(target)
                _switch_ours = sys.getswitchinterval()


def _restore_switch_interval() -> None:
    global _switch_users, _switch_saved, _switch_ours
    with _switch_lock:
        _switch_users = max(0, _switch_users - 1)
        if _switch_users == 0 and _switch_saved is not None:
            if sys.getswitchinterval() == _switch_ours:  # nobody changed it since
                sys.setswitchinterval(_switch_saved)
            _switch_saved = _switch_ours = None


def _after_fork_in_child() -> None:
    # No sampler thread survives a fork: give the child its switch interval back.
    global _switch_lock, _switch_users, _switch_saved, _switch_ours
    _switch_lock = threading.Lock()
    if _switch_saved is not None and sys.getswitchinterval() == _switch_ours:
        sys.setswitchinterval(_switch_saved)
    _switch_users = 0
    _switch_saved = _switch_ours = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Sampler:
    """Samples the process for a session (see the module docstring)."""

    def __init__(
        self,
        reader: Reader,
        on_reading: Callable[[Reading, float], None],
        active: Callable[[], bool],
        *,
        interval: float,
        on_error: Callable[[BaseException], None],
        children_every: int = 5,
        linger: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
        switch_interval: float | None = 0.001,
        early_wake: bool = True,
        keep_latencies: int = 4096,
        name: str = "etlops-profiler",
    ) -> None:
        if not interval > 0:
            raise ValueError(f"sample interval must be positive, got {interval!r}")
        self.interval = float(interval)
        self._reader = reader
        self._on_reading = on_reading
        self._active = active
        self._on_error = on_error
        self._children_every = max(1, int(children_every))
        self.linger = 2 * self.interval if linger is None else float(linger)
        self._clock = clock
        self._switch_interval = switch_interval
        self._early_wake = early_wake
        self._name = name
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.failed = False
        self.samples = 0
        self.children_samples = 0
        self.threads_started = 0
        self._latencies: collections.deque[float] = collections.deque(maxlen=keep_latencies)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def latencies(self) -> list[float]:
        """Finished reading minus scheduled time of the recent samples, in seconds."""
        return list(self._latencies)

    def ensure_running(self) -> None:
        """Start the thread unless it runs (called after a stage opened)."""
        if self._thread is not None or self._closed or self.failed:
            return
        with self._lock:
            if self._thread is not None or self._closed or self.failed:
                return
            thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread = thread
            self.threads_started += 1
            thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """End the thread now and for good (the session finished)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the thread --------------------------------------------------------------------------------

    def _run(self) -> None:
        me = threading.current_thread()
        if self._switch_interval is not None:
            _lower_switch_interval(self._switch_interval)
        try:
            self._loop(me)
        except Exception as exc:
            self.failed = True
            try:
                self._on_error(exc)
            except Exception:  # pragma: no cover - the error handler itself failed
                pass
        finally:
            if self._switch_interval is not None:
                _restore_switch_interval()
            with self._lock:
                if self._thread is me:
                    self._thread = None

    def _loop(self, me: threading.Thread) -> None:
        clock = self._clock
        interval = self.interval
        stop = self._stop
        max_lead = min(2 * sys.getswitchinterval(), interval / 2)
        waits: collections.deque[float] = collections.deque(maxlen=9)
        lead = 0.0
        idle_since: float | None = None
        count = 0
        next_at = clock() + interval
        while True:
            wake_at = next_at - lead
            delay = wake_at - clock()
            if delay > 0:
                if stop.wait(delay):
                    return
            elif stop.is_set():
                return
            if not self._active():
                now = clock()
                if idle_since is None:
                    idle_since = now
                elif now - idle_since >= self.linger:
                    with self._lock:
                        if not self._active():  # a stage opening now starts a new thread
                            self._thread = None
                            return
                next_at = _next(next_at, interval, now)
                continue
            idle_since = None
            children = count % self._children_every == 0
            reading = self._reader.read(children=children, io=False)
            done = clock()
            count += 1
            self.samples += 1
            if children:
                self.children_samples += 1
            self._latencies.append(done - next_at)
            if self._early_wake:
                waits.append(done - wake_at)
                lead = min(sorted(waits)[len(waits) // 2], max_lead)
            self._on_reading(reading, done)
            next_at = _next(next_at, interval, clock())


def _next(scheduled: float, interval: float, now: float) -> float:
    """The next scheduled instant after ``now`` on the grid of ``scheduled`` (missed ones skipped)."""
    following = scheduled + interval
    if following > now:
        return following
    return scheduled + interval * (math.floor((now - scheduled) / interval) + 1)
