"""Start the reprs chain after a transaction changed an audited model.

ORM saves and deletes reach here; ``QuerySet.update()``, bulk operations and other
clients do not, and wait for the periodic restart (a minute at most).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, connections, transaction

logger = logging.getLogger(__name__)

_audited: dict[str, frozenset[str]] = {}


def audited_tables(using: str = "default") -> frozenset[str]:
    """Return the tables of the default schema that have audit triggers (cached)."""
    if using not in _audited:
        # A savepoint, so that a failure here never breaks the caller's transaction.
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            cursor.execute(
                """
                select c.relname
                  from pg_trigger as t
                  join pg_class as c on c.oid = t.tgrelid
                 where t.tgname = 'audit_insert'
                   and c.relnamespace = 'public'::regnamespace
                """
            )
            _audited[using] = frozenset(name for (name,) in cursor.fetchall())
    return _audited[using]


def forget_audited_tables() -> None:
    """Drop the cached list (after ``audit_table()`` changed it in this process)."""
    _audited.clear()


def audited_change(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """On commit, queue a chain start if ``sender``'s table is audited."""
    try:
        audited = sender._meta.db_table in audited_tables(using)
    except DatabaseError:
        # Not migrated yet (or the query failed): the periodic restart catches up.
        return
    if audited and not _pending(using):
        transaction.on_commit(_request_reprs, using=using, robust=True)


def _pending(using: str) -> bool:
    # One request per transaction is enough; Django keeps (savepoints, func, robust).
    queued = getattr(connections[using], "run_on_commit", [])
    return any(entry[1] is _request_reprs for entry in queued)


def _request_reprs() -> None:
    from pyapp.audit.tasks import request_reprs

    request_reprs()
