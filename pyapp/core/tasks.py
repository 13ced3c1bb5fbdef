"""Housekeeping jobs of the core app.

Every batch of a backfill chain is a Procrastinate job, so finished jobs pile up
(a million audit rows make a thousand jobs). An hourly job deletes them once they are
old enough not to matter for ``pgzen status``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from procrastinate.contrib.django import app

logger = logging.getLogger(__name__)

#: Succeeded, cancelled and aborted jobs are kept this long (hours).
KEEP_FINISHED_HOURS = int(os.environ.get("PGZEN_KEEP_FINISHED_JOBS_HOURS", "72"))
#: Failed jobs are kept longer, for diagnosis (hours).
KEEP_FAILED_HOURS = int(os.environ.get("PGZEN_KEEP_FAILED_JOBS_HOURS", "720"))


async def prune(job_manager: Any) -> None:
    """Delete finished jobs older than the retention periods."""
    await job_manager.delete_old_jobs(
        nb_hours=KEEP_FINISHED_HOURS, include_cancelled=True, include_aborted=True
    )
    await job_manager.delete_old_jobs(nb_hours=KEEP_FAILED_HOURS, include_failed=True)


@app.periodic(cron="23 * * * *", periodic_id="core-prune-jobs")
@app.task(name="core.prune_finished_jobs", queue="maintenance", pass_context=True)
async def prune_finished_jobs(context: Any, timestamp: int) -> None:
    """Delete finished jobs past their retention (hourly)."""
    await prune(context.app.job_manager)
    logger.info(
        "pruned finished jobs",
        extra={
            "action": "prune_finished_jobs",
            "keep_finished_hours": KEEP_FINISHED_HOURS,
            "keep_failed_hours": KEEP_FAILED_HOURS,
        },
    )
