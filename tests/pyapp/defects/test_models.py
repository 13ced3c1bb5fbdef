"""The Defect model mirrors defect's columns and types."""

from __future__ import annotations

import pytest
from django.db import connection

from pyapp.defects.models import Defect, Risk


@pytest.mark.django_db
def test_model_field_types_match_the_table():
    """risk is an integer column; the model's field stores integers."""
    with connection.cursor() as cursor:
        cursor.execute(
            "select column_name, data_type from information_schema.columns"
            " where table_name = 'defect' order by ordinal_position"
        )
        columns = dict(cursor.fetchall())
    assert columns == {
        "id": "bigint",
        "description": "text",
        "risk": "integer",
        "raised_at": "timestamp with time zone",
    }
    field = Defect._meta.get_field("risk")
    assert field.get_internal_type() == "IntegerField"


def test_ratings_store_three_two_one_and_read_by_name():
    """High, Medium, Low are stored as 3, 2, 1."""
    assert [(r.value, str(r.label)) for r in Risk] == [
        (3, "High"),
        (2, "Medium"),
        (1, "Low"),
    ]


@pytest.mark.django_db
def test_the_database_fills_raised_at(make_defect):
    """raised_at comes from the column default, not from Python."""
    defect = make_defect()
    defect.refresh_from_db()
    assert defect.raised_at is not None
