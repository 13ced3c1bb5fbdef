"""A real `pgzen worker` killed mid-chain: the chain resumes, nothing twice, no gap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import psycopg
import pytest

from tests.support.postgres import pgzen_env, run_pgzen

pytestmark = pytest.mark.slow

TIMEOUT = 40 * float(os.environ.get("PGZEN_TEST_TIMEOUT_FACTOR", "1"))


def start_worker(target: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pyapp", "worker"],
        env=pgzen_env(target),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def batches_done(conn: psycopg.Connection[Any]) -> int:
    return int(
        conn.execute(
            "select count(*) from procrastinate_jobs"
            " where task_name = 'shifts.annotate_batch' and status = 'succeeded'"
        ).fetchone()[0]
    )


def chain_running(conn: psycopg.Connection[Any]) -> bool:
    return bool(
        conn.execute(
            "select exists (select from procrastinate_jobs"
            " where queueing_lock like 'shifts:%' and status in ('todo', 'doing'))"
        ).fetchone()[0]
    )


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_worker_killed_mid_chain_is_resumed_without_duplicates_or_gaps(
    pg_conn, pg_target
):
    """SIGKILL after some batches; restart, a new worker finishes every row once."""
    pg_conn.autocommit = True
    pg_conn.execute(
        "insert into location (name, time_zone) values ('b', 'Europe/Berlin')"
    )
    pg_conn.execute("select shift_seed(3000)")
    run_pgzen(pg_target, "backfill", "shifts", "--batch-size", "50")

    worker = start_worker(pg_target)
    try:
        wait_for(lambda: batches_done(pg_conn) >= 8, "the first batches")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    killed_at = pg_conn.execute("select count(*) from shift_annotation").fetchone()[0]
    assert 0 < killed_at < 3000

    # The job the worker held is stalled in "doing", or its successor waits in
    # "todo"; either way the restarter (here told heartbeats are stale now) resumes.
    run_pgzen(
        pg_target,
        "shell",
        "-c",
        "from pyapp.shifts.tasks import restart; restart(stalled_after=0)",
    )
    worker = start_worker(pg_target)
    try:
        wait_for(lambda: not chain_running(pg_conn), "the chain to finish")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(20)

    counts = pg_conn.execute(
        "select (select count(*) from shift),"
        " (select count(*) from shift_annotation),"
        " (select count(*) from shift s left join shift_annotation a"
        "   on a.shift_id = s.id where a.shift_id is null)"
    ).fetchone()
    assert counts == (3000, 3000, 0)
    assert (
        pg_conn.execute(
            "select count(*) from procrastinate_jobs"
            " where queueing_lock like 'shifts:%' and status in ('todo', 'doing')"
        ).fetchone()[0]
        == 0
    )
