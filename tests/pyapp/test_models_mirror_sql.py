"""Unmanaged Django models mirror the SQL schema exactly."""

import pytest
from django.apps import apps
from django.db import connection


def unmanaged_models():
    return [
        model
        for model in apps.get_models()
        if not model._meta.managed and model.__module__.startswith("pyapp.")
    ]


def database_columns(table):
    with connection.cursor() as cursor:
        cursor.execute(
            """
            select column_name, is_nullable = 'YES'
              from information_schema.columns
             where table_schema = current_schema() and table_name = %s
            """,
            [table],
        )
        return dict(cursor.fetchall())


@pytest.mark.django_db
@pytest.mark.parametrize("model", unmanaged_models(), ids=lambda m: m._meta.label)
def test_model_fields_match_table_columns(model):
    """Every field is a column of the table, nullability agrees, none is missing."""
    columns = database_columns(model._meta.db_table)
    assert columns, f"table {model._meta.db_table} does not exist"
    fields = {field.column: field.null for field in model._meta.concrete_fields}
    assert set(fields) == set(columns), (
        f"{model._meta.label}: model has {sorted(set(fields) - set(columns))} "
        f"extra, table has {sorted(set(columns) - set(fields))} extra"
    )
    for column, nullable in fields.items():
        assert nullable == columns[column], f"{model._meta.label}.{column} nullability"


def test_there_are_unmanaged_models_to_check():
    """The people models at least are checked (the list is not silently empty)."""
    labels = {model._meta.label for model in unmanaged_models()}
    assert {"people.Person", "people.Address"} <= labels
