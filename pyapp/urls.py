"""URL configuration: each app's pages under its own prefix, login required."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from pyapp.core import views as core_views

urlpatterns = [
    path("", core_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("people/", include("pyapp.people.urls")),
    path("audit/", include("pyapp.audit.urls")),
    path("shifts/", include("pyapp.shifts.urls")),
    path("defects/", include("pyapp.defects.urls")),
    path("admin/", admin.site.urls),
]
