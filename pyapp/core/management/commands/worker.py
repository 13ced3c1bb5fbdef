"""``pgzen worker``: the Procrastinate worker for every queue."""

from __future__ import annotations

import logging
import os
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connections

from pyapp.core.database import require_migrated

#: Seconds a worker thread keeps its database connection between jobs
#: (``PGZEN_WORKER_CONN_MAX_AGE``; 0 opens one per job).
DEFAULT_WORKER_CONN_MAX_AGE = 300


def keep_connections() -> int:
    """Let each worker thread keep its connection from job to job.

    Procrastinate runs a sync job on a pool thread and closes that thread's Django
    connection afterwards unless ``CONN_MAX_AGE`` allows keeping it. A kept
    connection saves a connect per job (about 20 ms on the test machine, more than a
    shifts batch of 1,000 rows takes) and keeps the session's cached plans of the
    batch functions. Health checks replace a connection the server dropped.
    """
    raw = os.environ.get("PGZEN_WORKER_CONN_MAX_AGE", "").strip()
    try:
        age = int(raw) if raw else DEFAULT_WORKER_CONN_MAX_AGE
    except ValueError:
        raise SystemExit(
            f"PGZEN_WORKER_CONN_MAX_AGE must be a whole number of seconds, got {raw!r}"
        ) from None
    if age < 0:
        raise SystemExit(f"PGZEN_WORKER_CONN_MAX_AGE must not be negative, got {age}")
    for alias in connections:
        connections.settings[alias]["CONN_MAX_AGE"] = age
        connections.settings[alias]["CONN_HEALTH_CHECKS"] = True
    return age


class Command(BaseCommand):
    help = "Run a Procrastinate worker (all queues unless --queues is given)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--queues", "-q", default="", help="Comma-separated queues."
        )
        parser.add_argument("--concurrency", "-c", type=int, default=1)
        parser.add_argument("--name", default=None, help="Worker name in logs.")

    def handle(self, *args: Any, **options: Any) -> None:
        keep_connections()
        require_migrated()
        if "PGZEN_WORKER_LOG_LEVEL" not in os.environ:
            logging.getLogger("procrastinate").setLevel(logging.INFO)
        argv = ["worker", f"--concurrency={options['concurrency']}"]
        if options["queues"]:
            argv.append(f"--queues={options['queues']}")
        if options["name"]:
            argv.append(f"--name={options['name']}")
        call_command("procrastinate", *argv)
