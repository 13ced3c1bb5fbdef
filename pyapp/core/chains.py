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

from procrastinate import exceptions as procrastinate_exceptions

logger = logging.getLogger(__name__)


def defer_successor(task: Any, *, lock: str, **kwargs: Any) -> bool:
    """Defer ``task(**kwargs)`` under queueing lock ``lock``.

    Return False (and log it) when a job of the chain is already queued: a second
    chain is never started.
    """
    try:
        task.configure(queueing_lock=lock).defer(**kwargs)
    except procrastinate_exceptions.AlreadyEnqueued:
        logger.info(
            "chain %s already has a queued job",
            lock,
            extra={"action": "chain_already_queued", "lock": lock},
        )
        return False
    return True


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
