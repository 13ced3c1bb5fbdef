"""Procrastinate tasks of the online type change backfill (see type_change.py)."""

from __future__ import annotations

import logging

from django.db import connection, transaction
from procrastinate.contrib.django import app

from pyapp.audit.context import audited_task
from pyapp.core.chains import defer_successor, logged_batch
from pyapp.defects import type_change

logger = logging.getLogger(__name__)


@app.task(name="pyapp.defects.type_change_backfill")
@audited_task
def type_change_backfill(
    table: str, column: str, after: str | None, batch_size: int
) -> None:
    """Fill one batch of the new column; defer the next job if the batch was full."""
    lock = type_change.chain_lock(table, column)
    with (
        logged_batch("type_change_backfill", lock, batch_size) as record,
        transaction.atomic(),
    ):
        with connection.cursor() as cursor:
            cursor.execute(
                "select examined, last_key, written"
                "  from type_change_online_backfill(%s::regclass, %s, %s, %s)",
                [table, column, after, batch_size],
            )
            examined, last_key, written = cursor.fetchone()
        record.examined, record.written = examined, written
        record.fields["cursor"] = last_key
        # Deferred in the batch's own transaction: the cursor moves on only with
        # the rows it covered.
        if examined == batch_size:
            defer_successor(
                type_change_backfill,
                lock=lock,
                table=table,
                column=column,
                after=last_key,
                batch_size=batch_size,
            )


@app.periodic(cron="*/10 * * * *")
@app.task(name="pyapp.defects.type_change_backfill_watchdog")
def type_change_backfill_watchdog(timestamp: int) -> None:
    """Resume, from its last cursor, a chain whose last job failed or was aborted."""
    for change in type_change.pending():
        with connection.cursor() as cursor:
            cursor.execute(
                "select status, args ->> 'after', (args ->> 'batch_size')::integer"
                "  from procrastinate_jobs"
                " where queueing_lock = %s order by id desc limit 1",
                [change.lock],
            )
            row = cursor.fetchone()
        if row is None or row[0] not in ("failed", "aborted"):
            continue
        status, after, batch_size = row
        if type_change.defer_chain(
            type_change_backfill, change, after=after, batch_size=batch_size
        ):
            logger.warning(
                "resumed type change backfill %s after a %s batch",
                change.lock,
                status,
                extra={"action": "type_change_backfill_resumed", "chain": change.lock},
            )
