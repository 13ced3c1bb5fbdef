from django.urls import path

from pyapp.audit import views

app_name = "audit"
urlpatterns = [
    path("people/<int:person_id>/", views.person_history, name="person_history"),
]
