"""The project's URLs plus a no-op page, whose query count is the baseline.

A signed-in request costs the session and user lookups (and whatever middleware
adds); the people pages' budgets are counted on top of this page's count.
"""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from pyapp.urls import urlpatterns as project_urlpatterns

NOOP_URL = "/__noop__/"


@csrf_exempt
@login_required
def noop(request: HttpRequest) -> HttpResponse:
    return HttpResponse("")


urlpatterns = [path(NOOP_URL.strip("/") + "/", noop), *project_urlpatterns]
