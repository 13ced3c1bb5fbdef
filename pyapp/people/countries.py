"""Country input for address rows: a text box backed by one shared list of names.

A ``<select>`` of every country is about 10 KB of HTML; rendered once per address row
it dominates the page. Instead each row gets a small ``<input list="country-names">``
and the page carries the names once, in a ``<datalist>`` (:func:`country_datalist`).
Without JavaScript that is a text box with suggestions (and the browser's autofill, via
``autocomplete="country-name"``); the page's script turns each box into a real
``<select>`` built from the same list. Either way the server accepts a country's name
(any case) or its two-letter code and stores the code.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from django_countries import countries
from django_countries.fields import Country

DATALIST_ID = "country-names"


@cache
def _names_by_key(language: str | None) -> dict[str, str]:
    # Keyed by the lower-cased name and by the code; the language is part of the
    # cache key because names are translated.
    table = {}
    for code, name in countries:
        table[str(name).casefold()] = code
        table[code.casefold()] = code
    return table


def country_code(value: str) -> str | None:
    """Return the two-letter code for a country name or code, or None."""
    return _names_by_key(get_language()).get(value.strip().casefold())


def country_name(code: str) -> str:
    """Return the display name of ``code``, or "" for an unknown code."""
    return str(countries.name(code)) if code else ""


@cache
def _datalist(language: str | None) -> SafeString:
    options = format_html_join(
        "", '<option value="{}">', ((name,) for _code, name in countries)
    )
    return format_html('<datalist id="{}">{}</datalist>', DATALIST_ID, options)


def country_datalist() -> SafeString:
    """Return the page's one ``<datalist>`` of country names (cached per language)."""
    return _datalist(get_language())


class CountryNameInput(forms.TextInput):
    """A text box suggesting names from the page's country datalist."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        defaults = {
            "list": DATALIST_ID,
            "autocomplete": "country-name",
            "data-country": "",
            "size": "24",
        }
        super().__init__({**defaults, **(attrs or {})})


class CountryNameField(forms.CharField):
    """A country typed by name or two-letter code; cleans to the code."""

    widget = CountryNameInput
    default_error_messages = {
        "unknown_country": _(
            "Enter a country from the list, by its name or its two-letter code."
        ),
    }

    def to_python(self, value: Any) -> str:
        text = super().to_python(value)
        if text in self.empty_values:
            return ""
        code = country_code(text)
        if code is None:
            raise ValidationError(
                self.error_messages["unknown_country"],
                code="unknown_country",
                params={"value": text},
            )
        return code

    def prepare_value(self, value: Any) -> Any:
        # Show names, whether the value is a stored code or what was typed.
        if isinstance(value, Country):
            value = value.code
        if isinstance(value, str):
            code = country_code(value) if value else None
            if code is not None and value.strip().upper() == code:
                return country_name(code)
        return value

    def has_changed(self, initial: Any, data: Any) -> bool:
        initial_code = initial.code if isinstance(initial, Country) else initial
        try:
            return (initial_code or "") != self.to_python(data)
        except ValidationError:
            return True
