"""Rollup buckets: which buckets a run rolls up, which raw rows retention may delete, and which
part of a read the rollups can answer. Plain arithmetic on whole milliseconds (UTC).

Buckets:

* ``hourly`` and ``daily``: fixed widths aligned to the epoch (UTC midnight for days);
* ``weekly``: seven days starting Monday 00:00 UTC (ISO weeks);
* ``monthly``: calendar months (UTC).

A run rolls up the buckets that *end* inside its data interval ``(start, end]``: an hourly
rollup scheduled at ``5 * * * *`` with the interval ``[00:05, 01:05)`` rolls up 00:00–01:00,
which is complete by then; a daily rollup run every hour rolls the day up in the run whose
interval holds midnight. Every bucket is rolled up by exactly one run of a schedule, and
running the same interval again rebuilds the same buckets. A zero-width interval (Airflow 3's
``CronTriggerTimetable`` gives ``start == end``) or a missing start means "the last bucket
width before ``end``".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from etlops_airflow.exceptions import ValidationError

GRANULARITIES = ("hourly", "daily", "weekly", "monthly")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
# width and offset of the fixed-width granularities: bucket = floor((ts - offset) / width) * width + offset
_FIXED: dict[str, tuple[int, int]] = {
    "hourly": (HOUR_MS, 0),
    "daily": (DAY_MS, 0),
    "weekly": (WEEK_MS, 4 * DAY_MS),  # 1970-01-01 was a Thursday; 1970-01-05 a Monday
}
# Granularities whose buckets are unions of epoch-aligned steps: what series() may read, coarsest first.
READ_GRANULARITIES = ("daily", "hourly")
MAX_BUCKETS = 100_000  # buckets one run may roll up (hourly: over 11 years)

Range = tuple[int, int]  # [start_ms, end_ms)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket of one granularity: ``[start_ms, end_ms)``."""

    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class RollupPlan:
    """What one run rolls up: ``buckets`` (contiguous, oldest first) of ``granularity``, for the
    interval ``(start_ms, end_ms]`` it was asked about."""

    granularity: str
    start_ms: int
    end_ms: int
    buckets: tuple[Bucket, ...]

    @property
    def span(self) -> Range | None:
        """``[first bucket start, last bucket end)``, or None when no bucket ended in the interval."""
        if not self.buckets:
            return None
        return self.buckets[0].start_ms, self.buckets[-1].end_ms


def check_granularity(value: object, owner: str | None = None) -> str:
    if value not in GRANULARITIES:
        raise ValidationError(
            "granularity", value, f"expected one of {', '.join(GRANULARITIES)}", owner=owner
        )
    return str(value)


def fixed_width(granularity: str) -> tuple[int, int] | None:
    """``(width_ms, offset_ms)`` of a fixed-width granularity; None for ``monthly``."""
    return _FIXED.get(check_granularity(granularity))


def _month_start(ts_ms: int) -> datetime:
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + (moment.month - 1) + months
    return moment.replace(year=index // 12, month=index % 12 + 1)


def bucket_start(granularity: str, ts_ms: int) -> int:
    """The start of the bucket holding ``ts_ms``."""
    fixed = fixed_width(granularity)
    if fixed is None:
        return _ms(_month_start(ts_ms))
    width, offset = fixed
    return (ts_ms - offset) // width * width + offset


def bucket_end(granularity: str, start_ms: int) -> int:
    """The end of the bucket that starts at ``start_ms`` (the next bucket's start)."""
    fixed = fixed_width(granularity)
    if fixed is None:
        return _ms(_add_months(_month_start(start_ms), 1))
    return start_ms + fixed[0]


def previous_width_start(granularity: str, end_ms: int) -> int:
    """``end`` minus one bucket width (one calendar month for ``monthly``)."""
    fixed = fixed_width(granularity)
    if fixed is None:
        moment = datetime.fromtimestamp(end_ms / 1000, UTC)
        index = moment.year * 12 + (moment.month - 1) - 1
        year, month = index // 12, index % 12 + 1
        day = min(moment.day, _days_in_month(year, month))
        return _ms(moment.replace(year=year, month=month, day=day)) + end_ms % 1000
    return end_ms - fixed[0]


def _days_in_month(year: int, month: int) -> int:
    first = datetime(year, month, 1, tzinfo=UTC)
    return (_add_months(first, 1) - first).days


def plan_rollup(granularity: str, start_s: float | None, end_s: float) -> RollupPlan:
    """The buckets of ``granularity`` that end in ``(start, end]`` (seconds since the epoch).

    With no start, or ``start >= end`` (a zero-width data interval), the interval is the last
    bucket width before ``end``."""
    check_granularity(granularity)
    if not math.isfinite(end_s) or end_s < 0:
        raise ValidationError("end", end_s, "expected seconds since the epoch")
    end_ms = math.floor(end_s * 1000 + 1e-6)
    if start_s is None or not start_s < end_s:
        start_ms = previous_width_start(granularity, end_ms)
    else:
        if not math.isfinite(start_s) or start_s < 0:
            raise ValidationError("start", start_s, "expected seconds since the epoch")
        start_ms = math.floor(start_s * 1000 + 1e-6)
    buckets: list[Bucket] = []
    first = bucket_start(granularity, start_ms)
    end = bucket_end(granularity, first)
    while end <= end_ms:
        if end > start_ms:
            buckets.append(Bucket(first, end))
            if len(buckets) > MAX_BUCKETS:
                raise ValidationError(
                    "data interval",
                    (start_s, end_s),
                    f"covers more than {MAX_BUCKETS:,} {granularity} buckets; roll up a shorter interval",
                )
        first, end = end, bucket_end(granularity, end)
    return RollupPlan(granularity, start_ms, end_ms, tuple(buckets))


@dataclass(frozen=True, slots=True)
class BucketWork:
    """How each bucket of a plan is rolled up once retention has deleted raw rows:

    * ``raw``: from the raw rows (none of its time was deleted);
    * ``derived``: from a finer granularity's rollups that hold all of it (count, sum, min, max
      and average add up; no percentile), ``(bucket, source granularity)``;
    * ``kept``: already rolled up, and some of its raw rows are gone: its rollup stays as it is
      (rolling it up again would count only what is left);
    * ``skipped``: not rolled up, raw rows partly gone, no finer rollup holds it all."""

    raw: tuple[Bucket, ...] = ()
    derived: tuple[tuple[Bucket, str], ...] = ()
    kept: tuple[Bucket, ...] = ()
    skipped: tuple[Bucket, ...] = ()


def _within(bucket: Bucket, merged: Sequence[Range]) -> bool:
    return any(a <= bucket.start_ms and bucket.end_ms <= b for a, b in merged)


def _overlaps(bucket: Bucket, merged: Sequence[Range]) -> bool:
    return any(a < bucket.end_ms and bucket.start_ms < b for a, b in merged)


def classify_buckets(
    plan: RollupPlan, deleted: Iterable[Range], coverage: Mapping[str, Iterable[Range]]
) -> BucketWork:
    """Sort the plan's buckets by where their rollup can come from (see :class:`BucketWork`);
    ``deleted`` are the ranges retention deleted raw rows from, ``coverage`` the rolled-up
    buckets per granularity."""
    gone = merge_ranges(deleted)
    rolled = {g: merge_ranges(r) for g, r in coverage.items()}
    finer = GRANULARITIES[: GRANULARITIES.index(plan.granularity)]
    sources = [g for g in ("daily", "hourly") if g in finer]
    raw: list[Bucket] = []
    derived: list[tuple[Bucket, str]] = []
    kept: list[Bucket] = []
    skipped: list[Bucket] = []
    for bucket in plan.buckets:
        if not _overlaps(bucket, gone):
            raw.append(bucket)
        elif _within(bucket, rolled.get(plan.granularity, [])):
            kept.append(bucket)
        else:
            source = next((g for g in sources if _within(bucket, rolled.get(g, []))), None)
            if source is None:
                skipped.append(bucket)
            else:
                derived.append((bucket, source))
    return BucketWork(tuple(raw), tuple(derived), tuple(kept), tuple(skipped))


def contiguous(buckets: Sequence[Bucket]) -> list[Range]:
    """Runs of adjacent buckets as ranges (one statement each)."""
    return merge_ranges((b.start_ms, b.end_ms) for b in buckets)


# -- retention ------------------------------------------------------------------------------------


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, non-overlapping ranges; touching ranges are joined."""
    merged: list[list[int]] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def intersect_ranges(left: Sequence[Range], right: Sequence[Range]) -> list[Range]:
    """The parts both merged range lists hold."""
    out: list[Range] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start = max(left[i][0], right[j][0])
        end = min(left[i][1], right[j][1])
        if start < end:
            out.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def deletable_ranges(coverage: Mapping[str, Iterable[Range]], cutoff_ms: int) -> list[Range]:
    """The time ranges whose raw rows retention may delete: before ``cutoff_ms``, rolled up by at
    least one granularity, and rolled up by EVERY granularity in use from the first bucket it
    rolled up on (so the month that has not ended yet keeps its raw rows for the monthly rollup,
    while the time before a granularity was first used does not wait for it). Nothing when no
    bucket was rolled up."""
    merged = {g: merge_ranges(ranges) for g, ranges in coverage.items()}
    merged = {g: ranges for g, ranges in merged.items() if ranges}
    if not merged:
        return []
    allowed = merge_ranges(r for ranges in merged.values() for r in ranges)
    for ranges in merged.values():
        allowed = intersect_ranges(allowed, merge_ranges([(0, ranges[0][0]), *ranges]))
    return intersect_ranges(allowed, [(0, cutoff_ms)])


def retention_cutoff_ms(end_s: float, retention_days: float) -> int:
    """Raw rows before ``end - retention_days`` are old enough to go (if rolled up)."""
    return math.floor((end_s - retention_days * 86400) * 1000 + 1e-6)


# -- reads ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadSplit:
    """A read of ``[start_ms, end_ms)`` in steps: ``inner`` (whole buckets of ``granularity``)
    from the rollups, ``head`` and ``tail`` (possibly empty) from the raw points."""

    granularity: str
    head: Range
    inner: Range
    tail: Range


def read_splits(step_ms: int, start_ms: int, end_ms: int) -> list[ReadSplit]:
    """The ways the rollups can answer a stepped read with the raw answer, coarsest first: the
    step must be a whole number of buckets (then each step bucket is a union of whole rollup
    buckets); the window's partial buckets at either end come from the raw points."""
    splits = []
    for granularity in READ_GRANULARITIES:
        width = _FIXED[granularity][0]
        if step_ms % width:
            continue
        inner_start = -(-start_ms // width) * width
        inner_end = end_ms // width * width
        if inner_start >= inner_end:
            continue
        splits.append(
            ReadSplit(granularity, (start_ms, inner_start), (inner_start, inner_end), (inner_end, end_ms))
        )
    return splits


def buckets_in(granularity: str, span: Range) -> int:
    """How many buckets of a fixed-width granularity ``span`` holds (its ends on bucket starts)."""
    fixed = fixed_width(granularity)
    if fixed is None:
        raise ValidationError("granularity", granularity, "expected a fixed-width granularity")
    return (span[1] - span[0]) // fixed[0]
