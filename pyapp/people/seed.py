"""Seed a handful of people with addresses for trying the pages (idempotent).

People are matched by name: one already present is left as it is.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db import transaction

from pyapp.people.models import Address, Person

# name, date of birth, addresses as (street, suburb, postcode, country)
PEOPLE: list[tuple[str, date | None, list[tuple[str, str, str, str]]]] = [
    (
        "Ada Lovelace",
        None,
        [("12 St James's Square", "London", "SW1Y 4JH", "GB")],
    ),
    (
        "Grace Hopper",
        date(1906, 12, 9),
        [
            ("1 Navy Yard", "Washington", "20374", "US"),
            ("100 Yale Avenue", "New Haven", "06511", "US"),
        ],
    ),
    ("Katherine Johnson", date(1918, 8, 26), []),
    (
        "Ngaio Marsh",
        date(1895, 4, 23),
        [("37 Valley Road", "Cashmere", "8022", "NZ")],
    ),
    (
        "Annie Easley",
        None,
        [
            ("21000 Brookpark Road", "Cleveland", "44135", "US"),
            ("5 Rue de la Paix", "Paris", "75002", "FR"),
            ("8 Collins Street", "Melbourne", "3000", "AU"),
        ],
    ),
]


@transaction.atomic
def seed(command: Any, options: dict[str, Any]) -> None:
    existing = set(
        Person.objects.filter(name__in=[p[0] for p in PEOPLE]).values_list(
            "name", flat=True
        )
    )
    created = 0
    for name, born, addresses in PEOPLE:
        if name in existing:
            continue
        person = Person.objects.create(name=name, date_of_birth=born)
        Address.objects.bulk_create(
            Address(person=person, street=s, suburb=b, postcode=p, country=c)
            for s, b, p, c in addresses
        )
        created += 1
    command.stdout.write(f"People: {created} created, {len(existing)} already there")
