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
