"""Benchmark the audit triggers' cost on UPDATE throughput, with pgbench.

Usage::

    .venv/bin/python bench/audit_triggers.py [--seconds 15] [--rounds 2]
        [--clients 2] [--rows 100000]

Runs on ``DATABASE_URL`` when set, else on an embedded PostgreSQL in
``<data dir>/bench`` (pgbench from the same wheel); a fresh database
``audit_trigger_bench`` is created and migrated. Four tables of ``--rows`` rows,
shaped like pgbench_accounts (id, balance, an 84-character filler):

- ``bench_plain``: not audited (the baseline),
- ``bench_audited``: ``audit_table()``, the statement-level triggers pgzen uses,
- ``bench_rowtrig``: a straightforward row-level trigger writing the same audit row
  (jsonb images and changed columns), for reference,
- ``bench_floor``: a statement-level trigger with transition tables that writes one
  constant, image-less audit row per statement: the least any trigger that records
  a statement in audit_log can cost, for reference.

Each is driven by pgbench with single-row UPDATEs, then with UPDATEs of 1,000 rows a
statement, under default settings and with ``synchronous_commit`` off, the runs of the
four tables interleaved round by round. Prints throughput and the ratio to the
baseline of the same round. Then, where a one-row update's time goes: the server's
median trigger time (EXPLAIN ANALYZE) for the tables above and for two more floors,
a statement trigger with an empty body and the floor writing into a copy of
``audit_log`` without indexes.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.audit_reprs import server  # noqa: E402
from db.config import DatabaseTarget  # noqa: E402

DBNAME = "audit_trigger_bench"
TABLES = ("bench_plain", "bench_audited", "bench_rowtrig", "bench_floor")

ROW_TRIGGER = """
create function bench_row_audit()
    returns trigger
    language plpgsql
as $$
begin
    insert into audit_log (
        schema_name, table_name, op, row_key, old_row, new_row, changed_columns,
        txid, actor
    )
    select tg_table_schema, tg_table_name, 'update', jsonb_build_object('id', new.id),
           o.image, n.image,
           array(select e.key from jsonb_each(n.image) as e
                  where e.value is distinct from o.image -> e.key),
           pg_current_xact_id()::text::bigint,
           coalesce(nullif(current_setting('pgzen.actor', true), ''), current_user)
      from (select to_jsonb(old) as image) as o, (select to_jsonb(new) as image) as n;
    return null;
end
$$;
create trigger bench_row_audit after update on bench_rowtrig
    for each row execute function bench_row_audit();

"""


def statement_trigger(table: str, body: str) -> str:
    """SQL for a statement-level update trigger on ``table`` with transition tables."""
    return f"""
create function {table}_audit()
    returns trigger
    language plpgsql
as $$
begin
    {body}
    return null;
end
$$;
create trigger {table}_audit after update on {table}
    referencing old table as audit_old new table as audit_new
    for each statement execute function {table}_audit();
"""


def floor_trigger(table: str, into: str) -> str:
    """The floor: one constant, image-less row into ``into`` per statement."""
    return statement_trigger(
        table,
        f"insert into {into} (schema_name, table_name, op, txid, actor)"
        " values ('public', 'bench_floor', 'truncate', 0, '');",
    )


# For the split of a one-row audited update's trigger time: the floor's trigger
# writing into a copy of audit_log without indexes, and a trigger doing nothing.
SPLIT_SETUP = (
    """
create table audit_log_unindexed (like audit_log including defaults including identity);
create table bench_floor_unindexed (like bench_floor including all);
insert into bench_floor_unindexed select * from bench_floor;
create table bench_empty_trigger (like bench_floor including all);
insert into bench_empty_trigger select * from bench_floor;
"""
    + floor_trigger("bench_floor_unindexed", "audit_log_unindexed")
    + statement_trigger("bench_empty_trigger", "-- nothing")
)
SPLIT_TABLES = {
    "bench_plain": "unaudited (statement time, no trigger)",
    "bench_empty_trigger": "statement trigger with transition tables, empty body",
    "bench_floor_unindexed": "floor, into a copy of audit_log without indexes",
    "bench_floor": "floor: one constant row into audit_log",
    "bench_rowtrig": "row-level trigger (straightforward)",
    "bench_audited": "pgzen (audit_table)",
}


def trigger_times(target: DatabaseTarget, rows: int, samples: int) -> None:
    """Median server time of a one-row UPDATE's triggers (EXPLAIN ANALYZE)."""
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        conn.execute(SPLIT_SETUP)
        conn.execute("vacuum analyze")
    print(
        "one-row UPDATE, median over"
        f" {samples:,} statements on one connection (synchronous_commit off):"
    )
    rng = random.Random(5)
    for table, label in SPLIT_TABLES.items():
        trigger_us: list[float] = []
        total_us: list[float] = []
        with psycopg.connect(
            target.conninfo(), autocommit=True, options="-c synchronous_commit=off"
        ) as conn:
            for index in range(samples + 200):  # the first 200 warm the caches
                key = rng.randint(1, rows)
                (plan,) = conn.execute(
                    "explain (analyze, format json) update "
                    + table
                    + " set balance = balance + 1 where id = %s",
                    [key],
                ).fetchone()
                if index >= 200:
                    trigger_us.append(
                        1000 * sum(t["Time"] for t in plan[0].get("Triggers", []))
                    )
                    total_us.append(1000 * plan[0]["Execution Time"])
        print(
            f"  {label:55} triggers {statistics.median(trigger_us):6.1f} us,"
            f" statement in all {statistics.median(total_us):6.1f} us"
        )


SCRIPTS = {
    "1 row": "\\set id random(1, {rows})\n"
    "update {table} set balance = balance + 1 where id = :id;\n",
    "1,000 rows": "\\set s random(1, {last})\n"
    "update {table} set balance = balance + 1 where id between :s and :s + 999;\n",
}


def fresh_database(maintenance: DatabaseTarget, rows: int) -> DatabaseTarget:
    from bench.audit_reprs import pgzen_env

    with psycopg.connect(maintenance.conninfo(), autocommit=True) as conn:
        conn.execute(f"drop database if exists {DBNAME} with (force)")
        conn.execute(f"create database {DBNAME}")
    target = maintenance.with_dbname(DBNAME)
    subprocess.run(
        [sys.executable, "-m", "pyapp", "migrate", "--sql-only", "--no-input"],
        env=pgzen_env(target),
        check=True,
        capture_output=True,
    )
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        for table in TABLES:
            conn.execute(
                f"create table {table} (id int primary key, balance int not null,"
                " filler char(84) not null default '') with (fillfactor = 90)"
            )
            conn.execute(
                f"insert into {table} (id, balance)"
                " select g, 0 from generate_series(1, %s) g",
                [rows],
            )
        conn.execute("select audit_table('bench_audited')")
        conn.execute(ROW_TRIGGER)
        conn.execute(floor_trigger("bench_floor", "audit_log"))
        conn.execute("vacuum analyze")
    return target


def pgbench(
    target: DatabaseTarget, script: str, seconds: int, clients: int, sync_off: bool
) -> float:
    from db.embedded import bin_dir

    params = target.params
    env = {
        **os.environ,
        "PGHOST": str(params.get("host") or ""),
        "PGPORT": str(params.get("port") or 5432),
        "PGUSER": str(params.get("user") or ""),
        "PGDATABASE": str(params.get("dbname")),
    }
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])
    if sync_off:
        env["PGOPTIONS"] = "-c synchronous_commit=off"
    binary = bin_dir() / "pgbench"  # the wheel's client works with any server
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as handle:
        handle.write(script)
        handle.flush()
        result = subprocess.run(
            [
                str(binary),
                "-n",
                "-c",
                str(clients),
                "-j",
                str(clients),
                "-T",
                str(seconds),
                "-f",
                handle.name,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    match = re.search(
        r"tps = ([\d.]+) \(without initial connection time\)", result.stdout
    )
    if not match:
        raise RuntimeError(
            f"no tps in pgbench output:\n{result.stdout}\n{result.stderr}"
        )
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--split-samples",
        type=int,
        default=2000,
        help="one-row updates timed per table for the split (0 skips it)",
    )
    args = parser.parse_args()

    maintenance, embedded = server()
    try:
        target = fresh_database(maintenance, args.rows)
        with psycopg.connect(target.conninfo(), autocommit=True) as conn:
            version = conn.execute("show server_version").fetchone()[0]
        print(
            f"PostgreSQL {version}; pgbench -c {args.clients} -j {args.clients}"
            f" -T {args.seconds}, {args.rounds} rounds, {args.rows:,} rows a table"
        )
        for shape, template in SCRIPTS.items():
            for sync_off in (False, True):
                tps: dict[str, list[float]] = {table: [] for table in TABLES}
                for _ in range(args.rounds):
                    for table in TABLES:
                        with psycopg.connect(target.conninfo(), autocommit=True) as c:
                            c.execute("checkpoint")
                        script = template.format(
                            table=table, rows=args.rows, last=args.rows - 999
                        )
                        tps[table].append(
                            pgbench(
                                target, script, args.seconds, args.clients, sync_off
                            )
                        )
                report(shape, sync_off, tps, 1000 if shape != "1 row" else 1)
        if args.split_samples:
            trigger_times(target, args.rows, args.split_samples)
    finally:
        if embedded is not None:
            embedded.stop()


def report(shape: str, sync_off: bool, tps: dict[str, list[float]], rows: int) -> None:
    setting = "synchronous_commit off" if sync_off else "default settings"
    base = tps["bench_plain"]
    print(f"UPDATE {shape} a statement, {setting}:")
    for table in TABLES:
        ratios = [value / plain for value, plain in zip(tps[table], base, strict=True)]
        print(
            f"  {table:14} {statistics.mean(tps[table]):9,.0f} statements/s"
            f" ({statistics.mean(tps[table]) * rows:11,.0f} rows/s)"
            f"  {statistics.mean(ratios) * 100:5.1f}% of unaudited"
            f"  (rounds: {', '.join(f'{r * 100:.0f}%' for r in ratios)})"
        )


if __name__ == "__main__":
    main()
