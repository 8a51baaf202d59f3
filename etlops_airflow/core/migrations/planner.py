"""The path from a pipeline's current version to a target version.

Migrations are edges ``from_version -> to_version`` of a graph over versions. Going up uses
their forward steps along the shortest path; going down uses their rollback steps along the
shortest path taken backwards. No path, or two shortest paths of equal length, is an error
that lists what exists.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import semver

from etlops_airflow.core.migrations.model import Migration, Plan
from etlops_airflow.exceptions import MigrationRefused, ValidationError


def parse_version(value: object, field: str = "target_version") -> semver.Version:
    if isinstance(value, semver.Version):
        return value
    if not isinstance(value, str):
        raise ValidationError(field, value, "expected a semver version such as 1.2.0")
    try:
        return semver.Version.parse(value.strip())
    except ValueError as exc:
        raise ValidationError(field, value, f"is not a semver version: {exc}") from None


def start_version(migrations: Sequence[Migration]) -> semver.Version:
    """Where a pipeline with no ledger and no baseline starts: its lowest ``from_version``."""
    return min(m.from_version for m in migrations)


def latest_version(migrations: Sequence[Migration]) -> semver.Version:
    return max(m.to_version for m in migrations)


def plan(
    migrations: Sequence[Migration],
    current: semver.Version | None,
    target: semver.Version | str | None = None,
) -> Plan:
    """The plan from ``current`` (None: the start version) to ``target`` (None: the latest)."""
    if not migrations:
        raise ValidationError("migrations", [], "none to plan with")
    pipeline = migrations[0].pipeline
    here = start_version(migrations) if current is None else current
    goal = latest_version(migrations) if target is None else parse_version(target)
    known = {m.from_version for m in migrations} | {m.to_version for m in migrations}
    if goal not in known:
        listed = ", ".join(str(v) for v in sorted(known))
        raise ValidationError(
            "target_version", str(goal), f"is not a version of pipeline {pipeline!r} (known: {listed})"
        )
    if goal == here:
        return Plan(pipeline, here, goal, "up", ())
    if goal > here:
        path = _shortest(migrations, here, goal, pipeline)
        return Plan(pipeline, here, goal, "up", tuple(path))
    path = _shortest(migrations, goal, here, pipeline)
    return Plan(pipeline, here, goal, "down", tuple(reversed(path)))


def _shortest(
    migrations: Sequence[Migration], start: semver.Version, goal: semver.Version, pipeline: str
) -> list[Migration]:
    """The one shortest chain of migrations from ``start`` up to ``goal``."""
    edges: dict[semver.Version, list[Migration]] = {}
    for m in migrations:
        edges.setdefault(m.from_version, []).append(m)
    # Breadth-first: distance and every predecessor edge on a shortest path.
    distance = {start: 0}
    arrivals: dict[semver.Version, list[Migration]] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for m in sorted(edges.get(node, []), key=lambda e: e.to_version):
            nxt = m.to_version
            if nxt > goal:
                continue
            if nxt not in distance:
                distance[nxt] = distance[node] + 1
                arrivals[nxt] = [m]
                queue.append(nxt)
            elif distance[nxt] == distance[node] + 1:
                arrivals[nxt].append(m)
    if goal not in distance:
        listed = ", ".join(sorted(m.key for m in migrations))
        raise MigrationRefused(
            f"pipeline {pipeline!r}: no chain of migrations leads from {start} to {goal} "
            f"(migrations: {listed})"
        )
    paths = _paths(arrivals, start, goal, limit=2)
    if len(paths) > 1:
        shown = " and ".join(" -> ".join([str(start)] + [str(m.to_version) for m in p]) for p in paths)
        raise MigrationRefused(
            f"pipeline {pipeline!r}: two paths of {len(paths[0])} migration(s) tie from {start} to {goal}: "
            f"{shown}; remove one of the migrations or plan to an intermediate version first"
        )
    return paths[0]


def _paths(
    arrivals: dict[semver.Version, list[Migration]], start: semver.Version, goal: semver.Version, limit: int
) -> list[list[Migration]]:
    found: list[list[Migration]] = []

    def walk(node: semver.Version, tail: list[Migration]) -> None:
        if len(found) >= limit:
            return
        if node == start:
            found.append(list(reversed(tail)))
            return
        for m in arrivals.get(node, []):
            walk(m.from_version, [*tail, m])

    walk(goal, [])
    return found
