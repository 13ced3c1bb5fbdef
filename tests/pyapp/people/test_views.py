"""The people pages through Django's test client, with their query budgets.

Budgets are counted on top of a baseline: the queries of a no-op signed-in request
of the same method (``tests/pyapp/people/urls.py``), which covers the session and
user lookups and anything middleware adds to every request.
"""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client

from pyapp.people.forms import ADDRESS_MAX, ADDRESSES_PREFIX
from pyapp.people.models import Address, Person
from tests.pyapp.people.conftest import address_row, count_queries, form_data
from tests.pyapp.people.urls import NOOP_URL

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.pyapp.people.urls")]

# Queries the edit page may make beyond the baseline: the person and the addresses.
EDIT_GET_QUERIES = 2
# A saving POST: BEGIN, person (locked), addresses, COMMIT; plus one write per
# changed row, counted separately.
EDIT_POST_QUERIES = 4
# A stale submit: the POST's reads, then the person and addresses again, to show
# what is stored now (the comparison with what was submitted reads nothing more).
STALE_POST_QUERIES = EDIT_POST_QUERIES + EDIT_GET_QUERIES
# A transaction that writes also names the signed-in user for the audit log, once
# (pyapp.audit.middleware); one that writes nothing does not.
AUDIT_ACTOR_QUERIES = 1
WRITE = re.compile(r"^(INSERT|UPDATE|DELETE)\b")


def writes(queries: list[str]) -> list[str]:
    return [q for q in queries if WRITE.match(q)]


def conflict_table(response) -> list[tuple[str, ...]]:
    """The stale-submit table as text: (field, stored now, you submitted) per row."""
    page = response.content.decode()
    section = re.search(r'<section class="conflict".*?</section>', page, re.S)
    assert section, "no conflict section on the page"
    body = section.group(0).partition("<tbody>")[2]
    return [
        tuple(
            html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        )
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def someone_else_adds_an_address(person: Person) -> None:
    """Make open pages of ``person`` stale without changing what they show."""
    Address.objects.create(
        person=person,
        street="99 Other Road",
        suburb="Kew",
        postcode="3101",
        country="AU",
    )


@pytest.fixture
def baseline(signed_in: Client) -> dict[str, int]:
    """Queries of a no-op signed-in GET and POST (session, user, middleware)."""
    counts = {}
    for method in ("get", "post"):
        _, queries = count_queries(lambda m=method: getattr(signed_in, m)(NOOP_URL))
        counts[method] = len(queries)
    return counts


@pytest.mark.parametrize(
    "url", ["/people/", "/people/new/", "/people/{pk}/", "/people/{pk}/delete/"]
)
def test_pages_require_sign_in(client, make_person, url):
    """Every people page sends a visitor to the sign-in page."""
    person = make_person()
    response = client.get(url.format(pk=person.pk))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_list_searches_by_name_prefix_and_paginates(signed_in, make_person):
    """The list finds names by prefix in any case and pages by 25."""
    for n in range(30):
        make_person(name=f"Person {n:02d}")
    make_person(name="Zelda Fitzgerald")

    found = signed_in.get("/people/", {"q": "zel"})
    page_two = signed_in.get("/people/", {"page": 2})

    assert [p.name for p in found.context["people"]] == ["Zelda Fitzgerald"]
    assert len(page_two.context["people"]) == 6
    assert b"Page 2 of 2" in page_two.content


@pytest.mark.parametrize("addresses", [0, 1, 10, ADDRESS_MAX])
def test_edit_page_costs_two_queries_whatever_the_addresses(
    signed_in, make_person, baseline, addresses
):
    """GET of the edit page: person and addresses, for 0 to 20 addresses."""
    person = make_person(addresses=addresses)

    response, queries = count_queries(lambda: signed_in.get(f"/people/{person.pk}/"))

    assert response.status_code == 200
    assert len(queries) - baseline["get"] <= EDIT_GET_QUERIES, queries
    assert response.content.count(b"data-address-row data-existing") == addresses


def test_create_page_takes_one_id_and_shows_one_empty_row(signed_in, baseline):
    """GET of the create page: one query (the id for its key), one empty row."""
    response, queries = count_queries(lambda: signed_in.get("/people/new/"))

    assert len(queries) - baseline["get"] == 1
    assert "nextval" in queries[-1]
    assert response.content.count(b"data-address-row>") == 2  # + the template


@pytest.mark.parametrize("addresses", [0, 1, 10, ADDRESS_MAX])
def test_unchanged_submit_writes_nothing(signed_in, make_person, baseline, addresses):
    """POST of the page as shown: no writes, within the query budget."""
    person = make_person(addresses=addresses)
    data = form_data(person)

    response, queries = count_queries(
        lambda: signed_in.post(f"/people/{person.pk}/", data)
    )

    assert response.status_code == 302
    assert writes(queries) == []
    assert len(queries) - baseline["post"] <= EDIT_POST_QUERIES, queries


def test_changed_rows_cost_one_write_each(signed_in, make_person, baseline):
    """Changing the name, one address, removing one and adding one: four writes."""
    person = make_person(addresses=10)
    data = form_data(person, name="Ada King", **address_row(10))
    data[f"{ADDRESSES_PREFIX}-TOTAL_FORMS"] = "11"
    data[f"{ADDRESSES_PREFIX}-3-suburb"] = "Brunswick"
    data[f"{ADDRESSES_PREFIX}-7-DELETE"] = "on"

    response, queries = count_queries(
        lambda: signed_in.post(f"/people/{person.pk}/", data)
    )

    assert response.status_code == 302
    assert len(writes(queries)) == 4, writes(queries)
    budget = EDIT_POST_QUERIES + AUDIT_ACTOR_QUERIES + 4
    assert len(queries) - baseline["post"] <= budget, queries
    person.refresh_from_db()
    assert person.name == "Ada King" and person.addresses.count() == 10
    assert person.addresses.filter(suburb="Brunswick").count() == 1


def test_create_saves_and_redirects_to_the_person(signed_in, baseline):
    """Create with two addresses: one transaction, then the person's page."""
    data = form_data(name="Grace Hopper", **address_row(0), **address_row(1))
    data[f"{ADDRESSES_PREFIX}-TOTAL_FORMS"] = "2"

    response, queries = count_queries(lambda: signed_in.post("/people/new/", data))

    person = Person.objects.get()
    assert response["Location"] == f"/people/{person.pk}/"
    assert person.addresses.count() == 2
    assert len(writes(queries)) == 3
    # BEGIN, three INSERTs, COMMIT: no reads, and no id taken from the sequence.
    assert len(queries) - baseline["post"] == 2 + 3 + AUDIT_ACTOR_QUERIES, queries


def test_invalid_submit_shows_a_linked_summary_and_saves_nothing(
    signed_in, make_person
):
    """Errors: a focused summary linking "Address 2: Postcode" to its field."""
    person = make_person(addresses=2)
    data = form_data(person, name="Ada King")
    data[f"{ADDRESSES_PREFIX}-1-postcode"] = "12345678901"

    response = signed_in.post(f"/people/{person.pk}/", data)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="error-summary"' in html and "autofocus" in html
    assert '<a href="#id_addresses-1-postcode">Address 2: Postcode: ' in html
    assert 'aria-describedby="id_addresses-1-postcode_error"' in html
    assert Person.objects.get().name == "Ada Lovelace"


@pytest.mark.parametrize(
    "tamper",
    [
        {f"{ADDRESSES_PREFIX}-TOTAL_FORMS": None},
        {f"{ADDRESSES_PREFIX}-TOTAL_FORMS": "lots"},
        {f"{ADDRESSES_PREFIX}-INITIAL_FORMS": "-5"},
        {f"{ADDRESSES_PREFIX}-0-id": "not-a-number"},
        {f"{ADDRESSES_PREFIX}-0-person": "999999"},
        {"version": None},
    ],
)
def test_tampered_posts_are_form_errors_not_crashes(signed_in, make_person, tamper):
    """Tampered management or hidden fields: a page with an error, nothing saved."""
    person = make_person(addresses=1)
    data = form_data(person, name="Changed")
    for key, value in tamper.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value

    response = signed_in.post(f"/people/{person.pk}/", data)

    assert response.status_code == 200
    assert b'id="error-summary"' in response.content
    assert Person.objects.get().name == "Ada Lovelace"


def test_forged_total_forms_is_a_form_error(signed_in, make_person):
    """A huge forged TOTAL_FORMS is a form error on the page, not a crash.

    (Its cost is bounded by absolute_max; test_forms times the form itself.)
    """
    person = make_person(addresses=1)
    data = form_data(person, **{f"{ADDRESSES_PREFIX}-TOTAL_FORMS": "1000000000"})

    response = signed_in.post(f"/people/{person.pk}/", data)

    assert response.status_code == 200
    assert f"at most {ADDRESS_MAX} addresses".encode() in response.content


def test_add_another_address_without_script(signed_in, make_person):
    """The round-trip button re-shows the page with a new, focused, empty row."""
    person = make_person(addresses=1)
    data = form_data(person, name="Half typed", add_address="1")

    response = signed_in.post(f"/people/{person.pk}/", data)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="error-summary"' not in html
    assert 'value="Half typed"' in html
    assert re.search(r'<input[^>]*name="addresses-1-street"[^>]*autofocus', html)
    assert Person.objects.get().name == "Ada Lovelace"


def test_duplicate_create_submit_creates_one_person(signed_in):
    """The second submit of a create page lands on the person the first created."""
    data = form_data(name="Twice", **address_row(0))
    data[f"{ADDRESSES_PREFIX}-TOTAL_FORMS"] = "1"

    first = signed_in.post("/people/new/", data)
    second = signed_in.post("/people/new/", data, follow=True)

    assert second.redirect_chain[0][0] == first["Location"]
    assert b"already been saved" in second.content
    assert Person.objects.count() == 1 and Address.objects.count() == 1


def test_duplicate_edit_submit_is_refused_and_shows_the_current_state(
    signed_in, make_person
):
    """A second submit of an edit page saves nothing more and shows what is stored."""
    person = make_person(addresses=1)
    data = form_data(person, **address_row(1))
    data[f"{ADDRESSES_PREFIX}-TOTAL_FORMS"] = "2"

    signed_in.post(f"/people/{person.pk}/", data)
    second = signed_in.post(f"/people/{person.pk}/", data)

    assert second.status_code == 200
    assert b"changed after you opened this page" in second.content
    assert person.addresses.count() == 2
    # The page now shows both stored rows, ready for a fresh edit.
    assert second.content.count(b"data-address-row data-existing") == 2


def test_database_refusal_of_a_child_row_is_a_form_error(
    signed_in, make_person, monkeypatch
):
    """A row the database refuses: person unchanged, error on the field."""
    from pyapp.people import forms as people_forms

    monkeypatch.setattr(people_forms, "POSTCODE_PATTERN", r".*")
    person = make_person(addresses=2)
    data = form_data(person, name="Ada King")
    data[f"{ADDRESSES_PREFIX}-1-postcode"] = "@@"

    response = signed_in.post(f"/people/{person.pk}/", data)

    assert response.status_code == 200
    assert b'<a href="#id_addresses-1-postcode">Address 2: Postcode' in response.content
    assert Person.objects.get().name == "Ada Lovelace"


def test_country_list_is_rendered_once_not_per_row(signed_in, make_person):
    """Twenty rows, one list of countries, no per-row <select>."""
    person = make_person(addresses=ADDRESS_MAX)

    html = signed_in.get(f"/people/{person.pk}/").content.decode()

    assert html.count("<datalist") == 1
    assert "<select" not in html
    assert html.count('list="country-names"') == ADDRESS_MAX + 1  # + the template


def test_remove_controls_have_unique_names(signed_in, make_person):
    """Each remove checkbox is labelled with its address number."""
    person = make_person(addresses=3)

    html = signed_in.get(f"/people/{person.pk}/").content.decode()

    labels = re.findall(r"<label for=\"id_addresses-\d+-DELETE\">([^<]+)<", html)
    assert labels == ["Remove address 1", "Remove address 2", "Remove address 3"]


def test_delete_confirms_then_deletes_with_addresses(signed_in, make_person):
    """Delete shows a confirmation with the address count, then cascades."""
    person = make_person(addresses=2)

    page = signed_in.get(f"/people/{person.pk}/delete/")
    response = signed_in.post(f"/people/{person.pk}/delete/")

    assert b"their 2 addresses" in page.content
    assert response["Location"] == "/people/"
    assert not Person.objects.exists() and not Address.objects.exists()


def test_admin_shows_people_with_addresses_inline(client, make_person, admin_user):
    """The admin change page of a person lists their addresses."""
    person = make_person(addresses=2)
    client.force_login(admin_user)

    response = client.get(f"/admin/people/person/{person.pk}/change/")

    assert response.status_code == 200
    assert b"2 Example Street" in response.content


def test_edit_page_links_to_the_persons_history(signed_in, make_person):
    """The edit page links to the audit history of the person."""
    person = make_person(addresses=0)
    html = signed_in.get(f"/people/{person.pk}/").content.decode()
    assert f'href="/audit/people/{person.pk}/"' in html


def test_an_edit_made_stale_by_someone_else_saves_nothing(signed_in, make_person):
    """A submit of a page opened before another save is refused, nothing saved."""
    person = make_person(addresses=1)
    stale = form_data(person, name="Ada (typed on the stale page)")
    Person.objects.filter(pk=person.pk).update(name="Ada King")  # someone else

    response = signed_in.post(f"/people/{person.pk}/", stale)

    assert response.status_code == 200
    assert b"changed after you opened this page" in response.content
    assert Person.objects.get().name == "Ada King"
    assert b'value="Ada King"' in response.content
    assert b"Ada (typed on the stale page)" in response.content
    assert conflict_table(response) == [
        ("Name", "Ada King", "Ada (typed on the stale page)")
    ]


def test_a_stale_submit_lists_person_fields_compared_as_django_does(
    signed_in, make_person
):
    """Stale: a changed name is listed; a date typed equal to the stored one is not."""
    person = make_person(addresses=1, date_of_birth="1970-01-01")
    stale = form_data(person, name="Ada Byron", date_of_birth=" 1970-01-01 ")
    someone_else_adds_an_address(person)

    response = signed_in.post(f"/people/{person.pk}/", stale)

    assert conflict_table(response) == [("Name", "Ada Lovelace", "Ada Byron")]
    assert '<a href="#id_name">Name</a>' in response.content.decode()


def test_a_stale_submit_lists_what_someone_else_changed_against_what_was_sent(
    signed_in, make_person
):
    """Stale: a field changed by someone else shows their value next to the sent one."""
    person = make_person(addresses=0, date_of_birth="1970-01-01")
    stale = form_data(person, date_of_birth="")
    Person.objects.filter(pk=person.pk).update(date_of_birth="1971-02-03")

    response = signed_in.post(f"/people/{person.pk}/", stale)

    assert conflict_table(response) == [("Date of birth", "1971-02-03", "(empty)")]
    assert Person.objects.get().date_of_birth.isoformat() == "1971-02-03"


def test_a_stale_submit_matches_address_rows_by_id_not_position(signed_in, make_person):
    """Stale: an edited row is named by its stored row's place on the page now."""
    person = make_person(addresses=3)
    stale = form_data(person, **{f"{ADDRESSES_PREFIX}-2-suburb": "Brunswick"})
    # Someone else removes the second address: the third moves up to place 2.
    person.addresses.order_by("id")[1].delete()

    response = signed_in.post(f"/people/{person.pk}/", stale)

    table = conflict_table(response)
    assert ("Address 2: Suburb", "Carlton", "Brunswick") in table
    assert '<a href="#id_addresses-1-suburb">Address 2: Suburb</a>' in (
        response.content.decode()
    )
    assert not Address.objects.filter(suburb="Brunswick").exists()


def test_a_stale_submit_lists_an_address_marked_for_removal(signed_in, make_person):
    """Stale: a stored address marked for removal is listed, with its stored values."""
    person = make_person(addresses=2)
    stale = form_data(person, **{f"{ADDRESSES_PREFIX}-1-DELETE": "on"})
    someone_else_adds_an_address(person)

    response = signed_in.post(f"/people/{person.pk}/", stale)

    assert conflict_table(response) == [
        (
            "Address 2",
            "2 Example Street, Carlton, 3001, Australia",
            "Remove this address",
        )
    ]
    assert person.addresses.count() == 3


def test_a_stale_submit_lists_the_values_of_a_new_row(signed_in, make_person):
    """Stale: every non-empty value typed in a new row is listed as not stored."""
    person = make_person(addresses=1)
    stale = form_data(person, **address_row(1, street="5 New Street", postcode=""))
    stale[f"{ADDRESSES_PREFIX}-TOTAL_FORMS"] = "2"
    someone_else_adds_an_address(person)

    response = signed_in.post(f"/people/{person.pk}/", stale)

    assert conflict_table(response) == [
        ("New address 1: Street", "Not stored", "5 New Street"),
        ("New address 1: Suburb", "Not stored", "Fitzroy"),
        ("New address 1: Country", "Not stored", "Australia"),
    ]
    assert not Address.objects.filter(street="5 New Street").exists()


def test_a_stale_submit_lists_an_edited_address_removed_meanwhile(
    signed_in, make_person
):
    """Stale: a row someone else removed is listed with its values, said removed."""
    person = make_person(addresses=2)
    stale = form_data(person, **{f"{ADDRESSES_PREFIX}-1-suburb": "Brunswick"})
    person.addresses.order_by("id").last().delete()

    response = signed_in.post(f"/people/{person.pk}/", stale)

    assert conflict_table(response) == [
        ("Removed address 1: Street", "Removed", "2 Example Street"),
        ("Removed address 1: Suburb", "Removed", "Brunswick"),
        ("Removed address 1: Postcode", "Removed", "3001"),
        ("Removed address 1: Country", "Removed", "Australia"),
    ]
    assert response.content.count(b"data-address-row data-existing") == 1


def test_a_second_submit_of_one_page_finds_nothing_lost(signed_in, make_person):
    """A page submitted twice: the second lists nothing, saying nothing is lost."""
    person = make_person(addresses=2, name="Ada")
    data = form_data(person, name="Ada King", **address_row(2))
    data[f"{ADDRESSES_PREFIX}-TOTAL_FORMS"] = "3"
    data[f"{ADDRESSES_PREFIX}-0-suburb"] = "Brunswick"
    data[f"{ADDRESSES_PREFIX}-1-DELETE"] = "on"

    first = signed_in.post(f"/people/{person.pk}/", data)
    second = signed_in.post(f"/people/{person.pk}/", data)

    assert first.status_code == 302
    assert b"changed after you opened this page" in second.content
    assert conflict_table(second) == []
    assert b"nothing you typed is lost" in second.content
    assert person.addresses.count() == 2


def test_a_stale_submit_escapes_what_was_typed(signed_in, make_person):
    """Stale: typed values are shown escaped, never as markup."""
    person = make_person(addresses=1)
    script = "<script>alert(1)</script>"
    stale = form_data(person, name=script, **{f"{ADDRESSES_PREFIX}-0-street": script})
    someone_else_adds_an_address(person)

    response = signed_in.post(f"/people/{person.pk}/", stale)

    page = response.content.decode()
    assert script not in page
    assert page.count(html.escape(script)) == 2
    assert ("Name", "Ada Lovelace", script) in conflict_table(response)


def test_the_conflict_page_carries_the_new_version(signed_in, make_person):
    """Submitting the page a stale submit returned saves: it has the new version."""
    person = make_person(addresses=1)
    stale = form_data(person, name="Ada Byron")
    someone_else_adds_an_address(person)
    conflict = signed_in.post(f"/people/{person.pk}/", stale)
    version = re.search(r'name="version" value="([^"]+)"', conflict.content.decode())

    again = form_data(person, name="Ada Byron", version=version.group(1))
    response = signed_in.post(f"/people/{person.pk}/", again)

    assert version.group(1) != stale["version"]
    assert response.status_code == 302
    assert Person.objects.get().name == "Ada Byron"
    assert person.addresses.count() == 2


@pytest.mark.parametrize("addresses", [0, 1, ADDRESS_MAX])
def test_a_stale_submit_reads_the_stored_state_once_more(
    signed_in, make_person, baseline, addresses
):
    """A stale submit: the POST's reads plus one read of what it shows, no writes."""
    person = make_person(addresses=addresses)
    stale = form_data(person, name="Ada Byron")
    someone_else_adds_an_address(person)

    response, queries = count_queries(
        lambda: signed_in.post(f"/people/{person.pk}/", stale)
    )

    assert response.status_code == 200
    assert writes(queries) == []
    assert len(queries) - baseline["post"] <= STALE_POST_QUERIES, queries
    assert ("Name", "Ada Lovelace", "Ada Byron") in conflict_table(response)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ({f"{ADDRESSES_PREFIX}-TOTAL_FORMS": None}, "was incomplete"),
        ({f"{ADDRESSES_PREFIX}-TOTAL_FORMS": "lots"}, "was incomplete"),
        ({f"{ADDRESSES_PREFIX}-TOTAL_FORMS": "1000000000"}, "at most 20 addresses"),
        ({f"{ADDRESSES_PREFIX}-TOTAL_FORMS": "-3"}, None),
        ({f"{ADDRESSES_PREFIX}-INITIAL_FORMS": "-5"}, None),
        ({f"{ADDRESSES_PREFIX}-INITIAL_FORMS": "1000000000"}, None),
        ({f"{ADDRESSES_PREFIX}-0-id": "not-a-number"}, None),
        ({f"{ADDRESSES_PREFIX}-1-id": None}, None),
    ],
)
def test_tampered_stale_posts_are_compared_without_crashing(
    signed_in, make_person, tamper, message
):
    """A stale post with a tampered address list: the page, its errors, no crash."""
    person = make_person(addresses=2)
    stale = form_data(person, name="Ada Byron")
    for key, value in tamper.items():
        if value is None:
            stale.pop(key)
        else:
            stale[key] = value
    someone_else_adds_an_address(person)

    response = signed_in.post(f"/people/{person.pk}/", stale)

    assert response.status_code == 200
    assert b'id="error-summary"' in response.content
    assert b"changed after you opened this page" in response.content
    if message:
        assert message.encode() in response.content
    assert conflict_table(response)[0] == ("Name", "Ada Lovelace", "Ada Byron")
    assert Person.objects.get().name == "Ada Lovelace"
    assert person.addresses.count() == 3


def test_a_stale_post_with_another_persons_address_id_shows_nothing_of_theirs(
    signed_in, make_person
):
    """Stale, with another person's address id: listed as removed, theirs untouched."""
    person = make_person(addresses=1)
    other = make_person(addresses=1, name="Other", date_of_birth="1960-06-06")
    theirs = other.addresses.get()
    Address.objects.filter(pk=theirs.pk).update(street="9 Secret Lane")
    stale = form_data(person, **{f"{ADDRESSES_PREFIX}-0-id": str(theirs.pk)})
    stale[f"{ADDRESSES_PREFIX}-0-street"] = "Hijacked"
    someone_else_adds_an_address(person)

    response = signed_in.post(f"/people/{person.pk}/", stale)

    assert response.status_code == 200
    assert b"changed after you opened this page" in response.content
    assert b"9 Secret Lane" not in response.content
    assert ("Removed address 1: Street", "Removed", "Hijacked") in (
        conflict_table(response)
    )
    assert Address.objects.get(pk=theirs.pk).street == "9 Secret Lane"
    assert person.addresses.count() == 2
