"""defer_successor: a chain's next job commits with its batch, and never twice."""

import uuid

import pytest
from django.db import connection, transaction
from procrastinate.contrib.django import app
from procrastinate.psycopg_connector import PsycopgConnector

from pyapp.audit.tasks import build_reprs
from pyapp.core.chains import defer_successor


@pytest.fixture(autouse=True)
def lock():
    """A chain lock of this test's own; its jobs are removed afterwards."""
    name = f"test-chain-{uuid.uuid4().hex[:8]}"
    yield name
    with connection.cursor() as cursor:
        cursor.execute(
            "delete from procrastinate_jobs where queueing_lock = %s", [name]
        )


def queued(lock):
    with connection.cursor() as cursor:
        cursor.execute(
            "select count(*) from procrastinate_jobs"
            " where queueing_lock = %s and status = 'todo'",
            [lock],
        )
        return cursor.fetchone()[0]


@pytest.fixture
def worker_connector():
    """The app on a separate connection pool, as inside `pgzen worker`."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    connector = PsycopgConnector(kwargs=params)
    with app.replace_connector(connector):
        app.open()
        yield connector
        app.close()


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_the_successor_rolls_back_with_the_batch(
    worker_connector, lock
):
    """A successor deferred in a batch that fails never reaches the queue."""
    with pytest.raises(RuntimeError), transaction.atomic():
        assert defer_successor(build_reprs, lock=lock, batch_size=10, after=[1, 2])
        raise RuntimeError("the batch failed after deferring")
    assert queued(lock) == 0

    with transaction.atomic():
        assert defer_successor(build_reprs, lock=lock, batch_size=10, after=[1, 2])
    assert queued(lock) == 1


@pytest.mark.django_db(transaction=True)
def test_a_second_successor_is_refused_and_the_batch_still_commits(
    worker_connector, lock
):
    """A queued job of the chain refuses another; the batch's transaction survives."""
    with transaction.atomic():
        assert defer_successor(build_reprs, lock=lock, batch_size=10, after=[1, 2])
        assert not defer_successor(build_reprs, lock=lock, batch_size=10, after=[3, 4])
        with connection.cursor() as cursor:
            cursor.execute("insert into person (name) values ('still usable')")
    assert queued(lock) == 1
    with connection.cursor() as cursor:
        cursor.execute("select count(*) from person where name = 'still usable'")
        assert cursor.fetchone() == (1,)
        cursor.execute("delete from person where name = 'still usable'")


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_apps_connector_is_used(worker_connector, lock):
    """With no transaction open the job is deferred at once, and only once."""
    assert defer_successor(build_reprs, lock=lock, batch_size=10, after=None)
    assert not defer_successor(build_reprs, lock=lock, batch_size=10, after=None)
    assert queued(lock) == 1
