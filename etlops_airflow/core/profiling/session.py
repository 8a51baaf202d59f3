"""Sessions and stages: the measuring engine, plain Python with an injectable clock and reader.

A :class:`Session` is one task try (or one in-memory run outside Airflow). A :class:`Stage` is
one run of a named part of it: a full reading when it opens and when it closes (CPU, memory,
IO, threads, child processes), the sampler's peaks in between. Stages nest (the path of
``enrich`` opened inside ``transform`` is ``transform/enrich``; nesting follows the context,
so threads and asyncio tasks each have their own) and repeat (each run is its own entry).

The session never hurts the task: a reader or sampler that fails is logged once (logger
``etlops_airflow.profiling``) and noted in the report, and the stage carries on with the
figures it has (wall time and records always). Bad arguments (a stage name that is not text,
negative records) raise :class:`~etlops_airflow.exceptions.ValidationError`: they are bugs in
the calling code.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import Literal

from etlops_airflow.core.profiling.findings import regressions
from etlops_airflow.core.profiling.model import (
    MAX_STAGE_PATH,
    SessionKey,
    SessionReport,
    StageFigures,
    Thresholds,
    check_records,
    check_stage_name,
)
from etlops_airflow.core.profiling.reader import Reader, Reading, available_cpus, default_reader
from etlops_airflow.core.profiling.report import build_report, with_findings
from etlops_airflow.core.profiling.sampler import Sampler
from etlops_airflow.exceptions import EtlopsError

__all__ = ["Session", "Stage", "StageScope", "current_stage"]

log = logging.getLogger("etlops_airflow.profiling")

# The open stages of the current context, innermost last (may hold stages of other sessions).
_OPEN: ContextVar[tuple[Stage, ...]] = ContextVar("etlops_profiling_open_stages", default=())


def _one_line(exc: BaseException | str, limit: int = 300) -> str:
    if isinstance(exc, str):
        text = exc.strip()
        return text if len(text) <= limit else text[: limit - 1] + "…"
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if len(first) > limit:
        first = first[: limit - 1] + "…"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _rate(last: tuple[float, float] | None, now: float, cpu_s: float) -> float:
    """CPU percent of one core since ``last`` (0 without one)."""
    if last is None or now <= last[0]:
        return 0.0
    return max(0.0, cpu_s - last[1]) / (now - last[0]) * 100


class Stage:
    """One run of a stage. Set ``records_in`` / ``records_out`` while it runs."""

    __slots__ = (
        "_records_in",
        "_records_out",
        "_session",
        "_start",
        "_t0",
        "closed",
        "error",
        "figures",
        "index",
        "name",
        "path",
        "peak_children",
        "peak_rss",
        "peak_threads",
        "samples",
        "started_at",
    )

    def __init__(
        self,
        session: Session,
        name: str,
        path: str,
        index: int,
        records_in: int | None,
        t0: float,
        started_at: float,
        start: Reading | None,
    ) -> None:
        self._session = session
        self.name = name
        self.path = path
        self.index = index
        self._records_in = records_in
        self._records_out: int | None = None
        self._t0 = t0
        self.started_at = started_at
        self._start = start
        self.error: str | None = None
        self.closed = False
        self.figures: StageFigures | None = None
        self.samples = 0
        self.peak_rss = start.total_rss_bytes if start is not None else 0
        self.peak_threads = start.threads if start is not None else 0
        self.peak_children = start.live.count if start is not None and start.live is not None else 0

    @property
    def records_in(self) -> int | None:
        return self._records_in

    @records_in.setter
    def records_in(self, value: int | None) -> None:
        self._records_in = check_records("records_in", value, self.path)

    @property
    def records_out(self) -> int | None:
        return self._records_out

    @records_out.setter
    def records_out(self, value: int | None) -> None:
        self._records_out = check_records("records_out", value, self.path)

    @property
    def session(self) -> Session:
        return self._session

    def close(self, error: BaseException | str | None = None) -> StageFigures | None:
        """End the stage (once; later calls return the same figures). ``error``: what ended it."""
        stack = _OPEN.get()
        if self in stack:
            _OPEN.set(tuple(s for s in stack if s is not self))
        return self._session.close_stage(self, error)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Stage {self.path!r} #{self.index} {state}>"


class StageScope:
    """``with session.stage("parse") as stage:`` — opens a stage nested in the innermost open
    stage of the same session in this context, closes it on exit with the exception that ended
    the block (which goes on untouched)."""

    __slots__ = ("_name", "_records_in", "_session", "_stage", "_token")

    def __init__(self, session: Session, name: str, records_in: int | None) -> None:
        self._session = session
        self._name = name
        self._records_in = records_in
        self._stage: Stage | None = None

    def __enter__(self) -> Stage:
        stage = self._session.begin_stage(self._name, records_in=self._records_in, push=False)
        stack = _OPEN.get()
        self._token = _OPEN.set((*stack, stage))
        self._stage = stage
        return stage

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        stage = self._stage
        if stage is None:
            return False
        try:
            _OPEN.reset(self._token)
        except ValueError:  # closed in another context than it was opened in
            _OPEN.set(tuple(s for s in _OPEN.get() if s is not stage))
        self._session.close_stage(stage, exc)
        return False


def current_stage() -> Stage | None:
    """The innermost open stage of this context (any session), or None."""
    for stage in reversed(_OPEN.get()):
        if not stage.closed:
            return stage
    return None


class Session:
    """One profiling session (see the module docstring).

    ``reader`` reads the process (default: :func:`~.reader.default_reader`); ``clock`` gives
    seconds for durations (monotonic) and ``wall_clock`` epoch seconds for start times.
    ``sample_interval`` 0 (or ``None``) runs no sampler thread: only the readings at stage
    starts and ends (and :meth:`sample` calls) count. Beyond ``max_stages`` stage runs, later
    runs are measured but left out of the report (a note says how many).
    """

    def __init__(
        self,
        key: SessionKey | None = None,
        *,
        reader: Reader | None = None,
        sample_interval: float | None = 1.0,
        thresholds: Thresholds | None = None,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
        children_every: int = 5,
        linger: float | None = None,
        max_stages: int = 10_000,
        switch_interval: float | None = 0.001,
        early_wake: bool = True,
        describe_error: Callable[[BaseException | str], str] | None = None,
        implicit: bool = False,
    ) -> None:
        self.key = key if key is not None else SessionKey()
        self.thresholds = thresholds if thresholds is not None else Thresholds()
        self.implicit = implicit
        self._clock = clock
        self._wall_clock = wall_clock
        self._describe_error = describe_error or _one_line
        self._max_stages = max_stages
        self._lock = threading.Lock()
        self._notes: dict[str, str] = {}
        if reader is None:
            try:
                reader = default_reader()
            except Exception as exc:
                self._note("reader", f"no process figures (the process cannot be read: {_one_line(exc)})")
        self._reader = reader
        self.cpu_count = reader.cpu_count if reader is not None else available_cpus()
        self._t0 = clock()
        self.started_at = wall_clock()
        self._open: list[Stage] = []
        self._done: list[StageFigures] = []
        self._count = 0
        self._dropped = 0
        self._peak_rss = 0
        self._peak_cpu = 0.0
        self._last_own: tuple[float, float] | None = None  # (time, CPU s) of the last sample
        self._last_full: tuple[float, float] | None = None  # the same with children, when read
        self._last_close: float | None = None
        self._end: float | None = None
        self._report: SessionReport | None = None
        self.finished = False
        self.sample_interval = float(sample_interval or 0.0)
        self.sampler: Sampler | None = None
        if reader is not None and self.sample_interval > 0:
            self.sampler = Sampler(
                reader,
                self._on_reading,
                self.has_open_stages,
                interval=self.sample_interval,
                on_error=self._sampler_failed,
                children_every=children_every,
                linger=linger,
                clock=clock,
                switch_interval=switch_interval,
                early_wake=early_wake,
            )

    # -- notes: what the profiler itself could not do, logged once each ---------------------------------

    def _note(self, topic: str, text: str) -> None:
        if topic in self._notes:
            return
        self._notes[topic] = text
        log.warning("etlops profiling: %s; the task is not affected", text)

    def _read(self, *, children: bool, io: bool) -> Reading | None:
        reader = self._reader
        if reader is None:
            return None
        try:
            return reader.read(children=children, io=io)
        except Exception as exc:
            self._note("read", f"reading the process failed ({_one_line(exc)}), stage figures are incomplete")
            return None

    def _sampler_failed(self, exc: BaseException) -> None:
        self._note("sampler", f"sampling stopped ({_one_line(exc)}); peaks come from stage starts and ends")

    # -- stages ----------------------------------------------------------------------------------------

    def has_open_stages(self) -> bool:
        return bool(self._open)

    def stage(self, name: str, *, records_in: int | None = None) -> StageScope:
        """A context manager running one stage (see :class:`StageScope`)."""
        return StageScope(self, check_stage_name(name), check_records("records_in", records_in, name))

    def begin_stage(self, name: str, *, records_in: int | None = None, push: bool = True) -> Stage:
        """Open a stage nested in the innermost open stage of this session in this context.
        With ``push`` it also becomes the parent of stages opened later in this context until
        :meth:`Stage.close` (for a stage that is not a ``with`` block, e.g. the whole task)."""
        name = check_stage_name(name)
        parent = None
        stack = _OPEN.get()
        for candidate in reversed(stack):
            if candidate._session is self and not candidate.closed:
                parent = candidate
                break
        path = f"{parent.path}/{name}" if parent is not None else name
        records = check_records("records_in", records_in, path)
        if self.finished:
            raise EtlopsError(f"profiling session {self.key} is finished: stage {path!r} cannot start")
        if len(path) > MAX_STAGE_PATH:
            raise EtlopsError(
                f"stage path {path[:80]!r}… is longer than {MAX_STAGE_PATH} characters "
                "(a profiled function calling itself?): the stage is not profiled"
            )
        start = self._read(children=True, io=True)
        t0 = self._clock()
        started_at = self._wall_clock()
        with self._lock:
            stage = Stage(self, name, path, self._count, records, t0, started_at, start)
            self._count += 1
            self._open.append(stage)
        if self.sampler is not None:
            self.sampler.ensure_running()
        if push:
            _OPEN.set((*(s for s in stack if not s.closed), stage))
        return stage

    def close_stage(self, stage: Stage, error: BaseException | str | None = None) -> StageFigures | None:
        """End ``stage`` and record its figures (once). ``error`` is what ended it, if anything."""
        if stage.closed or stage._session is not self:
            return stage.figures
        t1 = self._clock()
        end = self._read(children=True, io=True)
        text = self._describe(error) if error is not None else None
        with self._lock:
            if stage.closed:
                return stage.figures
            stage.closed = True
            try:
                self._open.remove(stage)
            except ValueError:  # pragma: no cover - closed twice at once
                pass
            if text is not None:
                stage.error = text
            figures = self._figures(stage, end, t1)
            stage.figures = figures
            if figures is None:
                return None
            if len(self._done) < self._max_stages:
                self._done.append(figures)
            else:
                self._dropped += 1
            self._peak_rss = max(self._peak_rss, figures.peak_rss_bytes)
            self._last_close = t1
        if self._dropped == 1:
            self._note(
                "cap", f"more than {self._max_stages} stage runs: later runs are left out of the report"
            )
        return figures

    def _describe(self, error: BaseException | str) -> str:
        try:
            return self._describe_error(error)
        except Exception:  # a describer must not lose the stage
            return _one_line(error)

    def _figures(self, stage: Stage, end: Reading | None, t1: float) -> StageFigures | None:
        duration = max(0.0, t1 - stage._t0)
        records = stage.records_out if stage.records_out is not None else stage.records_in
        rate = records / duration if records is not None and duration > 0 else None
        start = stage._start
        cpu_s = 0.0
        peak_rss = stage.peak_rss
        end_rss = 0
        threads = stage.peak_threads
        children = stage.peak_children
        io_delta = None
        if start is not None and end is not None:
            cpu_s = max(0.0, end.total_cpu_s - start.total_cpu_s)
            end_rss = end.total_rss_bytes
            peak_rss = max(peak_rss, end_rss)
            # High-water marks: a new one during the stage is a peak the samples may have missed.
            if end.maxrss_bytes > start.maxrss_bytes:
                peak_rss = max(peak_rss, end.maxrss_bytes)
            if end.reaped_maxrss_bytes > start.reaped_maxrss_bytes:
                peak_rss = max(peak_rss, end.reaped_maxrss_bytes)
            threads = max(threads, end.threads)
            if end.live is not None:
                children = max(children, end.live.count)
            if children == 0 and (
                end.reaped_cpu_s > start.reaped_cpu_s or end.reaped_maxrss_bytes > start.reaped_maxrss_bytes
            ):
                children = 1  # a child ran and ended between two readings
            a, b = start.total_io, end.total_io
            if a is not None and b is not None:
                io_delta = (
                    max(0, b.read_bytes - a.read_bytes),
                    max(0, b.write_bytes - a.write_bytes),
                    max(0, b.read_ops - a.read_ops),
                    max(0, b.write_ops - a.write_ops),
                )
        cpu_percent = cpu_s / duration * 100 if duration > 0 else 0.0
        return StageFigures(
            name=stage.name,
            path=stage.path,
            index=stage.index,
            started_at=stage.started_at,
            duration_s=duration,
            records_in=stage.records_in,
            records_out=stage.records_out,
            records_per_s=rate,
            cpu_s=cpu_s,
            cpu_percent=cpu_percent,
            cpu_percent_machine=cpu_percent / self.cpu_count,
            peak_rss_bytes=int(peak_rss),
            end_rss_bytes=int(end_rss),
            io_read_bytes=io_delta[0] if io_delta else None,
            io_write_bytes=io_delta[1] if io_delta else None,
            io_read_ops=io_delta[2] if io_delta else None,
            io_write_ops=io_delta[3] if io_delta else None,
            threads_peak=int(threads),
            children_peak=int(children),
            samples=stage.samples,
            error=stage.error,
        )

    # -- samples ---------------------------------------------------------------------------------------

    def sample(self, *, children: bool = True) -> None:
        """Take one sample now (the sampler thread's work; tests call it with a fake reader)."""
        reading = self._read(children=children, io=False)
        if reading is not None:
            self._on_reading(reading, self._clock())

    def _on_reading(self, reading: Reading, now: float) -> None:
        live = reading.live
        # Between the readings of live children only the process itself counts.
        rss = reading.total_rss_bytes
        with self._lock:
            for stage in self._open:
                stage.samples += 1
                if rss > stage.peak_rss:
                    stage.peak_rss = rss
                if reading.threads > stage.peak_threads:
                    stage.peak_threads = reading.threads
                if live is not None and live.count > stage.peak_children:
                    stage.peak_children = live.count
            if rss > self._peak_rss:
                self._peak_rss = rss
            # Peak CPU over one sample interval: the process itself between any two samples; with
            # its children only between two samples that read the live children (a child's CPU
            # moves from "live" to "finished" when it is waited for, and must not count twice).
            self._peak_cpu = max(self._peak_cpu, _rate(self._last_own, now, reading.cpu_s))
            self._last_own = (now, reading.cpu_s)
            if live is not None:
                total = reading.total_cpu_s
                self._peak_cpu = max(self._peak_cpu, _rate(self._last_full, now, total))
                self._last_full = (now, total)

    # -- reports ---------------------------------------------------------------------------------------

    @property
    def stages(self) -> list[StageFigures]:
        """The figures of the stage runs closed so far."""
        with self._lock:
            return list(self._done)

    def report(self, history: Mapping[str, Sequence[float]] | None = None) -> SessionReport:
        """The report of what ran so far (closed stages), or the final one once finished."""
        if self._report is not None and history is None:
            return self._report
        with self._lock:
            stages = tuple(self._done)
            if self._end is not None:
                duration = self._end - self._t0
            elif self.implicit:
                duration = (self._last_close if self._last_close is not None else self._t0) - self._t0
            else:
                duration = self._clock() - self._t0
            notes = list(self._notes.values())
            if self._dropped:
                notes.append(
                    f"{self._dropped} stage run(s) past the first {self._max_stages} are not in the report"
                )
            peak_rss, peak_cpu = self._peak_rss, self._peak_cpu
        return build_report(
            self.key,
            started_at=self.started_at,
            duration_s=duration,
            stages=stages,
            peak_rss_bytes=peak_rss,
            peak_cpu_percent=peak_cpu,
            thresholds=self.thresholds,
            history=history,
            notes=notes,
        )

    def finish(
        self,
        *,
        error: BaseException | str | None = None,
        history: Mapping[str, Sequence[float]] | None = None,
    ) -> SessionReport:
        """End the session: stop the sampler, close the stages still open (with ``error``, the
        task's own, when given), and build the final report (with regressions when a
        ``history`` is given). Finishing again returns the same report."""
        with self._lock:
            if self._report is not None:
                return self._report
            self.finished = True
            still_open = list(self._open)
        if self.sampler is not None:
            self.sampler.stop()
        for stage in reversed(still_open):
            stage.close(error)
        self._end = self._clock()
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception as exc:  # pragma: no cover - readers hold nothing open today
                self._note("close", f"closing the reader failed ({_one_line(exc)})")
        report = self.report()
        self._report = report
        if history:
            # Kept without regressions when the history is refused (ValidationError raised).
            self._report = report = with_findings(report, regressions(report, history, self.thresholds))
        return report
