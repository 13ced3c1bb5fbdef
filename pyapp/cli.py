"""The ``pgzen`` command: this project's ``manage.py``, plus its own commands.

Before Django loads, the database is resolved: ``DATABASE_URL`` when set (checked, and
a clear one-line error when it is malformed or unreachable), else the embedded server,
started or reused for as long as this command runs.
"""

from __future__ import annotations

import os
import sys

# Commands that must work without any database.
_NO_DATABASE = {"help", "--help", "-h", "version", "--version", "embedded"}


def _fail(message: str) -> None:
    sys.stderr.write(f"pgzen: {message}\n")
    raise SystemExit(2)


def resolve_database() -> None:
    """Make ``DATABASE_URL`` name a reachable server, or exit with one clear line."""
    from db.config import check_connection, configured_target
    from db.errors import DatabaseError

    try:
        target = configured_target()
        if target is None:
            from db.embedded import embedded_target

            target, handle = embedded_target()
            globals()["_EMBEDDED_HANDLE"] = handle  # lives as long as the process
            os.environ["DATABASE_URL"] = target.url
            os.environ["PGZEN_EMBEDDED"] = "1"
        check_connection(target)
    except DatabaseError as exc:
        _fail(str(exc))


def main(argv: list[str] | None = None) -> None:
    """Run a ``pgzen`` command (``pgzen help`` lists them)."""
    argv = list(sys.argv if argv is None else argv)
    argv[0] = "pgzen"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pyapp.settings")
    command = argv[1] if len(argv) > 1 else "help"
    if command in _NO_DATABASE:
        if "DATABASE_URL" not in os.environ:
            os.environ["PGZEN_NO_DATABASE"] = "1"
    else:
        resolve_database()

    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 - load the settings, report errors
    except ImproperlyConfigured as exc:
        _fail(str(exc))
    execute_from_command_line(argv)


if __name__ == "__main__":
    main()
