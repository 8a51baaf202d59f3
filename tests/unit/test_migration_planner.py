"""The planner: from the current version up through forward steps, down through rollback steps,
and a clear refusal when no path exists or two shortest paths tie."""

from __future__ import annotations

from pathlib import Path

import pytest
import semver

from etlops_airflow.core.migrations import planner
from etlops_airflow.core.migrations.loader import load_migrations
from etlops_airflow.core.migrations.model import Migration
from etlops_airflow.exceptions import MigrationRefused, ValidationError


def _chain(tmp_path: Path, *edges: str) -> tuple[Migration, ...]:
    """Migrations of pipeline ``p`` for edges such as ``1.0.0->1.1.0`` (config-only steps)."""
    root = tmp_path / "migrations"
    for n, edge in enumerate(edges):
        start, end = edge.split("->")
        path = root / "p" / f"{n:02d}_{end}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"pipeline: p\nfrom_version: {start}\nto_version: {end}\ntarget: {{conn_id: w}}\n"
            f"steps:\n  - config_update: {{path: v, old: '{start}', new: '{end}'}}\n"
        )
    return load_migrations(root).for_pipeline("p")


def _keys(plan: object) -> list[str]:
    return [m.key for m in plan.migrations]  # type: ignore[attr-defined]


def V(text: str) -> semver.Version:
    return semver.Version.parse(text)


def test_up_path_through_each_forward_migration(tmp_path: Path) -> None:
    migrations = _chain(tmp_path, "1.1.0->1.2.0", "1.0.0->1.1.0", "1.2.0->2.0.0")
    plan = planner.plan(migrations, V("1.0.0"), "2.0.0")
    assert (plan.direction, str(plan.current), str(plan.target)) == ("up", "1.0.0", "2.0.0")
    assert _keys(plan) == ["1.0.0->1.1.0", "1.1.0->1.2.0", "1.2.0->2.0.0"]
    assert _keys(planner.plan(migrations, V("1.1.0"), "1.2.0")) == ["1.1.0->1.2.0"]


def test_none_means_from_the_start_to_the_latest(tmp_path: Path) -> None:
    migrations = _chain(tmp_path, "1.0.0->1.1.0", "1.1.0->1.2.0")
    assert planner.start_version(migrations) == V("1.0.0")
    assert planner.latest_version(migrations) == V("1.2.0")
    plan = planner.plan(migrations, None)
    assert (str(plan.current), str(plan.target)) == ("1.0.0", "1.2.0")
    assert _keys(plan) == ["1.0.0->1.1.0", "1.1.0->1.2.0"]


def test_down_path_uses_rollbacks_newest_first(tmp_path: Path) -> None:
    migrations = _chain(tmp_path, "1.0.0->1.1.0", "1.1.0->1.2.0", "1.2.0->2.0.0")
    plan = planner.plan(migrations, V("2.0.0"), "1.0.0")
    assert plan.direction == "down"
    assert _keys(plan) == ["1.2.0->2.0.0", "1.1.0->1.2.0", "1.0.0->1.1.0"]
    assert _keys(planner.plan(migrations, V("1.2.0"), "1.1.0")) == ["1.1.0->1.2.0"]


def test_already_there_is_an_empty_plan(tmp_path: Path) -> None:
    migrations = _chain(tmp_path, "1.0.0->1.1.0")
    plan = planner.plan(migrations, V("1.1.0"), "1.1.0")
    assert plan.migrations == ()
    assert plan.tables == ()


def test_the_shortest_path_wins_over_a_longer_one(tmp_path: Path) -> None:
    migrations = _chain(tmp_path, "1.0.0->1.1.0", "1.1.0->1.2.0", "1.0.0->1.2.0", "1.2.0->1.3.0")
    assert _keys(planner.plan(migrations, V("1.0.0"), "1.3.0")) == ["1.0.0->1.2.0", "1.2.0->1.3.0"]
    assert _keys(planner.plan(migrations, V("1.3.0"), "1.0.0")) == ["1.2.0->1.3.0", "1.0.0->1.2.0"]
    # a path through an intermediate version is still reachable by planning to it first
    assert _keys(planner.plan(migrations, V("1.0.0"), "1.1.0")) == ["1.0.0->1.1.0"]


def test_no_path_is_refused_listing_the_migrations(tmp_path: Path) -> None:
    migrations = _chain(tmp_path, "1.0.0->1.1.0", "1.2.0->1.3.0")
    with pytest.raises(MigrationRefused) as up:
        planner.plan(migrations, V("1.0.0"), "1.3.0")
    message = str(up.value)
    assert "no chain of migrations leads from 1.0.0 to 1.3.0" in message
    assert "1.0.0->1.1.0" in message and "1.2.0->1.3.0" in message
    with pytest.raises(MigrationRefused, match="no chain of migrations leads from 1.0.0 to 1.3.0"):
        planner.plan(migrations, V("1.3.0"), "1.0.0")


def test_two_shortest_paths_tie(tmp_path: Path) -> None:
    migrations = _chain(tmp_path, "1.0.0->1.1.0", "1.1.0->2.0.0", "1.0.0->1.5.0", "1.5.0->2.0.0")
    with pytest.raises(MigrationRefused) as up:
        planner.plan(migrations, V("1.0.0"), "2.0.0")
    message = str(up.value)
    assert "tie" in message
    assert "1.0.0 -> 1.1.0 -> 2.0.0" in message and "1.0.0 -> 1.5.0 -> 2.0.0" in message
    with pytest.raises(MigrationRefused, match="tie"):
        planner.plan(migrations, V("2.0.0"), "1.0.0")
    # an unambiguous part of the graph still plans
    assert _keys(planner.plan(migrations, V("1.0.0"), "1.5.0")) == ["1.0.0->1.5.0"]


def test_unknown_or_malformed_target(tmp_path: Path) -> None:
    migrations = _chain(tmp_path, "1.0.0->1.1.0")
    with pytest.raises(ValidationError) as unknown:
        planner.plan(migrations, V("1.0.0"), "3.0.0")
    assert unknown.value.field == "target_version"
    assert "known: 1.0.0, 1.1.0" in str(unknown.value)
    with pytest.raises(ValidationError) as bad:
        planner.plan(migrations, V("1.0.0"), "latest")
    assert bad.value.field == "target_version" and "semver" in str(bad.value)


def test_versions_compare_as_semver_not_text(tmp_path: Path) -> None:
    migrations = _chain(tmp_path, "1.9.0->1.10.0", "1.2.0->1.9.0")
    plan = planner.plan(migrations, V("1.2.0"), "1.10.0")
    assert plan.direction == "up"
    assert _keys(plan) == ["1.2.0->1.9.0", "1.9.0->1.10.0"]
    assert planner.latest_version(migrations) == V("1.10.0")


def test_plan_lists_tables_in_first_seen_order(tmp_path: Path) -> None:
    root = tmp_path / "migrations"
    (root / "p").mkdir(parents=True)
    for start, end, table in (("1.0.0", "1.1.0", "orders"), ("1.1.0", "1.2.0", "customers")):
        (root / "p" / f"{end}.yaml").write_text(
            f"pipeline: p\nfrom_version: {start}\nto_version: {end}\ntarget: {{conn_id: w}}\n"
            f"steps:\n  - schema_change: {{table: {table}, add_column: {{name: note, type: text}}}}\n"
        )
    migrations = load_migrations(root).for_pipeline("p")
    assert planner.plan(migrations, V("1.0.0"), "1.2.0").tables == ("orders", "customers")
