"""Builders for people tests: people with addresses, a signed-in client, form data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from pyapp.people.forms import ADDRESSES_PREFIX, PersonForm
from pyapp.people.models import Address, Person

PASSWORD = "a-long-test-password"


@pytest.fixture
def make_person(db: None) -> Callable[..., Person]:
    """Return a builder: ``make_person(addresses=N, name=...)`` saves a person."""

    def make(addresses: int = 0, name: str = "Ada Lovelace", **fields: Any) -> Person:
        person = Person.objects.create(name=name, **fields)
        Address.objects.bulk_create(
            Address(
                person=person,
                street=f"{n + 1} Example Street",
                suburb="Carlton",
                postcode=f"30{n:02d}",
                country="AU",
            )
            for n in range(addresses)
        )
        return person

    return make


@pytest.fixture
def user(db: None) -> Any:
    return get_user_model().objects.create_user("tester", password=PASSWORD)


@pytest.fixture
def signed_in(client: Client, user: Any) -> Client:
    """The test client, signed in (its session and user lookups are the baseline)."""
    client.force_login(user)
    return client


def form_data(person: Person | None = None, **overrides: Any) -> dict[str, str]:
    """Return the POST data of the person page as a browser would send it unchanged.

    The data is rendered by the form itself (initial values, version or key,
    management form), so tests change only what they are about.
    """
    form = PersonForm(instance=person)
    data: dict[str, str] = {}
    for bound in [*form, *form.addresses.management_form]:
        value = bound.value()
        data[bound.html_name] = (
            "" if value is None else str(bound.field.prepare_value(value))
        )
    for sub in form.addresses.forms:
        for bound in sub:
            if bound.name == "DELETE":
                continue
            value = bound.field.prepare_value(bound.value())
            data[bound.html_name] = "" if value is None else str(value)
    if data.get("date_of_birth") in ("None",):
        data["date_of_birth"] = ""
    data.update(overrides)
    return data


def address_row(index: int, **values: str) -> dict[str, str]:
    """Return the POST fields of a new address row at ``index``."""
    row = {
        "street": "1 New Street",
        "suburb": "Fitzroy",
        "postcode": "3065",
        "country": "Australia",
        **values,
    }
    return {f"{ADDRESSES_PREFIX}-{index}-{key}": value for key, value in row.items()}


def count_queries(call: Callable[[], Any]) -> tuple[Any, list[str]]:
    """Run ``call`` and return its result and the SQL of every query it ran."""
    with CaptureQueriesContext(connection) as captured:
        result = call()
    return result, [query["sql"] for query in captured.captured_queries]
