"""Defect pages: the list by risk, and the create and edit forms. Login required."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _

from pyapp.defects.forms import DefectForm
from pyapp.defects.models import Defect

PAGE_SIZE = 50


@login_required
def defect_list(request: HttpRequest) -> HttpResponse:
    """List defects highest risk first, newest first within a rating."""
    page = Paginator(Defect.objects.all(), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "defects/defect_list.html", {"page": page})


@login_required
def defect_create(request: HttpRequest) -> HttpResponse:
    """Raise a new defect."""
    form = DefectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, _("Defect raised."))
        return redirect("defects:list")
    return render(request, "defects/defect_form.html", {"form": form, "defect": None})


@login_required
def defect_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Change a defect's description or rating."""
    defect = get_object_or_404(Defect, pk=pk)
    form = DefectForm(request.POST or None, instance=defect)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, _("Defect saved."))
        return redirect("defects:list")
    return render(request, "defects/defect_form.html", {"form": form, "defect": defect})
