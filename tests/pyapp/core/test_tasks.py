"""Housekeeping: old finished jobs are pruned, recent and failed ones kept."""

import asyncio

import pytest
from django.db import connection
from procrastinate.contrib.django import app
from procrastinate.manager import JobManager
from procrastinate.psycopg_connector import PsycopgConnector

from pyapp.core.tasks import KEEP_FAILED_HOURS, KEEP_FINISHED_HOURS, prune


def make_job(status, hours_ago):
    job = app.configure_task("core.prune_finished_jobs").defer(timestamp=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "update procrastinate_jobs set status = %s where id = %s", [status, job]
        )
        cursor.execute(
            "update procrastinate_events set at = now() - make_interval(hours => %s)"
            " where job_id = %s",
            [hours_ago, job],
        )
    return job


async def prune_as_a_worker_would():
    """Run prune() on a connector of its own, as inside `pgzen worker`."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    connector = PsycopgConnector(kwargs=params)
    await connector.open_async()
    try:
        await prune(JobManager(connector))
    finally:
        await connector.close_async()


def remaining(ids):
    with connection.cursor() as cursor:
        cursor.execute("select id from procrastinate_jobs where id = any(%s)", [ids])
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.django_db(transaction=True)
def test_prune_deletes_only_jobs_past_their_retention():
    """Old succeeded jobs go; recent ones, queued ones and failed ones stay."""
    old = make_job("succeeded", KEEP_FINISHED_HOURS + 1)
    recent = make_job("succeeded", 1)
    failed = make_job("failed", KEEP_FINISHED_HOURS + 1)
    ancient_failure = make_job("failed", KEEP_FAILED_HOURS + 1)
    queued = make_job("todo", KEEP_FAILED_HOURS + 1)
    ids = [old, recent, failed, ancient_failure, queued]

    asyncio.run(prune_as_a_worker_would())

    assert remaining(ids) == {recent, failed, queued}
    with connection.cursor() as cursor:
        cursor.execute("delete from procrastinate_jobs where id = any(%s)", [ids])
