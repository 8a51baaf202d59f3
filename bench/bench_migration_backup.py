"""Backup + restore of one 1M-row table by a migration's Target, against the databases' own tools,
and the whole cycle the migration runner goes through when a migration fails.

The table: ``bench (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v REAL, n INTEGER)`` with an index on
``k``; 1,000,000 rows (``ETLOPS_BENCH_ROWS``). Each repeat, per side:

1. a fresh copy of the same database (not timed);
2. **backup** (timed);
3. damage, the same for every side (not timed), in three variants: "row damage" (1% of the
   rows deleted, 1% updated), "update damage" (1% updated only: the row count stays, so the
   damaged table is compared row by row too), "schema+row damage" (row damage, the index
   dropped and a column added);
4. ours only: **differences** of the damaged table from the backup (timed; must find some);
5. **restore** (timed);
6. ours only: **differences** of the restored table (timed; must be none);
7. check (not timed): the table's fingerprint equals the one before the backup.

Printed per side: the backup and restore times and their sum, with its ratio to the baseline's
sum — (a), backup + restore alone — and for ours the two ``differences`` calls and the full
cycle (steps 2, 4, 5, 6) with its ratio to the same baseline sum — (b). Medians of the repeats;
the sides take turns, alternating which goes first.

Baselines:

* SQLite: the backup API alone — ``sqlite3.Connection.backup`` into a file, then from that
  file back into the database.
* PostgreSQL: ``pg_dump -Fc -t bench`` and ``pg_restore --clean --single-transaction -d``.

Ours, as the runner calls it: ``Target.backup(checksums=False)`` (SQLite: the backup API plus
reflecting the table and counting its rows; PostgreSQL: a snapshot table in ``etlops_backup``
plus the recorded definition and row count), ``Target.differences`` (in SQL: schema, row count,
then the rows joined on the primary key and compared exactly) and ``Target.restore``. For
comparison, the verification it replaces: ``backup(checksums=True)`` and ``Target.fingerprint``
(an ordered SHA-256 of every row in Python) in place of each ``differences`` call.

PostgreSQL: ``ETLOPS_BENCH_PG_URL`` when set, else a temporary server from the PostgreSQL
binaries (``tests.fixtures.postgres.running_postgres``, fsync off unless
``ETLOPS_BENCH_PG_FSYNC=on``); ``pg_dump``/``pg_restore`` from the same bin directory as
``initdb``. Skipped, saying why, when neither is there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from etlops_airflow.core.migrations.model import SchemaChange
from etlops_airflow.core.migrations.target import Target

ROWS = int(os.environ.get("ETLOPS_BENCH_ROWS", "1000000"))
REPEATS = int(os.environ.get("ETLOPS_BENCH_REPEATS", "3"))
PG_FSYNC = os.environ.get("ETLOPS_BENCH_PG_FSYNC", "off").lower() in ("1", "on", "true", "yes")
GOAL = 1.5  # ours / baseline time
TABLE = "bench"
DDL = f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v REAL, n INTEGER)"
INDEX = f"CREATE INDEX ix_{TABLE}_k ON {TABLE} (k)"


def _rows(start: int, stop: int) -> Iterator[tuple[int, str, float, int]]:
    for i in range(start, stop):
        yield (i, f"key-{i * 7919 % ROWS:07d}", i * 0.5, i % 1000)


DAMAGES = {"rows": "row damage", "updates": "update damage", "schema": "schema+row damage"}


def damage(engine: Engine, kind: str) -> None:
    cut = max(1, ROWS // 100)
    with engine.begin() as conn:
        if kind != "updates":
            conn.exec_driver_sql(f"DELETE FROM {TABLE} WHERE id < {cut}")
        conn.exec_driver_sql(f"UPDATE {TABLE} SET v = -1 WHERE id >= {ROWS - cut}")
    if kind == "schema":
        t = Target(engine)
        with t.transaction() as conn:
            t.apply_change(conn, SchemaChange(TABLE, "drop_index", index=f"ix_{TABLE}_k"))
            t.apply_change(conn, SchemaChange(TABLE, "add_column", column="extra", type="integer", default=7))


Phases = dict[str, float]  # seconds: backup, restore; ours also damaged, restored (differences)
Timer = Callable[[], Phases]


def cycle(engine: Engine, work: Path, kind: str, verify: str) -> Phases:
    """Ours: backup, damage, look at the damage, restore, look again. ``verify`` is "sql"
    (``checksums=False`` and ``differences``) or "fingerprint" (``checksums=True`` and a
    fingerprint compared with the recorded one)."""
    target = Target(engine, name="bench")
    times: Phases = {}

    def differences(info: dict[str, Any]) -> list[str]:
        if verify == "sql":
            return target.differences(info)
        now = target.fingerprint([TABLE])[TABLE].as_dict()
        return [] if now == info["fingerprints"][TABLE] else [f"{TABLE} differs from the backup"]

    start = time.perf_counter()
    info = target.backup(
        [TABLE], label="bench-run", backup_dir=work / "backups", checksums=verify == "fingerprint"
    )
    times["backup"] = time.perf_counter() - start
    damage(engine, kind)
    start = time.perf_counter()
    found = differences(info)
    times["damaged"] = time.perf_counter() - start
    assert found, "the damage went unseen"
    start = time.perf_counter()
    target.restore(info)
    times["restore"] = time.perf_counter() - start
    start = time.perf_counter()
    left = differences(info)
    times["restored"] = time.perf_counter() - start
    assert not left, f"differences after the restore: {left}"
    target.discard_backup(info)
    return times


# -- SQLite --------------------------------------------------------------------------------------------


def build_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    conn.execute(DDL)
    conn.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?)", _rows(0, ROWS))
    conn.execute(INDEX)
    conn.execute("CREATE TABLE other (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO other VALUES (?, ?)", ((i, f"o{i}") for i in range(1000)))
    conn.execute("COMMIT")
    conn.close()


def sqlite_engine(path: Path) -> Engine:
    """Pooled, as a long-lived process has it: a connection returned to the pool stays open,
    so neither side pays SQLite's WAL checkpoint at the last close inside its timing (the
    baseline closes its connection after the clock stops too)."""
    return create_engine(f"sqlite:///{path}")


def sqlite_baseline(master: Path, work: Path, kind: str) -> Phases:
    db, copy = work / "base.db", work / "base-backup.db"
    shutil.copy(master, db)
    conn = sqlite3.connect(db, isolation_level=None)
    start = time.perf_counter()
    dest = sqlite3.connect(copy)
    conn.backup(dest)
    dest.close()
    backup_s = time.perf_counter() - start
    engine = sqlite_engine(db)
    damage(engine, kind)
    start = time.perf_counter()
    src = sqlite3.connect(copy)
    src.backup(conn)
    src.close()
    restore_s = time.perf_counter() - start
    conn.close()
    check(engine, master)
    engine.dispose()
    for p in (db, copy):
        p.unlink()
    return {"backup": backup_s, "restore": restore_s}


def sqlite_ours(master: Path, work: Path, kind: str, verify: str) -> Phases:
    db = work / "ours.db"
    shutil.copy(master, db)
    engine = sqlite_engine(db)
    times = cycle(engine, work, kind, verify)
    check(engine, master)
    engine.dispose()
    db.unlink()
    return times


_expected: dict[str, Any] = {}


def check(engine: Engine, key: object) -> None:
    """The restored table equals the original (fingerprint taken once per database)."""
    fp = Target(engine).fingerprint([TABLE])[TABLE].as_dict()
    expected = _expected.setdefault(str(key), fp)
    assert fp == expected, "restored table differs from the original"


# -- PostgreSQL ----------------------------------------------------------------------------------------


def pg_bin(name: str) -> str:
    from tests.fixtures.postgres import _find_bin, server_binaries

    initdb, _pg_ctl = server_binaries()
    beside = Path(initdb).resolve().parent / name
    if beside.exists():
        return str(beside)
    found = _find_bin(name)
    if not found:
        raise RuntimeError(f"{name} not found beside {initdb}")
    return found


def build_postgres(url: str) -> None:
    import psycopg

    from bench.bench_store_write import connect_args

    with psycopg.connect(**connect_args(url)) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(DDL)
        with conn.cursor().copy(f"COPY {TABLE} (id, k, v, n) FROM STDIN") as copy:
            for row in _rows(0, ROWS):
                copy.write_row(row)
        conn.execute(INDEX)
        conn.commit()
    with psycopg.connect(**connect_args(url), autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {TABLE}")


def _reset_postgres(url: str, master: str) -> None:
    """The bench table back to the master copy (kept in its own schema), not timed."""
    import psycopg

    from bench.bench_store_write import connect_args

    with psycopg.connect(**connect_args(url)) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(DDL)
        conn.execute(f"INSERT INTO {TABLE} SELECT * FROM {master}.{TABLE}")
        conn.execute(INDEX)
        conn.execute("DROP SCHEMA IF EXISTS etlops_backup CASCADE")
        conn.commit()
    with psycopg.connect(**connect_args(url), autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {TABLE}")


def pg_baseline(url: str, master: str, work: Path, kind: str) -> Phases:
    _reset_postgres(url, master)
    libpq = url.replace("+psycopg", "")
    dump = work / "bench.dump"
    start = time.perf_counter()
    subprocess.run([pg_bin("pg_dump"), "-Fc", "-t", TABLE, "-f", str(dump), "-d", libpq], check=True)
    backup_s = time.perf_counter() - start
    engine = create_engine(url, poolclass=NullPool)
    damage(engine, kind)
    start = time.perf_counter()
    subprocess.run(
        [pg_bin("pg_restore"), "--clean", "--if-exists", "--single-transaction", "-d", libpq, str(dump)],
        check=True,
    )
    restore_s = time.perf_counter() - start
    check(engine, "postgresql")
    engine.dispose()
    dump.unlink()
    return {"backup": backup_s, "restore": restore_s}


def pg_ours(url: str, master: str, work: Path, kind: str, verify: str) -> Phases:
    _reset_postgres(url, master)
    engine = create_engine(url, poolclass=NullPool)
    times = cycle(engine, work, kind, verify)
    check(engine, "postgresql")
    engine.dispose()
    return times


# -- the comparison ------------------------------------------------------------------------------------


def _verdict(ratio: float) -> str:
    return f"{ratio:.2f}x ({'ok' if ratio <= GOAL else 'over the goal'})"


def compare(label: str, sides: dict[str, Timer]) -> None:
    times: dict[str, list[Phases]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(REPEATS):
        for name in names if r % 2 == 0 else reversed(names):
            times[name].append(sides[name]())
    base_total = statistics.median(t["backup"] + t["restore"] for t in times[names[0]])
    for name in names:
        runs = times[name]

        def med(*phases: str, runs: list[Phases] = runs) -> float:
            return statistics.median(sum(t[p] for p in phases) for t in runs)

        total = med("backup", "restore")
        line = (
            f"{label:<30} {name:<34} backup {med('backup'):7.3f} s  restore {med('restore'):7.3f} s  "
            f"= {total:7.3f} s"
        )
        if name != names[0]:
            line += f"  (a) {_verdict(total / base_total)}"
        print(line)
        if "damaged" in runs[0]:
            full = med("backup", "damaged", "restore", "restored")
            print(
                f"{'':<30} {'':<34} check damaged {med('damaged'):6.3f} s  check restored "
                f"{med('restored'):6.3f} s  full cycle {full:7.3f} s  (b) {_verdict(full / base_total)}"
            )
    sys.stdout.flush()


def main() -> None:
    print(
        f"{ROWS:,} rows, primary key + one index, median of {REPEATS} (goal: ours <= {GOAL}x); "
        "(a) backup + restore, (b) the full cycle: backup, check the damage, restore, check again"
    )
    with tempfile.TemporaryDirectory(prefix="etlops-bench-") as tmp:
        work = Path(tmp)
        master = work / "master.db"
        build_sqlite(master)
        for kind, what in DAMAGES.items():
            compare(
                f"sqlite, {what}",
                {
                    "backup API alone": partial(sqlite_baseline, master, work, kind),
                    "Target, differences() in SQL": partial(sqlite_ours, master, work, kind, "sql"),
                    "Target, checksums + fingerprint": partial(
                        sqlite_ours, master, work, kind, "fingerprint"
                    ),
                },
            )
        with contextlib.ExitStack() as stack:
            try:
                url, source = stack.enter_context(postgres_database())
                pg_bin("pg_dump")
            except Exception as exc:  # no binaries, or the server did not start: SQLite's figures stand
                print(f"postgresql skipped: {exc}")
                return
            print(f"postgresql: {source}")
            build_postgres(url)
            master_schema = "etlops_bench_master"
            import psycopg

            from bench.bench_store_write import connect_args

            with psycopg.connect(**connect_args(url)) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {master_schema} CASCADE")
                conn.execute(f"CREATE SCHEMA {master_schema}")
                conn.execute(f"CREATE TABLE {master_schema}.{TABLE} AS TABLE {TABLE}")
                conn.commit()
            for kind, what in DAMAGES.items():
                compare(
                    f"postgresql, {what}",
                    {
                        "pg_dump -Fc + pg_restore": partial(pg_baseline, url, master_schema, work, kind),
                        "Target, differences() in SQL": partial(
                            pg_ours, url, master_schema, work, kind, "sql"
                        ),
                        "Target, checksums + fingerprint": partial(
                            pg_ours, url, master_schema, work, kind, "fingerprint"
                        ),
                    },
                )


@contextlib.contextmanager
def postgres_database() -> Iterator[tuple[str, str]]:
    given = os.environ.get("ETLOPS_BENCH_PG_URL")
    if given:
        yield given, "ETLOPS_BENCH_PG_URL"
        return
    from tests.fixtures.postgres import running_postgres

    with running_postgres(fsync=PG_FSYNC) as server:
        yield server.create_database("etlops_bench"), f"temporary server, fsync={'on' if PG_FSYNC else 'off'}"


if __name__ == "__main__":
    main()
