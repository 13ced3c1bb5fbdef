"""``pgzen seed``: a few locations across time zones, and ``--shifts N`` shifts.

The shifts are generated in SQL (``shift_seed`` in procedures/shifts_seed.sql) with
the annotation trigger disabled for the load, so that ``pgzen backfill shifts`` has
work to do.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from django.db import connection, transaction

#: Demo locations: whole-hour, half-hour and 45-minute offsets, both hemispheres'
#: daylight saving, and zones without it.
LOCATIONS = [
    ("Berlin depot", "Europe/Berlin"),
    ("London office", "Europe/London"),
    ("New York store", "America/New_York"),
    ("Los Angeles warehouse", "America/Los_Angeles"),
    ("Sydney clinic", "Australia/Sydney"),
    ("Auckland port", "Pacific/Auckland"),
    ("Kolkata centre", "Asia/Kolkata"),
    ("Kathmandu lodge", "Asia/Kathmandu"),
    ("Tokyo lab", "Asia/Tokyo"),
]


def shift_count(value: str) -> int:
    """Parse ``--shifts``: a whole number, 0 or more."""
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number, got {value!r}"
        ) from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {count}")
    return count


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--shifts",
        type=shift_count,
        default=0,
        metavar="N",
        help="Also make N shifts, left unannotated for the backfill (default 0).",
    )


def seed_locations() -> int:
    """Create the demo locations that do not exist yet; return how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "insert into location (name, time_zone)"
            " select * from unnest(%s::text[], %s::text[])"
            " on conflict (name) do nothing",
            [[name for name, _ in LOCATIONS], [zone for _, zone in LOCATIONS]],
        )
        return cursor.rowcount


def seed_shifts(count: int) -> int:
    """Insert ``count`` unannotated shifts at the existing locations."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("select shift_seed(%s)", [count])
        return int(cursor.fetchone()[0])


def seed(command: Any, options: dict[str, Any]) -> None:
    created = seed_locations()
    command.stdout.write(f"Locations: {created} created, {len(LOCATIONS)} in the demo")
    count = options.get("shifts") or 0
    if count:
        started = time.perf_counter()
        inserted = seed_shifts(count)
        command.stdout.write(
            f"Shifts: {inserted:,} inserted in {time.perf_counter() - started:.1f} s,"
            " not annotated yet: run `pgzen backfill shifts`"
        )
