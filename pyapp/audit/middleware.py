"""Name the signed-in user as who made the audited changes of a request.

``AuditActorMiddleware`` sits after ``AuthenticationMiddleware``. It costs nothing on
requests that only read: the ``pgzen.actor`` setting is set just before a statement
of the request that writes (``insert``, ``update``, ``delete``, ``merge``, ``copy``):

- inside a transaction (``transaction.atomic``), for that transaction only, once per
  transaction: one query, nothing to undo;
- in autocommit mode, on the session, once per request, restored at its end: two
  queries.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse

from pyapp.audit.context import ACTOR_SETTING

_WRITE = re.compile(
    r"^\s*(?:with\b.*?\)\s*)?(insert|update|delete|merge|copy)\b",
    re.IGNORECASE | re.DOTALL,
)


class _SetBeforeWrites:
    """An execute wrapper naming the actor before writes that need it named."""

    def __init__(self, actor: str) -> None:
        self.actor = actor
        self.previous: str | None = None  # set on the session: the value to restore

    def _transaction_marker(self) -> None:
        """Queued with ``on_commit`` while the transaction-local value is set.

        Django drops it when that transaction (or the savepoint it was set in)
        commits or rolls back, exactly when the server forgets the local value.
        """

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        db = context["connection"]
        if self.previous is None and _WRITE.match(sql or ""):
            if not db.in_atomic_block:
                self.previous = self._set(db, local=False)
            elif not any(
                entry[1] == self._transaction_marker for entry in db.run_on_commit
            ):
                db.on_commit(self._transaction_marker)
                self._set(db, local=True)
        return execute(sql, params, many, context)

    def _set(self, db: Any, *, local: bool) -> str:
        with db.cursor() as cursor:
            cursor.execute(
                "select coalesce(current_setting(%s, true), ''),"
                " set_config(%s, %s, %s)",
                [ACTOR_SETTING, ACTOR_SETTING, self.actor, local],
            )
            return str(cursor.fetchone()[0])

    def restore(self) -> None:
        """Put back the session's previous value, if it was changed."""
        if self.previous is None or connection.connection is None:
            return
        # A failed transaction undoes the setting with it and refuses queries; the
        # error that caused it is the one to report, not this.
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute(
                "select set_config(%s, %s, false)", [ACTOR_SETTING, self.previous]
            )


class AuditActorMiddleware:
    """Record the signed-in user's username as ``pgzen.actor`` for their writes.

    Anonymous requests set nothing (their changes, if any, name the database role).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        wrapper = _SetBeforeWrites(user.get_username())
        try:
            with connection.execute_wrapper(wrapper):
                return self.get_response(request)
        finally:
            wrapper.restore()
