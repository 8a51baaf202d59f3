"""Sensor that waits until an alert is firing, or until it has cleared."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator

from etlops_airflow._validate import choice, positive_number
from etlops_airflow.exceptions import ValidationError

TARGETS = ("firing", "cleared")


def alert_condition_met(store: Any, rule_id: str, labels: Mapping[str, str], target: str) -> bool:
    """Is an alert of ``rule_id`` whose labels include ``labels`` firing (``target="firing"``),
    or is none firing any more (``"cleared"``)?"""
    firing = [
        a
        for a in store.alerts.alerts(states=["firing"], rule_id=rule_id)
        if all(a.labels.get(k) == v for k, v in labels.items())
    ]
    return bool(firing) if target == "firing" else not firing


class AlertSensor(BaseSensorOperator):
    """Wait until an alert of ``rule_id`` (with ``labels``) is firing, or until it has cleared.

    ``mode="reschedule"`` frees the worker slot between pokes; ``deferrable=True`` waits in the
    triggerer instead, polling the store every ``poke_interval`` seconds::

        AlertSensor(task_id="wait_for_recovery", rule_id="orders-failing", target="cleared",
                    deferrable=True, poke_interval=60, timeout=6 * 3600)
    """

    template_fields: Sequence[str] = ("rule_id", "labels")

    def __init__(
        self,
        *,
        rule_id: str,
        target: str = "firing",
        labels: dict[str, str] | None = None,
        deferrable: bool = False,
        etlops_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        owner = f"AlertSensor {kwargs.get('task_id', '?')!r}"
        if not isinstance(rule_id, str) or not rule_id:
            raise ValidationError("rule_id", rule_id, "expected a rule id", owner=owner)
        if labels is not None and not isinstance(labels, dict):
            raise ValidationError(
                "labels", labels, "expected a mapping of label names to values", owner=owner
            )
        self.rule_id = rule_id
        self.target = choice(owner, "target", target, TARGETS)
        self.labels = {str(k): str(v) for k, v in (labels or {}).items()}
        self.deferrable = deferrable
        self.etlops_conn_id = etlops_conn_id
        positive_number(owner, "poke_interval", self.poke_interval)

    def poke(self, context: Any) -> bool:
        from etlops_airflow.runtime import store_for

        met = alert_condition_met(store_for(self.etlops_conn_id), self.rule_id, self.labels, self.target)
        self.log.info("Alert %r %s: %s", self.rule_id, self.target, "yes" if met else "not yet")
        return met

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        from datetime import timedelta

        from etlops_airflow.triggers.alerts import AlertTrigger

        self.defer(
            trigger=AlertTrigger(
                rule_id=self.rule_id,
                labels=self.labels,
                target=self.target,
                poll_interval=float(self.poke_interval),
                etlops_conn_id=self.etlops_conn_id,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)) if self.timeout else None,
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        if not event or event.get("status") != "met":
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(f"alert {self.rule_id!r} wait ended without its condition: {event!r}")
        self.log.info("Alert %r is %s", self.rule_id, self.target)
