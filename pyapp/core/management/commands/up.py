"""``pgzen up``: migrate, then run the web server and a worker until Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Migrate, then run `pgzen serve` and `pgzen worker` together until Ctrl-C."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--bind", default=None, help="Passed to `pgzen serve`.")
        parser.add_argument(
            "--no-migrate", action="store_true", help="Skip `pgzen migrate`."
        )
        parser.add_argument(
            "--seed", action="store_true", help="Run `pgzen seed` after migrating."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=1)
        if options["seed"]:
            call_command("seed")
        serve = [sys.executable, "-m", "pyapp", "serve"]
        if options["bind"]:
            serve.append(f"--bind={options['bind']}")
        children = {
            "web": subprocess.Popen(serve),
            "worker": subprocess.Popen([sys.executable, "-m", "pyapp", "worker"]),
        }
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        self.stdout.write("pgzen is up; press Ctrl-C to stop.")
        exit_code = 0
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    self.stderr.write(
                        f"{name} exited with {child.returncode}; stopping"
                    )
                    exit_code = child.returncode or 1
                    stopping = True
            time.sleep(0.2)

        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        self.stdout.write("pgzen stopped.")
        if exit_code:
            raise SystemExit(exit_code)
