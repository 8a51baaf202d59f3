"""``airflow etlops ...`` commands, registered through the provider info ``cli`` key."""

from __future__ import annotations

import argparse
import json
from typing import Any


def get_etlops_cli_commands() -> list[Any]:
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

    output = Arg(("-o", "--output"), help="Output format", choices=("text", "json"), default="text")  # type: ignore[no-untyped-call]
    return [
        GroupCommand(
            name="etlops",
            help="etlops-airflow: the operations store",
            subcommands=(
                ActionCommand(
                    name="store-upgrade",
                    help="Create the etlops store or upgrade its schema to this package's version",
                    func=lazy_load_command("etlops_airflow.cli.store_upgrade"),
                    args=(output,),
                ),
                ActionCommand(
                    name="store-status",
                    help="Show where the etlops store is, its schema version and what it holds",
                    func=lazy_load_command("etlops_airflow.cli.store_status"),
                    args=(output,),
                ),
            ),
        )
    ]


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data) if getattr(args, "output", "text") == "json" else text)


def store_upgrade(args: argparse.Namespace) -> None:
    from etlops_airflow.store import get_store

    store = get_store()
    before, after = store.upgrade()
    text = (
        f"etlops store {store.display_url}: schema at version {after} (already current)"
        if before == after
        else f"etlops store {store.display_url}: schema upgraded from version {before} to {after}"
    )
    _emit(args, {"url": store.display_url, "from": before, "to": after}, text)


def store_status(args: argparse.Namespace) -> None:
    from sqlalchemy import func, select

    from etlops_airflow.store import get_store, schema
    from etlops_airflow.store.upgrades import HEAD

    store = get_store()
    version = store.schema_version()
    counts: dict[str, int] = {}
    if version:
        with store.engine.connect() as conn:
            for table in (schema.metric_series, schema.metric_points, schema.task_outcomes):
                counts[table.name] = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    data = {"url": store.display_url, "schema_version": version, "schema_head": HEAD, "rows": counts}
    lines = [f"store: {store.display_url}", f"schema: {version} (package head {HEAD})"]
    lines += [f"{name}: {n} rows" for name, n in counts.items()]
    if version < HEAD:
        lines.append("run `airflow etlops store-upgrade` (tasks also upgrade it on first use)")
    _emit(args, data, "\n".join(lines))
