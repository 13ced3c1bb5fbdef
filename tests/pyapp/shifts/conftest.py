"""Fixtures for the shifts tests: committed data, locations, an in-process worker."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection

from pyapp.shifts import tasks


@pytest.fixture
def committed(transactional_db: Any) -> Iterator[None]:
    """Really commit (chains run batch after batch); clean up after.

    pytest-django's flush skips unmanaged tables, so they are emptied here.
    """
    yield
    with connection.cursor() as cursor:
        cursor.execute("truncate location, shift, shift_annotation")
        cursor.execute("delete from procrastinate_jobs")


def sql(statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on Django's connection; return its rows, if any."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def make_shifts() -> Callable[..., list[int]]:
    """Make ``count`` unannotated shifts at a new location in ``zone``."""

    def make(count: int, zone: str = "Europe/Berlin") -> list[int]:
        sql(
            "insert into location (name, time_zone) values (%s, %s)"
            " on conflict (name) do nothing",
            [zone, zone],
        )
        sql("select shift_seed(%s)", [count])
        return [row[0] for row in sql("select id from shift order by id")]

    return make


def queued_jobs() -> list[dict[str, Any]]:
    """The shifts batch jobs waiting in the queue, oldest first."""
    return [
        {"id": job_id, "lock": lock, "args": _loads(args)}
        for job_id, lock, args in sql(
            "select id, queueing_lock, args from procrastinate_jobs"
            " where task_name = %s and status = 'todo' order by id",
            [tasks.annotate_batch.name],
        )
    ]


def run_queued() -> list[dict[str, Any]]:
    """Work off the queue in this process as one worker would; return the results."""
    results = []
    while jobs := queued_jobs():
        job = jobs[0]
        sql(
            "update procrastinate_jobs set status = 'succeeded' where id = %s",
            [job["id"]],
        )
        results.append({"lock": job["lock"], **tasks.annotate_batch(**job["args"])})
    return results


def annotated() -> int:
    return int(sql("select count(*) from shift_annotation")[0][0])


def _loads(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else value
