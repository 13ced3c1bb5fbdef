"""Who made a change: the ``pgzen.actor`` setting that the audit triggers record.

The triggers read ``current_setting('pgzen.actor', true)`` once per statement and fall
back to the database role. Set it around the work of one person or one task::

    with audit_actor("alice"):
        person.save()

    @app.task
    @audited_task
    def tidy_addresses(): ...   # changes are recorded as "task:<module>.tidy_addresses"

The value is only ever set transaction-locally (``set_config(..., true)``), never on
the session, so it cannot outlive the transaction it describes nor be seen by another
client's transaction behind a pooler in transaction mode. An execute wrapper
(`ActorWrapper`, also used by the middleware) sets it just before statements:

- inside ``transaction.atomic``: before the first statement of each transaction (the
  middleware: before its first write), and again when the actor changes within it (a
  nested block begins or ends). A savepoint rolled back undoes the value set in it,
  and the wrapper knows (it queues an ``on_commit`` marker with each value, which
  Django drops with the savepoint). When an ``audit_actor`` block ends inside a
  transaction, the outer block's value, or else the one from before, is set back
  (the middleware's lasts until the end of the transaction).
- outside one (Django's autocommit, each statement its own transaction): a statement
  that writes (`WRITE`: insert, update, delete, merge, copy, truncate, or a ``with``
  naming one) runs in a transaction of its own that names the actor first. Other
  statements are left alone, so a ``select`` of a function that writes names the
  database role there: call such functions inside ``transaction.atomic``.

Statements sent through Django's cursors are seen, ``cursor.execute()`` included;
statements sent on the raw psycopg connection are not.

WARNING: the setting is a claim made by the client; any role that can change audited
tables can set it. ``audit_log.db_role`` records the role that really ran the
statement.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from django.db import DatabaseError, connections, transaction
from psycopg import pq

ACTOR_SETTING = "pgzen.actor"

# A statement that writes; a ``with`` naming a writing keyword anywhere counts (a
# ``for update`` too: a transaction more, where a miss would lose the actor).
WRITE = re.compile(
    r"^\s*(?:(insert|update|delete|merge|copy|truncate)\b"
    r"|with\b.*\b(insert|update|delete|merge)\b)",
    re.IGNORECASE | re.DOTALL,
)

# The wrapper's own statement: it returns the value it replaces.
_SET = "select coalesce(current_setting(%s, true), ''), set_config(%s, %s, true)"

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def audit_actor(actor: str, *, using: str = "default") -> Iterator[None]:
    """Record ``actor`` as who made the audited changes done inside the block."""
    connection = connections[using]
    wrapper = ActorWrapper(actor, every_transaction=True)
    try:
        with connection.execute_wrapper(wrapper):
            yield
    except BaseException:
        # A failed transaction is refused the restore (and undoes the value anyway);
        # never let that hide the block's own error.
        with contextlib.suppress(DatabaseError):
            wrapper.leave(connection)
        raise
    wrapper.leave(connection)


class _Named:
    """An ``on_commit`` marker: the transaction-local value set with it.

    Django drops it when its transaction, or the savepoint it was queued in, commits
    or rolls back: exactly when the server forgets the value.
    """

    __slots__ = ("actor", "before")

    def __init__(self, actor: str | None, before: str) -> None:
        self.actor = actor  # None: the value from before any wrapper named one
        self.before = before

    def __call__(self) -> None:
        """Nothing to do on commit."""


class ActorWrapper:
    """An execute wrapper naming ``actor``, transaction-locally, before statements.

    ``every_transaction``: inside ``transaction.atomic``, before the first statement
    of each transaction; otherwise only before its first write (nothing for reading).
    Of several on one connection, the innermost (the last installed) names its actor.
    """

    def __init__(self, actor: str, *, every_transaction: bool) -> None:
        self.actor = actor
        self.every_transaction = every_transaction

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: Any,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        db = context["connection"]
        if sql is _SET or _innermost(db) is not self or _failed(db):
            return execute(sql, params, many, context)
        writes = isinstance(sql, str) and WRITE.match(sql) is not None

        if db.in_atomic_block:
            if (writes or self.every_transaction) and not db.needs_rollback:
                _name(db, self.actor)
            return execute(sql, params, many, context)
        if not writes:
            return execute(sql, params, many, context)
        if not db.get_autocommit():
            # A transaction managed by hand has no on_commit markers: name every write.
            _set(db, self.actor)
            return execute(sql, params, many, context)

        # Autocommit: the write gets a transaction of its own, named first. An error
        # rolls it back and is raised as it is.
        with transaction.atomic(using=db.alias):
            _set(db, self.actor)
            return execute(sql, params, many, context)

    def leave(self, db: Any) -> None:
        """Hand the open transaction back to the wrapper around, or to no wrapper.

        Call it once this wrapper is removed. It costs a query only when a value
        that is no longer wanted is set in the atomic block's transaction.
        """
        if db.connection is None or not db.in_atomic_block or db.needs_rollback:
            return
        if _failed(db) or _named(db) is None:
            return
        outer = _innermost(db)
        _name(db, outer.actor if outer is not None else None)


def _innermost(db: Any) -> ActorWrapper | None:
    for wrapper in reversed(db.execute_wrappers):
        if isinstance(wrapper, ActorWrapper):
            return wrapper
    return None


def _failed(db: Any) -> bool:
    """Whether the server refuses statements until a rollback (psycopg knows)."""
    raw = db.connection
    return raw is not None and (
        raw.info.transaction_status == pq.TransactionStatus.INERROR
    )


def _named(db: Any) -> _Named | None:
    for entry in reversed(db.run_on_commit):
        if isinstance(entry[1], _Named):
            return entry[1]
    return None


def _name(db: Any, actor: str | None) -> None:
    """Make ``actor`` the value of the atomic block's transaction, unless it is.

    ``None`` puts back the value from before any wrapper named one in it.
    """
    named = _named(db)
    if named is None:
        if actor is not None:
            before = _set(db, actor)
            db.on_commit(_Named(actor, before))
    elif named.actor != actor:
        _set(db, actor if actor is not None else named.before)
        db.on_commit(_Named(actor, named.before))


def _set(db: Any, value: str) -> str:
    """Set the value transaction-locally; return the one it replaced."""
    with db.cursor() as cursor:
        cursor.execute(_SET, [ACTOR_SETTING, ACTOR_SETTING, value])
        return str(cursor.fetchone()[0])


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
