"""Profiling example: one ETL task with three profiled stages.

``orders_etl`` reads 50,000 orders from a CSV file (``extract``, a ``profile_stage`` block),
joins them with their customers (``enrich``, a ``@profiled`` function) and writes them to a
SQLite table (``load``, a ``profile_stage`` block). Each stage records its records in/out;
the etlops listener finishes the session when the task ends and publishes the report:

* the store: ``store.profiles.sessions(dag_id="etlops_profiling_example")``;
* XCom ``etlops_profile`` of ``orders_etl``: the compact summary;
* metrics ``stage_duration_seconds{dag_id, task_id, stage}`` and friends;
* the task log: the report as a table, with findings and recommendations.

Set ``ETLOPS_EXAMPLE_SLOW_STAGE=enrich`` (or ``extract`` / ``load``) in the worker's environment
to make that stage 1.5 s slower: with a low ``[etlops] profile_regression_floor`` the run after
a normal one shows a regression finding for it. Takes about a second.
"""

from __future__ import annotations

import os
import time

from airflow.sdk import DAG, task

from etlops_airflow.profiling import profile_stage, profiled

ORDERS = 50_000
CUSTOMERS = 2_000
SLOW_STAGE_ENV = "ETLOPS_EXAMPLE_SLOW_STAGE"
SLOWDOWN_S = 1.5


def _maybe_slow(stage: str) -> None:
    """The deliberate slowdown of the example (read when the task runs, never at parse time)."""
    if os.environ.get(SLOW_STAGE_ENV, "").strip() == stage:
        time.sleep(SLOWDOWN_S)


def _write_source(path: str) -> None:
    """The source file the extract stage reads: the same 50,000 orders every run."""
    import csv
    import random

    rng = random.Random(20240101)
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(("order_id", "customer_id", "amount", "currency"))
        for order_id in range(ORDERS):
            writer.writerow((order_id, rng.randrange(CUSTOMERS), f"{rng.uniform(1, 500):.2f}", "EUR"))


@profiled(stage="enrich", records_in=lambda orders, customers: len(orders), records_out=len)
def enrich(orders: list[dict[str, str]], customers: dict[int, tuple[str, float]]) -> list[tuple[object, ...]]:
    """Join each order with its customer's country and VAT rate; compute the gross amount."""
    _maybe_slow("enrich")
    rows = []
    for order in orders:
        country, vat = customers[int(order["customer_id"])]
        net = float(order["amount"])
        rows.append(
            (int(order["order_id"]), int(order["customer_id"]), country, net, round(net * (1 + vat), 2))
        )
    return rows


with DAG(
    dag_id="etlops_profiling_example",
    schedule=None,
    is_paused_upon_creation=True,
    tags=["etlops", "example"],
    doc_md=__doc__,
):

    @task(multiple_outputs=False)
    def orders_etl() -> dict[str, int]:
        import csv
        import sqlite3
        import tempfile

        with tempfile.TemporaryDirectory(prefix="etlops-example-") as workdir:
            source = os.path.join(workdir, "orders.csv")
            _write_source(source)
            countries = (("DE", 0.19), ("FR", 0.20), ("NL", 0.21), ("AT", 0.20))
            customers = {c: countries[c % len(countries)] for c in range(CUSTOMERS)}

            with profile_stage("extract") as stage:
                _maybe_slow("extract")
                with open(source, newline="") as f:
                    orders = list(csv.DictReader(f))
                stage.records_out = len(orders)

            enriched = enrich(orders, customers)

            with profile_stage("load", records_in=len(enriched)) as stage:
                _maybe_slow("load")
                db = sqlite3.connect(os.path.join(workdir, "warehouse.db"))
                try:
                    db.execute(
                        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, country TEXT, "
                        "net REAL, gross REAL)"
                    )
                    db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", enriched)
                    db.commit()
                    stage.records_out = db.execute("SELECT count(*) FROM orders").fetchone()[0]
                finally:
                    db.close()
        return {"extracted": len(orders), "loaded": int(stage.records_out or 0)}

    orders_etl()
