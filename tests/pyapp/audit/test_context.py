"""Who made a change: the actor set by the middleware, by tasks, or by hand."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import DataError, connection, transaction
from django.http import HttpResponse

from pyapp.audit.context import audit_actor, audited_task
from pyapp.audit.middleware import AuditActorMiddleware
from pyapp.audit.models import AuditLog
from pyapp.people.models import Person

pytestmark = pytest.mark.django_db


def current_actor() -> str:
    with connection.cursor() as cursor:
        cursor.execute("select current_setting('pgzen.actor', true)")
        return cursor.fetchone()[0] or ""


def last_actor() -> str:
    return AuditLog.objects.order_by("-id").values_list("actor", flat=True)[0]


def database_role() -> str:
    with connection.cursor() as cursor:
        cursor.execute("select current_user")
        return cursor.fetchone()[0]


def test_changes_inside_audit_actor_name_the_actor_and_it_is_restored():
    """The block's changes name the actor; after it, the previous value is back."""
    with audit_actor("outer"):
        with audit_actor("inner"):
            Person.objects.create(name="Inner")
            assert last_actor() == "inner"
        assert current_actor() == "outer"
    assert current_actor() == ""
    Person.objects.create(name="After")
    assert last_actor() == database_role()


def test_an_error_inside_the_block_is_not_hidden_by_the_restore():
    """A failed transaction inside the block re-raises its own error."""
    with (
        pytest.raises(DataError, match="division by zero"),
        transaction.atomic(),
        audit_actor("x"),
        connection.cursor() as cursor,
    ):
        cursor.execute("select 1 / 0")


@pytest.mark.django_db(transaction=True)
def test_the_middleware_names_the_signed_in_user(rf, django_user_model):
    """A request's changes name the user; an anonymous request names nobody."""
    user = django_user_model.objects.create_user("grace", password="x" * 12)

    def view(request):
        Person.objects.create(name=f"Made by {request.user}")
        return HttpResponse(current_actor())

    middleware = AuditActorMiddleware(view)
    request = rf.post("/")
    request.user = user
    assert middleware(request).content == b"grace"
    assert last_actor() == "grace"

    request = rf.post("/")
    request.user = AnonymousUser()
    assert middleware(request).content == b""
    assert last_actor() == database_role()
    assert current_actor() == ""


def test_an_audited_task_names_itself():
    """A task function under @audited_task records task:<module>.<name>."""

    @audited_task
    def tidy_people():
        Person.objects.create(name="Tidied")

    tidy_people()
    assert last_actor() == f"task:{__name__}.tidy_people"


@pytest.mark.django_db(transaction=True)
def test_the_middleware_adds_no_query_to_a_request_that_only_reads(
    rf, django_user_model
):
    """A read-only request costs no extra query; a writing one names the user."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    user = django_user_model.objects.create_user("ada", password="x" * 12)

    def reader(request):
        return HttpResponse(str(Person.objects.count()))

    request = rf.get("/")
    request.user = user
    with CaptureQueriesContext(connection) as queries:
        AuditActorMiddleware(reader)(request)
    assert len(queries) == 1

    def writer(request):
        Person.objects.create(name="Made by ada")
        return HttpResponse(current_actor())

    with CaptureQueriesContext(connection) as queries:
        assert AuditActorMiddleware(writer)(request).content == b"ada"
    settings = [q["sql"] for q in queries if "set_config" in q["sql"]]
    assert len(settings) == 2  # set before the insert, restore at the end
    assert last_actor() == "ada"
    assert current_actor() == ""


@pytest.mark.django_db(transaction=True)
def test_in_a_transaction_the_actor_is_named_once_and_ends_with_it(
    rf, django_user_model
):
    """Writes in one transaction name the user with one query and leave nothing."""
    from django.test.utils import CaptureQueriesContext

    user = django_user_model.objects.create_user("lin", password="x" * 12)

    def writer(request):
        with transaction.atomic():
            Person.objects.create(name="First")
            Person.objects.create(name="Second")
        with transaction.atomic():
            Person.objects.create(name="Third, another transaction")
        return HttpResponse("ok")

    request = rf.post("/")
    request.user = user
    with CaptureQueriesContext(connection) as queries:
        AuditActorMiddleware(writer)(request)
    settings = [q["sql"] for q in queries if "set_config" in q["sql"]]
    assert len(settings) == 2, "once per transaction, no restore"
    assert list(
        AuditLog.objects.order_by("-id").values_list("actor", flat=True)[:3]
    ) == ["lin", "lin", "lin"]
    assert current_actor() == ""
