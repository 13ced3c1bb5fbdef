"""Benchmark the person edit page: HTML bytes and render time per address row.

Usage::

    .venv/bin/python bench/people_form.py [--repeat 10]

Runs on ``DATABASE_URL`` when set, else on an embedded PostgreSQL in
``<data dir>/bench``; a fresh database ``people_bench`` is created and migrated, and
people with 0, 10 and 20 addresses are inserted. For each, in this process, it builds
the forms (reading the addresses) and renders a whole page, two ways:

- pgzen: ``PersonForm`` in ``people/person_form.html`` (one shared list of
  countries, a small text box per row),
- plain: a plain ``modelform_factory`` form and ``inlineformset_factory`` formset with
  Django's default widgets (django-countries' full ``<select>`` per row), rendered
  with ``{{ form }}{{ formset }}`` in the same base template,

and prints the median time and the bytes for each, then per address row
((20 rows - 0 rows) / 20), with the ratio pgzen / plain.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import fresh_database, pgzen_env, server  # noqa: E402

DBNAME = "people_bench"
ROWS = (0, 10, 20)

PLAIN_PAGE = """{% extends "base.html" %}
{% block content %}
<h1>Edit {{ form.initial.name }}</h1>
<form method="post">{% csrf_token %}
{{ form }}
{{ formset }}
<button type="submit">Save</button>
</form>
{% endblock %}
"""


def median_seconds(
    call: Callable[[Any], Any], argument: Any, repeat: int
) -> tuple[float, Any]:
    """Return the median duration of ``call(argument)`` over ``repeat`` runs."""
    call(argument)  # warm caches: templates, the country list
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = call(argument)
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def renderers() -> dict[str, Callable[[Any, Any], str]]:
    """Return page renderers by name: each builds its forms and renders a page."""
    from django.contrib.auth.models import AnonymousUser
    from django.forms import inlineformset_factory, modelform_factory
    from django.template import engines
    from django.test import RequestFactory

    from pyapp.people.countries import country_datalist
    from pyapp.people.forms import ADDRESS_MAX, PersonForm
    from pyapp.people.models import Address, Person

    engine = engines["django"]
    ours = engine.get_template("people/person_form.html")
    plain = engine.from_string(PLAIN_PAGE)
    plain_form = modelform_factory(Person, fields=["name", "date_of_birth"])
    plain_formset = inlineformset_factory(
        Person,
        Address,
        fields=["street", "suburb", "postcode", "country"],
        extra=0,
        can_delete=True,
    )
    request = RequestFactory().get("/people/1/")
    request.user = AnonymousUser()

    def pgzen(person: Person, request: Any = request) -> str:
        form = PersonForm(instance=person)
        context = {
            "form": form,
            "object": person,
            "address_max": ADDRESS_MAX,
            "country_datalist": country_datalist(),
        }
        return ours.render(context, request)

    def django_plain(person: Person, request: Any = request) -> str:
        context = {
            "form": plain_form(instance=person),
            "formset": plain_formset(instance=person),
        }
        return plain.render(context, request)

    return {"pgzen": pgzen, "plain": django_plain}


def make_people() -> dict[int, Any]:
    from pyapp.people.models import Address, Person

    people = {}
    for rows in ROWS:
        person = Person.objects.create(name=f"Bench {rows}")
        Address.objects.bulk_create(
            Address(
                person=person,
                street=f"{n} Main Street",
                suburb="Springfield",
                postcode="3000",
                country="AU",
            )
            for n in range(rows)
        )
        people[rows] = person
    return people


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    maintenance, embedded = server()
    try:
        target = fresh_database(maintenance, DBNAME)
        os.environ.update(pgzen_env(target))
        import django

        django.setup()
        people = make_people()
        results: dict[str, dict[int, tuple[float, int]]] = {}
        for name, render in renderers().items():
            results[name] = {}
            for rows, person in people.items():
                seconds, html = median_seconds(render, person, args.repeat)
                results[name][rows] = (seconds, len(html.encode()))
        report(results, args.repeat)
    finally:
        if embedded is not None:
            embedded.stop()


def report(results: dict[str, dict[int, tuple[float, int]]], repeat: int) -> None:
    print(f"edit page, median of {repeat} renders (forms built and addresses read)")
    print(f"{'':8}" + "".join(f"{f'{n} rows':>22}" for n in ROWS))
    for name, by_rows in results.items():
        cells = "".join(
            f"{f'{s * 1000:.2f} ms {b / 1024:.1f} KiB':>22}"
            for s, b in by_rows.values()
        )
        print(f"{name:8}{cells}")
    per_row = {}
    last = ROWS[-1]
    for name, by_rows in results.items():
        seconds = (by_rows[last][0] - by_rows[0][0]) / last
        size = (by_rows[last][1] - by_rows[0][1]) / last
        per_row[name] = (seconds, size)
        print(f"per row  {name:6} {seconds * 1e6:8.0f} us {size:8.0f} bytes")
    ours, plain = per_row["pgzen"], per_row["plain"]
    print(
        f"pgzen / plain per row: time {ours[0] / plain[0]:.3f}"
        f" (1/{plain[0] / ours[0]:.1f}), bytes {ours[1] / plain[1]:.3f}"
        f" (1/{plain[1] / ours[1]:.1f})"
    )


if __name__ == "__main__":
    main()
