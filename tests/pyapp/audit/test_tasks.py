"""The reprs chain: batches, cursor, queries, restarts, stalled jobs, bad input."""

from __future__ import annotations

import logging

import psycopg
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from pyapp.audit import tasks
from pyapp.audit.models import InstanceRepr
from pyapp.core.backfills import AlreadyRunning, BatchSizeError
from tests.pyapp.audit.conftest import queued_chain_jobs, run_chain, sql

pytestmark = pytest.mark.usefixtures("committed")


def insert_people(count: int) -> None:
    """Insert people with plain SQL (no ORM signal, so no chain is queued)."""
    sql(
        "insert into person (name) select 'Person ' || g from generate_series(1, %s) g",
        [count],
    )


def reprs() -> dict[int, str]:
    return dict(InstanceRepr.objects.values_list("audit_log_id", "repr"))


def test_a_full_batch_is_one_read_one_insert_one_defer():
    """Exactly three queries; the successor carries the last row's cursor."""
    insert_people(5)

    with CaptureQueriesContext(connection) as queries:
        result = tasks.build_reprs(batch_size=2)

    statements = [query["sql"].lower() for query in queries]
    assert len(statements) == 3, statements
    assert "from audit_log" in statements[0]
    assert "insert into instance_repr" in statements[1]
    assert "procrastinate_defer_jobs" in statements[2]
    assert result["read"] == result["written"] == 2
    (job,) = queued_chain_jobs()
    assert job["args"] == {"batch_size": 2, "after": list(result["after"])}


def test_the_chain_stops_when_a_batch_is_not_full_and_represents_every_row():
    """5 rows, batches of 2: 2 + 2 + 1, the last defers nothing; all represented."""
    insert_people(5)

    with CaptureQueriesContext(connection) as queries:
        results = run_chain(batch_size=2)

    assert [r["read"] for r in results] == [2, 2, 1]
    assert results[-1]["after"] is None
    assert sorted(reprs().values()) == sorted(f"Person {n}" for n in range(1, 6))
    # run_chain's own bookkeeping aside: 3 + 3 + 2 queries of the batches.
    batch_queries = [q for q in queries if "procrastinate_jobs where" not in q["sql"]]
    assert len(batch_queries) == 3 + 3 + 2


def test_an_exactly_full_last_batch_ends_with_one_empty_read():
    """4 rows, batches of 2: the third batch reads nothing and writes nothing."""
    insert_people(4)
    with CaptureQueriesContext(connection) as queries:
        result = tasks.build_reprs(batch_size=4)
        sql("delete from procrastinate_jobs")
        empty = tasks.build_reprs(batch_size=4, after=list(result["after"]))
    assert (result["read"], empty["read"], empty["written"]) == (4, 0, 0)
    assert len(queries) == 3 + 1 + 1


def test_a_batch_never_looks_behind_its_cursor():
    """A row before the cursor without a representation is not read again."""
    insert_people(3)
    _, second, third = (row[0] for row in sql("select id from audit_log order by id"))
    (txid,) = sql("select txid from audit_log where id = %s", [second])[0]

    result = tasks.build_reprs(batch_size=10, after=[txid, second])

    assert result["read"] == 1 and set(reprs()) == {third}


def test_a_new_chain_starts_where_the_representations_end():
    """Without a cursor, a chain starts after the latest representation."""
    insert_people(3)
    run_chain(batch_size=10)
    sql(
        "delete from instance_repr where audit_log_id = (select min(id) from audit_log)"
    )
    insert_people(2)

    result = tasks.build_reprs(batch_size=10)

    assert result["read"] == 2  # the deleted one stays behind the chain's position


def test_a_row_committed_late_with_a_lower_id_is_not_skipped():
    """Rows are final only once older transactions ended; (txid, id) order waits."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params) as early, psycopg.connect(**params) as late:
        # "early" takes its transaction id first, "late" writes its row first.
        early.execute("select pg_current_xact_id()")
        late.execute("insert into person (name) values ('late txid, low id')")
        early.execute("insert into person (name) values ('early txid, high id')")
        early.commit()

        first = tasks.build_reprs(batch_size=10)
        late.commit()
        second = tasks.build_reprs(batch_size=10, after=None)

    assert first["read"] == 1 and second["read"] == 1
    assert sorted(reprs().values()) == ["early txid, high id", "late txid, low id"]


def test_a_duplicate_representation_is_ignored():
    """Writing a representation that exists is no error and changes nothing."""
    insert_people(1)
    rows = tasks.read_batch(10, None)
    assert tasks.write_reprs(rows) == 1
    assert tasks.write_reprs(rows) == 0


def test_an_unknown_table_gets_a_representation_saying_so():
    """A table no model knows never stalls the chain."""
    sql("create table gadget (id int primary key, name text)")
    try:
        sql("select audit_table('gadget')")
        sql("insert into gadget values (1, 'x')")
        insert_people(1)
        run_chain(batch_size=1)
    finally:
        sql("drop table gadget")
    assert sorted(reprs().values()) == [
        "(table public.gadget is not known to the application)",
        "Person 1",
    ]


def test_each_batch_logs_rows_read_and_written_and_its_duration(caplog):
    """One INFO record per batch with structured fields."""
    insert_people(3)
    with caplog.at_level(logging.INFO, logger="pyapp.core.chains"):
        run_chain(batch_size=2)
    records = [
        r for r in caplog.records if r.__dict__.get("action") == "audit_reprs_batch"
    ]
    assert [(r.examined, r.written, r.batch_size) for r in records] == [
        (2, 2, 2),
        (1, 1, 2),
    ]
    assert all(r.duration_ms >= 0 and r.chain == "reprs" for r in records)


@pytest.mark.parametrize("size", [0, -5, 10**9, "many"])
def test_a_bad_batch_size_is_refused_before_any_query(size):
    """The task and the chain start refuse it with a clear error and do nothing."""
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(BatchSizeError, match="batch size must"):
            tasks.build_reprs(batch_size=size)
        with pytest.raises(BatchSizeError, match="batch size must"):
            tasks.start_chain(size)
    assert len(queries) == 0


def test_an_orm_change_queues_one_chain_start_after_commit(make_person):
    """Saving audited models queues a chain start on commit, once per transaction."""
    with transaction.atomic():
        make_person(addresses=2)
        assert queued_chain_jobs() == []
    (job,) = queued_chain_jobs()
    assert job["args"] == {"batch_size": tasks.DEFAULT_BATCH_SIZE}

    make_person("Second")
    assert len(queued_chain_jobs()) == 1


def test_the_periodic_restart_starts_a_chain_only_when_rows_are_missing():
    """Nothing missing or a job queued: nothing; rows missing, nothing on: a start."""
    assert tasks.restart_reprs(timestamp=0) is False

    insert_people(2)
    assert tasks.restart_reprs(timestamp=0) is True
    assert tasks.restart_reprs(timestamp=0) is False  # one is queued now
    assert len(queued_chain_jobs()) == 1

    run_chain(batch_size=10)
    assert tasks.restart_reprs(timestamp=0) is False


def running_job(heartbeat_age: str) -> int:
    """Queue a chain job and mark it running on a worker last heard of that long ago."""
    (worker_id,) = sql(
        "insert into procrastinate_workers (last_heartbeat)"
        " values (now() - %s::interval) returning id",
        [heartbeat_age],
    )[0]
    tasks.build_reprs.defer(batch_size=5)
    (job,) = queued_chain_jobs()
    sql(
        "update procrastinate_jobs set status = 'doing', worker_id = %s where id = %s",
        [worker_id, job["id"]],
    )
    return job["id"]


def test_a_running_job_of_a_live_worker_is_left_alone():
    """A chain whose job runs on a worker with a fresh heartbeat is not restarted."""
    job_id = running_job("1 second")
    with pytest.raises(AlreadyRunning, match="already running"):
        tasks.start_chain(5)
    assert tasks.restart_reprs(timestamp=0) is False
    assert sql("select status from procrastinate_jobs where id = %s", [job_id]) == [
        ("doing",)
    ]


def test_a_job_of_a_dead_worker_is_aborted_and_the_chain_restarts():
    """A job left in doing by a worker without heartbeat no longer blocks the chain."""
    insert_people(2)
    job_id = running_job("1 hour")

    message = tasks.start_chain(5)

    assert "aborted 1 stalled job" in message
    assert sql("select status from procrastinate_jobs where id = %s", [job_id]) == [
        ("aborted",)
    ]
    assert len(queued_chain_jobs()) == 1


def test_progress_is_estimated_from_the_chain_position():
    """Done and remaining come from ids around the latest representation."""
    assert tasks.progress().remaining == 0
    insert_people(10)
    assert (tasks.progress().done, tasks.progress().remaining) == (0, 10)
    tasks.build_reprs(batch_size=4)
    assert (tasks.progress().done, tasks.progress().remaining) == (4, 6)
