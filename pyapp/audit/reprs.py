"""What an audited row image looked like to the application: its model's ``str()``.

The audit log holds row images as jsonb. :func:`represent` rebuilds an (unsaved)
instance of the Django model whose ``db_table`` is the audited table and returns its
``str()``. It never raises and never queries: a table no model knows, a ``__str__``
that would need the database (it follows a relation, which would show today's data
anyway), or one that fails, each gives a representation that says so, so one odd row
never stalls the chain.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import connection, models

logger = logging.getLogger(__name__)

#: Longer ``str()`` results are cut to this many characters.
MAX_REPR_LENGTH = 1000

#: Django models live in the connection's default schema.
DEFAULT_SCHEMA = "public"


class QueryRefused(RuntimeError):
    """A ``__str__`` tried to query the database while representing a row image."""


@cache
def models_by_table() -> dict[str, type[models.Model]]:
    """Return each concrete model by its ``db_table`` (first registered wins)."""
    found: dict[str, type[models.Model]] = {}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.proxy:
            continue
        found.setdefault(model._meta.db_table, model)
    return found


def model_for(schema_name: str, table_name: str) -> type[models.Model] | None:
    """Return the model of an audited table, or None when the application has none."""
    if schema_name != DEFAULT_SCHEMA:
        return None
    return models_by_table().get(table_name)


def instance_from_image(
    model: type[models.Model], image: Mapping[str, Any]
) -> models.Model:
    """Return an unsaved ``model`` instance holding the values of a jsonb row image.

    Columns the model does not have are ignored; fields the image lacks keep their
    defaults. A value its field cannot read is kept as it came.
    """
    values: dict[str, Any] = {}
    for field in model._meta.concrete_fields:
        if field.column not in image:
            continue
        raw = image[field.column]
        try:
            values[field.attname] = field.to_python(raw)
        except ValidationError:
            values[field.attname] = raw
    return model(**values)


def _refuse(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    raise QueryRefused(sql.split(None, 1)[0] if sql else "query")


@contextmanager
def no_queries() -> Iterator[None]:
    """Make any query on the default connection raise :class:`QueryRefused`."""
    with connection.execute_wrapper(_refuse):
        yield


def represent(
    schema_name: str,
    table_name: str,
    op: str,
    image: Mapping[str, Any] | None,
    *,
    audit_log_id: int | None = None,
) -> str:
    """Return the application's representation of one audit row's image.

    ``image`` is the row as the audit row shows it: the old image for a delete, the
    new one otherwise.

    Call it inside :func:`no_queries` (the batch does, once for all its rows) so that
    a ``__str__`` following a relation is reported instead of querying per row.
    """
    model = model_for(schema_name, table_name)
    if op == "truncate":
        what = model._meta.verbose_name_plural if model else table_name
        return f"(all {what} removed by truncate)"
    if model is None:
        return f"(table {schema_name}.{table_name} is not known to the application)"
    if image is None:
        return f"({model._meta.verbose_name}: no row image)"

    try:
        text = str(instance_from_image(model, image))
    except QueryRefused:
        return f"({_label(model, image)}: its representation needs the database)"
    except Exception as exc:
        logger.warning(
            "str() of %s failed for audit row %s: %r",
            _label(model, image),
            audit_log_id,
            exc,
            extra={"action": "audit_repr_failed", "audit_log_id": audit_log_id},
        )
        return f"({_label(model, image)}: str() failed with {exc.__class__.__name__})"
    return text[:MAX_REPR_LENGTH]


def _label(model: type[models.Model], image: Mapping[str, Any]) -> str:
    pk = model._meta.pk
    value = image.get(pk.column) if pk is not None else None
    key = f"#{value}" if value is not None else "(no key)"
    return f"{model._meta.verbose_name} {key}"
