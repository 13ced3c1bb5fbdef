"""The shifts backfill: jobs, cursors, range chains, refresh, restarts, the CLI."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pyapp.core import backfills
from pyapp.core.backfills import AlreadyRunning, BatchSizeError
from pyapp.shifts import tasks
from tests.pyapp.shifts.conftest import annotated, queued_jobs, run_queued, sql

pytestmark = pytest.mark.usefixtures("committed")


def test_the_backfill_is_registered_for_the_cli():
    """`pgzen backfill shifts` and `pgzen status` know it by name and prefix."""
    backfill = backfills.registered()["shifts"]

    assert backfill.lock_prefix == tasks.LOCK_PREFIX
    assert backfill.default_batch_size == tasks.DEFAULT_BATCH_SIZE


def test_a_full_batch_defers_its_successor_with_the_cursor(make_shifts):
    """Examined == batch size: one successor, same chain, cursor = last id."""
    ids = make_shifts(5)

    result = tasks.annotate_batch(chain="shifts:backfill:t", batch_size=2)

    assert result == {"examined": 2, "written": 2, "last_id": ids[1]}
    (job,) = queued_jobs()
    assert job["lock"] == "shifts:backfill:t"
    assert job["args"]["after_id"] == ids[1]
    assert job["args"]["batch_size"] == 2


def test_a_short_batch_defers_nothing(make_shifts):
    """Examined < batch size ends the chain; no query asks whether work remains."""
    make_shifts(3)

    result = tasks.annotate_batch(chain="shifts:backfill:t", batch_size=5)

    assert result["examined"] == 3
    assert queued_jobs() == []


def test_a_chain_over_annotated_rows_neither_stops_nor_loops(make_shifts):
    """Rows already current: examined, not written; the chain goes on to the end."""
    ids = make_shifts(9)
    sql(
        "update shift set ends_at = ends_at + interval '1 minute' where id <= %s",
        [ids[5]],
    )

    tasks.annotate_batch(chain="shifts:backfill:t", batch_size=3)
    results = run_queued()

    assert [r["written"] for r in results] == [0, 3, 0]
    assert annotated() == 9


def test_ranges_split_the_key_space_without_gap_or_overlap():
    """Equal spans, the last open-ended, never more ranges than batches."""
    assert tasks.split_ranges(1, 100, 3, 10) == [(0, 34), (34, 68), (68, None)]
    assert tasks.split_ranges(1, 100, 4, 60) == [(0, 50), (50, None)]
    assert tasks.split_ranges(7, 7, 2, 1000) == [(6, None)]


def test_two_range_chains_annotate_every_shift_once(make_shifts):
    """One chain per range, one lock each, at most one queued job per chain."""
    make_shifts(40)

    message = tasks.start(batch_size=6, chains=2)

    assert "started 2 chain(s)" in message
    locks = {job["lock"] for job in queued_jobs()}
    assert len(locks) == 2 and all(
        lock.startswith("shifts:backfill:") for lock in locks
    )
    results = run_queued()
    assert annotated() == 40
    assert sum(r["written"] for r in results) == 40
    assert {r["lock"] for r in results} == locks


def test_a_second_start_is_a_no_op_saying_a_chain_is_running(make_shifts):
    """AlreadyRunning from start(); the CLI prints it and queues nothing more."""
    make_shifts(10)
    tasks.start(batch_size=5, chains=1)

    with pytest.raises(AlreadyRunning, match="already queued"):
        tasks.start(batch_size=5)
    out = io.StringIO()
    call_command("backfill", "shifts", stdout=out)

    assert "a chain is already" in out.getvalue()
    assert len(queued_jobs()) == 1


def test_a_batch_size_below_one_is_a_clear_error():
    """0 and below: refused by the task and by the CLI, nothing queued."""
    with pytest.raises(BatchSizeError, match="at least 1"):
        tasks.annotate_batch(chain="shifts:backfill:t", batch_size=0)
    with pytest.raises(CommandError, match="batch size must be at least 1, got -3"):
        call_command("backfill", "shifts", "--batch-size", "-3")
    assert queued_jobs() == []


def test_a_time_zone_change_is_refreshed_by_a_chain_that_marks_it_current(make_shifts):
    """Stale location: a refresh chain rewrites its rows, then records the version."""
    make_shifts(7)
    tasks.annotate_batch(chain="shifts:backfill:t", batch_size=100)
    sql("update location set time_zone = 'Asia/Tokyo'")

    assert tasks.start_refresh_chains(batch_size=3) == 1
    results = run_queued()

    assert [r["written"] for r in results] == [3, 3, 1]
    assert sql("select distinct time_zone_version from shift_annotation") == [(2,)]
    assert sql("select annotations_version from location") == [(2,)]
    assert tasks.start_refresh_chains(batch_size=3) == 0


def test_the_restarter_resumes_a_failed_chain_from_its_cursor(make_shifts):
    """The latest job failed: the same batch is deferred again, same arguments."""
    ids = make_shifts(6)
    tasks.annotate_batch(chain="shifts:backfill:t", batch_size=2)
    (job,) = queued_jobs()
    sql("update procrastinate_jobs set status = 'failed' where id = %s", [job["id"]])

    restarted = tasks.restart()

    assert restarted["failed"] == ["shifts:backfill:t"]
    (again,) = queued_jobs()
    assert again["args"] == job["args"] and again["args"]["after_id"] == ids[1]
    run_queued()
    assert annotated() == 6


def _job_status(job_id: int) -> str:
    return sql("select status from procrastinate_jobs where id = %s", [job_id])[0][0]


def test_a_stalled_job_whose_batch_committed_is_failed_not_rerun(make_shifts):
    """Its successor exists (and runs elsewhere): re-running it would double the
    chain, so the restarter marks it failed and queues nothing."""
    make_shifts(8)
    tasks.annotate_batch(chain="shifts:backfill:t", batch_size=2)
    (first,) = queued_jobs()
    sql(  # a worker took it, committed its batch and successor, then died
        "update procrastinate_jobs set status = 'doing', worker_id = null"
        " where id = %s",
        [first["id"]],
    )
    tasks.annotate_batch(**first["args"])
    (second,) = queued_jobs()
    (live,) = sql("insert into procrastinate_workers default values returning id")
    sql(  # ... and a live worker is running the successor now
        "update procrastinate_jobs set status = 'doing', worker_id = %s where id = %s",
        [live[0], second["id"]],
    )

    assert tasks.recover_stalled() == []

    assert _job_status(first["id"]) == "failed"
    assert _job_status(second["id"]) == "doing"
    assert queued_jobs() == []


def test_a_stalled_job_without_a_successor_is_run_again(make_shifts):
    """Its batch rolled back with the worker: the same job goes back to the queue."""
    make_shifts(8)
    tasks.annotate_batch(chain="shifts:backfill:t", batch_size=2)
    (first,) = queued_jobs()
    sql(
        "update procrastinate_jobs set status = 'doing', worker_id = null"
        " where id = %s",
        [first["id"]],
    )

    assert tasks.recover_stalled() == [first["id"]]

    (again,) = queued_jobs()
    assert again == first
    run_queued()
    assert annotated() == 8


def test_status_shows_the_chain_and_the_counts(make_shifts):
    """`pgzen status` lists the shifts backfill with done and remaining rows."""
    make_shifts(4)
    tasks.start(batch_size=10, chains=1)
    out = io.StringIO()

    call_command("status", stdout=out)

    assert "shifts: queued (1 job(s) waiting for a worker); 0 done, ~4 remaining" in (
        out.getvalue()
    )


def test_seed_makes_locations_and_unannotated_shifts():
    """`pgzen seed --shifts 30`: the demo locations, 30 shifts, no annotation yet."""
    out = io.StringIO()

    call_command("seed", "--shifts", "30", stdout=out)
    call_command("seed", stdout=io.StringIO())  # idempotent for locations

    assert sql("select count(*) from location")[0][0] == 9
    assert sql("select count(*) from shift")[0][0] == 30
    assert annotated() == 0
    assert "Shifts: 30 inserted" in out.getvalue()


def test_progress_switches_to_estimates_above_the_threshold(make_shifts, monkeypatch):
    """Past the threshold, progress reads the planner's estimates, never count(*)."""
    make_shifts(300)
    sql("analyze shift, shift_annotation")
    monkeypatch.setattr(backfills, "EXACT_COUNT_BELOW", 1)

    with CaptureQueriesContext(connection) as queries:
        progress = tasks.progress()

    assert not [q for q in queries.captured_queries if "count(" in q["sql"]]
    assert 270 <= progress.remaining <= 330
