"""The backfill registry's progress bar, chain state and batch size checks."""

import io
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from procrastinate.contrib.django import app

from pyapp.core.backfills import (
    MAX_BATCH_SIZE,
    Backfill,
    BatchSizeError,
    Progress,
    chain_state,
    follow,
    render_bar,
    row_count,
    validate_batch_size,
)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "at least 1, got 0"),
        (-5, "at least 1, got -5"),
        (MAX_BATCH_SIZE + 1, f"at most {MAX_BATCH_SIZE}"),
        ("ten", "whole number, got 'ten'"),
        (True, "whole number"),
    ],
)
def test_bad_batch_sizes_are_refused_with_the_reason(value, message):
    """Zero, negative, absurd and non-numeric sizes each get a clear error."""
    with pytest.raises(BatchSizeError, match=message):
        validate_batch_size(value)


def test_batch_size_from_text():
    """A size given on the command line as text is accepted."""
    assert validate_batch_size("500") == 500


def test_bar_shows_percent_rate_and_eta():
    """The bar reads done of the estimated total, the rate and the time left."""
    line = render_bar(Progress(done=250, remaining=750), rate=50.0, width=8)
    assert line.startswith("[##......]  25.0% 250/~1,000")
    assert "50 rows/s" in line and "ETA 0:00:15" in line


def test_bar_without_an_estimate():
    """With nothing known of what remains, the bar says how many are done."""
    assert "1,234 done" in render_bar(Progress(done=1234, remaining=None), None)


def backfill_with(prefix, progress):
    return Backfill(
        name="test",
        description="a test backfill",
        lock_prefix=prefix,
        start=lambda size: "started",
        progress=lambda: progress,
    )


@pytest.mark.django_db
def test_follow_ends_when_no_job_is_left():
    """With no job queued or running, follow prints one line and returns."""
    out = io.StringIO()
    state = follow(backfill_with("nothing-", Progress(10, 0)), out=out, interval=0)
    assert not state.running
    assert "10/~10" in out.getvalue()


@pytest.mark.django_db
def test_follow_says_when_no_worker_takes_the_job():
    """A job left waiting makes follow suggest starting a worker."""
    prefix = f"test-{uuid.uuid4().hex[:6]}-"
    app.configure_task("core.prune_finished_jobs", queueing_lock=prefix + "1").defer(
        timestamp=0
    )
    assert chain_state(prefix).todo == 1

    out = io.StringIO()
    state = follow(
        backfill_with(prefix, Progress(0, 5)),
        out=out,
        interval=0.05,
        timeout=0.2,
        hint_after=0,
    )
    assert state.running and state.todo == 1
    assert out.getvalue().count("is `pgzen worker` running?") == 1
    with connection.cursor() as cursor:
        cursor.execute(
            "delete from procrastinate_jobs where queueing_lock = %s", [prefix + "1"]
        )


def make_table(rows):
    """A throwaway table of ``rows`` rows (dropped with the test's transaction)."""
    with connection.cursor() as cursor:
        cursor.execute("create table row_count_probe (id int primary key, pad text)")
        cursor.execute(
            "insert into row_count_probe"
            " select g, repeat('x', 40) from generate_series(1, %s) as g",
            [rows],
        )


@pytest.mark.django_db
def test_row_count_of_a_small_table_is_exact():
    """Below the threshold the rows are counted, not estimated."""
    make_table(1234)

    assert row_count("row_count_probe", exact_below=1_000_000) == 1234


@pytest.mark.django_db
def test_row_count_of_a_large_table_is_the_planners_estimate_without_a_scan():
    """Above the threshold one EXPLAIN answers; it follows growth since ANALYZE."""
    make_table(5000)
    with connection.cursor() as cursor:
        cursor.execute("analyze row_count_probe")
        cursor.execute(
            "insert into row_count_probe"
            " select g, repeat('x', 40) from generate_series(5001, 10000) as g"
        )

    with CaptureQueriesContext(connection) as queries:
        estimate = row_count("row_count_probe", exact_below=1)

    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["explain"]
    assert 9000 <= estimate <= 11000
