"""The "reprs" backfill: each audit row's representation, made by a chain of batches.

One job is one batch: one read of at most ``batch_size`` audit rows that have no
representation, after the keyset cursor the job was given; their ``str()`` computed in
Python (:mod:`pyapp.audit.reprs`); one bulk insert (a duplicate is ignored); and, only
when the read returned ``batch_size`` rows, one defer of the successor with the last
row's cursor. Never a query asking whether anything is left.

The cursor is ``(txid, id)``, not ``id``: an audit row's id is taken when the row is
written, but the row becomes visible when its transaction commits, which may be after
a higher id committed. A batch reads only rows of transactions older than the oldest
one still running in this database (SQL ``audit_horizon()``); those are final, and
every row written later sorts after them, so the walk skips nothing and never looks
back.

A chain starts without a cursor and takes the position of the latest representation
(one index probe on ``instance_repr``), so a chain killed at any point is resumed by
the next start with at most the killed batch redone (it rolled back). Chains start:

- from ``pgzen backfill reprs`` (:func:`start_chain`),
- after any transaction that saved or deleted an audited model through the ORM
  (:func:`request_reprs`, on commit; signals connected in ``AuditConfig.ready``),
  so the web app's changes are represented within about a second while a worker runs,
- from the periodic :func:`restart_reprs` (every minute), which catches writes made
  outside the ORM (psql, ``QuerySet.update``) and chains that died; it first aborts
  jobs of workers that stopped sending heartbeats, whose ``lock`` would hold the
  chain forever.

Only one job of the chain waits at a time (queueing lock) and only one runs at a time
(lock), so there is never a second chain.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from procrastinate import exceptions as procrastinate_exceptions
from procrastinate.contrib.django import app

from pyapp.audit.reprs import no_queries, represent
from pyapp.core.backfills import (
    AlreadyRunning,
    Progress,
    chain_state,
    validate_batch_size,
)
from pyapp.core.chains import (
    defer_successor,
    finish_job,
    logged_batch,
    stalled_jobs,
)

logger = logging.getLogger(__name__)

CHAIN = "reprs"
#: The chain's queueing lock and lock (``pgzen status`` finds its jobs by it).
LOCK = "audit-reprs"
QUEUE = "audit"
DEFAULT_BATCH_SIZE = 1000
#: A running job whose worker sent no heartbeat for this long is given up.
STALLED_AFTER_SECONDS = 30.0

Cursor = tuple[int, int]

# The start position, when the job has none, is the latest representation's; the
# scalar subqueries run once (init plans) and only when the cursor is null, and the
# row comparison is a range over audit_log_txid_id_idx.
READ_SQL = """
select a.id, a.txid, a.schema_name, a.table_name, a.op,
       case a.op when 'delete' then a.old_row else a.new_row end
  from audit_log as a
 where (a.txid, a.id) > (
           coalesce(%(txid)s::bigint,
                    (select r.audit_txid from instance_repr as r
                      order by r.audit_txid desc, r.audit_log_id desc limit 1),
                    0),
           coalesce(%(id)s::bigint,
                    (select r.audit_log_id from instance_repr as r
                      order by r.audit_txid desc, r.audit_log_id desc limit 1),
                    0))
   and a.txid < audit_horizon()
   and not exists (select from instance_repr as r where r.audit_log_id = a.id)
 order by a.txid, a.id
 limit %(limit)s
"""

INSERT_SQL = """
insert into instance_repr (audit_log_id, audit_txid, repr)
select * from unnest(%s::bigint[], %s::bigint[], %s::text[])
    on conflict (audit_log_id) do nothing
"""


@dataclass(frozen=True)
class AuditRow:
    """The columns of an audit row that its representation needs."""

    id: int
    txid: int
    schema_name: str
    table_name: str
    op: str
    #: The image the application represents: the old one for a delete.
    image: dict[str, Any] | None

    @property
    def cursor(self) -> Cursor:
        return (self.txid, self.id)


@dataclass(frozen=True)
class BatchResult:
    """What one batch did: rows read, representations written, the next cursor."""

    read: int
    written: int
    cursor: Cursor | None


def _json(value: Any) -> Any:
    # Django's psycopg setup hands jsonb to raw cursors as text.
    return json.loads(value) if isinstance(value, str) else value


def read_batch(batch_size: int, after: Cursor | None) -> list[AuditRow]:
    """Read up to ``batch_size`` unrepresented audit rows after ``after``."""
    txid, audit_id = after if after is not None else (None, None)
    with connection.cursor() as cursor:
        cursor.execute(READ_SQL, {"txid": txid, "id": audit_id, "limit": batch_size})
        return [
            AuditRow(id, txid, schema, table, op, _json(image))
            for id, txid, schema, table, op, image in cursor.fetchall()
        ]


def write_reprs(rows: Sequence[AuditRow]) -> int:
    """Represent ``rows`` and insert the representations (one query); return how many.

    A representation that already exists is left as it is.
    """
    if not rows:
        return 0
    with no_queries():
        texts = [
            represent(
                row.schema_name,
                row.table_name,
                row.op,
                row.image,
                audit_log_id=row.id,
            )
            for row in rows
        ]
    with connection.cursor() as cursor:
        cursor.execute(
            INSERT_SQL, [[row.id for row in rows], [row.txid for row in rows], texts]
        )
        return cursor.rowcount


def run_batch(batch_size: int, after: Cursor | None = None) -> BatchResult:
    """Do one batch's read and write; return the cursor to go on from, if full."""
    rows = read_batch(batch_size, after)
    written = write_reprs(rows)
    full = len(rows) == batch_size
    return BatchResult(len(rows), written, rows[-1].cursor if full else None)


@app.task(name="audit.build_reprs", queue=QUEUE, lock=LOCK, queueing_lock=LOCK)
def build_reprs(batch_size: int, after: list[int] | None = None) -> dict[str, Any]:
    """Represent one batch of audit rows; defer the next batch when this one was full.

    ``after`` is the ``[txid, id]`` cursor the previous batch reached; a chain's first
    job has none and starts where the latest representation is.
    """
    size = validate_batch_size(batch_size)
    start = (int(after[0]), int(after[1])) if after else None

    with logged_batch("audit_reprs_batch", CHAIN, size) as log:
        result = run_batch(size, start)
        log.examined, log.written = result.read, result.written
        log.fields["cursor"] = list(result.cursor) if result.cursor else None

    # Last, after the representations are committed: a crash before this line
    # leaves nothing queued, and the next start resumes from what was written.
    if result.cursor is not None:
        defer_successor(build_reprs, lock=LOCK, batch_size=size, after=result.cursor)
    return {"read": result.read, "written": result.written, "after": result.cursor}


def request_reprs(batch_size: int = DEFAULT_BATCH_SIZE) -> bool:
    """Queue a chain start unless a job of the chain is already waiting.

    Called after each commit that changed an audited model; the check spares the
    server a unique-violation error per request while a job is already queued.
    Return whether a job was queued.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "select from procrastinate_jobs"
            " where queueing_lock = %s and status = 'todo' limit 1",
            [LOCK],
        )
        if cursor.fetchone() is not None:
            return False
    try:
        build_reprs.defer(batch_size=batch_size)
    except procrastinate_exceptions.AlreadyEnqueued:
        return False
    return True


def recover_stalled(stalled_after: float = STALLED_AFTER_SECONDS) -> list[int]:
    """Abort the chain's running jobs whose worker is gone; return their ids.

    A worker killed mid-batch leaves its job in ``doing``, and that job's lock keeps
    every later job of the chain from running. Its batch rolled back, so aborting it
    loses nothing: the next start resumes from the latest representation.
    """
    with connection.cursor() as cursor:
        stalled = [
            int(row[0]) for row in stalled_jobs(cursor, build_reprs.name, stalled_after)
        ]
        for job_id in stalled:
            finish_job(cursor, job_id, "aborted")
    if stalled:
        logger.warning(
            "aborted %d stalled reprs job(s) %s",
            len(stalled),
            stalled,
            extra={"action": "audit_reprs_stalled", "job_ids": stalled},
        )
    return stalled


def rows_missing() -> bool:
    """Whether any final audit row after the latest representation lacks one."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"select exists ({READ_SQL.replace('%(limit)s', '1')})",
            {"txid": None, "id": None},
        )
        return bool(cursor.fetchone()[0])


def start_chain(batch_size: int) -> str:
    """Start a chain (``pgzen backfill reprs``); raise AlreadyRunning if one is on."""
    size = validate_batch_size(batch_size)
    aborted = recover_stalled()
    state = chain_state(LOCK)
    if state.running:
        raise AlreadyRunning(f"{CHAIN}: a chain is already {state.describe()}")
    try:
        build_reprs.defer(batch_size=size)
    except procrastinate_exceptions.AlreadyEnqueued:
        raise AlreadyRunning(f"{CHAIN}: a chain was queued meanwhile") from None
    note = f" (aborted {len(aborted)} stalled job(s))" if aborted else ""
    return f"{CHAIN}: chain started, batch size {size}{note}"


def progress() -> Progress:
    """Estimate rows done and remaining from ids around the chain's position.

    Three index probes; exact counts would scan tens of millions of rows.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            select (select min(id) from audit_log),
                   (select max(id) from audit_log),
                   (select audit_log_id from instance_repr
                     order by audit_txid desc, audit_log_id desc limit 1)
            """
        )
        first, last, position = cursor.fetchone()
    if first is None:
        return Progress(done=0, remaining=0)
    if position is None:
        return Progress(done=0, remaining=last - first + 1)
    return Progress(done=position - first + 1, remaining=max(0, last - position))


@app.periodic(cron="* * * * *", periodic_id="audit-reprs-restart")
@app.task(name="audit.restart_reprs", queue=QUEUE)
def restart_reprs(timestamp: int) -> bool:
    """Restart the chain when rows lack a representation and no job is on (each minute).

    Return whether a chain was started.
    """
    recover_stalled()
    if chain_state(LOCK).running or not rows_missing():
        return False
    started = request_reprs()
    if started:
        logger.info(
            "restarted the reprs chain",
            extra={"action": "audit_reprs_restarted", "timestamp": timestamp},
        )
    return started
