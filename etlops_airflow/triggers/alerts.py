"""Trigger that polls the store in the triggerer until an alert is firing or has cleared."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class AlertTrigger(BaseTrigger):
    """Fires ``{"status": "met"}`` once :func:`alert_condition_met` holds. Store errors are
    logged and retried at the next poll (the sensor's ``timeout`` bounds the wait)."""

    def __init__(
        self,
        *,
        rule_id: str,
        labels: dict[str, str],
        target: str,
        poll_interval: float,
        etlops_conn_id: str | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.rule_id = rule_id
        self.labels = labels
        self.target = target
        self.poll_interval = poll_interval
        self.etlops_conn_id = etlops_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "etlops_airflow.triggers.alerts.AlertTrigger",
            {
                "rule_id": self.rule_id,
                "labels": self.labels,
                "target": self.target,
                "poll_interval": self.poll_interval,
                "etlops_conn_id": self.etlops_conn_id,
            },
        )

    def _check(self) -> bool:
        from etlops_airflow.runtime import store_for
        from etlops_airflow.sensors.alerts import alert_condition_met

        return alert_condition_met(store_for(self.etlops_conn_id), self.rule_id, self.labels, self.target)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                met = await asyncio.to_thread(self._check)
            except Exception as exc:
                self.log.warning("etlops: alert %r not checked: %s; trying again", self.rule_id, exc)
                met = False
            if met:
                yield TriggerEvent({"status": "met", "rule_id": self.rule_id, "target": self.target})  # type: ignore[no-untyped-call]
                return
            await asyncio.sleep(self.poll_interval)
