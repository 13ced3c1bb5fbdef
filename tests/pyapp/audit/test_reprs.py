"""Representations of row images: the model's str(), or a note saying why not."""

from __future__ import annotations

import datetime

import pytest

from pyapp.audit.reprs import instance_from_image, no_queries, represent
from pyapp.people.models import Address, Person

ADA = {"id": 7, "name": "Ada Lovelace", "date_of_birth": "1815-12-10"}
HOME = {
    "id": 3,
    "person_id": 7,
    "street": "12 St James's Square",
    "suburb": "London",
    "postcode": "SW1Y 4JH",
    "country": "GB",
}


def test_an_image_becomes_an_unsaved_instance_with_typed_values():
    """Dates are dates again; columns the model lacks are ignored."""
    person = instance_from_image(Person, {**ADA, "dropped_column": 1})
    assert person.pk == 7 and person._state.adding
    assert person.date_of_birth == datetime.date(1815, 12, 10)


@pytest.mark.parametrize(
    ("table", "op", "image", "expected"),
    [
        ("person", "insert", ADA, "Ada Lovelace"),
        ("person", "delete", ADA, "Ada Lovelace"),
        ("address", "update", HOME, "12 St James's Square, London SW1Y 4JH, GB"),
        ("person", "truncate", None, "(all people removed by truncate)"),
        ("gadget", "insert", {"id": 1},
         "(table public.gadget is not known to the application)"),
    ],
)  # fmt: skip
def test_represent_gives_the_models_str_of_the_image(table, op, image, expected):
    """The str() of the rebuilt instance; truncates and unknown tables say so."""
    with no_queries():
        assert represent("public", table, op, image) == expected


def test_a_table_in_another_schema_is_unknown():
    """Models live in the default schema; same name elsewhere is another table."""
    text = represent("archive", "person", "insert", ADA)
    assert text == "(table archive.person is not known to the application)"


@pytest.mark.django_db
def test_a_str_that_needs_the_database_is_reported_not_run(monkeypatch):
    """A __str__ following a relation would query per row (and show today's data)."""
    monkeypatch.setattr(Address, "__str__", lambda self: self.person.name)
    with no_queries():
        text = represent("public", "address", "insert", HOME)
    assert text == "(address #3: its representation needs the database)"


def test_a_failing_str_is_reported_and_logged(monkeypatch, caplog):
    """An exception in __str__ never stops the batch."""

    def broken(self):
        raise ValueError("boom")

    monkeypatch.setattr(Person, "__str__", broken)
    text = represent("public", "person", "update", ADA, audit_log_id=42)
    assert text == "(person #7: str() failed with ValueError)"
    (record,) = [r for r in caplog.records if r.action == "audit_repr_failed"]
    assert record.audit_log_id == 42


def test_a_long_str_is_cut():
    """Representations are at most 1,000 characters."""
    text = represent("public", "person", "insert", {**ADA, "name": "x" * 5000})
    assert len(text) == 1000
