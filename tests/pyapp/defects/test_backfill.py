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


def jobs() -> list[tuple[str, dict]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "select status, args from procrastinate_jobs"
            " where queueing_lock = 'type-change:grading.grade' order by id"
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
