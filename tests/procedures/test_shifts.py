"""Shift annotations in SQL: constraints, the computation, triggers, the batch."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

ANNOTATION_COLUMNS = (
    "shift_id, local_starts_at, local_ends_at, local_date, weekday, worked_minutes,"
    " crosses_midnight, pay_class, time_zone_version"
)
ROLLBACK = Path(__file__).parents[2] / "migrations" / "0010_shifts.rollback.sql"

#: Zones with daylight saving in either hemisphere, odd offsets, and none at all.
ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Auckland",
    "Asia/Kathmandu",
    "Asia/Kolkata",
    "America/St_Johns",
    "UTC",
]


@pytest.fixture
def conn(pg_conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The fresh database, each statement its own transaction (as in psql)."""
    pg_conn.autocommit = True
    return pg_conn


def add_location(conn: psycopg.Connection[Any], zone: str, name: str = "") -> int:
    row = conn.execute(
        "insert into location (name, time_zone) values (%s, %s) returning id",
        [name or zone, zone],
    ).fetchone()
    return int(row[0])


def add_shift(
    conn: psycopg.Connection[Any], location_id: int, starts: str, ends: str
) -> int:
    row = conn.execute(
        "insert into shift (location_id, starts_at, ends_at)"
        " values (%s, %s, %s) returning id",
        [location_id, starts, ends],
    ).fetchone()
    return int(row[0])


def annotations(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"select {ANNOTATION_COLUMNS} from shift_annotation order by shift_id"
    ).fetchall()


def annotation(conn: psycopg.Connection[Any], shift_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        row = cursor.execute(
            "select * from shift_annotation where shift_id = %s", [shift_id]
        ).fetchone()
    assert row is not None, f"shift {shift_id} has no annotation"
    return row


def batch(conn: psycopg.Connection[Any], *args: Any) -> tuple[int, int, int | None]:
    placeholders = ", ".join(["%s"] * len(args))
    rows = conn.execute(
        f"select * from shift_annotation_backfill_batch({placeholders})", list(args)
    ).fetchall()
    assert len(rows) == 1, f"a batch returns exactly one row, got {rows}"
    return rows[0]


def backfill(conn: psycopg.Connection[Any], batch_size: int = 7) -> list[tuple]:
    """Walk every batch as a chain would; return each batch's result."""
    results, cursor = [], 0
    while True:
        result = batch(conn, cursor, batch_size)
        results.append(result)
        if result[0] < batch_size:
            return results
        cursor = result[2]


def seed_unannotated(conn: psycopg.Connection[Any], count: int) -> None:
    add_location(conn, "Europe/Berlin")
    conn.execute("select shift_seed(%s)", [count])


# --- bad input ------------------------------------------------------------------


def test_an_unknown_time_zone_is_refused_naming_the_constraint(conn):
    """A zone not in pg_timezone_names: check violation location_time_zone_known."""
    with pytest.raises(errors.CheckViolation) as caught:
        add_location(conn, "Mars/Olympus_Mons")

    assert caught.value.diag.constraint_name == "location_time_zone_known"
    assert "location_time_zone_known" in str(caught.value)
    assert "'Mars/Olympus_Mons'" in str(caught.value)


def test_a_time_zone_change_to_an_unknown_zone_is_refused(conn):
    """The check runs on update too."""
    location_id = add_location(conn, "Europe/Berlin")

    with pytest.raises(errors.CheckViolation, match="location_time_zone_known"):
        conn.execute(
            "update location set time_zone = 'Europe/Atlantis' where id = %s",
            [location_id],
        )


def test_a_shift_ending_before_it_starts_is_refused_naming_the_constraint(conn):
    """Ends not after starts: shift_ends_after_start (equal times too)."""
    location_id = add_location(conn, "UTC")

    for ends in ("2026-01-01 08:00Z", "2026-01-01 09:00Z"):
        with pytest.raises(errors.CheckViolation) as caught:
            add_shift(conn, location_id, "2026-01-01 09:00Z", ends)
        assert caught.value.diag.constraint_name == "shift_ends_after_start"
        assert "shift_ends_after_start" in str(caught.value)


def test_a_shift_at_an_unknown_location_is_refused_naming_the_constraint(conn):
    """A location id that does not exist: shift_location_fkey."""
    with pytest.raises(errors.ForeignKeyViolation) as caught:
        add_shift(conn, 424242, "2026-01-01 09:00Z", "2026-01-01 17:00Z")

    assert caught.value.diag.constraint_name == "shift_location_fkey"
    assert "shift_location_fkey" in str(caught.value)


def test_the_psql_backfill_refuses_a_batch_size_below_one(conn):
    """CALL shift_annotation_backfill(0): a clear error, nothing done."""
    for size in (0, -5):
        with pytest.raises(errors.InvalidParameterValue, match="at least 1"):
            conn.execute("call shift_annotation_backfill(%s)", [size])


# --- the computation ----------------------------------------------------------------


VALUE_CASES = [
    # Berlin springs forward in this night shift: 8 wall-clock hours, 7 worked.
    (
        "Europe/Berlin",
        "2026-03-28 22:00+01",
        "2026-03-29 06:00+02",
        ("2026-03-28 22:00", "2026-03-29 06:00", date(2026, 3, 28), 6, 420, 1, 3),
    ),
    # and falls back: 8 wall-clock hours, 9 worked; a Monday, so night pay.
    (
        "Europe/Berlin",
        "2026-10-26 22:00+01",
        "2026-10-27 06:00+01",
        ("2026-10-26 22:00", "2026-10-27 06:00", date(2026, 10, 26), 1, 480, 1, 2),
    ),
    (
        "Europe/Berlin",
        "2026-10-24 22:00+02",
        "2026-10-25 06:00+01",
        ("2026-10-24 22:00", "2026-10-25 06:00", date(2026, 10, 24), 6, 540, 1, 3),
    ),
    # Sydney's daylight saving is in the southern summer; a Wednesday day shift.
    (
        "Australia/Sydney",
        "2026-01-06 22:00Z",
        "2026-01-07 06:00Z",
        ("2026-01-07 09:00", "2026-01-07 17:00", date(2026, 1, 7), 3, 480, 0, 1),
    ),
    # Kathmandu is UTC+05:45: the local date differs from the UTC date.
    (
        "Asia/Kathmandu",
        "2026-06-01 19:00Z",
        "2026-06-01 23:00Z",
        ("2026-06-02 00:45", "2026-06-02 04:45", date(2026, 6, 2), 2, 240, 0, 2),
    ),
    # Ending exactly at midnight does not cross it, but touches the night.
    (
        "UTC",
        "2026-12-02 16:00Z",
        "2026-12-03 00:00Z",
        ("2026-12-02 16:00", "2026-12-03 00:00", date(2026, 12, 2), 3, 480, 0, 2),
    ),
    # Before 1970: weekday and date arithmetic below the epoch.
    (
        "UTC",
        "1969-12-31 09:00Z",
        "1969-12-31 17:30:59Z",
        ("1969-12-31 09:00", "1969-12-31 17:30:59", date(1969, 12, 31), 3, 510, 0, 1),
    ),
]


def test_values_follow_the_local_clock_and_count_absolute_time(conn):
    """Local times, date, ISO weekday, minutes worked, midnight, pay class."""
    for zone, starts, ends, expected in VALUE_CASES:
        row = conn.execute(
            "select local_starts_at::text, local_ends_at::text, local_date, weekday,"
            " worked_minutes, crosses_midnight::int, pay_class"
            " from shift_annotation_values(%s, %s, %s)",
            [starts, ends, zone],
        ).fetchone()

        local_start, local_end, *rest = expected
        case = f"{zone} {starts}..{ends}"
        assert row[0].startswith(local_start) and row[1].startswith(local_end), case
        assert tuple(row[2:]) == tuple(rest), case


def random_shifts(count: int, seed: int) -> list[tuple[str, datetime, datetime]]:
    """Shifts in every zone, many straddling a daylight-saving change."""
    rng = random.Random(seed)
    transitions = [
        datetime(2026, 3, 29, 1, tzinfo=UTC),  # Europe spring
        datetime(2026, 10, 25, 1, tzinfo=UTC),  # Europe autumn
        datetime(2026, 3, 8, 7, tzinfo=UTC),  # New York spring
        datetime(2026, 11, 1, 6, tzinfo=UTC),  # New York autumn
        datetime(2026, 4, 4, 16, tzinfo=UTC),  # Sydney autumn
        datetime(2026, 10, 3, 16, tzinfo=UTC),  # Sydney spring
        datetime(2026, 4, 4, 14, tzinfo=UTC),  # Auckland autumn
        datetime(2026, 9, 26, 14, tzinfo=UTC),  # Auckland spring
    ]
    shifts = []
    for _ in range(count):
        zone = rng.choice(ZONES)
        if rng.random() < 0.6:
            near = rng.choice(transitions)
            starts = near - timedelta(minutes=rng.randrange(0, 14 * 60, 5))
        else:
            starts = datetime(1995, 1, 1, tzinfo=UTC) + timedelta(
                minutes=rng.randrange(0, 40 * 365 * 24 * 60)
            )
        starts += timedelta(seconds=rng.choice([0, 0, 0, 30]))
        ends = starts + timedelta(minutes=rng.randrange(1, 16 * 60))
        shifts.append((zone, starts, ends))
    return shifts


def test_the_trigger_row_and_the_backfill_row_are_identical(conn):
    """Random shifts across zones and DST changes: trigger row == batch row."""
    locations = {zone: add_location(conn, zone) for zone in ZONES}
    with conn.cursor() as cursor:
        cursor.executemany(
            "insert into shift (location_id, starts_at, ends_at) values (%s, %s, %s)",
            [(locations[z], s, e) for z, s, e in random_shifts(600, seed=5)],
        )
    by_trigger = annotations(conn)
    assert len(by_trigger) == 600

    conn.execute("delete from shift_annotation")
    results = backfill(conn, batch_size=64)

    assert sum(written for _, written, _ in results) == 600
    assert annotations(conn) == by_trigger


# --- triggers -----------------------------------------------------------------


def test_an_inserted_shift_is_annotated_in_the_same_transaction(conn):
    """Visible before commit, by the inserting transaction itself."""
    location_id = add_location(conn, "Europe/Berlin")

    with conn.transaction():
        shift_id = add_shift(
            conn, location_id, "2026-07-01 06:00Z", "2026-07-01 14:00Z"
        )
        row = annotation(conn, shift_id)

    assert row["local_starts_at"] == datetime(2026, 7, 1, 8, 0)
    assert row["worked_minutes"] == 480
    assert row["time_zone_version"] == 1


def test_changing_times_or_location_refreshes_the_annotation(conn):
    """An update of starts_at, ends_at or location_id rewrites the row."""
    berlin = add_location(conn, "Europe/Berlin")
    tokyo = add_location(conn, "Asia/Tokyo")
    shift_id = add_shift(conn, berlin, "2026-07-01 06:00Z", "2026-07-01 14:00Z")

    conn.execute("update shift set ends_at = ends_at + interval '1 hour'")
    assert annotation(conn, shift_id)["worked_minutes"] == 540
    conn.execute("update shift set location_id = %s", [tokyo])
    assert annotation(conn, shift_id)["local_starts_at"] == datetime(2026, 7, 1, 15, 0)


def test_an_update_changing_nothing_relevant_writes_no_annotation(conn):
    """Same values: the annotation row version stays the same."""
    location_id = add_location(conn, "UTC")
    shift_id = add_shift(conn, location_id, "2026-07-01 06:00Z", "2026-07-01 14:00Z")
    before = conn.execute("select xmin::text from shift_annotation").fetchone()

    conn.execute("update shift set starts_at = starts_at where id = %s", [shift_id])

    assert conn.execute("select xmin::text from shift_annotation").fetchone() == before


def test_a_time_zone_change_marks_the_annotations_stale_without_rewriting_them(conn):
    """The trigger bumps the version only; a refresh recomputes and marks current."""
    location_id = add_location(conn, "Europe/Berlin")
    shift_id = add_shift(conn, location_id, "2026-07-01 06:00Z", "2026-07-01 14:00Z")

    conn.execute(
        "update location set time_zone = 'America/New_York' where id = %s",
        [location_id],
    )

    assert conn.execute(
        "select time_zone_version, annotations_version from location"
    ).fetchone() == (2, 1)
    assert annotation(conn, shift_id)["local_starts_at"] == datetime(2026, 7, 1, 8, 0)

    conn.execute("call shift_annotation_backfill(10, %s)", [location_id])

    refreshed = annotation(conn, shift_id)
    assert refreshed["local_starts_at"] == datetime(2026, 7, 1, 2, 0)
    assert refreshed["time_zone_version"] == 2
    assert conn.execute("select annotations_version from location").fetchone() == (2,)


def test_a_refresh_walks_only_the_changed_location(conn):
    """Batches of one location examine its shifts and no other."""
    berlin = add_location(conn, "Europe/Berlin")
    tokyo = add_location(conn, "Asia/Tokyo")
    for location_id in (berlin, tokyo, berlin, tokyo, berlin):
        add_shift(conn, location_id, "2026-07-01 06:00Z", "2026-07-01 14:00Z")
    conn.execute("update location set time_zone = 'UTC' where id = %s", [berlin])

    assert batch(conn, 0, 10, None, berlin)[:2] == (3, 3)
    assert batch(conn, 0, 10, None, tokyo)[:2] == (2, 0)


# --- the batch ------------------------------------------------------------------


def test_a_batch_counts_examined_apart_from_written_and_moves_on(conn):
    """Already current rows are examined, not written; the cursor still advances."""
    seed_unannotated(conn, 30)
    first_ids = [row[0] for row in conn.execute("select id from shift order by id")]
    conn.execute(
        "update shift set ends_at = ends_at + interval '1 minute' where id <= %s",
        [first_ids[19]],
    )  # the trigger annotates the first 20

    results = backfill(conn, batch_size=10)

    assert [r[:2] for r in results] == [(10, 0), (10, 0), (10, 10), (0, 0)]
    assert [r[2] for r in results[:3]] == [first_ids[9], first_ids[19], first_ids[29]]
    assert results[-1][2] is None
    assert len(annotations(conn)) == 30


def test_a_batch_stays_within_its_range(conn):
    """until_id bounds a range chain; the next range starts after it."""
    seed_unannotated(conn, 20)
    ids = [row[0] for row in conn.execute("select id from shift order by id")]

    assert batch(conn, ids[0] - 1, 50, ids[11]) == (12, 12, ids[11])
    assert batch(conn, ids[11], 50, None) == (8, 8, ids[19])
    assert batch(conn, ids[19], 50, None) == (0, 0, None)


def batch_waits_for_a_lock(conn: psycopg.Connection[Any], seconds: float = 10) -> bool:
    """Wait until a backfill batch on another connection waits for a lock.

    Return False when none did within ``seconds``.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if conn.execute(
            "select exists (select from pg_stat_activity"
            " where wait_event_type = 'Lock' and query like '%backfill_batch%')"
        ).fetchone()[0]:
            return True
        time.sleep(0.02)
    return False


def test_a_batch_racing_the_trigger_writes_no_duplicate_and_keeps_the_fresh_row(
    pg_conn, pg_target
):
    """A batch waits for a concurrent shift update and keeps its annotation."""
    pg_conn.autocommit = True
    seed_unannotated(pg_conn, 5)
    shift_id = pg_conn.execute("select min(id) from shift").fetchone()[0]

    with psycopg.connect(pg_target.conninfo()) as other:
        other.execute(
            "update shift set ends_at = starts_at + interval '3 hours' where id = %s",
            [shift_id],
        )  # trigger writes the annotation; not committed yet
        result: dict[str, Any] = {}

        def run() -> None:
            with psycopg.connect(pg_target.conninfo(), autocommit=True) as mine:
                result["batch"] = batch(mine, 0, 10)

        thread = threading.Thread(target=run)
        thread.start()
        waited = batch_waits_for_a_lock(pg_conn)
        other.commit()
        thread.join(10)

    assert waited, "the batch never waited for the updating transaction"
    assert result["batch"] == (5, 4, result["batch"][2])
    assert annotation(pg_conn, shift_id)["worked_minutes"] == 180
    assert len(annotations(pg_conn)) == 5


def test_a_batch_racing_a_delete_skips_the_deleted_shift_without_an_error(
    pg_conn, pg_target
):
    """The plain insert's foreign key check meets a deleted shift: the careful
    statement redoes the batch without it, in the same call."""
    pg_conn.autocommit = True
    seed_unannotated(pg_conn, 5)
    ids = [row[0] for row in pg_conn.execute("select id from shift order by id")]

    with psycopg.connect(pg_target.conninfo()) as other:
        other.execute("delete from shift where id = %s", [ids[2]])  # not committed
        result: dict[str, Any] = {}

        def run() -> None:
            with psycopg.connect(pg_target.conninfo(), autocommit=True) as mine:
                try:
                    result["batch"] = batch(mine, 0, 10)
                except psycopg.Error as error:  # reported below, not lost
                    result["error"] = error

        thread = threading.Thread(target=run)
        thread.start()
        waited = batch_waits_for_a_lock(pg_conn)
        other.commit()
        thread.join(10)

    assert waited, "the batch never waited for the deleting transaction"
    assert "error" not in result, result
    assert result["batch"] == (4, 4, ids[4])
    assert [row[0] for row in annotations(pg_conn)] == ids[:2] + ids[3:]


def test_a_range_batch_updates_stale_rows_and_leaves_current_ones(conn):
    """A range meeting annotations (current and stale) takes the ON CONFLICT way."""
    location = add_location(conn, "Europe/Berlin")
    days = [f"2026-05-0{day}" for day in range(1, 5)]
    ids = [
        add_shift(conn, location, f"{day} 08:00+00", f"{day} 16:00+00") for day in days
    ]  # annotated by the trigger
    conn.execute(
        "update shift_annotation set time_zone_version = 0, worked_minutes = 1"
        " where shift_id = any(%s)",
        [ids[1:3]],
    )  # made stale by hand (a version the location never had)

    assert batch(conn, 0, 10) == (4, 2, ids[3])
    assert {annotation(conn, i)["worked_minutes"] for i in ids} == {480}


def test_the_batch_refuses_a_batch_size_below_one_or_a_null_cursor(conn):
    """Called directly from psql: a clear error before any work."""
    seed_unannotated(conn, 3)
    for size in (0, -1, None):
        with pytest.raises(errors.InvalidParameterValue, match="at least 1"):
            batch(conn, 0, size)
    with pytest.raises(errors.NullValueNotAllowed, match="after_id"):
        batch(conn, None, 10)
    assert annotations(conn) == []


def test_the_psql_procedure_commits_per_batch_and_reports_progress(conn):
    """CALL runs the whole backfill, with a final NOTICE of the totals."""
    seed_unannotated(conn, 25)
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))

    conn.execute("call shift_annotation_backfill(10)")

    assert len(annotations(conn)) == 25
    assert any(
        "done: 3 batches, 25 examined, 25 written" in notice for notice in notices
    ), notices


def test_seeding_leaves_shifts_unannotated_and_the_trigger_enabled(conn):
    """shift_seed disables the insert trigger only for its own load."""
    seed_unannotated(conn, 50)

    assert conn.execute("select count(*) from shift").fetchone() == (50,)
    assert annotations(conn) == []
    enabled = conn.execute(
        "select tgenabled from pg_trigger where tgname = 'shift_annotate_inserted'"
    ).fetchone()
    assert enabled == ("O",)


def test_every_shift_object_has_a_comment(conn):
    """Tables, the computation, the batch and the procedure explain themselves."""
    missing = conn.execute(
        """
        select p.proname from pg_proc p
         where p.pronamespace = 'public'::regnamespace
           and (p.proname like 'shift%' or p.proname like 'location%')
           and obj_description(p.oid, 'pg_proc') is null
        union all
        select c.relname from pg_class c
         where c.relname in ('location', 'shift', 'shift_annotation')
           and obj_description(c.oid, 'pg_class') is null
        union all
        select t.tgname from pg_trigger t
         where (t.tgname like 'shift_annotate%' or t.tgname like 'location_time_zone%')
           and obj_description(t.oid, 'pg_trigger') is null
        """
    ).fetchall()
    assert missing == []


def test_the_rollback_removes_the_tables_and_their_routines(pg_conn):
    """0010's rollback script runs cleanly (undone here by a rollback)."""
    pg_conn.execute(ROLLBACK.read_text())

    left = pg_conn.execute(
        "select count(*) from pg_class where relname in ('location', 'shift')"
        " union all select count(*) from pg_proc where proname like 'shift_annot%'"
    ).fetchall()
    pg_conn.rollback()
    assert left == [(0,), (0,)]
