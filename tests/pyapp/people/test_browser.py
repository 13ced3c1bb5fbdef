"""The person pages in headless Chromium (the Debian package), driven by Playwright.

Skipped when /usr/bin/chromium is missing, unless PGZEN_REQUIRE_BROWSER=1 (CI), which
turns the skip into a failure. Browsers are never downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connections

from pyapp.people.models import Address, Person

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "a-long-test-password"
TIMEOUT_MS = 10000 * float(os.environ.get("PGZEN_TEST_TIMEOUT_FACTOR", "1"))

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(
    live_server: Any, transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """A fresh page in headless Chromium, started after the server and database."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("PGZEN_REQUIRE_BROWSER") == "1":
            pytest.fail(f"PGZEN_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own
    # ORM calls are still plain synchronous ones.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        page = browser.new_page()
        # Nothing but the pages under test reaches the server (no favicon request
        # left running, holding a database connection, when the test ends).
        page.route("**/favicon.ico", lambda route: route.abort())
        page.set_default_timeout(TIMEOUT_MS)
        try:
            yield page
        finally:
            browser.close()
            # Playwright's greenlet gives the test its own context, so its ORM
            # calls opened a connection of their own; close it, or dropping the
            # test database waits for it.
            connections.close_all()


@pytest.fixture(autouse=True)
def no_people_left(transactional_db: None) -> Iterator[None]:
    """Remove the people a test made: the flush after it skips unmanaged tables."""
    yield
    Person.objects.all().delete()


def focused_id(page: Any) -> str:
    return page.evaluate("document.activeElement && document.activeElement.id")


def sign_in(page: Any, live_server: Any, next_path: str) -> None:
    """Create a user and sign in through the login page, landing on ``next_path``."""
    get_user_model().objects.create_user("browser", password=PASSWORD)
    page.goto(f"{live_server.url}/accounts/login/?next={next_path}")
    page.get_by_label("Username").fill("browser")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{next_path}")


def test_create_fix_edit_and_remove_addresses_in_a_browser(page, live_server):
    """Sign in, add two addresses (one by script), fix an error, edit, remove one."""
    sign_in(page, live_server, "/people/new/")

    # The page's own empty row, then one added by the script (focus goes to it).
    page.get_by_label("Name").fill("Grace Hopper")
    page.locator("#id_addresses-0-street").fill("1 Navy Yard")
    page.locator("#id_addresses-0-suburb").fill("Washington")
    page.locator("#id_addresses-0-postcode").fill("20374")
    page.locator("#id_addresses-0-country").select_option(
        label="United States of America"
    )
    page.get_by_role("button", name="Add another address").click()
    assert focused_id(page) == "id_addresses-1-street"
    page.keyboard.type("100 Yale Avenue")
    page.locator("#id_addresses-1-suburb").fill("New Haven")
    page.locator("#id_addresses-1-postcode").fill("06511!")
    page.locator("#id_addresses-1-country").select_option(
        label="United States of America"
    )
    assert page.get_by_role("button", name="Remove address 2").count() == 1

    # A third row, added and taken away again: the count goes back, focus returns.
    page.get_by_role("button", name="Add another address").click()
    page.get_by_role("button", name="Remove address 3").click()
    assert page.locator("#id_addresses-TOTAL_FORMS").input_value() == "2"
    assert page.locator("#address-2").count() == 0
    assert page.evaluate("document.activeElement.textContent") == (
        "Add another address"
    )

    # Invalid: the summary is focused and names the field; nothing is saved.
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("#error-summary")
    # Focus moves once the deferred script has run.
    page.wait_for_function("document.activeElement.id === 'error-summary'")
    link = page.locator("#error-summary a", has_text="Address 2: Postcode")
    assert link.count() == 1
    assert not Person.objects.exists() and not Address.objects.exists()

    # Fixed through the summary's link, which focuses the field.
    link.click()
    assert focused_id(page) == "id_addresses-1-postcode"
    page.keyboard.press("Control+A")
    page.keyboard.type("06511")
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("text=Saved Grace Hopper.")
    person = Person.objects.get()
    assert sorted(person.addresses.values_list("postcode", "country")) == [
        ("06511", "US"),
        ("20374", "US"),
    ]

    # Edit one address and remove the other.
    page.locator("#id_addresses-0-street").fill("2 Navy Yard")
    page.get_by_label("Remove address 2").check()
    assert "removed when you save" in page.locator("#address-status").inner_text()
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("text=Saved Grace Hopper.")
    assert list(person.addresses.values_list("street", flat=True)) == ["2 Navy Yard"]


def test_a_stale_submit_shows_what_was_submitted_in_a_browser(page, live_server):
    """Someone else saved meanwhile: the page shows a table of what was sent."""
    person = Person.objects.create(name="Ada Lovelace")
    Address.objects.create(
        person=person,
        street="1 Example Street",
        suburb="Carlton",
        postcode="3000",
        country="AU",
    )
    sign_in(page, live_server, f"/people/{person.pk}/")

    page.get_by_label("Name").fill("Ada Byron")
    page.locator("#id_addresses-0-suburb").fill("Brunswick")
    Person.objects.filter(pk=person.pk).update(name="Ada King")  # someone else
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("#conflict")

    # The summary gets focus (once the deferred script has run); the table follows
    # it, and the form shows what is stored.
    page.wait_for_function("document.activeElement.id === 'error-summary'")
    table = page.get_by_role("table", name="What you submitted")
    rows = [
        row.locator("th, td").all_inner_texts()
        for row in table.locator("tbody tr").all()
    ]
    assert rows == [
        ["Name", "Ada King", "Ada Byron"],
        ["Address 1: Suburb", "Carlton", "Brunswick"],
    ]
    assert page.get_by_label("Name").input_value() == "Ada King"
    table.get_by_role("link", name="Address 1: Suburb").click()
    assert focused_id(page) == "id_addresses-0-suburb"
    assert Person.objects.get(pk=person.pk).name == "Ada King"
