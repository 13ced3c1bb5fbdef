"""``pgzen serve``: the production WSGI server (gunicorn), DEBUG off."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Collect static files and serve the site with gunicorn."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--bind",
            default=os.environ.get("PGZEN_BIND", "127.0.0.1:8000"),
            help="Address to listen on (PGZEN_BIND, default 127.0.0.1:8000).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=int(os.environ.get("PGZEN_WEB_WORKERS", "2")),
            help="Gunicorn worker processes (PGZEN_WEB_WORKERS, default 2).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.DEBUG:
            raise CommandError("refusing to serve with PGZEN_DEBUG=1 (DEBUG on)")
        if options["workers"] < 1:
            raise CommandError(
                f"--workers must be at least 1, got {options['workers']}"
            )
        call_command("collectstatic", interactive=False, verbosity=0)
        self.stdout.write(f"Serving on http://{options['bind']}/")
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "pyapp.wsgi:application",
            "--bind",
            options["bind"],
            "--workers",
            str(options["workers"]),
            "--access-logfile",
            "-",
            "--graceful-timeout",
            "20",
        ]
        process = subprocess.Popen(command)

        def forward(signum: int, frame: object) -> None:
            process.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        code = process.wait()
        if code not in (0, -signal.SIGTERM, -signal.SIGINT):
            raise SystemExit(code)
