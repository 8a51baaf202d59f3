"""The one persistence layer. Knows nothing of Airflow: build a :class:`Store` from a URL or
an engine. The store configured by ``[etlops]`` is ``etlops_airflow.runtime.get_store()``.

One module per concern, sharing the engine, transaction modes and schema upgrades of
:class:`~etlops_airflow.store.db.Database`::

    store = Store.from_url("sqlite:///etlops.db")
    store.metrics.write(points)          # store/metrics.py
    store.outcomes.query(dag_id="orders")  # store/outcomes.py
    store.dag_runs.failure_streaks()     # store/dag_runs.py
    store.profiles.record(report)        # store/profiles.py
    store.maintenance.record(run)        # store/maintenance.py (runs, health, rollups, retention)
    store.migrations.runs("orders")      # store/migrations.py (ledger, step log, versions, configs)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.engine import URL

from etlops_airflow.store import schema, upgrades
from etlops_airflow.store.alerts import AlertsStore
from etlops_airflow.store.dag_runs import DagRunsStore
from etlops_airflow.store.db import Database
from etlops_airflow.store.locks import LocksStore
from etlops_airflow.store.maintenance import MaintenanceStore
from etlops_airflow.store.metrics import MetricsStore, Series, SeriesValue
from etlops_airflow.store.migrations import MigrationsStore
from etlops_airflow.store.outcomes import OutcomeCount, OutcomesStore
from etlops_airflow.store.profiles import ProfilesStore

__all__ = ["Database", "OutcomeCount", "Series", "SeriesValue", "Store"]


class Store:
    """Every etlops record in one database, one attribute per concern."""

    def __init__(self, engine: Engine | Database) -> None:
        self.db = engine if isinstance(engine, Database) else Database(engine)
        self.metrics = MetricsStore(self.db)
        self.outcomes = OutcomesStore(self.db)
        self.dag_runs = DagRunsStore(self.db)
        self.alerts = AlertsStore(self.db)
        self.locks = LocksStore(self.db)
        self.profiles = ProfilesStore(self.db)
        self.maintenance = MaintenanceStore(self.db)
        self.migrations = MigrationsStore(self.db)

    @classmethod
    def from_url(cls, url: str | URL, **options: Any) -> Store:
        """Options as for :meth:`Database.from_url` (``connect_timeout``, ``sqlite_busy_timeout``,
        ``source``)."""
        return cls(Database.from_url(url, **options))

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"

    @property
    def engine(self) -> Engine:
        return self.db.engine

    @property
    def display_url(self) -> str:
        """The URL with its password masked."""
        return self.db.display_url

    @property
    def dialect(self) -> str:
        return self.db.dialect

    def upgrade(self) -> tuple[int, int]:
        """Create or upgrade the schema to this package's version. Returns (from, to)."""
        return self.db.upgrade()

    def schema_version(self) -> int:
        return self.db.schema_version()

    def ensure_schema(self) -> None:
        self.db.ensure_schema()

    def status(self) -> dict[str, Any]:
        """Where the store is, its schema version and the rows of each table. Reads only:
        takes no write lock and creates nothing, whatever the store's state."""
        with self.db.read("read store status") as conn:
            version = upgrades.current_version(conn)
            present = set(inspect(conn).get_table_names())
            rows = {
                table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for table in schema.metadata.sorted_tables
                if table.name in present and table is not schema.schema_version and version == upgrades.HEAD
            }
        return {
            "url": self.display_url,
            "dialect": self.dialect,
            "schema_version": version,
            "schema_head": upgrades.HEAD,
            "rows": rows,
        }

    def dispose(self) -> None:
        self.db.dispose()
