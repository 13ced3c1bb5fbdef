"""Benchmark the shift annotations backfill against a single INSERT ... SELECT.

Usage::

    .venv/bin/python bench/shifts_backfill.py [--shifts 2000000] [--batch-size 1000]

Runs on ``DATABASE_URL`` when set, else on an embedded PostgreSQL in
``<data dir>/bench``; a fresh database ``shifts_bench`` is created and migrated. It
measures, in one run and on the same rows:

- a single ``INSERT ... SELECT`` of every annotation (the baseline),
- the keyset chain of ``shift_annotation_backfill_batch`` calls, each the very
  statement a worker's job runs (ratio to baseline, median batch of the last 10%
  against the first 10%, p99 batch),
- a straightforward keyset chain for reference (plain INSERT ... SELECT ... LIMIT
  with ON CONFLICT DO NOTHING, each batch a durable commit),
- where the time of a row goes: computation, foreign-key check, write,
- the naive batch (anti-join with LIMIT, no cursor), for a time budget,
- one Procrastinate worker against two (``pgzen worker``, ``pgzen backfill``),

and writes a plot of batch time against progress to ``bench/out/``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import fresh_database, pgzen_env, server  # noqa: E402
from db.config import DatabaseTarget  # noqa: E402
from pyapp.shifts.batch import BATCH_STATEMENT  # noqa: E402

OUT = ROOT / "bench" / "out"
PGZEN = [sys.executable, "-m", "pyapp"]
QUEUE = "backfill"  # pyapp.shifts.tasks.QUEUE (not imported: it needs Django set up)
DBNAME = "shifts_bench"

INSERT_COLUMNS = (
    "shift_id, local_starts_at, local_ends_at, computed_at, local_date,"
    " worked_minutes, time_zone_version, weekday, pay_class, crosses_midnight"
)
COMPUTED = """
select s.id, v.local_starts_at, v.local_ends_at, now(), v.local_date,
       v.worked_minutes, l.time_zone_version, v.weekday, v.pay_class,
       v.crosses_midnight
  from shift s
  join location l on l.id = s.location_id
 cross join lateral shift_annotation_values(s.starts_at, s.ends_at, l.time_zone) v
"""
# A straightforward version for reference: text time zone conversions repeated,
# numeric hours and extract(), text pay class.
STRAIGHTFORWARD = """
select s.id, s.starts_at at time zone l.time_zone,
       s.ends_at at time zone l.time_zone,
       (s.starts_at at time zone l.time_zone)::date,
       extract(isodow from s.starts_at at time zone l.time_zone),
       round(extract(epoch from s.ends_at - s.starts_at) / 3600, 2),
       (s.ends_at at time zone l.time_zone)::date
           > (s.starts_at at time zone l.time_zone)::date,
       case when extract(isodow from s.starts_at at time zone l.time_zone) >= 6
            then 'weekend'
            when extract(hour from s.starts_at at time zone l.time_zone) < 6
              or extract(hour from s.ends_at at time zone l.time_zone) >= 22
              or (s.ends_at at time zone l.time_zone)::date
                 > (s.starts_at at time zone l.time_zone)::date
            then 'night' else 'standard' end
  from shift s
  join location l on l.id = s.location_id
"""
# The reference the issue calibrates against: a keyset chain of plain statements,
# each its own durable transaction, ON CONFLICT DO NOTHING for the race.
STRAIGHTFORWARD_BATCH = f"""
insert into shift_annotation ({INSERT_COLUMNS})
{COMPUTED}
 where s.id > %s
 order by s.id
 limit %s
    on conflict (shift_id) do nothing
returning shift_id
"""
NAIVE_BATCH = f"""
insert into shift_annotation ({INSERT_COLUMNS})
{COMPUTED}
 where not exists (select from shift_annotation a where a.shift_id = s.id)
 limit %s
"""


def timed(conn: psycopg.Connection[Any], statement: str, params: Any = None) -> float:
    started = time.perf_counter()
    conn.execute(statement, params)
    return time.perf_counter() - started


def reset(conn: psycopg.Connection[Any]) -> None:
    conn.execute("truncate shift_annotation")
    conn.execute("vacuum analyze shift_annotation")
    conn.execute("checkpoint")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def keyset_chain(conn: psycopg.Connection[Any], size: int) -> tuple[float, list[float]]:
    times: list[float] = []
    cursor = 0
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        examined, _written, last_id, _ = conn.execute(
            BATCH_STATEMENT, [cursor, size, None, None]
        ).fetchone()
        times.append(time.perf_counter() - t0)
        if examined < size:
            return time.perf_counter() - started, times
        cursor = last_id


def straightforward_chain(conn: psycopg.Connection[Any], size: int) -> float:
    cursor = 0
    started = time.perf_counter()
    while True:
        ids = [row[0] for row in conn.execute(STRAIGHTFORWARD_BATCH, [cursor, size])]
        if len(ids) < size:
            return time.perf_counter() - started
        cursor = max(ids)


def naive_chain(
    conn: psycopg.Connection[Any], size: int, budget: float
) -> tuple[list[float], bool]:
    times: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < budget:
        t0 = time.perf_counter()
        written = conn.execute(NAIVE_BATCH, [size]).rowcount
        times.append(time.perf_counter() - t0)
        if written < size:
            return times, True
    return times, False


def split_costs(conn: psycopg.Connection[Any], rows: int) -> dict[str, float]:
    """Microseconds a row: read, computation (ours and straightforward), FK, write."""
    conn.execute("set max_parallel_workers_per_gather = 0")
    first = conn.execute("select min(id) from shift").fetchone()[0]
    where = f" where s.id < {first + rows}"
    us = 1e6 / rows
    read = timed(
        conn,
        "select count(*) from shift s join location l on l.id = s.location_id" + where,
    )
    # "t is not null" reads every column of t: without it the planner drops the
    # columns nothing reads, and with them the computation being measured.
    ours = timed(
        conn, f"select count(*) from ({COMPUTED}{where}) t where t is not null"
    )
    plain = timed(
        conn, f"select count(*) from ({STRAIGHTFORWARD}{where}) t where t is not null"
    )
    conn.execute(f"create temp table source as {COMPUTED}{where}")
    conn.execute("vacuum analyze source")
    scan = timed(conn, "select count(*) from source")
    conn.execute(
        "create table plain_copy (like shift_annotation including all)"
    )  # primary key, checks; no foreign key
    conn.execute(
        "create table fk_copy (like shift_annotation including all,"
        " foreign key (shift_id) references shift (id) on delete cascade)"
    )
    conn.execute("checkpoint")
    write = timed(conn, "insert into plain_copy select * from source")
    conn.execute("checkpoint")
    with_fk = timed(conn, "insert into fk_copy select * from source")
    conn.execute("drop table plain_copy, fk_copy, source")
    conn.execute("reset max_parallel_workers_per_gather")
    return {
        "read": read * us,
        "compute": (ours - read) * us,
        "compute_straightforward": (plain - read) * us,
        "write": (write - scan) * us,
        "fk_check": (with_fk - write) * us,
    }


def worker_run(target: DatabaseTarget, workers: int, size: int) -> float | None:
    """Seconds for ``workers`` real workers to finish a backfill of one chain each."""
    env = pgzen_env(target, PGZEN_SHIFTS_CHAINS=str(workers))
    procs = [
        subprocess.Popen(
            # The shifts queue only: seeding wrote audit rows (shift is audited),
            # and a worker on every queue would be making their reprs meanwhile.
            [*PGZEN, "worker", "--name", f"bench{n}", "--queues", QUEUE],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(workers)
    ]
    try:
        time.sleep(4)  # workers up before the clock starts
        with psycopg.connect(target.conninfo(), autocommit=True) as conn:
            conn.execute("delete from procrastinate_jobs")
            started = time.perf_counter()
            command = ["backfill", "shifts", "--batch-size", str(size)]
            result = subprocess.run(
                [sys.executable, "-m", "pyapp", *command],
                env=env,
                capture_output=True,
                text=True,
            )
            if result.returncode:
                print(result.stderr, file=sys.stderr)
                return None
            while conn.execute(
                "select exists (select from procrastinate_jobs"
                " where queueing_lock like 'shifts:%'"
                " and status in ('todo', 'doing'))"
            ).fetchone()[0]:
                time.sleep(0.2)
            return time.perf_counter() - started
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def plot(keyset: list[float], naive: list[float], size: int, total: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "shifts_backfill.png"
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=90)
    for times, label in ((keyset, "keyset cursor"), (naive, "anti-join + LIMIT")):
        xs = [100 * (i + 1) * size / total for i in range(len(times))]
        ax.plot(xs, [t * 1000 for t in times], ".", markersize=1.5, label=label)
    ax.set_xlabel("progress (% of shifts annotated)")
    ax.set_ylabel("batch time (ms)")
    ax.set_title(f"Shift annotations backfill, {total:,} shifts, batches of {size:,}")
    ax.set_xlim(0, 100)
    ax.legend(markerscale=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shifts", type=int, default=2_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--split-rows", type=int, default=500_000)
    parser.add_argument("--split-rounds", type=int, default=3)
    parser.add_argument("--naive-budget", type=float, default=120.0)
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument(
        "--rounds", type=int, default=3, help="single/chain pairs, alternated"
    )
    args = parser.parse_args()
    size = args.batch_size

    maintenance, embedded = server()
    try:
        target = fresh_database(maintenance, DBNAME, sql_only_fallback=True)
        with psycopg.connect(target.conninfo(), autocommit=True) as conn:
            version = conn.execute("show server_version").fetchone()[0]
            print(f"PostgreSQL {version}, {args.shifts:,} shifts, batches of {size:,}")
            conn.execute(
                "insert into location (name, time_zone) select z, z from unnest("
                "array['Europe/Berlin', 'Europe/London', 'America/New_York',"
                " 'America/Los_Angeles', 'Australia/Sydney', 'Pacific/Auckland',"
                " 'Asia/Kolkata', 'Asia/Kathmandu', 'Asia/Tokyo']) z"
            )
            seeding = timed(conn, "select shift_seed(%s)", [args.shifts])
            conn.execute("vacuum analyze shift")
            print(f"seeded in {seeding:.1f} s")

            # Single statement and chain alternate, round by round, on the same
            # rows: this machine's speed drifts by a fifth between minutes, and a
            # ratio of two runs made far apart would measure the drift.
            singles: list[float] = []
            chains: list[float] = []
            for round_ in range(args.rounds):
                reset(conn)
                singles.append(
                    timed(
                        conn,
                        f"insert into shift_annotation ({INSERT_COLUMNS}) {COMPUTED}",
                    )
                )
                reset(conn)
                batched, times = keyset_chain(conn, size)
                chains.append(batched)
                print(
                    f"round {round_ + 1}: single INSERT ... SELECT {singles[-1]:.1f} s,"
                    f" keyset chain {batched:.1f} s in {len(times)} batches,"
                    f" ratio {batched / singles[-1]:.2f}"
                )
            single = statistics.median(singles)
            batched = statistics.median(chains)
            print(
                f"median over {args.rounds} rounds: single {single:.1f} s,"
                f" chain {batched:.1f} s, ratio to single {batched / single:.2f}"
            )
            tenth = max(1, len(times) // 10)
            first = statistics.median(times[:tenth])
            last = statistics.median(times[-tenth - 1 : -1])
            p99 = percentile(times, 0.99)
            print(
                f"  last round: median batch first 10% {first * 1000:.1f} ms, last 10%"
                f" {last * 1000:.1f} ms, ratio {last / first:.2f};"
                f" p99 {p99 * 1000:.1f} ms, max {max(times) * 1000:.1f} ms"
            )

            reset(conn)
            plain = straightforward_chain(conn, size)
            print(
                f"straightforward keyset chain (reference): {plain:.1f} s,"
                f" ratio to single {plain / single:.2f}"
            )

            # One split is a few seconds of four statements, within this machine's
            # drift of a fifth: the median of rounds, each printed.
            splits = [
                split_costs(conn, min(args.split_rows, args.shifts))
                for _ in range(args.split_rounds)
            ]
            for costs in splits:
                print(
                    "  split round, per row (us): read {read:.2f}, computation"
                    " {compute:.2f} (straightforward {compute_straightforward:.2f}),"
                    " FK check {fk_check:.2f}, write {write:.2f}".format(**costs)
                )
            costs = {
                key: statistics.median(split[key] for split in splits)
                for key in splits[0]
            }
            print(
                f"per row (us), median of {len(splits)} rounds: read {{read:.2f}},"
                " computation {compute:.2f} (straightforward"
                " {compute_straightforward:.2f}), FK check {fk_check:.2f},"
                " write {write:.2f}; computation / write {ratio:.2f}".format(
                    ratio=costs["compute"] / costs["write"], **costs
                )
            )

            reset(conn)
            naive, finished = naive_chain(conn, size, args.naive_budget)
            reached = 100 * len(naive) * size / args.shifts
            state = "done" if finished else "reached"
            tenth_n = max(1, len(naive) // 10)
            print(
                f"naive anti-join batch: {len(naive)} batches in"
                f" {sum(naive):.1f} s ({reached:.0f}% {state}"
                f" within the budget); median first 10%"
                f" {statistics.median(naive[:tenth_n]) * 1000:.1f} ms, last 10%"
                f" {statistics.median(naive[-tenth_n:]) * 1000:.1f} ms"
            )
            path = plot(times, naive, size, args.shifts)
            print(f"plot: {path} ({path.stat().st_size // 1024} KiB)")

            if not args.skip_workers:
                for workers in (1, 2):
                    reset(conn)
                    seconds = worker_run(target, workers, size)
                    if seconds is None:
                        print(f"{workers} worker(s): failed")
                    else:
                        print(
                            f"{workers} worker(s), {workers} chain(s): {seconds:.1f} s,"
                            f" {args.shifts / seconds:,.0f} rows/s,"
                            f" ratio to single {seconds / single:.2f}"
                        )
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    main()
