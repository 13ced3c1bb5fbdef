"""Helpers shared by the self-rescheduling backfill chains.

One job is one batch. A batch reports how many rows it examined; the job defers its
successor (passing the keyset cursor on) only when that count equals the batch size.
The successor is deferred under the chain's queueing lock, so at most one job of a
chain waits in ``todo``; the running job itself is in ``doing`` and does not hold it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from procrastinate import exceptions as procrastinate_exceptions
from procrastinate.contrib.django.django_connector import DjangoConnector
from procrastinate.jobs import JobDeferrer
from procrastinate.manager import JobManager
from procrastinate.sql import queries as procrastinate_queries

logger = logging.getLogger(__name__)


def defer_successor(task: Any, *, lock: str, **kwargs: Any) -> bool:
    """Defer ``task(**kwargs)`` under queueing lock ``lock``.

    Inside a ``transaction.atomic()`` block the job is written on Django's own
    connection, in a savepoint of that transaction: it commits with the batch or not
    at all, whatever connector the app uses (a worker's is a separate pool). Outside
    one it is deferred through the app's connector.

    Return False (and log it) when a job of the chain is already queued: a second
    chain is never started, and the batch's transaction stays usable.
    """
    deferrer = task.configure(queueing_lock=lock)
    if connection.in_atomic_block:
        deferrer = JobDeferrer(job_manager=_django_job_manager(), job=deferrer.job)
    try:
        if connection.in_atomic_block:
            with transaction.atomic():  # a savepoint: a lock conflict undoes only it
                deferrer.defer(**kwargs)
        else:
            deferrer.defer(**kwargs)
    except procrastinate_exceptions.AlreadyEnqueued:
        logger.info(
            "chain %s already has a queued job",
            lock,
            extra={"action": "chain_already_queued", "lock": lock},
        )
        return False
    return True


def _django_job_manager() -> JobManager:
    """A job manager writing through Django's connection (the current transaction)."""
    return JobManager(connector=DjangoConnector())


def stalled_jobs(cursor: Any, task_name: str, stalled_after: float) -> list[Any]:
    """Return the ``doing`` jobs of ``task_name`` whose worker sent no heartbeat.

    Rows are Procrastinate's job rows (id first, queueing lock sixth).
    """
    cursor.execute(
        procrastinate_queries["select_stalled_jobs_by_heartbeat"],
        {
            "queue": None,
            "task_name": task_name,
            "seconds_since_heartbeat": stalled_after,
        },
    )
    return list(cursor.fetchall())


def finish_job(cursor: Any, job_id: int, status: str) -> None:
    """Move job ``job_id`` to a final ``status`` (aborted, failed), keeping its row."""
    cursor.execute(
        procrastinate_queries["finish_job"],
        {"job_id": job_id, "status": status, "delete_job": False},
    )


@dataclass
class BatchLog:
    """The numbers one batch reports: rows examined and written, its duration."""

    action: str
    chain: str
    batch_size: int
    examined: int = 0
    written: int = 0
    fields: dict[str, Any] = field(default_factory=dict)


@contextmanager
def logged_batch(action: str, chain: str, batch_size: int) -> Iterator[BatchLog]:
    """Time a batch and log one INFO record with its structured fields."""
    record = BatchLog(action=action, chain=chain, batch_size=batch_size)
    started = time.perf_counter()
    yield record
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    logger.info(
        "%s batch: %d examined, %d written in %.1f ms",
        chain,
        record.examined,
        record.written,
        duration_ms,
        extra={
            "action": action,
            "chain": chain,
            "batch_size": batch_size,
            "examined": record.examined,
            "written": record.written,
            "duration_ms": duration_ms,
            **record.fields,
        },
    )
