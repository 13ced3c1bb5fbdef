"""The type-change backfill chain's tasks, run in-process on the test database."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from pyapp.defects.tasks import type_change_backfill, type_change_backfill_watchdog
from pyapp.defects.type_change import pending, progress


@pytest.fixture
def online_change(db: None) -> str:
    """A table of five text ratings with an online change to integer started."""
    with connection.cursor() as cursor:
        cursor.execute(
            "create table grading (id integer primary key, grade text not null);"
            " insert into grading select g, (array['A', 'B'])[1 + g % 2]"
            "   from generate_series(1, 5) as g;"
            " select type_change_online_start('grading', 'grade', 'integer',"
            '                                 \'{"A": 1, "B": 2}\')'
        )
    return "grading"


@pytest.fixture
def composite_change(db: None) -> str:
    """A table keyed by (sheet, line) with an online change to integer started."""
    with connection.cursor() as cursor:
        cursor.execute(
            "create table grading_line (sheet integer, line text, grade text not null,"
            "                           primary key (sheet, line));"
            " insert into grading_line values (1, 'a', 'A'), (1, 'b', 'B'),"
            "   (1, 'c', 'A'), (2, 'a', 'B'), (2, 'b', 'A');"
            " select type_change_online_start('grading_line', 'grade', 'integer',"
            '                                 \'{"A": 1, "B": 2}\')'
        )
    return "grading_line"


def jobs(lock: str = "type-change:grading.grade") -> list[tuple[str, dict]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "select status, args from procrastinate_jobs"
            " where queueing_lock = %s order by id",
            [lock],
        )
        return [(status, json.loads(args)) for status, args in cursor.fetchall()]


def test_a_full_batch_defers_its_successor_with_the_cursor(online_change):
    """A batch of 2 over 5 rows fills 2 and queues the next job after key 2."""
    assert [c.new_column for c in pending()] == ["grade_new"]

    type_change_backfill(table="grading", column="grade", after=None, batch_size=2)

    assert progress().done == 2
    assert jobs() == [
        (
            "todo",
            {"table": "grading", "column": "grade", "after": "2", "batch_size": 2},
        )
    ]


def test_a_short_batch_ends_the_chain(online_change):
    """The last, short batch fills the rest and queues nothing."""
    type_change_backfill(table="grading", column="grade", after="2", batch_size=5)

    assert progress().remaining == 2  # rows 1 and 2 were not in this batch
    assert jobs() == []


def test_the_watchdog_resumes_a_failed_chain_from_its_cursor(online_change):
    """A chain whose last job failed is deferred again with that job's cursor."""
    args = {"table": "grading", "column": "grade", "after": "4", "batch_size": 2}
    with connection.cursor() as cursor:
        cursor.execute(
            "insert into procrastinate_jobs"
            " (queue_name, task_name, queueing_lock, args, status)"
            " values ('default', %s, 'type-change:grading.grade', %s, 'failed')",
            [type_change_backfill.name, json.dumps(args)],
        )

    type_change_backfill_watchdog(timestamp=0)

    assert jobs() == [("failed", args), ("todo", args)]


def test_a_composite_key_chain_passes_its_json_cursor_on(composite_change):
    """Over a (sheet, line) key each job queues the next after the last row value."""
    lock = "type-change:grading_line.grade"
    args = {"table": "grading_line", "column": "grade", "after": None, "batch_size": 2}
    cursors = []
    while True:
        type_change_backfill(**args)
        queued = [job for status, job in jobs(lock) if status == "todo"]
        if not queued:
            break
        (args,) = queued
        cursors.append(args["after"])
        # The worker takes the job: it leaves todo, freeing the queueing lock.
        with connection.cursor() as cursor:
            cursor.execute(
                "update procrastinate_jobs set status = 'doing'"
                " where queueing_lock = %s and status = 'todo'",
                [lock],
            )

    assert cursors == ['["1", "b"]', '["2", "a"]']
    assert progress().remaining == 0
