"""Alert evaluation: 1,000 rules over 1,000,000 stored points.

Baseline: the raw SQL query of each rule for its window (sqlite3, one query per rule, the
label filter as a join on the labels table) — what a hand-written evaluator would run.
Ours: the alerting engine's evaluation of the same rules (conditions observed through the
store, every alert stepped), side by side in one run, median of several repeats each, with
the two answers checked to agree. Also printed: a whole ``run_evaluation`` (lock, state
load, evaluation, commit of a thousand alerts).

Goal (issue): ratio <= 1.5 and under 1 s in total.
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from etlops_airflow.alerting import run_evaluation
from etlops_airflow.core.alerts.engine import evaluate
from etlops_airflow.core.alerts.rules import MetricThreshold, Rule, RuleSet
from etlops_airflow.core.compare import compare
from etlops_airflow.core.models import MetricPoint
from etlops_airflow.store import Store
from etlops_airflow.store.alerts import StoreAlertSource

METRICS = int(os.environ.get("ETLOPS_BENCH_METRICS", "20"))
SERIES = int(os.environ.get("ETLOPS_BENCH_SERIES_PER_METRIC", "50"))
POINTS = int(os.environ.get("ETLOPS_BENCH_POINTS_PER_SERIES", "1000"))
RULES = int(os.environ.get("ETLOPS_BENCH_RULES", "1000"))
REPEATS = int(os.environ.get("ETLOPS_BENCH_REPEATS", "5"))
FNS = ("avg", "sum", "min", "max", "count", "last")
WINDOWS = (300, 900, 3600)
SQL_FN = {"avg": "avg", "sum": "sum", "min": "min", "max": "max", "count": "count"}


def fill(store: Store, now: float) -> None:
    rng = random.Random(1)
    batch: list[MetricPoint] = []
    for m in range(METRICS):
        for s in range(SERIES):
            labels = {"series": f"s{s}", "team": f"t{s % 5}"}
            for i in range(POINTS):  # one point a minute, the newest a few seconds ago
                batch.append(MetricPoint(f"metric_{m}", rng.random() * 100, labels, now - 5 - i * 60))
            if len(batch) >= 50_000:
                store.metrics.write(batch)
                batch = []
    store.metrics.write(batch)


def rules() -> RuleSet:
    rng = random.Random(2)
    out = []
    for i in range(RULES):
        out.append(
            Rule(
                id=f"rule-{i}",
                condition=MetricThreshold(
                    metric=f"metric_{i % METRICS}",
                    labels={"series": f"s{(i // METRICS) % SERIES}"},
                    fn=FNS[i % len(FNS)],
                    window=WINDOWS[i % len(WINDOWS)],
                    op=">",
                    threshold=rng.choice([10.0, 50.0, 90.0, 500.0]),
                ),
            )
        )
    return RuleSet(rules=out)


def raw(path: str, ruleset: RuleSet, now: float) -> dict[str, bool | None]:
    """One hand-written query per rule, straight through sqlite3."""
    conn = sqlite3.connect(path)
    decided: dict[str, bool | None] = {}
    try:
        for rule in ruleset.rules:
            c = rule.condition
            assert isinstance(c, MetricThreshold)
            ((key, value),) = c.labels.items()
            start_ms = int((now - float(c.window)) * 1000)
            end_ms = int((now + 0.001) * 1000) + 1
            where = (
                "FROM etlops_metric_points p JOIN etlops_metric_series s ON s.id = p.series_id "
                "WHERE s.name = ? AND EXISTS (SELECT 1 FROM etlops_metric_labels l WHERE l.series_id = s.id "
                "AND l.name = ? AND l.value = ?) AND p.ts_ms >= ? AND p.ts_ms < ?"
            )
            args = (c.metric, key, value, start_ms, end_ms)
            if c.fn == "last":
                row = conn.execute(
                    f"SELECT p.value {where} ORDER BY p.ts_ms DESC, p.id DESC LIMIT 1", args
                ).fetchone()
                result = None if row is None else row[0]
            else:
                n, result = conn.execute(
                    f"SELECT count(p.value), {SQL_FN[c.fn]}(p.value) {where}", args
                ).fetchone()
                result = result if n else None
            decided[rule.id] = None if result is None else compare(float(result), c.op, c.threshold)
    finally:
        conn.close()
    return decided


def ours(store: Store, ruleset: RuleSet, now: float) -> dict[str, bool | None]:
    result = evaluate(ruleset, StoreAlertSource(store), {}, now)
    assert not result.errors, result.errors
    firing = {a.rule_id for a in result.alerts.values() if a.state == "firing"}
    return {r.id: r.id in firing for r in ruleset.rules}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.db")
        store = Store.from_url(f"sqlite:///{path}")
        store.upgrade()
        now = time.time()
        started = time.perf_counter()
        fill(store, now)
        total = METRICS * SERIES * POINTS
        print(
            f"stored {total:,} points in {METRICS * SERIES:,} series ({time.perf_counter() - started:.1f} s)"
        )
        ruleset = rules()
        with store.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
        base_times, our_times = [], []
        for r in range(REPEATS):
            order = [("raw", raw), ("ours", ours)] if r % 2 == 0 else [("ours", ours), ("raw", raw)]
            answers = {}
            for label, fn in order:
                t = time.perf_counter()
                answers[label] = fn(path, ruleset, now) if label == "raw" else fn(store, ruleset, now)  # type: ignore[operator]
                (base_times if label == "raw" else our_times).append(time.perf_counter() - t)
            # "no data" never fires: compare firing decisions
            expected = {k: bool(v) for k, v in answers["raw"].items()}
            assert answers["ours"] == expected, "engine and raw SQL disagree"
        base, our = statistics.median(base_times), statistics.median(our_times)
        firing = sum(answers["ours"].values())
        print(f"raw SQL, one query per rule:  {base * 1000:8.1f} ms for {RULES} rules (median of {REPEATS})")
        print(f"etlops evaluation:            {our * 1000:8.1f} ms for {RULES} rules, {firing} firing")
        print(
            f"ratio ours/raw: {our / base:.2f}   (goal <= 1.5, and under 1 s: "
            f"{'ok' if our <= 1.5 * base and our < 1 else 'MISSED'})"
        )
        t = time.perf_counter()
        summary = run_evaluation(ruleset, store=store, lock_wait_s=5, base_url="")
        print(
            f"whole run_evaluation (lock, load, evaluate, commit {summary.firing} alerts): "
            f"{(time.perf_counter() - t) * 1000:.1f} ms"
        )
        store.dispose()


if __name__ == "__main__":
    main()
