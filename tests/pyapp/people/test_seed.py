"""``pgzen seed``'s people part."""

import io
from types import SimpleNamespace

import pytest

from pyapp.people import seed
from pyapp.people.models import Address, Person

pytestmark = pytest.mark.django_db


def test_seed_creates_people_with_addresses_once():
    """Seeding twice leaves one copy of each demo person and their addresses."""
    command = SimpleNamespace(stdout=io.StringIO())

    seed.seed(command, {})
    seed.seed(command, {})

    assert Person.objects.count() == len(seed.PEOPLE)
    assert Address.objects.count() == sum(len(p[2]) for p in seed.PEOPLE)
    assert "0 created" in command.stdout.getvalue().splitlines()[-1]
