"""Name the signed-in user as who made the audited changes of a request.

Add ``"pyapp.audit.middleware.AuditActorMiddleware"`` to ``MIDDLEWARE`` after
``AuthenticationMiddleware``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from pyapp.audit.context import audit_actor


class AuditActorMiddleware:
    """Set ``pgzen.actor`` to the user's username for the length of the request.

    Anonymous requests set nothing (their changes, if any, name the database role).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        with audit_actor(user.get_username()):
            return self.get_response(request)
