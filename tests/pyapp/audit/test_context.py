"""Who made a change: the actor set by the middleware, by tasks, or by hand."""

from __future__ import annotations

import contextlib

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import DataError, IntegrityError, connection, transaction
from django.http import HttpResponse
from django.test.utils import CaptureQueriesContext

from pyapp.audit.context import audit_actor, audited_task
from pyapp.audit.middleware import AuditActorMiddleware
from pyapp.audit.models import AuditLog
from pyapp.people.models import Person
from tests.pyapp.audit.conftest import sql

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
    assert middleware(request).content == b"", "named for the write's transaction only"
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
        assert AuditActorMiddleware(writer)(request).content == b""
    settings = [q["sql"] for q in queries if "set_config" in q["sql"]]
    assert len(settings) == 1  # in the insert's own transaction, nothing to restore
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


# Never on the session: checked outside any transaction, where only a session-level
# value would show.


def session_actor() -> str:
    assert not connection.in_atomic_block
    return current_actor()


def last_actors(count: int) -> list[str]:
    """The actors of the last ``count`` audit rows, oldest first."""
    rows = AuditLog.objects.order_by("-id").values_list("actor", flat=True)[:count]
    return list(reversed(rows))


def signed_in_request(rf, django_user_model, username: str):
    request = rf.post("/")
    request.user = django_user_model.objects.create_user(username, password="x" * 12)
    return request


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_autocommit_writes_in_audit_actor_name_it_and_leave_the_session_unset():
    """Each autocommit write names the actor; the session never holds it."""
    with audit_actor("importer"):
        person = Person.objects.create(name="One")
        assert session_actor() == ""
        Person.objects.filter(pk=person.pk).update(name="Two")
        assert session_actor() == ""
        Person.objects.filter(pk=person.pk).delete()
    assert session_actor() == ""
    assert last_actors(3) == ["importer", "importer", "importer"]
    Person.objects.create(name="After")
    assert last_actor() == database_role()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_an_autocommit_write_runs_in_a_transaction_of_its_own_named_first():
    """One write in autocommit mode: BEGIN, the local setting, the write, COMMIT."""
    with CaptureQueriesContext(connection) as queries, audit_actor("importer"):
        sql("insert into person (name) values ('One')")
    # Django logs a statement when it returns, after the transaction around it.
    statements = [q["sql"].split(" ", 1)[0] for q in queries]
    assert statements == ["BEGIN", "select", "COMMIT", "insert"]
    assert queries[1]["sql"].endswith("set_config('pgzen.actor', 'importer', true)")
    assert last_actor() == "importer"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_raw_cursor_writes_name_the_actor(rf, django_user_model):
    """cursor.execute() of update, a writing CTE and truncate names the actor."""
    person = Person.objects.create(name="Raw")
    with audit_actor("by-hand"):
        sql("update person set name = 'Raw 2' where id = %s", [person.pk])
        assert last_actor() == "by-hand"
        sql(
            "with gone as (delete from person where id = %s returning id)"
            " select count(*) from gone",
            [person.pk],
        )
        assert last_actor() == "by-hand"

    def view(request):
        sql("insert into person (name) values ('Raw 3')")
        return HttpResponse(current_actor())

    request = signed_in_request(rf, django_user_model, "hopper")
    assert AuditActorMiddleware(view)(request).content == b""
    assert last_actor() == "hopper"

    with audit_actor("truncator"):
        sql("truncate person cascade")
    truncates = AuditLog.objects.filter(op="truncate").values_list("actor", flat=True)
    assert set(truncates) == {"truncator"}
    assert session_actor() == ""


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_nested_blocks_in_autocommit_name_the_inner_then_the_outer_again():
    """Outside a transaction, the innermost block names the writes, then the outer."""
    with audit_actor("outer"):
        Person.objects.create(name="A")
        with audit_actor("inner"):
            Person.objects.create(name="B")
        Person.objects.create(name="C")
    assert last_actors(3) == ["outer", "inner", "outer"]
    assert session_actor() == ""


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_nested_blocks_in_a_transaction_end_with_the_value_from_before():
    """Inside one transaction nesting switches the actor; after it, the prior value."""
    with transaction.atomic():
        sql("select set_config('pgzen.actor', 'by hand', true)")
        with audit_actor("outer"):
            Person.objects.create(name="A")
            with audit_actor("inner"):
                Person.objects.create(name="B")
            Person.objects.create(name="C")
        assert current_actor() == "by hand"
        Person.objects.create(name="D")
    assert last_actors(4) == ["outer", "inner", "outer", "by hand"]
    assert session_actor() == ""


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_a_transaction_costs_one_setting_and_nothing_is_restored_after_it():
    """audit_actor around a transaction: one setting in it, no query after it."""
    with CaptureQueriesContext(connection) as queries, audit_actor("batch"):
        with transaction.atomic():
            Person.objects.create(name="A")
            Person.objects.create(name="B")
        Person.objects.count()
    settings = [q["sql"] for q in queries if "set_config" in q["sql"]]
    assert len(settings) == 1
    assert last_actors(2) == ["batch", "batch"]


def test_a_savepoint_rolled_back_leaves_the_outer_actor_named():
    """An inner block's value, undone by its savepoint's rollback, is not assumed."""
    with transaction.atomic(), audit_actor("outer"):
        with (
            contextlib.suppress(RuntimeError),
            transaction.atomic(),
            audit_actor("inner"),
        ):
            Person.objects.create(name="Rolled back")
            raise RuntimeError
        Person.objects.create(name="Kept")
        assert last_actor() == "outer"
        with contextlib.suppress(RuntimeError), transaction.atomic():
            with audit_actor("inner"):
                Person.objects.create(name="Rolled back too")
            raise RuntimeError
        Person.objects.create(name="Kept too")
        assert last_actor() == "outer"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_the_middleware_names_again_after_a_savepoint_took_its_value(
    rf, django_user_model
):
    """A write after a rolled-back savepoint that held the first setting is named."""

    def view(request):
        with transaction.atomic():
            with contextlib.suppress(RuntimeError), transaction.atomic():
                Person.objects.create(name="Rolled back")
                raise RuntimeError
            Person.objects.create(name="Kept")
        return HttpResponse("ok")

    AuditActorMiddleware(view)(signed_in_request(rf, django_user_model, "turing"))
    assert list(Person.objects.values_list("name", flat=True)) == ["Kept"]
    assert last_actor() == "turing"


def test_a_function_that_writes_called_by_a_select_in_a_transaction_is_named():
    """audit_actor names a transaction's first statement, a writing select too."""
    person = Person.objects.create(name="Before")
    sql(
        "create function pg_temp.rename_people(new_name text) returns void"
        " language plpgsql as $$ begin update person set name = new_name; end $$"
    )
    with audit_actor("task:rename"), transaction.atomic():
        sql("select pg_temp.rename_people('After')")
    person.refresh_from_db()
    assert person.name == "After"
    assert last_actor() == "task:rename"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_an_error_in_an_autocommit_write_is_raised_as_it_is():
    """A failed autocommit write raises its own error and leaves nothing set."""
    Person.objects.create(name="Ada")
    with pytest.raises(IntegrityError, match="null value"), audit_actor("x"):
        sql("update person set name = null")
    assert session_actor() == ""
    assert not connection.in_atomic_block and connection.get_autocommit()
    Person.objects.create(name="After")
    assert last_actor() == database_role()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_audit_actor_inside_a_request_names_itself_then_the_user(rf, django_user_model):
    """A block inside a request names its writes; the user names the others."""

    def view(request):
        Person.objects.create(name="A")
        with audit_actor("task:inline"):
            Person.objects.create(name="B")
        with transaction.atomic():
            Person.objects.create(name="C")
            with audit_actor("task:inline"):
                Person.objects.create(name="D")
            Person.objects.create(name="E")
        return HttpResponse("ok")

    AuditActorMiddleware(view)(signed_in_request(rf, django_user_model, "noether"))
    assert last_actors(5) == [
        "noether",
        "task:inline",
        "noether",
        "task:inline",
        "noether",
    ]
    assert session_actor() == ""


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_a_read_only_request_costs_nothing_inside_a_transaction_either(
    rf, django_user_model
):
    """Reads in autocommit and in atomic blocks: the same queries as without it."""

    def reader(request):
        Person.objects.count()
        with transaction.atomic():
            list(Person.objects.all())
            Person.objects.exists()
        return HttpResponse("ok")

    request = signed_in_request(rf, django_user_model, "lovelace")
    with CaptureQueriesContext(connection) as bare:
        reader(request)
    with CaptureQueriesContext(connection) as wrapped:
        AuditActorMiddleware(reader)(request)
    assert [q["sql"] for q in wrapped] == [q["sql"] for q in bare]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("committed")
def test_no_statement_the_wrappers_send_sets_the_session(rf, django_user_model):
    """Every set_config sent by audit_actor or the middleware is transaction-local."""

    def view(request):
        Person.objects.create(name="A")
        with transaction.atomic():
            Person.objects.create(name="B")
            with audit_actor("inner"):
                Person.objects.create(name="C")
        return HttpResponse("ok")

    request = signed_in_request(rf, django_user_model, "curie")
    with CaptureQueriesContext(connection) as queries:
        AuditActorMiddleware(view)(request)
        with audit_actor("outer"), transaction.atomic():
            Person.objects.create(name="D")
            with audit_actor("inner"):
                Person.objects.create(name="E")
    settings = [q["sql"] for q in queries if "set_config" in q["sql"]]
    assert len(settings) == 7
    assert all(setting.endswith(", true)") for setting in settings), settings
    assert session_actor() == ""
