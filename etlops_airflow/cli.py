"""``airflow etlops ...`` commands, registered through the provider info ``cli`` key."""

from __future__ import annotations

import argparse
import json
from typing import Any


def get_etlops_cli_commands() -> list[Any]:
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

    output = Arg(("-o", "--output"), help="Output format", choices=("text", "json"), default="text")  # type: ignore[no-untyped-call]
    rules = Arg(
        ("-r", "--rules-file"), help="Alert rule file (default [etlops] alert_rules_file)", default=None
    )  # type: ignore[no-untyped-call]
    state = Arg(
        ("--state",),
        help="Only alerts in this state",
        choices=("pending", "firing", "resolved"),
        default=None,
    )  # type: ignore[no-untyped-call]
    fingerprint = Arg(("fingerprint",), help="The alert's fingerprint (see `alerts list`)")  # type: ignore[no-untyped-call]
    by = Arg(("--by",), help="Who does it (default: the OS user)", default=None)  # type: ignore[no-untyped-call]
    matchers = Arg(
        ("matchers",), nargs="+", help="label=value pairs, e.g. rule_id=orders-failing dag_id=orders"
    )  # type: ignore[no-untyped-call]
    duration = Arg(("-d", "--duration"), help="How long: 30m, 2h, 1d", default="2h")  # type: ignore[no-untyped-call]
    comment = Arg(("-c", "--comment"), help="Why", default="")  # type: ignore[no-untyped-call]
    silence_id = Arg(("silence_id",), help="The silence's id (see `alerts list`)")  # type: ignore[no-untyped-call]
    alerts = GroupCommand(
        name="alerts",
        help="Alerts in the etlops store: list, acknowledge, silence, evaluate",
        subcommands=(
            ActionCommand(
                name="list",
                help="Alerts (pending, firing, resolved) and active silences",
                func=lazy_load_command("etlops_airflow.cli.alerts_list"),
                args=(state, output),
            ),
            ActionCommand(
                name="ack",
                help="Acknowledge a firing alert: no more repeats; its resolve notice is still sent",
                func=lazy_load_command("etlops_airflow.cli.alerts_ack"),
                args=(fingerprint, by, output),
            ),
            ActionCommand(
                name="silence",
                help="Mute alerts whose labels match (rule_id, severity or any label) for a while",
                func=lazy_load_command("etlops_airflow.cli.alerts_silence"),
                args=(matchers, duration, comment, by, output),
            ),
            ActionCommand(
                name="unsilence",
                help="End a silence now",
                func=lazy_load_command("etlops_airflow.cli.alerts_unsilence"),
                args=(silence_id, output),
            ),
            ActionCommand(
                name="evaluate",
                help="Evaluate the rule file once now and deliver what is due",
                func=lazy_load_command("etlops_airflow.cli.alerts_evaluate"),
                args=(rules, output),
            ),
        ),
    )
    pipeline = Arg(("pipeline",), help="The pipeline whose migrations to use")  # type: ignore[no-untyped-call]
    migrations_dir = Arg(
        ("-d", "--migrations-dir"),
        help="The migrations folder (default [etlops] migrations_dir)",
        default=None,
    )  # type: ignore[no-untyped-call]
    target_version = Arg(("-t", "--target"), help="Version to migrate to (default: the latest)", default=None)  # type: ignore[no-untyped-call]
    base_version = Arg(("version",), help="The version the pipeline is at now")  # type: ignore[no-untyped-call]

    def migration_command(name: str, text: str, *extra: Any) -> Any:
        return ActionCommand(
            name=name,
            help=text,
            func=lazy_load_command(f"etlops_airflow.cli.migrations_{name}"),
            args=(pipeline, *extra, migrations_dir, output),
        )

    migrations = GroupCommand(
        name="migrations",
        help="Versioned pipeline migrations: status, plan, apply, recover, repair, baseline",
        subcommands=(
            migration_command(
                "status", "Current version, pending and changed migrations, lock, crashed runs"
            ),
            migration_command(
                "plan",
                "The path to a version and the SQL each step would run (changes nothing)",
                target_version,
            ),
            migration_command(
                "apply", "Run the migrations to a version (rolls back on failure)", target_version
            ),
            migration_command("recover", "Restore the backup of a run whose process died, and record it"),
            migration_command("repair", "Accept the current files of applied migrations (their checksums)"),
            migration_command(
                "baseline", "Set the version of a pipeline that has no ledger yet", base_version
            ),
        ),
    )
    return [
        GroupCommand(
            name="etlops",
            help="etlops-airflow: the operations store and its alerts",
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
                alerts,
                migrations,
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


def _who(args: argparse.Namespace) -> str:
    import getpass

    return str(getattr(args, "by", None) or getpass.getuser())


def _fail(message: str) -> None:
    raise SystemExit(f"error: {message}")


def alerts_list(args: argparse.Namespace) -> None:
    import time

    from etlops_airflow.runtime import get_store

    store = get_store()
    states = [args.state] if args.state else None
    alerts = store.alerts.alerts(states=states)
    silences = store.alerts.silences()
    data = {
        "alerts": [
            {
                "fingerprint": a.fingerprint,
                "rule_id": a.rule_id,
                "state": a.state,
                "value": a.value,
                "labels": dict(a.labels),
                "active_since": a.active_since,
                "resolved_at": a.resolved_at,
                "acked_by": a.acked_by,
            }
            for a in alerts
        ],
        "silences": [
            {
                "id": s.id,
                "matchers": dict(s.matchers),
                "ends_at": s.ends_at,
                "created_by": s.created_by,
                "comment": s.comment,
            }
            for s in silences
        ],
    }
    now = time.time()
    lines = [f"{'FINGERPRINT':<24}  {'STATE':<8}  {'RULE':<24}  {'VALUE':>10}  LABELS"]
    for a in alerts:
        labels = ",".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k not in ("rule_id", "severity"))
        state = a.state + ("*" if a.acked_by else "")
        value = "" if a.value is None else f"{a.value:g}"
        lines.append(f"{a.fingerprint:<24}  {state:<8}  {a.rule_id[:24]:<24}  {value:>10}  {labels}")
    if not alerts:
        lines.append("(no alerts)")
    lines.append("* acknowledged")
    for s in silences:
        left = max(0, int(s.ends_at - now))
        matchers = ",".join(f"{k}={'|'.join(v)}" for k, v in s.matchers.items())
        lines.append(f"silence {s.id}: {matchers} for {left // 60} more min, by {s.created_by}: {s.comment}")
    _emit(args, data, "\n".join(lines))


def alerts_ack(args: argparse.Namespace) -> None:
    from etlops_airflow.exceptions import ValidationError
    from etlops_airflow.runtime import get_store

    try:
        alert = get_store().alerts.acknowledge(args.fingerprint, _who(args))
    except ValidationError as exc:
        _fail(str(exc))
        return
    text = f"acknowledged {alert.fingerprint} ({alert.rule_id}) as {alert.acked_by}"
    _emit(args, {"fingerprint": alert.fingerprint, "acked_by": alert.acked_by}, text)


def alerts_silence(args: argparse.Namespace) -> None:
    from etlops_airflow.core.durations import parse_duration
    from etlops_airflow.exceptions import ValidationError
    from etlops_airflow.runtime import get_store

    matchers: dict[str, list[str]] = {}
    for item in args.matchers:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            _fail(f"matcher {item!r}: expected label=value, e.g. rule_id=orders-failing")
        matchers.setdefault(key, []).append(value)
    try:
        seconds = parse_duration(
            args.duration, lambda reason: ValidationError("--duration", args.duration, reason)
        )
        silence = get_store().alerts.silence(
            matchers, duration_s=seconds, created_by=_who(args), comment=args.comment
        )
    except ValidationError as exc:
        _fail(str(exc))
        return
    text = f"silence {silence.id} until {silence.ends_at:.0f} (epoch s) for {matchers}"
    _emit(args, {"id": silence.id, "matchers": matchers, "ends_at": silence.ends_at}, text)


def alerts_unsilence(args: argparse.Namespace) -> None:
    from etlops_airflow.runtime import get_store

    if not get_store().alerts.unsilence(args.silence_id):
        _fail(f"silence_id {args.silence_id!r}: no active silence with that id")
    _emit(args, {"id": args.silence_id, "ended": True}, f"silence {args.silence_id} ended")


def alerts_evaluate(args: argparse.Namespace) -> None:
    from etlops_airflow import config
    from etlops_airflow.alerting import run_evaluation
    from etlops_airflow.core.alerts.rules import load_rules
    from etlops_airflow.exceptions import RuleError

    path = args.rules_file or config.get("alert_rules_file").strip()
    if not path:
        _fail("no rule file: pass --rules-file or set [etlops] alert_rules_file")
    try:
        ruleset = load_rules(path)
    except RuleError as exc:  # names the file, the rule and the field: no traceback
        _fail(str(exc))
        return
    summary = run_evaluation(
        ruleset,
        delivery_budget_s=config.get_duration("alert_delivery_budget"),
        max_attempts=config.get_int("alert_max_delivery_attempts", minimum=1),
    ).as_dict()
    text = (
        "{firing} firing, {pending} pending; {fired} fired, {resolved} resolved; "
        "{queued} queued, {sent} sent, {failed} failed, {retrying} to retry".format(**summary)
    )
    if summary["skipped"]:
        text += f"\nskipped: {summary['skipped']}"
    for rule_id, error in summary["errors"].items():
        text += f"\nrule {rule_id!r}: {error}"
    _emit(args, summary, text)


# ---------------------------------------------------------------- migrations


def _engine(args: argparse.Namespace) -> Any:
    from etlops_airflow import config
    from etlops_airflow.migrations import engine_for

    folder = args.migrations_dir or config.get("migrations_dir").strip()
    if not folder:
        _fail("give the migrations folder with --migrations-dir (or set [etlops] migrations_dir)")
    import importlib

    for module in config.get_list("migration_modules"):
        try:
            importlib.import_module(module)
        except Exception as exc:
            _fail(f"[etlops] migration_modules: cannot import {module!r}: {exc}")
    return engine_for(folder, args.pipeline, log=lambda message: None)


def _migration_errors(func: Any) -> Any:
    """Refusals and failures end the command with their message and a non-zero status."""
    import functools

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> None:
        from etlops_airflow.exceptions import EtlopsError

        try:
            func(args)
        except EtlopsError as exc:
            _fail(str(exc))

    return run


def _run_json(run: Any) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "pipeline": run.pipeline,
        "state": run.state,
        "direction": run.direction,
        "from_version": run.from_version,
        "to_version": run.to_version,
        "migrations": run.migrations,
        "error": run.error,
    }


@_migration_errors
def migrations_status(args: argparse.Namespace) -> None:
    engine = _engine(args)
    data = engine.status()
    data["runs"] = [_run_json(r) for r in engine.store.migrations.runs(args.pipeline, limit=10)]
    lines = [
        f"pipeline {data['pipeline']}: at {data['current_version']}"
        + (
            " (baseline)"
            if data["baseline"]
            else ""
            if data["recorded"]
            else " (no ledger yet: start version)"
        ),
        f"latest: {data['latest_version']}; pending: {', '.join(data['pending']) or 'none'}",
    ]
    if data["plan_error"]:
        lines.append(f"no path to the latest version: {data['plan_error']}")
    for problem in data["changed"]:
        lines.append(f"CHANGED: {problem} (run repair to accept)")
    if data["locked_by"]:
        lines.append(f"locked by {data['locked_by']}")
    if data["crashed_run"]:
        lines.append(
            f"CRASHED run {data['crashed_run']}: run `airflow etlops migrations recover {args.pipeline}`"
        )
    for run in data["runs"]:
        lines.append(
            f"  {run['run_id'][:12]} {run['state']:<11} {run['from_version']} -> {run['to_version']}"
            + (f"  {run['error']}" if run["error"] else "")
        )
    _emit(args, data, "\n".join(lines))


@_migration_errors
def migrations_plan(args: argparse.Namespace) -> None:
    engine = _engine(args)
    plan, views = engine.dry_run(args.target)
    data = {
        "pipeline": plan.pipeline,
        "from_version": str(plan.current),
        "to_version": str(plan.target),
        "direction": plan.direction,
        "migrations": [m.key for m in plan.migrations],
        "steps": [
            {
                "migration": v.migration,
                "phase": v.phase,
                "index": v.index,
                "kind": v.kind,
                "description": v.description,
                "sql": v.sql,
                "warnings": v.warnings,
            }
            for v in views
        ],
    }
    if not plan.migrations:
        _emit(args, data, f"{plan.pipeline} is at {plan.current} already")
        return
    lines = [f"{plan.pipeline}: {plan.current} -> {plan.target} ({plan.direction})"]
    for v in views:
        lines.append(f"{v.migration} {v.phase} {v.index} [{v.kind}] {v.description}")
        lines += [f"    {statement}" for statement in v.sql]
        lines += [f"    WARNING: {warning}" for warning in v.warnings]
    _emit(args, data, "\n".join(lines))


@_migration_errors
def migrations_apply(args: argparse.Namespace) -> None:
    engine = _engine(args)
    run = engine.apply(args.target)
    if run is None:
        version = str(engine.current_version())
        _emit(
            args,
            {"pipeline": args.pipeline, "state": "up_to_date", "version": version},
            f"{args.pipeline} is at {version} already",
        )
        return
    _emit(
        args,
        _run_json(run),
        f"run {run.id}: {run.pipeline} {run.from_version} -> {run.to_version}: {run.state}",
    )


@_migration_errors
def migrations_recover(args: argparse.Namespace) -> None:
    engine = _engine(args)
    run = engine.recover()
    if run is None:
        _emit(
            args,
            {"pipeline": args.pipeline, "recovered": None},
            f"{args.pipeline}: no crashed run to recover",
        )
        return
    _emit(args, _run_json(run), f"run {run.id}: {run.state} ({run.error})")


@_migration_errors
def migrations_repair(args: argparse.Namespace) -> None:
    changed = _engine(args).repair()
    _emit(
        args,
        {"pipeline": args.pipeline, "repaired": changed},
        f"{args.pipeline}: accepted the current file of {', '.join(changed)}"
        if changed
        else f"{args.pipeline}: every applied migration matches its file",
    )


@_migration_errors
def migrations_baseline(args: argparse.Namespace) -> None:
    engine = _engine(args)
    engine.baseline(args.version)
    version = str(engine.current_version())
    _emit(
        args, {"pipeline": args.pipeline, "version": version}, f"{args.pipeline}: baseline set at {version}"
    )
