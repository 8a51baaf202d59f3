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
    from etlops_airflow.runtime import get_store

    store = get_store()
    before, after = store.upgrade()
    text = (
        f"etlops store {store.display_url}: schema at version {after} (already current)"
        if before == after
        else f"etlops store {store.display_url}: schema upgraded from version {before} to {after}"
    )
    _emit(args, {"url": store.display_url, "from": before, "to": after}, text)


def store_status(args: argparse.Namespace) -> None:
    """Reads only: no write lock, no DDL, even on an empty or old store."""
    from etlops_airflow.runtime import get_store

    data = get_store().status()
    version, head = data["schema_version"], data["schema_head"]
    lines = [f"store: {data['url']}", f"schema: {version} (package head {head})"]
    lines += [f"{name}: {n} rows" for name, n in data["rows"].items()]
    if version < head:
        lines.append("run `airflow etlops store-upgrade` (tasks also upgrade it on first use)")
    _emit(args, data, "\n".join(lines))
