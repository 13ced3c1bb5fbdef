"""The backfill of online column type changes, as a registered pgzen backfill.

``type_change_online_start`` (procedures/type_change.sql) adds a new column and a
trigger keeping it in step with the old one. This module fills the rows written before
that, in batches: ``pgzen backfill type-change`` starts one chain per change in
progress (queueing lock ``type-change:<table>.<column>``), each job running one call
of ``type_change_online_backfill`` and deferring its successor with the cursor it
reached when its batch was full. ``type_change_online_finish`` then swaps the columns.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from pyapp.core.backfills import AlreadyRunning, Backfill, Progress

NAME = "type-change"
LOCK_PREFIX = "type-change:"
DEFAULT_BATCH_SIZE = 5000


@dataclass(frozen=True)
class PendingChange:
    """An online type change in progress: ``table`` as regclass text (quoted)."""

    table: str
    column: str
    new_column: str

    @property
    def lock(self) -> str:
        return chain_lock(self.table, self.column)


def chain_lock(table: str, column: str) -> str:
    """Return the queueing lock of the chain filling ``table.column``'s new column."""
    return f"{LOCK_PREFIX}{table}.{column}"


def pending() -> list[PendingChange]:
    """Return the online type changes in progress, from the database's catalogue."""
    with connection.cursor() as cursor:
        cursor.execute(
            "select table_name::text, column_name, new_column"
            "  from type_change_online_pending()"
        )
        return [PendingChange(*row) for row in cursor.fetchall()]


def start(batch_size: int) -> str:
    """Start a chain for every change in progress that has none queued."""
    from pyapp.defects.tasks import type_change_backfill

    changes = pending()
    if not changes:
        return f"{NAME}: no online type change in progress"
    started = [
        change
        for change in changes
        if defer_chain(type_change_backfill, change, after=None, batch_size=batch_size)
    ]
    if not started:
        raise AlreadyRunning(f"{NAME}: every change in progress has a chain queued")
    names = ", ".join(f"{c.table}.{c.column} -> {c.new_column}" for c in started)
    return f"{NAME}: started {len(started)} chain(s) of {batch_size} rows: {names}"


def defer_chain(
    task: object, change: PendingChange, *, after: str | None, batch_size: int
) -> bool:
    """Defer the first (or a resumed) job of ``change``'s chain."""
    from pyapp.core.chains import defer_successor

    return defer_successor(
        task,
        lock=change.lock,
        table=change.table,
        column=change.column,
        after=after,
        batch_size=batch_size,
    )


def progress() -> Progress:
    """Rows in step and rows still to fill, over every change in progress."""
    done = remaining = 0
    with connection.cursor() as cursor:
        for change in pending():
            cursor.execute(
                "select done, remaining"
                "  from type_change_online_progress(%s::regclass, %s)",
                [change.table, change.column],
            )
            row_done, row_remaining = cursor.fetchone()
            done += row_done
            remaining += row_remaining
    return Progress(done=done, remaining=remaining)


BACKFILL = Backfill(
    name=NAME,
    description="fill the new column of each online column type change in progress",
    lock_prefix=LOCK_PREFIX,
    start=start,
    progress=progress,
    default_batch_size=DEFAULT_BATCH_SIZE,
)
