"""The "shifts" backfill: shift annotations written by chains of one-batch jobs.

One job is one batch: one call of ``shift_annotation_backfill_batch`` (a single SQL
statement, a CTE chain ending in ``INSERT ... RETURNING``), which reports the rows it
examined, the rows it wrote and the last id it examined. The job defers its successor,
with that id as the cursor, only when the batch examined ``batch_size`` rows. Rows
examined, not written: shifts whose annotation is already current are passed over
without a write, and must neither end the chain nor hold it in place.

Chains:

``shifts:backfill:<after>-<until>``
    :func:`start` (``pgzen backfill shifts``) splits the shift ids into one range per
    live worker and starts a chain per range; each walks its range, so the ranges
    are done side by side on as many workers as there are, on any machine.
``shifts:refresh:<location id>``
    a location whose time zone changed has stale annotations; a chain walks that
    location's shifts (index ``shift_location_id_id_idx``), rewrites them, and
    finally marks the location current at the version it started from.

Each chain has its own queueing lock, so at most one of its jobs waits at a time.
A batch is idempotent (a current annotation is never rewritten, a duplicate never
inserted), so re-running the batch a dead job was doing costs time, not data. The
periodic :func:`restart_dead_chains` resumes chains whose worker died (from the
cursor their last job was given) and starts refresh chains for stale locations.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from procrastinate.contrib.django import app
from procrastinate.sql import queries as procrastinate_queries

from pyapp.core.backfills import (
    AlreadyRunning,
    Progress,
    chain_state,
    row_count,
    validate_batch_size,
)
from pyapp.core.chains import (
    defer_successor,
    finish_job,
    logged_batch,
    stalled_jobs,
)
from pyapp.shifts.batch import BATCH_STATEMENT

logger = logging.getLogger(__name__)

#: Every chain of this backfill has a queueing lock starting with this prefix.
LOCK_PREFIX = "shifts:"
QUEUE = "backfill"
DEFAULT_BATCH_SIZE = 1000
#: A running job whose worker sent no heartbeat for this long is given up.
STALLED_AFTER_SECONDS = 30.0
#: ``pgzen backfill shifts`` starts one chain per live worker, at most this many.
MAX_CHAINS = 16
#: Environment variable fixing the number of range chains (else: live workers).
CHAINS_ENV = "PGZEN_SHIFTS_CHAINS"


@dataclass(frozen=True)
class BatchResult:
    """What one batch did: rows examined, rows written, the last id examined."""

    examined: int
    written: int
    last_id: int | None


def run_batch(
    after_id: int,
    batch_size: int,
    until_id: int | None = None,
    location_id: int | None = None,
) -> BatchResult:
    """Annotate the next ``batch_size`` shifts after ``after_id``: one statement."""
    with connection.cursor() as cursor:
        cursor.execute(BATCH_STATEMENT, [after_id, batch_size, until_id, location_id])
        examined, written, last_id, _ = cursor.fetchone()
    return BatchResult(int(examined), int(written), last_id)


def backfill_lock(after_id: int, until_id: int | None) -> str:
    return f"{LOCK_PREFIX}backfill:{after_id}-{'end' if until_id is None else until_id}"


def refresh_lock(location_id: int) -> str:
    return f"{LOCK_PREFIX}refresh:{location_id}"


@app.task(name="shifts.annotate_batch", queue=QUEUE)
def annotate_batch(
    chain: str,
    batch_size: int,
    after_id: int = 0,
    until_id: int | None = None,
    location_id: int | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """Annotate one batch; defer the next one when this one examined ``batch_size``.

    ``until_id`` bounds a range chain; ``location_id`` (with the time zone
    ``version`` the refresh started at) makes it a refresh chain of one location.
    """
    size = validate_batch_size(batch_size)
    # One transaction: the batch, then its successor (or, at the end of a refresh,
    # the mark that the location is current), committed together or not at all; so
    # a job exists exactly when its predecessor's batch committed. It commits with
    # synchronous_commit off (BATCH_STATEMENT): a crash may lose the last batches
    # and their successors together, and the chain resumes from the last job left.
    with transaction.atomic():
        with logged_batch("shift_annotation_batch", chain, size) as log:
            result = run_batch(after_id, size, until_id, location_id)
            log.examined, log.written = result.examined, result.written
            log.fields.update(after_id=after_id, last_id=result.last_id)
        if result.examined == size:
            defer_successor(
                annotate_batch,
                lock=chain,
                chain=chain,
                batch_size=size,
                after_id=result.last_id,
                until_id=until_id,
                location_id=location_id,
                version=version,
            )
        elif location_id is not None and version is not None:
            mark_current(location_id, version)
    return {
        "examined": result.examined,
        "written": result.written,
        "last_id": result.last_id,
    }


def mark_current(location_id: int, version: int) -> None:
    """Record that the location's annotations all follow time zone ``version``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "select shift_annotation_mark_current(%s, %s)", [location_id, version]
        )
    logger.info(
        "location %s annotations current at time zone version %s",
        location_id,
        version,
        extra={
            "action": "shift_annotation_refreshed",
            "location_id": location_id,
            "version": version,
        },
    )


def live_workers() -> int:
    """Count the Procrastinate workers that sent a heartbeat recently."""
    with connection.cursor() as cursor:
        cursor.execute(
            "select count(*) from procrastinate_workers"
            " where last_heartbeat > now() - make_interval(secs => %s)",
            [STALLED_AFTER_SECONDS],
        )
        return int(cursor.fetchone()[0])


def chain_count() -> int:
    """How many range chains to start: ``PGZEN_SHIFTS_CHAINS``, else live workers."""
    configured = os.environ.get(CHAINS_ENV, "").strip()
    if configured:
        try:
            count = int(configured)
        except ValueError:
            raise ValueError(
                f"{CHAINS_ENV} must be a whole number, got {configured!r}"
            ) from None
        if count < 1:
            raise ValueError(f"{CHAINS_ENV} must be at least 1, got {count}")
    else:
        count = live_workers()
    return max(1, min(count, MAX_CHAINS))


def split_ranges(
    first_id: int, last_id: int, chains: int, batch_size: int
) -> list[tuple[int, int | None]]:
    """Split ids ``first_id..last_id`` into ``(after_id, until_id)`` ranges.

    Ranges are equal spans of ids, at least one batch each; the last is open-ended
    (``until_id`` None) so that it also covers ids taken after the split.
    """
    span = last_id - first_id + 1
    count = max(1, min(chains, -(-span // batch_size)))
    step = -(-span // count)
    ranges: list[tuple[int, int | None]] = []
    after = first_id - 1
    for index in range(count):
        until = None if index == count - 1 else after + step
        ranges.append((after, until))
        after = after + step
    return ranges


def start(batch_size: int, chains: int | None = None) -> str:
    """Start the range chains (``pgzen backfill shifts``) and any refresh chains.

    Raise ``AlreadyRunning`` when a chain of this backfill is queued or running.
    """
    size = validate_batch_size(batch_size)
    recovered = recover_stalled()
    state = chain_state(LOCK_PREFIX)
    if state.running:
        raise AlreadyRunning(f"shifts: a chain is already {state.describe()}")

    with connection.cursor() as cursor:
        cursor.execute("select min(id), max(id) from shift")
        first_id, last_id = cursor.fetchone()
    started = 0
    if first_id is not None:
        ranges = split_ranges(first_id, last_id, chains or chain_count(), size)
        for after_id, until_id in ranges:
            lock = backfill_lock(after_id, until_id)
            started += defer_successor(
                annotate_batch,
                lock=lock,
                chain=lock,
                batch_size=size,
                after_id=after_id,
                until_id=until_id,
            )
    refreshed = start_refresh_chains(size)
    if not started and not refreshed:
        return "shifts: nothing to annotate (no shifts)"
    note = f", resumed {len(recovered)} stalled job(s)" if recovered else ""
    return (
        f"shifts: started {started} chain(s) over shift ids {first_id}..{last_id}"
        f" and {refreshed} refresh chain(s), batch size {size}{note}"
    )


def start_refresh_chains(batch_size: int) -> int:
    """Start a refresh chain per location with stale annotations; return how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "select id, time_zone_version from location"
            " where annotations_version < time_zone_version order by id"
        )
        stale = cursor.fetchall()
    started = 0
    for location_id, version in stale:
        lock = refresh_lock(location_id)
        if chain_state(lock).running:
            continue
        started += defer_successor(
            annotate_batch,
            lock=lock,
            chain=lock,
            batch_size=batch_size,
            after_id=0,
            location_id=location_id,
            version=version,
        )
    return started


def recover_stalled(stalled_after: float = STALLED_AFTER_SECONDS) -> list[int]:
    """Put back to ``todo`` the batch jobs whose worker stopped; return their ids.

    A worker killed mid-batch leaves its job in ``doing``. If its batch rolled back,
    running it again from the same cursor is right. If the batch committed, so did
    its successor (one transaction), and a later job of the chain exists, queued,
    running or done: then the stalled job is marked failed, never run again, so the
    chain is never doubled.
    """
    resumed: list[int] = []
    with connection.cursor() as cursor:
        stalled = [
            (int(row[0]), row[5])
            for row in stalled_jobs(cursor, annotate_batch.name, stalled_after)
        ]
        for job_id, lock in stalled:
            cursor.execute(
                "select exists (select from procrastinate_jobs"
                " where queueing_lock = %s and id > %s)",
                [lock, job_id],
            )
            if cursor.fetchone()[0]:
                finish_job(cursor, job_id, "failed")
                continue
            cursor.execute(
                procrastinate_queries["retry_job"],
                {
                    "job_id": job_id,
                    "retry_at": None,
                    "new_priority": None,
                    "new_queue_name": None,
                    "new_lock": None,
                },
            )
            resumed.append(job_id)
    if stalled:
        logger.warning(
            "%d stalled shifts batch job(s), %d resumed",
            len(stalled),
            len(resumed),
            extra={
                "action": "shift_annotation_stalled",
                "job_ids": [job_id for job_id, _ in stalled],
                "resumed": resumed,
            },
        )
    return resumed


def resume_failed_chains() -> list[str]:
    """Re-defer the last job of each chain that ended in failure; return the chains.

    A chain whose latest job failed (a database error, say) has no successor; the
    same batch is deferred again with the same cursor.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            select distinct on (queueing_lock) queueing_lock, status, args
              from procrastinate_jobs
             where task_name = %s and queueing_lock like %s
             order by queueing_lock, id desc
            """,
            [annotate_batch.name, LOCK_PREFIX + "%"],
        )
        latest = cursor.fetchall()
    resumed = []
    for lock, status, args in latest:
        if status != "failed":
            continue
        if defer_successor(annotate_batch, lock=lock, **_job_args(args)):
            resumed.append(lock)
    if resumed:
        logger.warning(
            "resumed %d failed shifts chain(s)",
            len(resumed),
            extra={"action": "shift_annotation_resumed", "chains": resumed},
        )
    return resumed


def _job_args(args: Any) -> dict[str, Any]:
    return json.loads(args) if isinstance(args, str) else dict(args)


def restart(stalled_after: float = STALLED_AFTER_SECONDS) -> dict[str, Any]:
    """Resume dead chains and start refresh chains for stale locations."""
    stalled = recover_stalled(stalled_after)
    failed = resume_failed_chains()
    refreshed = start_refresh_chains(DEFAULT_BATCH_SIZE)
    return {"stalled": stalled, "failed": failed, "refreshed": refreshed}


@app.periodic(cron="* * * * *", periodic_id="shifts-restart")
@app.task(
    name="shifts.restart_dead_chains", queue=QUEUE, queueing_lock="restart-shifts"
)
def restart_dead_chains(timestamp: int) -> dict[str, Any]:
    """Each minute: resume chains whose worker died, refresh stale locations."""
    return restart()


def progress() -> Progress:
    """Annotations written, and shifts still without one.

    Exact below a million rows; above, the planner's estimates, so that a progress
    bar polling it never scans tables of many millions (``row_count``).
    """
    done = row_count("shift_annotation")
    return Progress(done=done, remaining=max(0, row_count("shift") - done))
