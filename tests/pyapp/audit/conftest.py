"""Fixtures for the audit tests: people factories, committed data, a chain runner."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection

from pyapp.audit import tasks
from pyapp.people.models import Address, Person


@pytest.fixture
def committed(transactional_db: Any) -> Iterator[None]:
    """Really commit (the chain reads only finished transactions); start and end empty.

    pytest-django's flush skips unmanaged tables (Procrastinate's too), and other
    tests' commits may have left rows in them, so they are emptied before and after;
    the owner may prune the audit log.
    """
    _empty_audited_tables()
    yield
    _empty_audited_tables()


def _empty_audited_tables() -> None:
    with connection.cursor() as cursor:
        cursor.execute("truncate person, address cascade")
        cursor.execute("delete from audit_log")
        cursor.execute("delete from procrastinate_jobs")
        cursor.execute("delete from procrastinate_workers")


@pytest.fixture
def make_person() -> Callable[..., Person]:
    """Make a person with ``addresses`` addresses, through the ORM."""

    def make(name: str = "Ada Lovelace", addresses: int = 0, **fields: Any) -> Person:
        person = Person.objects.create(name=name, **fields)
        for number in range(addresses):
            Address.objects.create(
                person=person,
                street=f"{number + 1} Main Street",
                suburb="Springfield",
                postcode="3000",
                country="AU",
            )
        return person

    return make


def sql(statement: str, params: Any = None) -> list[tuple]:
    """Run one statement on Django's connection; return its rows, if any."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def queued_chain_jobs() -> list[dict[str, Any]]:
    """The reprs chain's jobs waiting in the queue: their ids and arguments."""
    return [
        {"id": job_id, "args": _loads(args)}
        for job_id, args in sql(
            "select id, args from procrastinate_jobs"
            " where queueing_lock = %s and status = 'todo' order by id",
            [tasks.LOCK],
        )
    ]


def run_chain(batch_size: int) -> list[dict[str, Any]]:
    """Run the chain in this process as a worker would: job by job, until it stops."""
    sql("delete from procrastinate_jobs where queueing_lock = %s", [tasks.LOCK])
    results = [tasks.build_reprs(batch_size=batch_size)]
    while jobs := queued_chain_jobs():
        (job,) = jobs
        sql("delete from procrastinate_jobs where id = %s", [job["id"]])
        results.append(tasks.build_reprs(**job["args"]))
    return results


def _loads(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else value
