"""The person history page: changes of the person and their addresses."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.urls import reverse

from pyapp.audit import views
from pyapp.audit.context import audit_actor
from pyapp.people.models import Address

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, django_user_model):
    user = django_user_model.objects.create_user("reviewer", password="x" * 12)
    client.force_login(user)
    return client


def represent_all() -> None:
    """Stand in for the chain: give every audit row a representation now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "insert into instance_repr (audit_log_id, audit_txid, repr)"
            " select id, txid, 'repr of ' || id from audit_log"
            " on conflict do nothing"
        )


def rows(html: str) -> list[str]:
    return re.findall(r'<tr id="change-\d+" class="op-(\w+)">', html)


def test_the_page_needs_a_signed_in_user(client, make_person):
    """Anonymous visitors are sent to the login page."""
    person = make_person()
    url = reverse("audit:person_history", args=[person.pk])
    response = client.get(url)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_history_shows_the_persons_and_their_addresses_changes_newest_first(
    signed_in, make_person
):
    """Each change with its kind, representation, who and the fields it changed."""
    with audit_actor("alice"):
        person = make_person("Ada", addresses=1)
    represent_all()
    with audit_actor("bob"):
        person.name = "Ada Lovelace"
        person.save()
        Address.objects.filter(person=person).update(suburb="Marylebone")
    make_person("Someone else", addresses=1)

    response = signed_in.get(reverse("audit:person_history", args=[person.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert rows(html) == ["update", "update", "insert", "insert"]
    assert "Someone else" not in html
    assert html.count("(representation pending)") == 2
    assert "repr of" in html
    assert "bob" in html and "alice" in html
    assert "<del>Ada</del> → <ins>Ada Lovelace</ins>" in html
    assert '<span class="field">suburb</span>' in html


def test_a_deleted_person_keeps_a_history(signed_in, make_person):
    """After the delete, the page still shows what happened, the delete first."""
    person = make_person("Gone", addresses=1)
    person_id = person.pk
    person.delete()

    response = signed_in.get(reverse("audit:person_history", args=[person_id]))

    assert response.status_code == 200
    assert rows(response.content.decode())[:2] == ["delete", "delete"]
    assert f"Person #{person_id} (deleted)" in response.content.decode()


def test_an_unknown_person_is_not_found(signed_in):
    """No person and no history: 404."""
    response = signed_in.get(reverse("audit:person_history", args=[987654]))
    assert response.status_code == 404


def test_a_long_history_pages_by_id(signed_in, make_person, monkeypatch):
    """A page holds PAGE_SIZE changes and links to older ones."""
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    person = make_person("Many", addresses=2)
    url = reverse("audit:person_history", args=[person.pk])

    first = signed_in.get(url).content.decode()
    older = re.search(r'href="\?before=(\d+)"', first)
    second = signed_in.get(f"{url}?before={older.group(1)}").content.decode()

    assert len(rows(first)) == 2 and len(rows(second)) == 1
    assert "Newest changes" in second and "?before=" not in second
