"""Profile the stages of a task: time, records, CPU, memory, IO, threads, child processes.

    from etlops_airflow.profiling import profile_stage, profiled

    @task
    def transform(rows):
        with profile_stage("parse", records_in=len(rows)) as stage:
            parsed = [parse(r) for r in rows]
            stage.records_out = len(parsed)
        with profile_stage("enrich", records_in=len(parsed)) as stage:
            ...

    @task
    @profiled(stage="load")  # the whole callable as one stage
    def load(rows): ...

Stages nest (``enrich`` opened inside ``transform`` has the path ``transform/enrich``) and
repeat (each run is its own entry). Figures per stage: wall time, records in/out and records/s,
CPU (of one core and of the machine), peak and end resident memory, IO bytes and calls,
threads, child processes (all included in CPU, memory and IO).

Inside an Airflow task the session belongs to the running task try (its key comes from
``airflow.sdk.get_current_context()``); the etlops listener starts it, and at the end of the
task calls :func:`finish_session` and records the report. Outside a task (plain Python,
tests) the same API keeps the session in memory and :func:`last_report` returns what ran.

Never hurts the task: if reading the process, sampling or anything in here fails, one line is
logged (logger ``etlops_airflow.profiling``) and the task runs on with its own result; an
exception raised by the task's code inside a stage goes on untouched (the stage records it).
Only bad arguments (a stage name that is not text or holds ``/``, negative records) raise
:class:`~etlops_airflow.exceptions.ValidationError`, when called: they are bugs in the caller.

Settings (``[etlops]``): ``profile_sample_interval`` (how often the sampler reads the process
while a stage runs, default 1s; 0 = only at stage starts and ends), the finding thresholds
``profile_memory_threshold_mb``, ``profile_cpu_threshold_percent``,
``profile_min_records_per_second``, ``profile_regression_factor``, ``profile_regression_floor``,
``profile_regression_runs``, and ``profile_all_tasks`` (the listener profiles every task as
one stage). In a process that has not imported Airflow they come from the
``AIRFLOW__ETLOPS__<OPTION>`` environment variables only (reading airflow.cfg would import
Airflow, ~1 s).

Cheap to import (DAG files import it): the engine (``etlops_airflow.core.profiling``) loads at
the first stage.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar, overload

from etlops_airflow.core.profiling.model import (
    SessionKey,
    SessionReport,
    Thresholds,
    check_records,
    check_stage_name,
)
from etlops_airflow.exceptions import ConfigError, ValidationError

if TYPE_CHECKING:
    from etlops_airflow.core.profiling.session import Session, Stage

__all__ = [
    "MIN_SAMPLE_INTERVAL_S",
    "ProfilingSettings",
    "StageHandle",
    "current_session",
    "current_stage",
    "finish_session",
    "last_report",
    "load_settings",
    "profile_stage",
    "profiled",
    "start_session",
    "task_session_key",
    "whole_task_stage",
]

log = logging.getLogger("etlops_airflow.profiling")

MIN_SAMPLE_INTERVAL_S = 0.01

P = ParamSpec("P")
R = TypeVar("R")


class StageHandle(Protocol):
    """What ``with profile_stage(...) as stage`` gives: set ``records_in`` / ``records_out``."""

    name: str
    path: str
    records_in: int | None
    records_out: int | None

    def close(self, error: BaseException | str | None = None) -> object: ...


# -- settings ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfilingSettings:
    """The ``[etlops] profile_*`` options, read and checked."""

    profile_all_tasks: bool = False
    sample_interval: float = 1.0  # seconds; 0: no sampler thread
    thresholds: Thresholds = field(default_factory=Thresholds)


def _check_interval(value: float, option: str = "profile_sample_interval") -> float:
    if 0 < value < MIN_SAMPLE_INTERVAL_S:
        raise ConfigError(
            option, value, f"must be 0 (no sampling) or at least {MIN_SAMPLE_INTERVAL_S * 1000:g}ms"
        )
    return value


def load_settings() -> ProfilingSettings:
    """Read the ``[etlops] profile_*`` options. Raises :class:`ConfigError` naming the option
    and the value when one is wrong."""
    from etlops_airflow import config

    # Outside a task only the environment is read: importing Airflow's config costs ~1 s.
    lazy = False
    return ProfilingSettings(
        profile_all_tasks=config.get_bool("profile_all_tasks", load_airflow=lazy),
        sample_interval=_check_interval(
            config.get_duration("profile_sample_interval", allow_zero=True, load_airflow=lazy)
        ),
        thresholds=Thresholds(
            memory_bytes=config.get_int("profile_memory_threshold_mb", 1, load_airflow=lazy) * 1024**2,
            cpu_percent=config.get_int("profile_cpu_threshold_percent", 1, load_airflow=lazy),
            min_records_per_s=config.get_int("profile_min_records_per_second", 0, load_airflow=lazy),
            regression_factor=config.get_float("profile_regression_factor", 1, load_airflow=lazy),
            regression_floor_s=config.get_duration(
                "profile_regression_floor", allow_zero=True, load_airflow=lazy
            ),
            regression_runs=config.get_int("profile_regression_runs", 1, load_airflow=lazy),
        ),
    )


# -- process state: the current session, the last report ----------------------------------------------

_lock = threading.RLock()
_current: Session | None = None
_last: SessionReport | None = None
_warned: set[str] = set()
_fork_hook = False


def _warn_once(topic: str, text: str) -> None:
    if topic in _warned:
        return
    _warned.add(topic)
    log.warning("etlops profiling: %s; the task is not affected", text)


def _one_line(exc: BaseException | str) -> str:
    from etlops_airflow._log import one_line

    return one_line(exc) if isinstance(exc, BaseException) else str(exc)


def _describe_error(error: BaseException | str) -> str:
    """A stage's error on one line, with secrets Airflow knows of hidden (reports are shown)."""
    text = _one_line(error)
    if "airflow" in sys.modules:
        from etlops_airflow._secrets import redact

        text = redact(text)
    return text


def _after_fork_in_child() -> None:
    # The parent's session (and its sampler thread) does not exist in a forked child.
    global _lock, _current
    _lock = threading.RLock()
    _current = None


def _new_session(key: SessionKey, interval: float, thresholds: Thresholds, *, implicit: bool) -> Session:
    global _fork_hook
    from etlops_airflow.core.profiling.session import Session

    if not _fork_hook and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook = True
    return Session(
        key,
        sample_interval=interval,
        thresholds=thresholds,
        describe_error=_describe_error,
        implicit=implicit,
    )


def _key_from_ti(ti: Any) -> SessionKey:
    map_index = getattr(ti, "map_index", None)
    try_number = getattr(ti, "try_number", None)
    return SessionKey(
        dag_id=str(ti.dag_id),
        task_id=str(ti.task_id),
        run_id=str(ti.run_id),
        map_index=-1 if map_index is None else int(map_index),
        try_number=None if try_number is None else int(try_number),
    )


def task_session_key(ti: Any = None) -> SessionKey | None:
    """The session key of a task instance, or of the running task (None outside a task).
    Never imports Airflow: outside a task process that has loaded ``airflow.sdk`` it is None."""
    if ti is None:
        sdk = sys.modules.get("airflow.sdk")
        if sdk is None:
            return None
        try:
            context = sdk.get_current_context()
            ti = context.get("ti") or context.get("task_instance")
        except Exception:
            return None
        if ti is None:
            return None
    try:
        return _key_from_ti(ti)
    except Exception:
        return None


def current_session() -> Session | None:
    """The session stages go into now (None before the first stage or after it finished)."""
    session = _current
    return session if session is not None and not session.finished else None


def current_stage() -> Stage | None:
    """The innermost open stage in this context (e.g. inside a ``@profiled`` function)."""
    if "etlops_airflow.core.profiling.session" not in sys.modules:
        return None
    from etlops_airflow.core.profiling.session import current_stage as innermost

    return innermost()


def start_session(
    key: SessionKey | None = None,
    *,
    sample_interval: float | None = None,
    thresholds: Thresholds | None = None,
) -> Session:
    """Start a session (the listener calls it when a task starts); a session still running is
    finished first. ``key`` defaults to the running task's; ``sample_interval`` (seconds, 0 for
    none) and ``thresholds`` default to the ``[etlops]`` options, whose errors raise
    :class:`ConfigError` (a bad argument raises :class:`ValidationError`)."""
    global _current
    if sample_interval is not None:
        if (
            isinstance(sample_interval, bool)
            or not isinstance(sample_interval, (int, float))
            or not math.isfinite(sample_interval)
            or sample_interval < 0
            or 0 < sample_interval < MIN_SAMPLE_INTERVAL_S
        ):
            raise ValidationError(
                "sample_interval",
                sample_interval,
                f"expected seconds: 0 (no sampling) or at least {MIN_SAMPLE_INTERVAL_S:g}",
                owner="start_session",
            )
    if thresholds is not None and not isinstance(thresholds, Thresholds):
        raise ValidationError("thresholds", thresholds, "expected Thresholds", owner="start_session")
    if sample_interval is None or thresholds is None:
        settings = load_settings()
        if sample_interval is None:
            sample_interval = settings.sample_interval
        if thresholds is None:
            thresholds = settings.thresholds
    if key is None:
        key = task_session_key() or SessionKey()
    session = _new_session(key, float(sample_interval), thresholds, implicit=False)
    with _lock:
        previous, _current = _current, session
    if previous is not None and not previous.finished:
        _finish(previous)
    return session


def _finish(
    session: Session,
    error: BaseException | str | None = None,
    history: Mapping[str, Sequence[float]] | None = None,
) -> SessionReport | None:
    global _last
    report: SessionReport | None
    try:
        report = session.finish(error=error, history=history)
    except Exception as exc:
        _warn_once("finish", f"finishing the profiling session failed ({_one_line(exc)})")
        try:
            report = session.report()
        except Exception:
            report = None
    if report is not None:
        _last = report
    return report


def finish_session(
    *,
    error: BaseException | str | None = None,
    history: Mapping[str, Sequence[float]] | None = None,
) -> SessionReport | None:
    """End the current session: stop its sampler, close the stages still open (with ``error``,
    the task's exception, when given) and return its report with findings (and regressions
    against ``history``: ``{stage path: [earlier durations, newest first]}``). None when no
    session runs. Never raises: a failure is logged and the report of what was measured is
    returned."""
    global _current
    with _lock:
        session, _current = _current, None
    if session is None:
        return None
    return _finish(session, error, history)


def last_report() -> SessionReport | None:
    """The report of the current session so far (its closed stages), or of the last finished
    one; None when nothing was profiled in this process."""
    session = _current
    if session is not None:
        try:
            return session.report()
        except Exception as exc:
            _warn_once("report", f"building the report failed ({_one_line(exc)})")
    return _last


def _belongs_elsewhere(session: Session) -> bool:
    """An in-memory session of another task (``dag.test()`` runs every task in one process)."""
    if not session.implicit or session.has_open_stages() or "airflow.sdk" not in sys.modules:
        return False
    key = task_session_key()
    return key is not None and key != session.key


def _implicit_settings() -> ProfilingSettings:
    try:
        return load_settings()
    except ConfigError as exc:
        _warn_once("config", f"{exc}; profiling with the default settings")
        return ProfilingSettings()


def _session_for_stage() -> Session:
    global _current
    session = _current
    if session is not None and not session.finished and not _belongs_elsewhere(session):
        return session
    with _lock:
        session = _current
        if session is not None and not session.finished and not _belongs_elsewhere(session):
            return session
        settings = _implicit_settings()
        key = task_session_key() or SessionKey()
        new = _new_session(key, settings.sample_interval, settings.thresholds, implicit=True)
        _current = new
    if session is not None and not session.finished:
        _finish(session)
    return new


# -- stages ----------------------------------------------------------------------------------------------


class _DetachedStage:
    """Stands in for a stage that could not be profiled: the task's code runs the same."""

    def __init__(self, name: str, records_in: int | None) -> None:
        self.name = name
        self.path = name
        self.records_in = records_in
        self.records_out: int | None = None
        self.error: str | None = None

    def close(self, error: BaseException | str | None = None) -> None:
        return None


class _ProfileStage:
    __slots__ = ("_name", "_records_in", "_scope")

    def __init__(self, name: str, records_in: int | None) -> None:
        self._name = name
        self._records_in = records_in
        self._scope: Any = None

    def __enter__(self) -> StageHandle:
        try:
            scope = _session_for_stage().stage(self._name, records_in=self._records_in)
            stage = scope.__enter__()
        except Exception as exc:
            _warn_once("stage", f"stage {self._name!r} is not profiled ({_one_line(exc)})")
            return _DetachedStage(self._name, self._records_in)
        self._scope = scope
        return stage

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        scope, self._scope = self._scope, None
        if scope is not None:
            try:
                scope.__exit__(exc_type, exc, tb)
            except Exception as err:
                _warn_once("stage-end", f"stage {self._name!r} could not be recorded ({_one_line(err)})")
        return False  # the task's own exception, if any, goes on untouched


def profile_stage(name: str, records_in: int | None = None) -> _ProfileStage:
    """``with profile_stage("parse", records_in=len(rows)) as stage: ...`` — one stage run,
    nested in the stage open around it. Set ``stage.records_out`` (or ``records_in``) inside."""
    name = check_stage_name(name)
    return _ProfileStage(name, check_records("records_in", records_in, name))


def _count(counter: int | Callable[..., int] | None, *args: Any, **kwargs: Any) -> int | None:
    if counter is None or isinstance(counter, int):
        return counter
    try:
        return counter(*args, **kwargs)
    except Exception as exc:
        _warn_once("records", f"counting records failed ({_one_line(exc)})")
        return None


@overload
def profiled(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def profiled(
    *,
    stage: str | None = None,
    records_in: int | Callable[..., int] | None = None,
    records_out: Callable[[Any], int] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def profiled(
    func: Callable[P, R] | None = None,
    /,
    *,
    stage: str | None = None,
    records_in: int | Callable[..., int] | None = None,
    records_out: Callable[[Any], int] | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Profile every call of a function as one stage (named ``stage``, default the function's
    name). ``records_in``: a number, or a function of the call's arguments
    (``records_in=lambda rows: len(rows)``); ``records_out``: a function of the result
    (``records_out=len``). Inside, ``current_stage()`` is the stage. Async functions are
    profiled over their whole run; for a generator function only creating it is measured."""
    if stage is not None:
        check_stage_name(stage)
    if isinstance(records_in, int) or not (records_in is None or callable(records_in)):
        check_records("records_in", records_in, stage or "profiled")  # a number, or an error
    if records_out is not None and not callable(records_out):
        raise ValidationError(
            "records_out", records_out, "expected a function of the result", owner="profiled"
        )

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        import inspect

        name = check_stage_name(stage or getattr(fn, "__name__", "") or "profiled")

        def _out(scope: StageHandle, result: Any) -> None:
            if records_out is not None:
                counted = _count(records_out, result)
                if counted is not None:
                    try:
                        scope.records_out = counted
                    except Exception as exc:
                        _warn_once("records", f"records_out of stage {name!r}: {_one_line(exc)}")

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with profile_stage(name, _count(records_in, *args, **kwargs)) as scope:
                    result = await fn(*args, **kwargs)  # type: ignore[misc]
                    _out(scope, result)
                    return result

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with profile_stage(name, _count(records_in, *args, **kwargs)) as scope:
                result = fn(*args, **kwargs)
                _out(scope, result)
                return result

        return run

    return decorate(func) if func is not None else decorate


def whole_task_stage(name: str, *, records_in: int | None = None) -> StageHandle:
    """Open a stage for the whole task (the listener's ``profile_all_tasks`` mode): it measures
    the task process and its child processes (SQL clients, Bash commands, pod launchers) until
    ``stage.close(error)`` or :func:`finish_session`. Stages the task opens in the same context
    nest in it. Call :func:`start_session` first (else an in-memory session is used). Never
    raises for a profiling failure (a stand-in stage is returned and one line logged)."""
    name = check_stage_name(name)
    records = check_records("records_in", records_in, name)
    try:
        return _session_for_stage().begin_stage(name, records_in=records, push=True)
    except Exception as exc:
        _warn_once("stage", f"stage {name!r} is not profiled ({_one_line(exc)})")
        return _DetachedStage(name, records)
