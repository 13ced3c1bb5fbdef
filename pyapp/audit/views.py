"""A person's history: their changes and their addresses', newest first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from pyapp.audit.models import AuditLog, Operation
from pyapp.audit.reprs import model_for
from pyapp.people.models import Person

PAGE_SIZE = 50
_NO_LIMIT = 2**63 - 1

# Each arm matches an index: audit_log_row_key_idx for the person's own rows, the
# two partial address indexes for addresses that belong, or belonged, to them.
HISTORY_SQL = """
select a.*, r.repr as repr_text
  from audit_log as a
  left join instance_repr as r on r.audit_log_id = a.id
 where a.schema_name = 'public'
   and (   (a.table_name = 'person'
            and a.row_key = jsonb_build_object('id', %(person)s::bigint))
        or (a.table_name = 'address'
            and (   (a.new_row ->> 'person_id')::bigint = %(person)s
                 or (a.old_row ->> 'person_id')::bigint = %(person)s)))
   and a.id < %(before)s
 order by a.id desc
 limit %(limit)s
"""


@dataclass(frozen=True)
class FieldChange:
    name: str
    old: Any
    new: Any


@dataclass(frozen=True)
class HistoryEntry:
    """One row of the history table."""

    entry: AuditLog
    kind: str
    representation: str | None
    changes: list[FieldChange]

    @property
    def operation(self) -> str:
        return str(Operation(self.entry.op).label)


def history_entries(person_id: int, before: int | None, limit: int) -> list[AuditLog]:
    """Return up to ``limit`` audit rows of the person and their addresses."""
    params = {
        "person": person_id,
        "before": before if before is not None else _NO_LIMIT,
        "limit": limit,
    }
    return list(AuditLog.objects.raw(HISTORY_SQL, params))


def describe(entry: AuditLog) -> HistoryEntry:
    """Return what the page shows of one audit row."""
    model = model_for(entry.schema_name, entry.table_name)
    kind = str(model._meta.verbose_name) if model else entry.table_name
    changes: list[FieldChange] = []
    if entry.op == Operation.UPDATE:
        names = {}
        if model is not None:
            names = {f.column: str(f.verbose_name) for f in model._meta.concrete_fields}
        old, new = entry.old_row or {}, entry.new_row or {}
        changes = [
            FieldChange(names.get(column, column), old.get(column), new.get(column))
            for column in sorted(entry.changed_columns or [])
        ]
    representation = getattr(entry, "repr_text", None)
    return HistoryEntry(entry, kind, representation, changes)


@login_required
def person_history(request: HttpRequest, person_id: int) -> HttpResponse:
    """Show the changes of a person and of their addresses, newest first."""
    try:
        before = int(request.GET["before"]) if "before" in request.GET else None
    except ValueError:
        before = None
    rows = history_entries(person_id, before, PAGE_SIZE + 1)
    person = Person.objects.filter(pk=person_id).first()
    if person is None and not rows and before is None:
        raise Http404(_("No person with this id, and no history."))

    entries = [describe(row) for row in rows[:PAGE_SIZE]]
    older = entries[-1].entry.id if len(rows) > PAGE_SIZE else None
    title = str(person) if person else _("Person #%(id)s (deleted)") % {"id": person_id}
    return render(
        request,
        "audit/person_history.html",
        {
            "person": person,
            "person_id": person_id,
            "title": title,
            "entries": entries,
            "older": older,
            "paged": before is not None,
        },
    )
