"""Notifier that raises an etlops alert from a callback, through the rule file's routes, the
outbox and the store's records — the same path as evaluated alerts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseNotifier

from etlops_airflow._validate import choice
from etlops_airflow.exceptions import ValidationError

_SEVERITIES = ("critical", "high", "medium", "low", "info")


class EtlopsAlertNotifier(BaseNotifier):
    """``on_failure_callback=EtlopsAlertNotifier(rule_id="orders-task-failed", severity="high")``.

    Each call raises (or keeps) one alert per DAG and task — labels ``dag_id`` and
    ``task_id``, the run, try and error kept as annotations — routed by the rule file's
    routes and delivered through the outbox. The same task failing again while its alert is
    firing is not a new message (a hundred failures are one alert, repeated only after the
    route's ``repeat_interval``); alerts failing together are grouped as the route says.
    The alert resolves, with a resolve notice, once an evaluation (the ``etlops_alerting``
    DAG) sees the task (or, from a DAG callback, the DAG) succeed again.

    Like every etlops notifier it never fails the task or the run: errors are logged.

    :param rule_id: the alert's rule id (routes and silences match on it); not a rule of the file.
    :param severity: critical, high, medium, low or info.
    :param name: title shown in messages (default ``rule_id``).
    :param description: message text, templated with the task context.
    :param rules_file: rule file whose receivers and routes apply (default ``[etlops] alert_rules_file``).
    :param delivery_budget: seconds the callback may spend delivering what is due now.
    """

    template_fields: Sequence[str] = ("description", "name")

    def __init__(
        self,
        rule_id: str = "task-failure",
        severity: str = "high",
        name: str | None = None,
        description: str | None = None,
        rules_file: str | None = None,
        delivery_budget: float = 10.0,
        etlops_conn_id: str | None = None,
    ) -> None:
        super().__init__()
        owner = "EtlopsAlertNotifier"
        from etlops_airflow.core.alerts.rules import RULE_ID_RE

        if not isinstance(rule_id, str) or not RULE_ID_RE.fullmatch(rule_id):
            raise ValidationError("rule_id", rule_id, "expected letters, digits, - _ . :", owner=owner)
        self.rule_id = rule_id
        self.severity = choice(owner, "severity", severity, _SEVERITIES)
        self.name = name
        self.description = description
        self.rules_file = rules_file
        self.delivery_budget = float(delivery_budget)
        self.etlops_conn_id = etlops_conn_id

    def notify(self, context: Any) -> None:
        try:
            self._notify(context)
        except Exception as exc:
            from etlops_airflow._log import log, one_line

            log.warning(
                "etlops: alert %r not raised: %s; the run is not affected", self.rule_id, one_line(exc)
            )

    def _notify(self, context: Any) -> None:
        from etlops_airflow import config
        from etlops_airflow._secrets import redact
        from etlops_airflow.alerting import raise_callback_alert
        from etlops_airflow.core.alerts.rules import load_rules
        from etlops_airflow.runtime import store_for

        path = self.rules_file or config.get("alert_rules_file").strip()

        def rules() -> Any:
            if not path:
                raise ValidationError(
                    "rules_file", path, "no rule file: pass rules_file or set [etlops] alert_rules_file"
                )
            return load_rules(path)

        ti = context.get("ti") or context.get("task_instance")
        dag = context.get("dag")
        dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or "unknown"
        labels = {"dag_id": str(dag_id)}
        task_id = getattr(ti, "task_id", None)
        # A DAG callback's context is its last task instance's context plus "reason" (Airflow
        # 3.3: DagRun.handle_dag_callback, dag_processing.processor): that alert is the DAG's.
        is_dag_callback = "reason" in context
        if task_id and ti is not None and context.get("task") is not None and not is_dag_callback:
            labels["task_id"] = str(task_id)
        run = context.get("dag_run")
        annotations = {"title": self.name or self.rule_id, "description": self.description or ""}
        # a DAG callback without a task instance gets only {"dag", "run_id", "reason"}
        run_id = getattr(run, "run_id", None) or getattr(ti, "run_id", None) or context.get("run_id")
        if run_id:
            annotations["run_id"] = str(run_id)
        error = context.get("exception")
        if error is not None:
            annotations["error"] = redact(f"{type(error).__name__}: {error}")[:2000]
        summary = raise_callback_alert(
            rules,  # loaded after the alert is recorded
            rule_id=self.rule_id,
            severity=self.severity,
            labels=labels,
            annotations=annotations,
            store=store_for(self.etlops_conn_id),
            delivery_budget_s=self.delivery_budget,
        )
        self.log.info("etlops alert %r: %s", self.rule_id, summary)
