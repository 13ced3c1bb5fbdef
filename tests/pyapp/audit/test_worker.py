"""The chain under a real ``pgzen worker``: kept current, killed, resumed; the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.postgres import pgzen_env, run_pgzen

pytestmark = pytest.mark.slow

LOCK = "audit-reprs"


@pytest.fixture
def start_worker(pg_target, tmp_path) -> Iterator[Callable[[], subprocess.Popen]]:
    """Start ``pgzen worker`` processes on the test database; stop them after."""
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(started)}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "pyapp", "worker"],
            env=pgzen_env(pg_target),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> float:
    """Poll ``condition`` until true; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def scalar(conn, statement: str, params: Any = None) -> Any:
    return conn.execute(statement, params).fetchone()[0]


def test_an_orm_change_is_represented_within_seconds_while_a_worker_runs(
    pg_conn, pg_target, start_worker
):
    """A change saved through the ORM has its representation about a second later."""
    pg_conn.autocommit = True
    start_worker()
    run_pgzen(
        pg_target,
        "shell",
        "-c",
        "from pyapp.people.models import Person; Person.objects.create(name='Zoe')",
    )
    saved = time.monotonic()

    wait_until(
        lambda: scalar(pg_conn, "select count(*) from instance_repr") == 1,
        timeout=15,
        what="the representation of the new person",
    )

    assert time.monotonic() - saved < 10
    assert scalar(pg_conn, "select repr from instance_repr") == "Zoe"


def test_a_chain_killed_mid_batch_resumes_without_gaps_or_duplicates(
    pg_conn, pg_target, start_worker
):
    """SIGKILL the worker mid-chain; after a restart every row has one repr."""
    pg_conn.autocommit = True
    total = 4000
    pg_conn.execute(
        "insert into person (name) select 'P' || g from generate_series(1, %s) g",
        [total],
    )
    done = lambda: scalar(pg_conn, "select count(*) from instance_repr")  # noqa: E731

    # Queued before the worker starts, so its periodic restart finds a chain on.
    run_pgzen(pg_target, "backfill", "reprs", "--batch-size", "100")
    first = start_worker()
    wait_until(lambda: done() >= 1000, timeout=60, what="a third of the chain")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    at_kill = done()
    assert at_kill < total, "the chain finished before the kill; make it longer"

    # The dead worker's job stays in doing and holds the chain's lock; once the
    # worker has been silent past the stalled threshold (simulated), a start
    # aborts that job and resumes from the last representation.
    pg_conn.execute(
        "update procrastinate_workers set last_heartbeat = now() - interval '1 hour'"
    )
    restart = run_pgzen(pg_target, "backfill", "reprs", "--batch-size", "100")
    assert "reprs:" in restart.stdout
    start_worker()
    wait_until(
        lambda: (
            scalar(
                pg_conn,
                "select count(*) from procrastinate_jobs"
                " where queueing_lock = %s and status in ('todo', 'doing')",
                [LOCK],
            )
            == 0
            and done() == total
        ),
        timeout=90,
        what="the resumed chain to finish",
    )

    missing = scalar(
        pg_conn,
        "select count(*) from audit_log a where not exists"
        " (select from instance_repr r where r.audit_log_id = a.id)",
    )
    wrong = scalar(
        pg_conn,
        "select count(*) from audit_log a join instance_repr r on r.audit_log_id = a.id"
        " where r.repr <> a.new_row ->> 'name'",
    )
    statuses = dict(
        pg_conn.execute(
            "select status, count(*) from procrastinate_jobs"
            " where queueing_lock = %s group by status",
            [LOCK],
        ).fetchall()
    )
    assert (missing, wrong, done()) == (0, 0, total)
    assert statuses.get("failed", 0) == 0 and statuses.get("aborted", 0) <= 1


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("0", "batch size must be at least 1, got 0"),
        ("ten", "batch size must be a whole number, got 'ten'"),
    ],
)
def test_a_bad_batch_size_is_a_clear_error_and_starts_nothing(
    pg_conn, pg_target, size, message
):
    """``pgzen backfill reprs --batch-size`` refuses it before doing any work."""
    result = run_pgzen(
        pg_target, "backfill", "reprs", "--batch-size", size, check=False
    )

    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert scalar(pg_conn, "select count(*) from procrastinate_jobs") == 0
