"""How long a column type change holds its ACCESS EXCLUSIVE lock, in place vs online.

Two copies of the defect table of migrations/0020 (text risk ratings) are filled with
the same N rows. In the same run:

- in place: ``change_column_type`` (one ALTER TABLE ... USING CASE, rewriting the
  table) converts the first copy;
- online: ``type_change_online_start``, the keyset batches of
  ``type_change_online_backfill`` (the statement each job of the Procrastinate chain
  runs), then ``type_change_online_finish`` convert the second copy.

For each it reports the time the lock was held (from its acquisition to the end of
the function, as the function reports it, plus the commit), the wall time of the
call, and the longest a concurrent reader (a primary-key lookup every few
milliseconds, on another connection) was kept waiting. The baseline is the in-place
conversion; the ratio says how much shorter the online path's final step holds it.

    .venv/bin/python bench/type_change_lock.py [--rows 1000000] [--batch-size 10000]

Without ``--database-url`` it runs on an embedded PostgreSQL 18 in
``<data dir>/bench`` (database ``pgzen_bench_type_change``, recreated each run).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db.config import data_dir, parse_database_url  # noqa: E402

DBNAME = "pgzen_bench_type_change"
MAPPING = '{"HIGH": 3, "MEDIUM": 2, "LOW": 1}'
HELD = re.compile(r"held its ACCESS EXCLUSIVE lock for ([0-9.]+) ms")


@dataclass
class Probe:
    """A reader doing primary-key lookups on another connection, timing each."""

    conninfo: str
    table: str
    rows: int
    samples: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Probe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)

    def _run(self) -> None:
        query = sql.SQL("select risk from {} where id = %s").format(
            sql.Identifier(self.table)
        )
        # Not prepared: a prepared lookup fails with "cached plan must not change
        # result type" once the column's type has changed (docs/type-changes.md).
        with psycopg.connect(
            self.conninfo, autocommit=True, prepare_threshold=None
        ) as conn:
            while not self._stop.is_set():
                started = time.perf_counter()
                conn.execute(query, [random.randint(1, self.rows)]).fetchone()
                self.samples.append((started, time.perf_counter() - started))
                time.sleep(0.002)

    def longest_wait(self, start: float, end: float) -> float:
        """Longest lookup that was running at some point in [start, end]."""
        waits = [d for s, d in self.samples if s <= end and s + d >= start]
        return max(waits, default=0.0)


@dataclass
class Measure:
    label: str
    held_ms: float
    wall_ms: float
    reader_wait_ms: float
    extra: str = ""


def create_table(conn: psycopg.Connection, name: str, rows: int) -> None:
    ddl = (ROOT / "migrations" / "0020_defect.sql").read_text()
    ddl = re.sub(r"\bdefect(?=\b|_)", name, ddl)
    conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(name)))
    conn.execute(ddl)  # type: ignore[arg-type]
    conn.execute(
        sql.SQL(
            "insert into {} (description, risk, raised_at)"
            " select 'defect ' || g, (array['HIGH', 'MEDIUM', 'LOW'])[1 + g %% 3],"
            "        now() - g * interval '1 minute'"
            "   from generate_series(1, %s) as g"
        ).format(sql.Identifier(name)),
        [rows],
    )
    conn.execute(sql.SQL("vacuum analyze {}").format(sql.Identifier(name)))


def held_ms(notices: list[str]) -> float:
    for message in reversed(notices):
        match = HELD.search(message)
        if match:
            return float(match.group(1))
    raise RuntimeError(f"no lock-held notice in {notices}")


def timed_commit(
    conn: psycopg.Connection, call: str, params: list[object]
) -> tuple[float, float, float]:
    """Run ``call`` and commit; return (start, end, commit duration) in seconds."""
    start = time.perf_counter()
    conn.execute(call, params)  # type: ignore[arg-type]
    before_commit = time.perf_counter()
    conn.commit()
    end = time.perf_counter()
    return start, end, end - before_commit


def in_place(conn: psycopg.Connection, probe: Probe, notices: list[str]) -> Measure:
    notices.clear()
    start, end, commit = timed_commit(
        conn,
        "select * from change_column_type('defect_in_place', 'risk', 'integer', %s)",
        [MAPPING],
    )
    return Measure(
        "in place (ALTER ... USING CASE)",
        held_ms(notices) + commit * 1000,
        (end - start) * 1000,
        probe.longest_wait(start, end) * 1000,
    )


def online(
    conn: psycopg.Connection, probe: Probe, notices: list[str], batch_size: int
) -> tuple[Measure, str]:
    started = time.perf_counter()
    conn.execute(
        "select type_change_online_start('defect_online', 'risk', 'integer', %s)",
        [MAPPING],
    )
    conn.commit()
    start_s = time.perf_counter() - started

    backfill_started = time.perf_counter()
    after, batches = None, 0
    while True:
        examined, after, _ = conn.execute(
            "select * from type_change_online_backfill("
            "  'defect_online', 'risk', %s, %s)",
            [after, batch_size],
        ).fetchone()
        conn.commit()
        batches += 1
        if examined < batch_size:
            break
    backfill_s = time.perf_counter() - backfill_started

    notices.clear()
    start, end, commit = timed_commit(
        conn, "select type_change_online_finish('defect_online', 'risk')", []
    )
    phases = (
        f"start {start_s * 1000:.0f} ms, backfill {backfill_s:.1f} s in {batches} "
        f"batches of {batch_size}, finish {(end - start) * 1000:.0f} ms in all"
    )
    return (
        Measure(
            "online (final swap step)",
            held_ms(notices) + commit * 1000,
            (end - start) * 1000,
            probe.longest_wait(start, end) * 1000,
        ),
        phases,
    )


def connect_target(url: str | None) -> tuple[str, object | None]:
    if url:
        target = parse_database_url(url)
        server = None
    else:
        from db.embedded import EmbeddedServer

        server = EmbeddedServer(data_dir() / "bench", dbname="postgres")
        target = server.start()
    with psycopg.connect(target.conninfo(), autocommit=True) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(DBNAME)
            )
        )
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(DBNAME)))
    return target.with_dbname(DBNAME).conninfo(), server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args()

    conninfo, server = connect_target(args.database_url)
    try:
        with psycopg.connect(conninfo, autocommit=True) as setup:
            version = setup.execute("show server_version").fetchone()[0]
            procedures = ROOT / "procedures" / "type_change.sql"
            setup.execute(procedures.read_text().encode())
            loading = time.perf_counter()
            create_table(setup, "defect_in_place", args.rows)
            create_table(setup, "defect_online", args.rows)
            load_s = time.perf_counter() - loading

        notices: list[str] = []
        with psycopg.connect(conninfo) as conn:
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            with Probe(conninfo, "defect_in_place", args.rows) as probe:
                baseline = in_place(conn, probe, notices)
            with Probe(conninfo, "defect_online", args.rows) as probe:
                swap, phases = online(conn, probe, notices, args.batch_size)
            for table in ("defect_in_place", "defect_online"):
                counts = conn.execute(
                    sql.SQL(
                        "select pg_typeof(risk)::text, count(*), sum(risk) from {}"
                        " group by 1"
                    ).format(sql.Identifier(table))
                ).fetchall()
                expected = args.rows * 2
                assert counts[0][:2] == ("integer", args.rows), counts
                assert abs(counts[0][2] - expected) <= 3, counts
    finally:
        if server is not None:
            server.stop()  # type: ignore[attr-defined]

    print(
        f"PostgreSQL {version}; {args.rows:,} defects per table; "
        f"{os.cpu_count()} CPUs; Python {platform.python_version()}; "
        f"loaded both tables in {load_s:.1f} s"
    )
    print(f"{'':34} {'lock held':>12} {'call wall':>12} {'reader waited':>14}")
    for measure in (baseline, swap):
        print(
            f"{measure.label:34} {measure.held_ms:9.1f} ms {measure.wall_ms:9.1f} ms"
            f" {measure.reader_wait_ms:11.1f} ms"
        )
    print(f"online phases: {phases}")
    ratio = baseline.held_ms / swap.held_ms if swap.held_ms else float("inf")
    print(f"lock held, in place / online swap: {ratio:,.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
