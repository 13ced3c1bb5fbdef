"""Pages for people: list and search, create, edit (with every address), delete.

Every page requires a signed-in user. The create and edit views are Django's plain
generic views with :class:`~pyapp.people.forms.PersonForm`; :class:`PersonFormPage`
adds only what a database refusal, a stale submit (the stored state, and what was
submitted that differs from it) and the success message need.
Each POST that saves runs in one transaction; on edit it starts by locking the
person's row, so a second submit of the same page waits for the first and then
finds the version changed (see ``docs/people.md``, "Duplicate submits").
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.functions import Lower
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse, reverse_lazy
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views.generic import CreateView, DeleteView, ListView, UpdateView

from pyapp.people.countries import country_datalist
from pyapp.people.forms import ADDRESS_MAX, PersonForm, PersonNotSaved
from pyapp.people.models import Person

PAGE_SIZE = 25


class PersonListView(LoginRequiredMixin, ListView):
    """People by name, optionally those whose name starts with ``q``."""

    model = Person
    paginate_by = PAGE_SIZE
    context_object_name = "people"

    def get_queryset(self) -> QuerySet[Person]:
        people = Person.objects.order_by("name", "id")
        if query := self.query:
            # lower(name) like 'q%' is what person_name_lower_idx serves.
            people = people.alias(name_lower=Lower("name")).filter(
                name_lower__startswith=query.lower()
            )
        return people

    @property
    def query(self) -> str:
        return self.request.GET.get("q", "").strip()[:200]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(q=self.query, **kwargs)


class PersonFormPage:
    """What the create and edit pages share on top of the generic views."""

    model = Person
    form_class = PersonForm
    template_name = "people/person_form.html"
    request: Any
    object: Person | None

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("address_max", ADDRESS_MAX)
        kwargs.setdefault("country_datalist", country_datalist())
        return super().get_context_data(**kwargs)  # type: ignore[misc]

    def get_success_url(self) -> str:
        assert self.object is not None
        return reverse("people:edit", args=[self.object.pk])

    def form_valid(self, form: PersonForm) -> HttpResponse:
        changed = form.has_changed()
        try:
            self.object = form.save()
        except PersonNotSaved:
            if form.already_saved_pk is not None:
                messages.warning(
                    self.request,
                    _(
                        "This form had already been saved (it was submitted twice); "
                        "here is the person it created. Nothing was saved twice."
                    ),
                )
                return redirect("people:edit", form.already_saved_pk)
            return self.form_invalid(form)
        if changed:
            messages.success(
                self.request, _("Saved %(name)s.") % {"name": form.instance}
            )
        else:
            messages.info(self.request, _("Nothing had changed, so nothing was saved."))
        return HttpResponseRedirect(self.get_success_url())

    def form_invalid(self, form: PersonForm) -> HttpResponse:
        if form.stale:
            # Show what is stored now, not the submitted copy of an older state, and
            # next to it what was submitted that differs, so nothing typed is lost.
            # A broken address list says so too: its rows could not be compared.
            conflict = [*form.non_field_errors(), *form.addresses.non_form_errors()]
            self.object = self.get_object()  # type: ignore[attr-defined]
            form_class = self.get_form_class()  # type: ignore[attr-defined]
            fresh = form_class(instance=self.object)
            # Reads the addresses now, inside this transaction with the person
            # still locked, rather than while the response renders.
            differences = form.differences(fresh)
            return self.render_to_response(  # type: ignore[attr-defined]
                self.get_context_data(
                    form=fresh, conflict=conflict, differences=differences
                )
            )
        return super().form_invalid(form)  # type: ignore[misc]


@method_decorator(transaction.atomic, name="post")
class PersonCreateView(LoginRequiredMixin, PersonFormPage, CreateView):
    """Add a person with any number of addresses (up to the limit)."""


@method_decorator(transaction.atomic, name="post")
class PersonUpdateView(LoginRequiredMixin, PersonFormPage, UpdateView):
    """Change a person and all their addresses on one page."""

    def get_queryset(self) -> QuerySet[Person]:
        people = Person.objects.all()
        if self.request.method == "POST":
            # Held until the POST's transaction ends: submits of one person queue.
            people = people.select_for_update()
        return people


class PersonDeleteView(LoginRequiredMixin, DeleteView):
    """Confirm, then delete a person; their addresses go with them (cascade)."""

    model = Person
    success_url = reverse_lazy("people:list")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("address_count", self.object.addresses.count())
        return super().get_context_data(**kwargs)

    def form_valid(self, form: Any) -> HttpResponse:
        name = str(self.object)
        response = super().form_valid(form)
        messages.success(self.request, _("Deleted %(name)s.") % {"name": name})
        return response
