"""Who made a change: the ``pgzen.actor`` setting that the audit triggers record.

The triggers read ``current_setting('pgzen.actor', true)`` once per statement and fall
back to the database role. Set it around the work of one person or one task::

    with audit_actor("alice"):
        person.save()

    @app.task
    @audited_task
    def tidy_addresses(): ...   # changes are recorded as "task:<module>.tidy_addresses"

Inside a transaction (``transaction.atomic``) the setting is transaction-local, so it
can never outlive the work it describes. Outside one (Django's autocommit) it is set
on the session and the previous value restored on exit.

WARNING: the setting is a claim made by the client; any role that can change audited
tables can set it. ``audit_log.db_role`` records the role that really ran the
statement.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from django.db import connections

ACTOR_SETTING = "pgzen.actor"

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def audit_actor(actor: str, *, using: str = "default") -> Iterator[None]:
    """Record ``actor`` as who made the audited changes done inside the block."""
    connection = connections[using]
    local = connection.in_atomic_block
    with connection.cursor() as cursor:
        cursor.execute(
            "select current_setting(%s, true), set_config(%s, %s, %s)",
            [ACTOR_SETTING, ACTOR_SETTING, actor, local],
        )
        previous = cursor.fetchone()[0] or ""
    try:
        yield
    finally:
        # A transaction-local value ends with its transaction; a session value is
        # put back, unless the connection went away meanwhile.
        if not local and connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "select set_config(%s, %s, false)", [ACTOR_SETTING, previous]
                )


def task_actor(name: str) -> str:
    """Return the actor recorded for changes made by task ``name``."""
    return f"task:{name}"


def audited_task(func: F) -> F:
    """Make the audited changes of a task function name the task as who made them.

    Put it under ``@app.task``; the name is the task's default Procrastinate name
    (``module.function``).
    """
    actor = task_actor(f"{func.__module__}.{func.__name__}")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with audit_actor(actor):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
