"""The defect form edits ratings by name and stores their numbers."""

from __future__ import annotations

import pytest

from pyapp.defects.forms import DefectForm
from pyapp.defects.models import Risk


@pytest.mark.parametrize("name", ["high", "High", " HIGH "])
def test_a_rating_name_in_any_case_becomes_its_number(name):
    """The posted name is matched trimmed and case-insensitively."""
    form = DefectForm(data={"description": "Fire door", "risk": name})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["risk"] == Risk.HIGH == 3


@pytest.mark.parametrize("value", ["3", "urgent", ""])
def test_numbers_and_unknown_names_are_refused(value):
    """Only a rating's name is accepted; its stored number is not a name."""
    form = DefectForm(data={"description": "Fire door", "risk": value})
    assert not form.is_valid()
    assert "risk" in form.errors


def test_the_select_shows_names_and_posts_names():
    """Options read High, Medium, Low; no option exposes the stored number."""
    html = str(DefectForm()["risk"])
    assert '<option value="high">High</option>' in html
    assert '<option value="medium">Medium</option>' in html
    assert '<option value="low">Low</option>' in html
    assert 'value="3"' not in html


def test_a_blank_description_is_refused():
    """Spaces alone are not a description."""
    form = DefectForm(data={"description": "   ", "risk": "low"})
    assert not form.is_valid()
    assert form.errors["description"] == ["Describe the defect."]
