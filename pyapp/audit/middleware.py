"""Name the signed-in user as who made the audited changes of a request.

``AuditActorMiddleware`` sits after ``AuthenticationMiddleware``. It costs nothing on
requests that only read: the ``pgzen.actor`` setting is set, transaction-locally and
never on the session, just before a statement of the request that writes
(``insert``, ``update``, ``delete``, ``merge``, ``copy``, ``truncate``):

- inside a transaction (``transaction.atomic``), once per transaction: one query,
  nothing to undo;
- in autocommit mode, before each write, which then runs in a transaction of its own:
  ``BEGIN``, the setting, the write, ``COMMIT``.

The execute wrapper is the one of `pyapp.audit.context` (see there); an
``audit_actor`` block inside the request names its own actor while it lasts. Nothing
is put back at the end: the request's transactions have ended by then, and the value
with them (only a test runs a request inside a transaction that outlasts it).
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, HttpResponse

from pyapp.audit.context import ActorWrapper


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
        wrapper = ActorWrapper(user.get_username(), every_transaction=False)
        with connection.execute_wrapper(wrapper):
            return self.get_response(request)
