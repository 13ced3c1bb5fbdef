"""Benchmark the reprs chain: flat batches, queries per batch, against a naive chain.

Usage::

    .venv/bin/python bench/audit_reprs.py [--rows 1000000] [--batch-size 1000]
        [--naive-budget 300]

Runs on ``DATABASE_URL`` when set, else on an embedded PostgreSQL in
``<data dir>/bench``; a fresh database ``audit_bench`` is created and migrated, and
``--rows`` audit rows are made by inserting people (80%) and addresses (20%), in
interleaved rounds so that every part of the run has the same mix. Then,
in this process, as a worker would run them:

- the chain: ``build_reprs`` job after job (read, represent, insert, defer), each
  batch timed and its queries counted; first 10% of batches against the last 10%,
- the naive chain: an unbounded anti-join ``order by id limit n`` and an
  ``exists()`` question after each batch, on the same rows, for at most
  ``--naive-budget`` seconds (its batches grow slower as it advances),

and prints representations per second for both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import fresh_database, pgzen_env, server  # noqa: E402
from db.config import DatabaseTarget  # noqa: E402

DBNAME = "audit_bench"

NAIVE_READ = """
select a.id, a.txid, a.schema_name, a.table_name, a.op,
       case a.op when 'delete' then a.old_row else a.new_row end
  from audit_log as a
 where not exists (select from instance_repr as r where r.audit_log_id = a.id)
 order by a.id
 limit %s
"""
NAIVE_LEFT = """
select exists (
    select from audit_log as a
     where not exists (select from instance_repr as r where r.audit_log_id = a.id))
"""


#: Audit rows are made in rounds of this many, 80% people then 20% addresses, so
#: that every tenth of the chain represents the same mix of tables (an address's
#: str() costs more than a person's; a run of people then addresses would show
#: that difference as a slope).
ROUND = 10_000


def make_audit_rows(target: DatabaseTarget, rows: int) -> float:
    """Insert people and addresses in interleaved rounds; return the seconds taken."""
    started = time.perf_counter()
    people_so_far = 0
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        for start in range(0, rows, ROUND):
            size = min(ROUND, rows - start)
            people = max(1, size * 4 // 5)
            conn.execute(
                "insert into person (name, date_of_birth)"
                " select 'Person ' || g, date '1950-01-01' + (g %% 20000)"
                "   from generate_series(%s::int, %s::int) g",
                [people_so_far + 1, people_so_far + people],
            )
            people_so_far += people
            if size > people:
                conn.execute(
                    "insert into address (person_id, street, suburb, postcode,"
                    " country)"
                    " select (select min(id) from person) + g %% %s,"
                    "        g || ' Main Street', 'Springfield', '3000', 'AU'"
                    "   from generate_series(%s::int, %s::int) g",
                    [people_so_far, start + 1, start + size - people],
                )
        conn.execute("vacuum analyze audit_log")
        conn.execute("checkpoint")
    return time.perf_counter() - started


def setup_django(target: DatabaseTarget) -> None:
    os.environ.update(pgzen_env(target))
    import django

    django.setup()


def keyset_chain(batch_size: int) -> tuple[list[float], list[int], int]:
    """Run the chain job by job; return batch seconds, queries per batch, rows."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from pyapp.audit import tasks

    durations: list[float] = []
    queries: list[int] = []
    after: Any = None
    total = 0
    while True:
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            result = tasks.build_reprs(batch_size=batch_size, after=after)
            durations.append(time.perf_counter() - started)
        queries.append(len(captured))
        total += result["read"]
        # The successor a worker would run next: take its cursor, drop the job.
        with connection.cursor() as cursor:
            cursor.execute("delete from procrastinate_jobs")
        if result["after"] is None:
            return durations, queries, total
        after = list(result["after"])


def naive_chain(batch_size: int, budget: float) -> tuple[list[float], int, bool]:
    """Run the naive chain for at most ``budget`` seconds."""
    from django.db import connection

    from pyapp.audit import tasks

    durations: list[float] = []
    total = 0
    deadline = time.perf_counter() + budget
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(NAIVE_READ, [batch_size])
            rows = [
                tasks.AuditRow(i, t, s, n, o, tasks._json(image))
                for i, t, s, n, o, image in cursor.fetchall()
            ]
        tasks.write_reprs(rows)
        with connection.cursor() as cursor:
            cursor.execute(NAIVE_LEFT)
            left = cursor.fetchone()[0]
        durations.append(time.perf_counter() - started)
        total += len(rows)
        if not left:
            return durations, total, True
    return durations, total, False


def tenth(values: list[float], last: bool) -> float:
    count = max(1, len(values) // 10)
    return statistics.mean(values[-count:] if last else values[:count])


def deciles(values: list[float]) -> str:
    """Median batch time (ms) of each tenth of the run, in order."""
    count = max(1, len(values) // 10)
    parts = [values[i : i + count] for i in range(0, count * 10, count)]
    return " ".join(f"{statistics.median(p) * 1000:.0f}" for p in parts if p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--naive-budget", type=float, default=300.0)
    args = parser.parse_args()

    maintenance, embedded = server()
    try:
        target = fresh_database(maintenance, DBNAME)
        with psycopg.connect(target.conninfo()) as conn:
            version = conn.execute("show server_version").fetchone()[0]
        print(
            f"PostgreSQL {version}, {args.rows:,} audit rows, batch {args.batch_size}"
        )
        made = make_audit_rows(target, args.rows)
        print(f"audit rows made in {made:.1f} s (statement-level triggers)")
        setup_django(target)

        started = time.perf_counter()
        durations, queries, total = keyset_chain(args.batch_size)
        elapsed = time.perf_counter() - started
        first, last = tenth(durations, False), tenth(durations, True)
        print(
            f"chain: {total:,} rows in {len(durations)} batches, {elapsed:.1f} s,"
            f" {total / elapsed:,.0f} reprs/s"
        )
        print(
            f"  batch mean first 10% {first * 1000:.1f} ms, last 10%"
            f" {last * 1000:.1f} ms, ratio {last / first:.2f}"
            f" (median {statistics.median(durations) * 1000:.1f} ms)"
        )
        print(f"  median batch (ms) per tenth of the run: {deciles(durations)}")
        count = max(1, len(durations) // 10)
        head = statistics.median(durations[:count])
        tail = statistics.median(durations[-count:])
        print(
            f"  median batch first 10% {head * 1000:.1f} ms, last 10%"
            f" {tail * 1000:.1f} ms, ratio {tail / head:.2f}"
        )
        full = queries[:-1]
        print(
            f"  queries per full batch: {sorted(set(full))} (read, insert, defer);"
            f" last batch: {queries[-1]}"
        )

        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("truncate instance_repr")
        started = time.perf_counter()
        naive, naive_total, finished = naive_chain(args.batch_size, args.naive_budget)
        naive_elapsed = time.perf_counter() - started
        state = (
            "all rows"
            if finished
            else f"stopped at the {args.naive_budget:.0f} s budget"
        )
        print(
            f"naive: {naive_total:,} rows in {len(naive)} batches,"
            f" {naive_elapsed:.1f} s,"
            f" {naive_total / naive_elapsed:,.0f} reprs/s ({state})"
        )
        print(
            f"  batch mean first 10% {tenth(naive, False) * 1000:.1f} ms,"
            f" last 10% {tenth(naive, True) * 1000:.1f} ms,"
            f" ratio {tenth(naive, True) / tenth(naive, False):.2f}"
        )
        print(
            f"chain vs naive: {(total / elapsed) / (naive_total / naive_elapsed):.2f}x"
            " reprs/s"
        )
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    main()
