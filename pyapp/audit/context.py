"""Who made a change: the ``pgzen.actor`` setting that the audit triggers record.

The triggers read ``current_setting('pgzen.actor', true)`` once per statement and fall
back to the database role. Set it around the work of one person or one task::

    with audit_actor("alice"):
        person.save()

    @app.task
    @audited_task
    def tidy_addresses(): ...   # changes are recorded as "task:<module>.tidy_addresses"

Inside a transaction (``transaction.atomic``) the setting is transaction-local, so it
can never outlive the work it describes. Outside one (Django's autocommit, where each
statement is its own transaction) it is set on the session. Either way the previous
value is restored when the block ends.

WARNING: outside a transaction the value is set on the session; behind a pooler in
transaction mode it could be seen by another client's transaction.
TODO: set it per transaction from the middleware (an execute wrapper prefixing each
autocommit statement) if a transaction-mode pooler is ever deployed.

WARNING: the setting is a claim made by the client; any role that can change audited
tables can set it. ``audit_log.db_role`` records the role that really ran the
statement.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from django.db import DatabaseError, connections

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
    except BaseException:
        # If the block's transaction failed, the server undoes the setting with it
        # and would refuse the restore; never let that hide the block's own error.
        with contextlib.suppress(DatabaseError):
            _restore(connection, previous, local)
        raise
    _restore(connection, previous, local)


def _restore(connection: Any, previous: str, local: bool) -> None:
    if connection.connection is None:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "select set_config(%s, %s, %s)", [ACTOR_SETTING, previous, local]
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
