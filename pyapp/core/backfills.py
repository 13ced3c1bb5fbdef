"""The registry of self-rescheduling backfills, and what the CLI shows of them.

A backfill is a chain of Procrastinate jobs: each job runs one batch, and defers its
successor (with the cursor it reached) only when the batch was full. Apps register
their backfills in ``AppConfig.ready()``::

    register(Backfill(name="reprs", ..., start=start_chain, progress=progress))

``pgzen backfill NAME`` starts a chain, ``--wait`` follows it with a progress bar,
and ``pgzen status`` shows each chain's state. The state comes from Procrastinate's
own job table (jobs whose queueing lock starts with the backfill's ``lock_prefix``),
so a batch never writes anything extra for the sake of reporting.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from django.db import connection

MAX_BATCH_SIZE = 100_000
#: Tables the planner estimates at fewer rows than this are counted exactly.
EXACT_COUNT_BELOW = 1_000_000


class BatchSizeError(ValueError):
    """A batch size outside 1..MAX_BATCH_SIZE."""


def validate_batch_size(value: object) -> int:
    """Return ``value`` as a batch size, or raise ``BatchSizeError`` saying why."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except ValueError:
            raise BatchSizeError(
                f"batch size must be a whole number, got {value!r}"
            ) from None
    if value < 1:
        raise BatchSizeError(f"batch size must be at least 1, got {value}")
    if value > MAX_BATCH_SIZE:
        raise BatchSizeError(
            f"batch size must be at most {MAX_BATCH_SIZE}, got {value}"
        )
    return value


def row_count(table: str, exact_below: int | None = None) -> int:
    """Return how many rows ``table`` has: exact when small, else an estimate.

    Exact when the planner expects fewer than ``exact_below`` rows (default
    ``EXACT_COUNT_BELOW``). The estimate is the planner's own (``EXPLAIN``): the
    density measured by the last ANALYZE or VACUUM times the table's current size,
    so it follows a table that grows between them. It costs no scan, whatever the
    size; ``count(*)`` would scan the whole primary key.
    """
    if exact_below is None:
        exact_below = EXACT_COUNT_BELOW
    name = connection.ops.quote_name(table)
    with connection.cursor() as cursor:
        cursor.execute(f"explain (format json) select from {name}")
        (plan,) = cursor.fetchone()
        if isinstance(plan, str):
            plan = json.loads(plan)
        estimate = int(plan[0]["Plan"]["Plan Rows"])
        if estimate >= exact_below:
            return estimate
        cursor.execute(f"select count(*) from {name}")
        return int(cursor.fetchone()[0])


class AlreadyRunning(Exception):
    """A chain of this backfill is already queued or running."""


@dataclass(frozen=True)
class Progress:
    """How far a backfill is: rows done, and an estimate of rows remaining."""

    done: int
    remaining: int | None


@dataclass(frozen=True)
class ChainState:
    """Counts of a backfill's jobs by status, from Procrastinate's job table."""

    todo: int = 0
    doing: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    aborted: int = 0

    @property
    def running(self) -> bool:
        return self.todo + self.doing > 0

    def describe(self) -> str:
        if self.doing:
            return f"running ({self.doing} batch(es) in progress, {self.todo} queued)"
        if self.todo:
            return f"queued ({self.todo} job(s) waiting for a worker)"
        if self.failed:
            return f"stopped: {self.failed} failed batch(es), restart to resume"
        if self.succeeded:
            return f"idle ({self.succeeded} batch(es) done recently)"
        return "idle (no recent batches)"


@dataclass(frozen=True)
class Backfill:
    """A registered backfill: how to start it and how to measure it."""

    name: str
    description: str
    lock_prefix: str
    start: Callable[[int], str]
    progress: Callable[[], Progress]
    default_batch_size: int = 1000


_REGISTRY: dict[str, Backfill] = {}


def register(backfill: Backfill) -> None:
    """Make ``backfill`` known to ``pgzen backfill`` and ``pgzen status``."""
    _REGISTRY[backfill.name] = backfill


def registered() -> dict[str, Backfill]:
    """Return the registered backfills by name."""
    return dict(sorted(_REGISTRY.items()))


def chain_state(lock_prefix: str) -> ChainState:
    """Count the jobs of the chains whose queueing lock starts with the prefix."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            select status, count(*)
              from procrastinate_jobs
             where queueing_lock like %s
             group by status
            """,
            [lock_prefix.replace("%", r"\%").replace("_", r"\_") + "%"],
        )
        counts = {str(status): int(count) for status, count in cursor.fetchall()}
    return ChainState(
        todo=counts.get("todo", 0),
        doing=counts.get("doing", 0),
        succeeded=counts.get("succeeded", 0),
        failed=counts.get("failed", 0),
        cancelled=counts.get("cancelled", 0),
        aborted=counts.get("aborted", 0),
    )


def render_bar(progress: Progress, rate: float | None, width: int = 30) -> str:
    """Return one line: bar, percent, done and remaining, rate and ETA."""
    remaining = progress.remaining
    total = progress.done + remaining if remaining is not None else None
    if total:
        fraction = min(1.0, progress.done / total)
        filled = int(fraction * width)
        bar = "#" * filled + "." * (width - filled)
        head = f"[{bar}] {fraction * 100:5.1f}% {progress.done:,}/~{total:,}"
    else:
        head = f"[{'?' * width}] {progress.done:,} done"
    if rate:
        head += f" {rate:,.0f} rows/s"
        if remaining:
            eta = int(remaining / rate)
            head += f" ETA {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}"
    return head


def follow(
    backfill: Backfill,
    *,
    out: TextIO | None = None,
    interval: float = 0.5,
    timeout: float | None = None,
    hint_after: float = 5.0,
) -> ChainState:
    """Show a progress bar until the backfill's chains have no job left.

    When a job waits longer than ``hint_after`` seconds with none running, say once
    that a worker seems to be missing.
    """
    stream = out or sys.stderr
    started = time.monotonic()
    last_done: int | None = None
    last_time = started
    rate: float | None = None
    hinted = False
    while True:
        progress = backfill.progress()
        state = chain_state(backfill.lock_prefix)
        now = time.monotonic()
        if last_done is not None and now > last_time:
            instant = (progress.done - last_done) / (now - last_time)
            rate = instant if rate is None else 0.7 * rate + 0.3 * instant
        last_done, last_time = progress.done, now
        line = render_bar(progress, rate)
        if stream.isatty():
            stream.write("\r" + line.ljust(100))
        else:
            stream.write(line + "\n")
        stream.flush()
        if not state.running:
            if stream.isatty():
                stream.write("\n")
            return state
        if (
            not hinted
            and state.todo
            and not state.doing
            and now - started >= hint_after
        ):
            hinted = True
            stream.write(
                "\nno worker has taken the job yet: is `pgzen worker` running?\n"
            )
        if timeout is not None and now - started > timeout:
            return state
        time.sleep(interval)
