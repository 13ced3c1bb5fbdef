"""PersonForm against the real database: one form, one transaction, clear errors."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from pyapp.people import forms as people_forms
from pyapp.people.forms import (
    ADDRESS_ABSOLUTE_MAX,
    ADDRESS_MAX,
    ADDRESSES_PREFIX,
    PersonForm,
    PersonNotSaved,
)
from pyapp.people.models import Address, Person
from tests.pyapp.people.conftest import address_row, count_queries, form_data

pytestmark = pytest.mark.django_db


def total(n: int) -> dict[str, str]:
    return {f"{ADDRESSES_PREFIX}-TOTAL_FORMS": str(n)}


def error_codes(form: PersonForm) -> set[str]:
    """Every error code on the form, its formset and its rows."""
    codes = {e.code for errors in form.errors.as_data().values() for e in errors}
    codes |= {e.code for e in form.addresses.non_form_errors().as_data()}
    for row in form.addresses.forms:
        codes |= {e.code for errors in row.errors.as_data().values() for e in errors}
    return codes


def test_create_saves_person_and_addresses_together():
    """A valid create form saves the person and each address, attached to them."""
    data = form_data(name="Grace Hopper", **total(2), **address_row(0))
    data |= address_row(1, street="2 Other Road", country="nz")
    form = PersonForm(data)

    assert form.is_valid(), form.errors
    person = form.save()

    assert Person.objects.get().name == "Grace Hopper"
    stored = list(person.addresses.values_list("street", "country"))
    assert stored == [("1 New Street", "AU"), ("2 Other Road", "NZ")]


def test_unbound_create_form_carries_a_key_and_one_empty_row():
    """A fresh create form has a signed key, no version and one empty address row."""
    form = PersonForm()

    assert "key" in form.fields and "version" not in form.fields
    assert form.addresses.total_form_count() == 1
    assert form.addresses.initial_form_count() == 0
    assert form.addresses.prefix == ADDRESSES_PREFIX
    assert form.addresses is form.addresses  # built once per form
    assert "people/person-form.js" in str(form.media)
    assert not form.is_multipart()


def test_has_changed_includes_the_addresses(make_person):
    """has_changed() is False for the page as shown, True when only a row changed."""
    person = make_person(addresses=2)

    assert not PersonForm(form_data(person), instance=person).has_changed()
    changed = form_data(person, **{f"{ADDRESSES_PREFIX}-1-suburb": "Brunswick"})
    assert PersonForm(changed, instance=person).has_changed()
    assert PersonForm(form_data(person, name="Ada King"), instance=person).has_changed()


def test_invalid_address_adds_a_form_error(make_person):
    """clean() adds a non-field error when an address is invalid."""
    person = make_person(addresses=1)
    form = PersonForm(
        form_data(person, **{f"{ADDRESSES_PREFIX}-0-street": ""}), instance=person
    )

    assert not form.is_valid()
    assert "invalid_addresses" in error_codes(form)
    assert form.addresses.forms[0].errors["street"] == ["Enter the street."]


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("name", "   ", "required"),
        ("name", "x" * 201, "max_length"),
        ("date_of_birth", "1849-12-31", "min_value"),
        ("date_of_birth", "31/02/1990", "invalid"),
        ("addresses-0-street", "", "required"),
        ("addresses-0-suburb", "y" * 101, "max_length"),
        ("addresses-0-postcode", "12345678901", "max_length"),
        ("addresses-0-postcode", "-3000", "invalid"),
        ("addresses-0-country", "Atlantis", "unknown_country"),
        ("addresses-0-country", "", "required"),
    ],
)
def test_bad_input_is_a_form_error_and_saves_nothing(make_person, field, value, code):
    """Each kind of bad input is a coded form error; nothing is written."""
    person = make_person(addresses=1)
    data = form_data(person, **{"name": "Changed", field: value})
    form = PersonForm(data, instance=person)

    assert not form.is_valid()
    assert code in error_codes(form)
    assert Person.objects.get().name == "Ada Lovelace"


def test_empty_new_row_is_ignored():
    """The create page's untouched empty row saves no address."""
    form = PersonForm(form_data(name="No address"))

    assert form.is_valid(), form.errors
    assert list(form.save().addresses.all()) == []


def test_future_date_of_birth_is_refused():
    """A date of birth after today is an error."""
    tomorrow = timezone.localdate() + timedelta(days=1)
    form = PersonForm(form_data(name="Future", date_of_birth=tomorrow.isoformat()))

    assert not form.is_valid()
    assert "future" in error_codes(form)


def test_missing_management_form_is_an_error(make_person):
    """Without the management form nothing is saved and the page says why."""
    person = make_person(addresses=1)
    data = {k: v for k, v in form_data(person, name="X").items() if "_FORMS" not in k}
    form = PersonForm(data, instance=person)

    assert not form.is_valid()
    assert "missing_management_form" in error_codes(form)
    assert "incomplete" in form.addresses.non_form_errors()[0]


def test_forged_total_forms_is_cheap_and_an_error():
    """A forged TOTAL_FORMS builds at most absolute_max forms, fast, and errs."""
    data = form_data(name="X", **total(10**9))
    start = time.perf_counter()
    form = PersonForm(data)
    valid = form.is_valid()
    elapsed = time.perf_counter() - start

    assert not valid
    assert len(form.addresses.forms) == ADDRESS_ABSOLUTE_MAX
    assert "too_many_forms" in error_codes(form)
    assert elapsed < 0.5


def test_more_than_the_limit_is_a_clear_error():
    """A 21st address is refused with a message that names the limit."""
    data = form_data(name="Many", **total(ADDRESS_MAX + 1))
    for i in range(ADDRESS_MAX + 1):
        data |= address_row(i)
    form = PersonForm(data)

    assert not form.is_valid()
    assert f"at most {ADDRESS_MAX} addresses" in form.addresses.non_form_errors()[0]


def test_removing_one_and_adding_one_at_the_limit_is_allowed(make_person):
    """Rows marked for removal do not count against the limit."""
    person = make_person(addresses=ADDRESS_MAX)
    data = form_data(person, **total(ADDRESS_MAX + 1), **address_row(ADDRESS_MAX))
    data[f"{ADDRESSES_PREFIX}-0-DELETE"] = "on"
    form = PersonForm(data, instance=person)

    assert form.is_valid(), form.errors
    form.save()
    assert person.addresses.count() == ADDRESS_MAX


def test_another_persons_address_id_is_an_error_not_skipped(make_person):
    """An id of someone else's address is a row error; their address is untouched."""
    person = make_person(addresses=1)
    other = make_person(addresses=1, name="Other")
    theirs = other.addresses.get()
    data = form_data(person, **{f"{ADDRESSES_PREFIX}-0-id": str(theirs.pk)})
    data[f"{ADDRESSES_PREFIX}-0-street"] = "Hijacked"
    form = PersonForm(data, instance=person)

    assert not form.is_valid()
    assert "gone" in error_codes(form)
    assert Address.objects.get(pk=theirs.pk).street == theirs.street


def test_address_deleted_meanwhile_is_an_error(make_person):
    """An address deleted after the page was shown is a clear row error."""
    person = make_person(addresses=2)
    data = form_data(person, **{f"{ADDRESSES_PREFIX}-1-suburb": "Brunswick"})
    person.addresses.order_by("id").last().delete()
    form = PersonForm(data, instance=person)

    assert not form.is_valid()
    assert "gone" in error_codes(form)
    summary = [(item.label, item.anchor) for item in form.error_summary()]
    assert ("Address 2", "address-1") in summary


def test_an_id_on_a_new_row_or_twice_is_an_error(make_person):
    """A new row with an id, or one id on two rows, is refused."""
    person = make_person(addresses=2)
    first = str(person.addresses.order_by("id").first().pk)
    twice = form_data(person, **{f"{ADDRESSES_PREFIX}-1-id": first})
    new_with_id = form_data(person, **total(3), **address_row(2))
    new_with_id[f"{ADDRESSES_PREFIX}-2-id"] = first

    assert "duplicate" in error_codes(PersonForm(twice, instance=person))
    assert "unexpected" in error_codes(PersonForm(new_with_id, instance=person))


def test_stale_version_saves_nothing(make_person):
    """A form shown before the person changed is refused as stale."""
    person = make_person(addresses=1)
    data = form_data(person, name="Mine")
    Person.objects.filter(pk=person.pk).update(name="Theirs")
    person.refresh_from_db()
    form = PersonForm(data, instance=person)

    assert not form.is_valid()
    assert form.stale and "stale" in error_codes(form)
    assert Person.objects.get().name == "Theirs"


def test_second_submit_of_a_create_form_creates_nothing():
    """The same create form saved twice inserts one person; the second reports it."""
    data = form_data(name="Once", **total(1), **address_row(0))
    first = PersonForm(data)
    assert first.is_valid()
    person = first.save()

    second = PersonForm(data)
    assert second.is_valid()
    # save() joins a caller's transaction; the savepoint keeps this test's usable.
    with pytest.raises(PersonNotSaved), transaction.atomic():
        second.save()

    assert second.already_saved_pk == person.pk
    assert "already_saved" in error_codes(second)
    assert Person.objects.count() == 1 and Address.objects.count() == 1


def test_tampered_key_is_an_error():
    """A create form whose signed key was changed is refused."""
    form = PersonForm(form_data(name="X", key="12:forged"))

    assert not form.is_valid()
    assert "bad_key" in error_codes(form)


def test_child_row_refused_by_the_database_leaves_the_person_unchanged(
    make_person, monkeypatch
):
    """A constraint failure on an address rolls back the person and names the field."""
    person = make_person(addresses=2)
    # Let the form accept what the database's check refuses.
    monkeypatch.setattr(people_forms, "POSTCODE_PATTERN", r".*")
    data = form_data(person, name="Ada King", **{f"{ADDRESSES_PREFIX}-1-postcode": "!"})
    form = PersonForm(data, instance=person)
    assert form.is_valid(), form.errors

    with pytest.raises(PersonNotSaved), transaction.atomic():
        form.save()

    assert Person.objects.get().name == "Ada Lovelace"
    assert form.addresses.forms[1].errors["postcode"][0].startswith("Enter a postcode")
    assert "invalid_addresses" in error_codes(form)
    labels = [item.label for item in form.error_summary()]
    assert "Address 2: Postcode" in labels


def test_save_writes_only_changed_rows(make_person):
    """Saving updates exactly the changed address, and only its changed column."""
    person = make_person(addresses=3)
    data = form_data(person, **{f"{ADDRESSES_PREFIX}-1-suburb": "Brunswick"})
    form = PersonForm(data, instance=person)
    assert form.is_valid()

    _, queries = count_queries(form.save)

    writes = [q for q in queries if q.split()[0] in {"INSERT", "UPDATE", "DELETE"}]
    assert len(writes) == 1
    assert writes[0].startswith('UPDATE "address" SET "suburb"')


def test_add_address_button_adds_a_row_without_errors(make_person):
    """The no-script "Add another address" returns one more row, unchecked."""
    person = make_person(addresses=1)
    data = form_data(person, name="", add_address="1")
    form = PersonForm(data, instance=person)

    assert not form.is_valid()
    assert not form.errors and form.error_summary() == []
    assert len(form.addresses.forms) == 2
    new_street = form.addresses.forms[1]["street"]
    assert "autofocus" in str(new_street)


def test_country_is_accepted_by_name_or_code():
    """A country typed as a name or code, in any case, is stored as its code."""
    for typed in ["Australia", "australia", "AU", "au"]:
        data = form_data(name="C", **total(1), **address_row(0, country=typed))
        form = PersonForm(data)
        assert form.is_valid(), (typed, form.errors)
        assert form.addresses.forms[0].cleaned_data["country"] == "AU"


def test_error_summary_names_child_fields(make_person):
    """The summary labels address fields "Address N: Field" and links to them."""
    person = make_person(addresses=2)
    form = PersonForm(
        form_data(person, **{f"{ADDRESSES_PREFIX}-1-postcode": "12345678901"}),
        instance=person,
    )
    assert not form.is_valid()

    (item,) = form.error_summary()
    assert item.label == "Address 2: Postcode"
    assert item.anchor == "id_addresses-1-postcode"
    assert "at most 10 characters" in item.message


def test_differences_compare_as_django_does_and_run_no_query(make_person):
    """differences(): values equal once cleaned are not listed; no query is run."""
    person = make_person(addresses=1, date_of_birth="1970-01-01")
    data = form_data(person, name=" Ada Lovelace ", date_of_birth=" 1970-01-01 ")
    data[f"{ADDRESSES_PREFIX}-0-country"] = "au"
    data[f"{ADDRESSES_PREFIX}-0-postcode"] = "3999"
    submitted = PersonForm(data, instance=person)
    current = PersonForm(instance=Person.objects.get(pk=person.pk))
    # What the stale POST has read already: its own rows and the page's.
    submitted.is_valid()
    assert len(current.addresses.forms) == 1

    items, queries = count_queries(lambda: submitted.differences(current))

    assert queries == []
    assert [(d.label, d.anchor, d.stored, d.submitted) for d in items] == [
        ("Address 1: Postcode", "id_addresses-0-postcode", "3000", "3999")
    ]
