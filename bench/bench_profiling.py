"""What profiling costs a task, and how punctual its sampler is, side by side in one run.

1. Overhead: a CPU-bound task (pure Python, ~2.5 s) run bare and profiled as one stage with the
   default 1 s sampling (session started and finished, sampler thread included); median of
   ETLOPS_BENCH_RUNS runs each, the order alternating. Goal: <= 1 % of wall time. The same at
   10 ms sampling gives the cost of one sample (a hundred times more samples, above the noise),
   and the fixed cost of a session (start, one stage, finish) is timed on its own.
2. Stage enter + exit: ``with profile_stage(...)`` (and the engine's ``session.stage``) with the
   sampler running; median over many. Goal: <= 100 µs.
3. Sample latency while the main thread saturates the GIL: finished reading minus scheduled time,
   measured inside the sampler, sampling every 10 ms for ETLOPS_BENCH_LATENCY_S seconds.
   Goal: p99 <= 2 ms. The same with each design choice turned off, to show what each buys:
   the early wake, the 1 ms switch interval, the GIL-holding reads.
4. The 1 ms switch interval when no other thread waits for the GIL: the same CPU-bound loop at
   5 ms and at 1 ms. Goal: no measurable cost (ratio ~1.00).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

from etlops_airflow import profiling
from etlops_airflow.core.profiling.model import SessionKey, Thresholds
from etlops_airflow.core.profiling.reader import ProcReader, default_reader
from etlops_airflow.core.profiling.session import Session

RUNS = max(5, int(os.environ.get("ETLOPS_BENCH_RUNS", "9")))
TASK_S = float(os.environ.get("ETLOPS_BENCH_TASK_S", "2.5"))
LATENCY_S = float(os.environ.get("ETLOPS_BENCH_LATENCY_S", "10"))
STAGES = int(os.environ.get("ETLOPS_BENCH_STAGES", "9000"))  # under the 10,000 runs a session keeps


def ok(met: bool) -> str:
    return "goal met" if met else "GOAL NOT MET"


def work(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def calibrate(seconds: float) -> int:
    n = 200_000
    while True:
        start = time.perf_counter()
        work(n)
        took = time.perf_counter() - start
        if took > 0.2:
            return int(n * seconds / took)
        n *= 2


def bare(n: int) -> float:
    start = time.perf_counter()
    work(n)
    return time.perf_counter() - start


def profiled(n: int, interval: float = 1.0) -> float:
    start = time.perf_counter()
    profiling.start_session(
        SessionKey("bench", "cpu_task"), sample_interval=interval, thresholds=Thresholds()
    )
    with profiling.profile_stage("work", records_in=n) as stage:
        work(n)
        stage.records_out = n
    report = profiling.finish_session()
    took = time.perf_counter() - start
    assert report is not None and report.stages[0].samples >= int(took / interval) - 1
    return took


def overhead() -> None:
    n = calibrate(TASK_S)
    base: list[float] = []
    prof: list[float] = []
    for i in range(RUNS):
        pair: list[tuple[list[float], Callable[[int], float]]] = [(base, bare), (prof, profiled)]
        for times, run in pair if i % 2 == 0 else reversed(pair):
            times.append(run(n))
    b, p = statistics.median(base), statistics.median(prof)
    ratios = sorted(pr / ba for ba, pr in zip(base, prof, strict=True))
    over = (p / b - 1) * 100
    print(
        f"1. CPU-bound task {b:.3f} s bare, {p:.3f} s profiled at 1 s sampling (median of {RUNS} each, "
        f"alternating): overhead {over:+.2f} % of wall time (median of paired ratios "
        f"{(statistics.median(ratios) - 1) * 100:+.2f} %)  [goal <= 1 %: {ok(over <= 1.0)}]"
    )
    # The same at 10 ms sampling magnifies the cost of one sample a hundredfold, above the noise.
    fast: list[float] = []
    base2: list[float] = []
    for i in range(RUNS):
        order = [(base2, lambda: bare(n)), (fast, lambda: profiled(n, 0.01))]
        for times, call in order if i % 2 == 0 else reversed(order):
            times.append(call())
    b2, f2 = statistics.median(base2), statistics.median(fast)
    per_sample = max(0.0, f2 - b2) / (f2 / 0.01)
    starts = []
    for _ in range(50):
        t0 = time.perf_counter()
        profiling.start_session(SessionKey("bench", "empty"), sample_interval=1.0, thresholds=Thresholds())
        with profiling.profile_stage("nothing"):
            pass
        profiling.finish_session()
        starts.append(time.perf_counter() - t0)
    fixed = statistics.median(starts)
    print(
        f"   at 10 ms sampling: {f2:.3f} s vs {b2:.3f} s bare -> {per_sample * 1e6:.0f} µs per sample to a "
        f"GIL-bound task; session start + stage + finish {fixed * 1e3:.2f} ms; so at 1 s sampling "
        f"{(per_sample / 1.0 + fixed / b) * 100:.3f} % of this task"
    )


def enter_exit() -> None:
    reader = default_reader()
    for children, io, label in ((False, False, "sample reading"), (True, True, "full reading (stage edge)")):
        times = []
        for _ in range(2000):
            start = time.perf_counter()
            reader.read(children=children, io=io)
            times.append(time.perf_counter() - start)
        print(f"   {label}: {statistics.median(times) * 1e6:.1f} µs median")

    def measure(enter: Callable[[], object]) -> float:
        times = []
        for _ in range(STAGES):
            start = time.perf_counter()
            with enter():  # type: ignore[attr-defined]
                pass
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e6

    profiling.start_session(SessionKey("bench", "stages"), sample_interval=1.0, thresholds=Thresholds())
    public = measure(lambda: profiling.profile_stage("tick"))
    profiling.start_session(SessionKey("bench", "nested"), sample_interval=1.0, thresholds=Thresholds())
    with profiling.profile_stage("outer"):
        nested = measure(lambda: profiling.profile_stage("tick"))
    profiling.finish_session()
    s = Session(sample_interval=1.0, max_stages=STAGES * 3)
    engine = measure(lambda: s.stage("tick"))
    s.finish()
    worst = max(public, nested, engine)
    print(
        f"2. stage enter+exit (median of {STAGES:,}, sampler running): profile_stage {public:.1f} µs, "
        f"nested {nested:.1f} µs, engine session.stage {engine:.1f} µs  [goal <= 100 µs: {ok(worst <= 100)}]"
    )


def busy_latency(label: str, seconds: float, **session_kwargs: object) -> float:
    s = Session(sample_interval=0.01, **session_kwargs)  # type: ignore[arg-type]
    x = 0
    with s.stage("busy"):
        cpu = time.thread_time()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:  # pure Python: the main thread holds the GIL
            x += 1
        share = (time.thread_time() - cpu) / seconds
    s.finish()
    assert s.sampler is not None
    lat = s.sampler.latencies()
    off = sorted(abs(v) for v in lat)
    late = sorted(max(0.0, v) for v in lat)

    def q(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] * 1000

    print(
        f"   {label:<44} {len(lat):5d} samples  |actual-scheduled| p50 {q(off, 0.5):5.2f} ms  "
        f"p99 {q(off, 0.99):5.2f} ms  max {off[-1] * 1000:6.2f} ms   late p99 {q(late, 0.99):5.2f} ms  "
        f"(main thread got {share * 100:.0f} % of a core)"
    )
    return q(off, 0.99)


def latency() -> None:
    print(
        f"3. sample latency, main thread saturating the GIL, 10 ms sampling (switch interval now "
        f"{sys.getswitchinterval() * 1000:g} ms):"
    )
    p99 = busy_latency("as shipped (1 ms switch, early wake, GIL-held reads)", LATENCY_S)
    side = max(2.0, LATENCY_S / 3)
    busy_latency("without the early wake", side, early_wake=False)
    busy_latency("without lowering the switch interval", side, switch_interval=None)
    if sys.platform.startswith("linux"):
        busy_latency("with reads that release the GIL (os.read)", side, reader=ProcReader(gil_free=False))
    busy_latency(
        "none of the three",
        side,
        early_wake=False,
        switch_interval=None,
        reader=ProcReader(gil_free=False) if sys.platform.startswith("linux") else None,
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cores = default_reader().cpu_count
    busy = " - the machine is oversubscribed: wake-ups wait for a CPU" if load > cores - 0.5 else ""
    print(
        f"   -> p99 {p99:.2f} ms as shipped  [goal <= 2 ms: {ok(p99 <= 2.0)}]  "
        f"(1-min load average {load:.2f} on {cores} cores{busy})"
    )


def switch_interval_cost() -> None:
    n = calibrate(1.0)
    original = sys.getswitchinterval()
    slow: list[float] = []
    fast: list[float] = []
    try:
        for i in range(RUNS):
            for interval, times in (
                ((0.005, slow), (0.001, fast)) if i % 2 == 0 else ((0.001, fast), (0.005, slow))
            ):
                sys.setswitchinterval(interval)
                times.append(bare(n))
    finally:
        sys.setswitchinterval(original)
    ratio = statistics.median(fast) / statistics.median(slow)
    paired = statistics.median(f / s for f, s in zip(fast, slow, strict=True))
    print(
        f"4. CPU-bound loop, no other thread: {statistics.median(slow):.3f} s at a 5 ms switch interval, "
        f"{statistics.median(fast):.3f} s at 1 ms (median of {RUNS} each, alternating): ratio {ratio:.3f}, "
        f"median of paired ratios {paired:.3f}  [goal ~1.00: {ok(min(ratio, paired) <= 1.01)}]"
    )


def main() -> None:
    print(
        f"profiling benchmark: Python {sys.version.split()[0]}, {default_reader().cpu_count} cores, "
        f"reader {type(default_reader()).__name__}"
    )
    overhead()
    enter_exit()
    latency()
    switch_interval_cost()


if __name__ == "__main__":
    main()
