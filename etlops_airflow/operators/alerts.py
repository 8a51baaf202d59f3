"""Operator that evaluates alert rules against the store and delivers the notifications."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator

from etlops_airflow.exceptions import ValidationError


def _seconds(owner: str, field: str, value: Any, *, allow_zero: bool) -> float:
    from etlops_airflow.core.durations import parse_duration

    return parse_duration(
        value, lambda reason: ValidationError(field, value, reason, owner=owner), allow_zero=allow_zero
    )


class EvaluateAlertRulesOperator(BaseOperator):
    """Evaluate a YAML rule file against the etlops store, deliver the due notifications
    (Slack, e-mail), and push a summary to XCom: ``{"firing", "pending", "fired",
    "resolved", "queued", "sent", "failed", "retrying", "errors", "evaluations"}``.

    The rule file is loaded when the DAG is parsed: a file that does not validate is an import
    error naming the file, the rule, the field and the value, and nothing is evaluated.

    :param rules_file: path of the rule file (None: nothing to evaluate, the task is skipped).
    :param evaluate_for: in a scheduled run, keep evaluating every ``interval`` for this long after
        the run's scheduled time (e.g. ``"59m"`` in an hourly DAG: rules are evaluated every minute
        and Airflow records one run per hour). ``0`` (default), and any manual run or ``airflow
        dags test``, evaluates once.
    :param interval: time between evaluations when ``evaluate_for`` is set.
    :param deferrable: wait between evaluations in the triggerer (no worker slot held).
    :param delivery_budget: how long one evaluation may spend delivering notifications.
    :param max_delivery_attempts: attempts after which a notification is marked failed.
    :param etlops_conn_id: store connection; default the ``[etlops]`` store.
    """

    template_fields: Sequence[str] = ("rules_file",)
    ui_color = "#fde8e8"

    def __init__(
        self,
        *,
        rules_file: str | None,
        evaluate_for: float | str = 0,
        interval: float | str = 60,
        deferrable: bool = True,
        delivery_budget: float | str = 30,
        max_delivery_attempts: int = 10,
        etlops_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        owner = f"EvaluateAlertRulesOperator {kwargs.get('task_id', '?')!r}"
        if rules_file is not None and (not isinstance(rules_file, str) or not rules_file):
            raise ValidationError("rules_file", rules_file, "expected the path of a rule file", owner=owner)
        if rules_file is not None and "{{" not in rules_file:
            from etlops_airflow.core.alerts.rules import load_rules

            load_rules(rules_file)  # refuse a bad file at parse time
        self.rules_file = rules_file
        self.evaluate_for = _seconds(owner, "evaluate_for", evaluate_for, allow_zero=True)
        self.interval = _seconds(owner, "interval", interval, allow_zero=False)
        self.delivery_budget = _seconds(owner, "delivery_budget", delivery_budget, allow_zero=False)
        if (
            isinstance(max_delivery_attempts, bool)
            or not isinstance(max_delivery_attempts, int)
            or max_delivery_attempts < 1
        ):
            raise ValidationError(
                "max_delivery_attempts", max_delivery_attempts, "expected a whole number >= 1", owner=owner
            )
        self.max_delivery_attempts = max_delivery_attempts
        self.deferrable = deferrable
        self.etlops_conn_id = etlops_conn_id

    def _evaluate_once(self) -> dict[str, Any]:
        from etlops_airflow.alerting import run_evaluation
        from etlops_airflow.core.alerts.rules import load_rules
        from etlops_airflow.runtime import store_for

        if self.rules_file is None:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException("no alert rule file: set [etlops] alert_rules_file")
        summary = run_evaluation(
            load_rules(self.rules_file),
            store=store_for(self.etlops_conn_id),
            delivery_budget_s=self.delivery_budget,
            max_attempts=self.max_delivery_attempts,
        ).as_dict()
        self.log.info(
            "Alerts: %(firing)d firing, %(pending)d pending; this evaluation: %(fired)d fired, "
            "%(resolved)d resolved; notifications: %(queued)d queued, %(sent)d sent, %(failed)d failed, "
            "%(retrying)d to retry",
            summary,
        )
        if summary["skipped"]:
            self.log.warning("Evaluation skipped: %s", summary["skipped"])
        for rule_id, error in summary["errors"].items():
            self.log.error("Rule %r could not be evaluated: %s", rule_id, error)
        return summary

    def execute(self, context: Any) -> dict[str, Any]:
        return self._loop(self._until(context), None)

    def _until(self, context: Any) -> float:
        """A scheduled run evaluates until ``evaluate_for`` after its scheduled time (so a late
        start does not overlap the next run); a manual run, a backfill or ``airflow dags test``
        evaluates once."""
        import time

        run = context.get("dag_run") if hasattr(context, "get") else None
        run_type = str(getattr(getattr(run, "run_type", None), "value", getattr(run, "run_type", "")))
        if self.evaluate_for <= 0 or run_type != "scheduled":
            return 0.0
        anchor: Any = getattr(run, "run_after", None)
        start = float(anchor.timestamp()) if anchor is not None else time.time()
        return start + self.evaluate_for

    def execute_next(
        self, context: Any, event: Any = None, until: float = 0.0, totals: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._loop(until, totals)

    def _loop(self, until: float, totals: dict[str, Any] | None) -> dict[str, Any]:
        import time

        while True:
            started = time.time()
            summary = self._evaluate_once()
            totals = _accumulate(totals, summary)
            next_at = started + self.interval
            if next_at >= until:
                return totals
            if self.deferrable:
                from datetime import datetime, timezone

                from airflow.providers.standard.triggers.temporal import DateTimeTrigger

                self.defer(
                    trigger=DateTimeTrigger(moment=datetime.fromtimestamp(next_at, tz=timezone.utc)),
                    method_name="execute_next",
                    kwargs={"until": until, "totals": totals},
                    timeout=timedelta(seconds=max(60.0, until - time.time() + 600)),
                )
            time.sleep(max(0.0, next_at - time.time()))


def _accumulate(totals: dict[str, Any] | None, summary: dict[str, Any]) -> dict[str, Any]:
    """Counts of what happened add up over the evaluations of one task; states are the last."""
    if totals is None:
        return {**summary, "evaluations": 1}
    out = dict(summary)
    for key in ("fired", "resolved", "queued", "sent", "failed"):
        out[key] = int(totals.get(key, 0)) + int(summary[key])
    out["errors"] = {**totals.get("errors", {}), **summary["errors"]}
    out["evaluations"] = int(totals.get("evaluations", 0)) + 1
    return out
