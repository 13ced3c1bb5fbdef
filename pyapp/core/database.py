"""The Django connection's target, as a ``db`` target, for SQL-side tools."""

from __future__ import annotations

import os
from functools import cache

from django.db import connections
from psycopg import pq
from psycopg.conninfo import make_conninfo

from db.config import DatabaseTarget, parse_database_url


@cache
def _libpq_keywords() -> frozenset[str]:
    return frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())


def current_target(alias: str = "default") -> DatabaseTarget:
    """Return a target for Django's connection ``alias`` (same server and database)."""
    connection = connections[alias]
    params = connection.get_connection_params()
    params.setdefault("dbname", connection.settings_dict["NAME"])
    keywords = _libpq_keywords()
    clean = {
        key: value
        for key, value in params.items()
        if key in keywords and value not in (None, "")
    }
    return parse_database_url(
        make_conninfo("", **clean), embedded=os.environ.get("PGZEN_EMBEDDED") == "1"
    )
