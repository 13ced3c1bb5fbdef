"""The defect pages: list by risk, create and edit, behind a login."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from pyapp.defects.models import Defect, Risk


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["defects:list", "defects:create"])
def test_pages_require_a_login(client, name):
    """Signed out, every defect page redirects to the login page."""
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_the_list_puts_the_highest_risk_first(signed_in, make_defect):
    """Highest rating first, newest first within a rating, ratings by name."""
    make_defect("old low", Risk.LOW, raised_at=datetime(2024, 1, 1, tzinfo=UTC))
    make_defect("old high", Risk.HIGH, raised_at=datetime(2024, 1, 1, tzinfo=UTC))
    make_defect("new high", Risk.HIGH, raised_at=datetime(2025, 1, 1, tzinfo=UTC))
    make_defect("medium", Risk.MEDIUM, raised_at=datetime(2024, 6, 1, tzinfo=UTC))

    response = signed_in.get(reverse("defects:list"))

    assert response.status_code == 200
    listed = [defect.description for defect in response.context["page"]]
    assert listed == ["new high", "old high", "medium", "old low"]
    html = response.content.decode()
    assert html.index("new high") < html.index("old low")
    assert '<td class="risk risk-3">High</td>' in html


def test_creating_a_defect_stores_the_number_of_the_chosen_name(signed_in):
    """Posting "high" stores 3."""
    response = signed_in.post(
        reverse("defects:create"), {"description": "Fire door", "risk": "high"}
    )

    assert response.status_code == 302
    assert list(Defect.objects.values_list("description", "risk")) == [("Fire door", 3)]


def test_the_edit_page_shows_the_name_and_saves_a_new_one(signed_in, make_defect):
    """The stored 1 shows as Low selected; choosing Medium stores 2."""
    defect = make_defect("Flicker", Risk.LOW)
    url = reverse("defects:edit", args=[defect.pk])

    page = signed_in.get(url).content.decode()
    assert '<option value="low" selected>Low</option>' in page

    response = signed_in.post(url, {"description": "Flicker", "risk": "Medium"})
    assert response.status_code == 302
    defect.refresh_from_db()
    assert defect.risk == 2


def test_an_invalid_rating_shows_the_form_again(signed_in):
    """An unknown rating is an error on the page; nothing is stored."""
    response = signed_in.post(
        reverse("defects:create"), {"description": "Fire door", "risk": "3"}
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Defect.objects.exists()


def test_the_admin_lists_defects_by_rating_name(admin_client, make_defect):
    """The admin changelist shows the rating's name."""
    make_defect("Fire door", Risk.HIGH)
    response = admin_client.get(reverse("admin:defects_defect_changelist"))
    assert response.status_code == 200
    assert "Fire door" in response.content.decode()
    assert ">High<" in response.content.decode()


@pytest.mark.django_db
def test_seed_adds_a_few_defects_once():
    """pgzen seed adds the samples once; a second run adds none."""
    from io import StringIO

    from pyapp.defects import seed

    class Command:
        stdout = StringIO()

    seed.seed(Command, {})
    seed.seed(Command, {})
    assert Defect.objects.count() == len(seed.SAMPLES)
    assert "some exist already" in Command.stdout.getvalue()


@pytest.mark.django_db
def test_the_type_change_backfill_is_registered():
    """pgzen backfill and status know the type-change backfill."""
    from pyapp.core import backfills

    backfill = backfills.registered()["type-change"]
    assert backfill.start(100) == "type-change: no online type change in progress"
    assert backfill.progress() == backfills.Progress(done=0, remaining=0)
