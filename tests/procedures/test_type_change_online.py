"""The online path: a new column kept in step by a trigger, a backfill, a short swap."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import errors, sql

from tests.procedures import test_type_change as in_place
from tests.support.postgres import pgzen_env, run_pgzen

# The fixtures of the in-place tests, shared.
conn = in_place.conn
make_ratings = in_place.make_ratings
snapshot = in_place.snapshot

RISK = json.dumps({"HIGH": 3, "MEDIUM": 2, "LOW": 1})


def start(
    conn, table="rating", column="rating", mapping=RISK, new_type="integer", **options
):
    extra = "".join(f", {name} => %s" for name in options)
    return conn.execute(
        "select type_change_online_start(%s::regclass, %s, %s::text, %s::json"
        + extra
        + ")",
        [table, column, new_type, mapping, *options.values()],
    ).fetchone()[0]


def backfill(conn, after, batch_size, table="rating", column="rating"):
    return conn.execute(
        "select examined, last_key, written"
        "  from type_change_online_backfill(%s::regclass, %s, %s, %s)",
        [table, column, after, batch_size],
    ).fetchone()


def backfill_all(conn, batch_size=2):
    after = None
    while True:
        examined, after, _ = backfill(conn, after, batch_size)
        if examined < batch_size:
            return


def backfill_walk(conn, table, batch_size, after=None, between=None):
    """Run batches to the end (``between`` runs before each); return their results."""
    batches = []
    while True:
        if between is not None:
            between(len(batches))
        batch = backfill(conn, after, batch_size, table=table)
        batches.append(batch)
        examined, after, _ = batch
        if examined < batch_size:
            return batches


@pytest.fixture
def make_keyed(conn):
    """Make a table ``name`` keyed by ``key`` (column, type) pairs, with a rating.

    ``rows`` are the key values followed by the rating text (not null).
    """

    def make(key, rows, name="reading"):
        conn.execute(
            sql.SQL(
                "create table {} ({}, rating text not null, primary key ({}))"
            ).format(
                sql.Identifier(name),
                sql.SQL(", ").join(
                    sql.SQL("{} {} not null").format(sql.Identifier(c), sql.SQL(t))
                    for c, t in key
                ),
                sql.SQL(", ").join(sql.Identifier(c) for c, _ in key),
            )
        )
        with conn.cursor() as cursor:
            cursor.executemany(
                sql.SQL("insert into {} values ({})").format(
                    sql.Identifier(name),
                    sql.SQL(", ").join([sql.Placeholder()] * (len(key) + 1)),
                ),
                rows,
            )
        return name

    return make


def finish(conn, table="rating", column="rating", **options):
    extra = "".join(f", {name} => %s" for name in options)
    conn.execute(
        "select type_change_online_finish(%s::regclass, %s" + extra + ")",
        [table, column, *options.values()],
    )


def rows(conn, columns="id, rating, rating_new"):
    return conn.execute(f"select {columns} from rating order by id").fetchall()


def test_the_trigger_keeps_both_columns_in_step_both_ways(conn, make_ratings):
    """Old clients write text, new clients write integers; each fills the other."""
    make_ratings(["HIGH"], not_null=True)
    assert start(conn) == "rating_new"

    conn.execute("insert into rating (rating) values ('LOW')")
    conn.execute("insert into rating (rating_new) values (2)")
    conn.execute("update rating set rating = 'HIGH' where id = 2")
    conn.execute("update rating set rating_new = 1 where id = 3")
    conn.execute("insert into rating (rating, rating_new) values ('MEDIUM', 2)")

    assert rows(conn) == [
        (1, "HIGH", None),
        (2, "HIGH", 3),
        (3, "LOW", 1),
        (4, "MEDIUM", 2),
    ]


def test_the_trigger_refuses_unmapped_and_disagreeing_writes(conn, make_ratings):
    """An old client's unmapped value, or two columns that disagree, raise."""
    make_ratings(["HIGH"], not_null=True)
    start(conn)
    before = snapshot(conn, "rating")

    with pytest.raises(errors.CheckViolation, match="'URGENT' in column rating"):
        conn.execute("insert into rating (rating) values ('URGENT')")
    with pytest.raises(errors.CheckViolation, match="'7' in column rating_new"):
        conn.execute("insert into rating (rating_new) values (7)")
    with pytest.raises(errors.CheckViolation, match="disagree: LOW and 3"):
        conn.execute("insert into rating (rating, rating_new) values ('LOW', 3)")
    with pytest.raises(errors.CheckViolation, match="disagree: LOW and 2"):
        conn.execute("update rating set rating = 'LOW', rating_new = 2")
    assert snapshot(conn, "rating") == before


def test_backfill_walks_the_keyset_and_skips_rows_in_step(conn, make_ratings):
    """Each batch examines the next keys; rows the trigger filled are not written."""
    make_ratings(["HIGH", "LOW", "MEDIUM", "HIGH", "LOW"], not_null=True)
    start(conn)
    conn.execute("update rating set rating = 'MEDIUM' where id = 2")

    assert backfill(conn, None, 2) == (2, "2", 1)
    assert backfill(conn, "2", 2) == (2, "4", 2)
    assert backfill(conn, "4", 2) == (1, "5", 1)
    assert backfill(conn, "5", 2) == (0, None, 0)
    assert rows(conn, "rating_new") == [(3,), (2,), (2,), (3,), (1,)]
    assert conn.execute(
        "select done, remaining from type_change_online_progress('rating', 'rating')"
    ).fetchone() == (5, 0)


ORDER_LINE = [("order_id", "integer"), ("line_no", "text")]
ORDER_LINES = [
    (1, "a", "HIGH"),
    (1, "b", "LOW"),
    (1, "c", "MEDIUM"),
    (2, "a", "HIGH"),
    (10, "b", "LOW"),
]


def test_a_two_column_key_is_converted_online_end_to_end(conn, make_keyed):
    """The row-value cursor crosses line numbers within one order, then orders."""
    make_keyed(ORDER_LINE, ORDER_LINES, name="order_line")
    start(conn, table="order_line")

    batches = backfill_walk(conn, "order_line", 2)

    assert batches == [
        (2, '["1", "b"]', 2),
        (2, '["2", "a"]', 2),
        (1, '["10", "b"]', 1),
    ]
    finish(conn, table="order_line")
    assert conn.execute(
        "select order_id, line_no, rating from order_line order by 1, 2"
    ).fetchall() == [(1, "a", 3), (1, "b", 1), (1, "c", 2), (2, "a", 3), (10, "b", 1)]


LABELS = [
    "it's",
    "a,b",
    '(x, "y")',
    "NULL",
    "Zürich ☃",
    '"]',
    "'); drop table person; --",
    "long " + "é" * 1000,
]
# A microsecond apart, and a date whose Asia/Kathmandu offset (local mean time) has
# seconds.
MOMENTS = [
    datetime(2024, 3, 31, 1, 59, 59, 999999, tzinfo=UTC),
    datetime(2024, 3, 31, 2, 0, 0, tzinfo=UTC),
    datetime(1890, 1, 1, tzinfo=UTC),
]
IDS = [uuid.UUID(int=2), uuid.UUID("ffffffff-0000-4000-8000-000000000001")]
READINGS = [
    (label, moment, id_, ("HIGH", "LOW", "MEDIUM")[n % 3])
    for n, (label, moment, id_) in enumerate(itertools.product(LABELS, MOMENTS, IDS))
]
# Each batch may run on a connection of its own: the cursor must read back the same.
SESSIONS = [
    ("SQL, DMY", "Asia/Kathmandu"),
    ("German", "America/St_Johns"),
    ("Postgres, MDY", "UTC"),
    ("ISO, YMD", "Pacific/Chatham"),
]


@pytest.mark.parametrize("batch_size", [1, 5, len(READINGS)])
def test_a_mixed_three_column_key_converts_every_row_exactly_once(
    conn, make_keyed, batch_size
):
    """Text, timestamptz and uuid keys: no row skipped or examined twice."""
    make_keyed([("label", "text"), ("at", "timestamptz"), ("id", "uuid")], READINGS)
    conn.execute(
        """
        create table touched_key (label text, at timestamptz, id uuid);
        create function touched_key() returns trigger language plpgsql as $$
        begin
            insert into touched_key values (new.label, new.at, new.id);
            return null;
        end $$;
        create trigger touched_key after update on reading
            for each row execute function touched_key();
        """
    )
    start(conn, table="reading")

    def settings(batch):
        datestyle, zone = SESSIONS[batch % len(SESSIONS)]
        conn.execute(
            "select set_config('datestyle', %s, false),"
            "       set_config('timezone', %s, false)",
            [datestyle, zone],
        )

    batches = backfill_walk(conn, "reading", batch_size, between=settings)
    conn.execute("reset datestyle; reset timezone")

    assert sum(examined for examined, _, _ in batches) == len(READINGS)
    assert sum(written for _, _, written in batches) == len(READINGS)
    assert [examined for examined, _, _ in batches[:-1]] == [batch_size] * (
        len(batches) - 1
    )
    for _, cursor, _ in batches[:-1]:
        assert [type(value) for value in json.loads(cursor)] == [str, str, str]
    assert conn.execute(
        "select count(*), count(distinct (label, at, id)), count(r.label)"
        "  from touched_key left join reading as r using (label, at, id)"
    ).fetchone() == (len(READINGS), len(READINGS), len(READINGS))
    finish(conn, table="reading")
    converted = conn.execute("select label, at, id, rating from reading").fetchall()
    risk = json.loads(RISK)
    assert sorted(converted) == sorted(
        (label, at, id_, risk[rating]) for label, at, id_, rating in READINGS
    )
    assert conn.execute("select to_regclass('person')").fetchone()[0] is not None


@pytest.mark.parametrize(
    "key_type, keys",
    [
        ("text", ['["a", "b"]', "NULL", "it's, (odd)", "", "Zürich ☃"]),
        ("uuid", [uuid.UUID(int=n) for n in (3, 1, 2)]),
        (
            "timestamptz",
            [
                datetime(2024, 1, 1, tzinfo=UTC) + timedelta(microseconds=n)
                for n in (2, 0, 1)
            ],
        ),
        ("numeric", ["1.10", "-0.000001", "1e20"]),
    ],
)
def test_a_single_column_key_keeps_its_plain_text_cursor(
    conn, make_keyed, key_type, keys
):
    """A single key of any type is walked with the key's own text as the cursor."""
    make_keyed([("k", key_type)], [(key, "HIGH") for key in keys])
    start(conn, table="reading")
    texts = conn.execute("select k::text from reading order by k").fetchall()

    batches = backfill_walk(conn, "reading", 1)

    assert [cursor for _, cursor, _ in batches] == [t for (t,) in texts] + [None]


def test_an_in_flight_single_column_cursor_continues(conn, make_ratings):
    """A job queued by the previous version, with its plain text key, goes on."""
    make_ratings(["HIGH", "LOW", "MEDIUM", "HIGH", "LOW"], not_null=True)
    start(conn)

    # The previous version returned the last key as text: "3" after rows 1 to 3.
    assert backfill_walk(conn, "rating", 2, after="3") == [(2, "5", 2), (0, None, 0)]
    assert rows(conn, "id, rating_new") == [
        (1, None),
        (2, None),
        (3, None),
        (4, 3),
        (5, 1),
    ]


KEY_SHAPE = (
    "expected a JSON array of 2 strings, the values of its primary key"
    " (order_id, line_no)"
)


@pytest.mark.parametrize(
    "cursor, message",
    [
        ("not json", KEY_SHAPE),
        ("1", KEY_SHAPE),
        ('{"order_id": "1", "line_no": "a"}', KEY_SHAPE),
        ('["1"]', KEY_SHAPE),
        ('["1", "a", "b"]', KEY_SHAPE),
        ('[1, "a"]', KEY_SHAPE),
        ('["1", null]', KEY_SHAPE),
        (
            '["1); drop table person; --", "a"]',
            "key column order_id (integer): invalid input syntax for type integer:"
            ' "1); drop table person; --"',
        ),
    ],
)
def test_a_malformed_composite_cursor_is_refused_clearly(
    conn, make_keyed, cursor, message
):
    """A cursor that is not the key's values as a JSON array names what is wrong."""
    make_keyed(ORDER_LINE, ORDER_LINES, name="order_line")
    start(conn, table="order_line")
    before = snapshot(conn, "order_line")

    with pytest.raises(errors.InvalidParameterValue) as caught:
        backfill(conn, cursor, 2, table="order_line")

    assert str(caught.value).splitlines()[0] == (
        f"invalid cursor '{cursor}' for table order_line: {message}"
    )
    assert snapshot(conn, "order_line") == before
    assert conn.execute("select to_regclass('person')").fetchone()[0] is not None


def test_a_malformed_single_column_cursor_is_refused_clearly(conn, make_ratings):
    """A key its column's type does not take is named, a long one cut short."""
    make_ratings(["HIGH", "LOW"], not_null=True)
    start(conn)
    before = snapshot(conn, "rating")

    with pytest.raises(errors.InvalidParameterValue) as caught:
        backfill(conn, "abc", 2)
    assert str(caught.value).splitlines()[0] == (
        "invalid cursor 'abc' for table rating: key column id (bigint):"
        ' invalid input syntax for type bigint: "abc"'
    )
    with pytest.raises(errors.InvalidParameterValue) as caught:
        backfill(conn, "9" * 500, 2)
    assert str(caught.value).startswith(f"invalid cursor '{'9' * 100}'... for table")
    assert snapshot(conn, "rating") == before


def test_a_cursor_value_with_quotes_is_data_not_sql(conn, make_keyed):
    """A text key value that looks like SQL is compared as a value, nothing more."""
    make_keyed(ORDER_LINE, ORDER_LINES, name="order_line")
    start(conn, table="order_line")

    examined, last_key, _ = backfill(
        conn, '["1", "a\'); drop table person; --"]', 10, table="order_line"
    )

    assert (examined, last_key) == (4, '["10", "b"]')
    assert conn.execute("select to_regclass('person')").fetchone()[0] is not None


def test_a_table_without_a_primary_key_is_refused(conn, make_ratings):
    """Start refuses a table without a primary key, and so does a batch."""
    conn.execute("create table loose (rating text not null)")
    conn.execute("insert into loose values ('HIGH')")
    before = snapshot(conn, "loose")

    with pytest.raises(
        errors.ObjectNotInPrerequisiteState, match="table loose has no primary key"
    ):
        start(conn, table="loose")
    assert snapshot(conn, "loose") == before

    # Dropped after start: the batch says so instead of guessing an order.
    make_ratings(["HIGH"], not_null=True)
    start(conn)
    conn.execute("alter table rating drop constraint rating_pkey")
    with pytest.raises(
        errors.ObjectNotInPrerequisiteState, match="table rating has no primary key"
    ):
        backfill(conn, None, 10)


def test_finish_refuses_until_every_row_is_backfilled(conn, make_ratings):
    """The swap waits for the backfill; refused, it changes nothing."""
    make_ratings(["HIGH", "LOW", "MEDIUM"], not_null=True)
    start(conn)
    backfill(conn, None, 1)
    before = snapshot(conn, "rating")

    with pytest.raises(
        errors.ObjectNotInPrerequisiteState, match="2 rows of table rating not"
    ):
        finish(conn)
    assert snapshot(conn, "rating") == before


def test_finish_swaps_the_column_in_with_row_triggers_present(conn, make_ratings):
    """The swap keeps name, NOT NULL and comment; other row triggers keep working."""
    make_ratings(["HIGH", "LOW"], not_null=True)
    conn.execute("comment on column rating.rating is 'how bad'")
    # Row triggers of the kind an audit log adds, before and after, reading the
    # whole row.
    conn.execute(
        """
        create table rating_log (id serial, image jsonb);
        create function rating_log() returns trigger language plpgsql as $$
        begin
            insert into rating_log (image) values (to_jsonb(new));
            return new;
        end $$;
        create trigger a_rating_log before insert or update on rating
            for each row execute function rating_log();
        create trigger rating_audit after insert or update on rating
            for each row execute function rating_log();
        """
    )
    start(conn)
    conn.execute("insert into rating (rating) values ('MEDIUM')")
    backfill_all(conn)

    finish(conn)

    columns = conn.execute(
        "select attname, format_type(atttypid, atttypmod), attnotnull,"
        "       col_description(attrelid, attnum)"
        "  from pg_attribute where attrelid = 'rating'::regclass and attnum > 0"
        "   and not attisdropped order by attnum"
    ).fetchall()
    assert columns == [
        ("id", "bigint", True, None),
        ("rating", "integer", True, "how bad"),
    ]
    assert rows(conn, "id, rating") == [(1, 3), (2, 1), (3, 2)]
    triggers = conn.execute(
        "select tgname from pg_trigger where tgrelid = 'rating'::regclass"
        " order by tgname"
    ).fetchall()
    assert triggers == [("a_rating_log",), ("rating_audit",)]
    constraints = conn.execute(
        "select conname from pg_constraint where conrelid = 'rating'::regclass"
        " and contype = 'c'"
    ).fetchall()
    assert constraints == []
    assert conn.execute("select * from type_change_online_pending()").fetchall() == []

    conn.execute("insert into rating (rating) values (2)")
    image = conn.execute(
        "select image from rating_log order by id desc limit 1"
    ).fetchone()[0]
    assert image == {"id": 4, "rating": 2}


def test_finish_can_keep_the_new_name_for_code_already_using_it(conn, make_ratings):
    """rename => false drops the old column and leaves the new one as it is named."""
    make_ratings(["HIGH", "LOW"], not_null=True)
    start(conn)
    backfill_all(conn)

    finish(conn, rename=False)

    assert rows(conn, "id, rating_new") == [(1, 3), (2, 1)]
    assert conn.execute(
        "select attnotnull from pg_attribute"
        " where attrelid = 'rating'::regclass and attname = 'rating_new'"
    ).fetchone() == (True,)


def test_finish_refuses_while_an_index_uses_the_old_column(conn, make_ratings):
    """An index on the old column would vanish silently; finish names it instead."""
    make_ratings(["HIGH"])
    start(conn)
    backfill_all(conn)
    conn.execute("create index rating_rating_idx on rating (rating)")
    before = snapshot(conn, "rating")

    with pytest.raises(
        errors.DependentObjectsStillExist, match="index rating_rating_idx"
    ):
        finish(conn)
    assert snapshot(conn, "rating") == before


def test_finish_gives_up_on_a_busy_table(conn, make_ratings, pg_target):
    """The swap's lock waits at most lock_timeout, then nothing has changed."""
    make_ratings(["HIGH"])
    start(conn)
    backfill_all(conn)
    before = snapshot(conn, "rating")

    with psycopg.connect(pg_target.conninfo()) as holder:
        holder.execute("select * from rating")
        with pytest.raises(errors.LockNotAvailable, match="could not lock table"):
            finish(conn, lock_timeout="50ms")
        holder.rollback()
    assert snapshot(conn, "rating") == before


def test_start_refuses_what_the_in_place_path_refuses(conn, make_ratings):
    """Unmapped values, many-to-one mappings and missing names stop start early."""
    make_ratings(["HIGH", "URGENT"])
    before = snapshot(conn, "rating")

    with pytest.raises(errors.CheckViolation, match="1 value in column rating"):
        start(conn)
    with pytest.raises(errors.InvalidParameterValue, match="both to 3"):
        start(conn, mapping='{"HIGH": 3, "URGENT": 3}')
    with pytest.raises(errors.UndefinedColumn):
        start(conn, column="rating; drop table person")
    with pytest.raises((errors.UndefinedTable, errors.InvalidName)):
        start(conn, table='rating"; drop table person; --')
    with pytest.raises(errors.SyntaxError, match="invalid target type"):
        start(conn, new_type="integer; drop table person")
    with pytest.raises(errors.InvalidParameterValue, match=r"stored as '1\.24'"):
        start(conn, mapping='{"HIGH": 1.239, "URGENT": 4}', new_type="numeric(5,2)")
    assert snapshot(conn, "rating") == before
    assert conn.execute("select to_regclass('person')").fetchone()[0] is not None

    start(conn, mapping='{"HIGH": 3, "URGENT": 4}')
    with pytest.raises(errors.ObjectNotInPrerequisiteState, match="already in"):
        start(conn, mapping='{"HIGH": 3, "URGENT": 4}', new_column="other")


def test_the_online_path_keeps_a_type_modifier(conn, make_ratings):
    """numeric(5,2) holds for the new column, both trigger directions and the swap."""
    make_ratings(["HIGH", "LOW"], not_null=True)
    weights = json.dumps({"HIGH": 3.5, "MEDIUM": 2, "LOW": "1.25"})
    start(conn, mapping=weights, new_type="numeric(5,2)")
    type_of_new = (
        "select format_type(atttypid, atttypmod) from pg_attribute"
        " where attrelid = 'rating'::regclass and attname = %s"
    )
    assert conn.execute(type_of_new, ["rating_new"]).fetchone() == ("numeric(5,2)",)

    conn.execute("insert into rating (rating) values ('MEDIUM')")
    conn.execute("insert into rating (rating_new) values (1.25)")
    backfill_all(conn)
    finish(conn)

    assert conn.execute(type_of_new, ["rating"]).fetchone() == ("numeric(5,2)",)
    assert rows(conn, "id, rating::text") == [
        (1, "3.50"),
        (2, "1.25"),
        (3, "2.00"),
        (4, "1.25"),
    ]


def test_start_refuses_keys_the_old_columns_modifier_would_cut(conn, make_ratings):
    """Keys are written back into the old column, so they must fit its modifier."""
    make_ratings(["HIGH", "LOW"], not_null=True)
    conn.execute("alter table rating alter column rating type varchar(4)")
    before = snapshot(conn, "rating")

    with pytest.raises(errors.InvalidParameterValue) as caught:
        start(conn)

    assert str(caught.value).splitlines()[0] == (
        "mapping cannot be reversed into column rating (character varying(4)):"
        " mapping value 'MEDIUM' for '2' would be stored as 'MEDI' in"
        " character varying(4)"
    )
    assert snapshot(conn, "rating") == before
    assert conn.execute("select * from type_change_online_pending()").fetchall() == []

    start(conn, mapping='{"HIGH": 3, "LOW": 1}')
    conn.execute("insert into rating (rating_new) values (1)")
    assert rows(conn, "rating") == [("HIGH",), ("LOW",), ("LOW",)]


def test_abort_leaves_the_table_as_it_was(conn, make_ratings):
    """Abort drops the new column, its constraints, trigger and function."""
    make_ratings(["HIGH", "LOW"], not_null=True)
    before = snapshot(conn, "rating")
    start(conn)

    conn.execute("select type_change_online_abort('rating', 'rating')")

    assert snapshot(conn, "rating") == before
    leftovers = conn.execute(
        "select count(*) from pg_proc where proname like 'type\\_change\\_sync\\_%'"
    ).fetchone()
    assert leftovers == (0,)


@pytest.mark.slow
def test_backfill_chain_runs_on_a_real_worker(conn, make_ratings, pg_target):
    """pgzen backfill type-change fills the column in batches via a worker."""
    make_ratings(["HIGH", "LOW", "MEDIUM"] * 4, not_null=True)
    start(conn)
    worker = subprocess.Popen(
        [sys.executable, "-m", "pyapp", "worker"],
        env=pgzen_env(pg_target),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        result = run_pgzen(
            pg_target, "backfill", "type-change", "--batch-size", "5", "--wait"
        )
        assert "started 1 chain(s) of 5 rows: rating.rating -> rating_new" in (
            result.stdout
        )
    finally:
        worker.terminate()
        worker.wait(10)

    assert conn.execute(
        "select done, remaining from type_change_online_progress('rating', 'rating')"
    ).fetchone() == (12, 0)
    jobs = conn.execute(
        "select status, args ->> 'after' from procrastinate_jobs"
        " where queueing_lock = 'type-change:rating.rating' order by id"
    ).fetchall()
    assert jobs == [("succeeded", None), ("succeeded", "5"), ("succeeded", "10")]
    finish(conn)
    assert rows(conn, "rating")[:3] == [(3,), (1,), (2,)]
