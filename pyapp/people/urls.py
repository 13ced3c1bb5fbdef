from django.urls import path

from pyapp.people import views

app_name = "people"
urlpatterns = [
    path("", views.PersonListView.as_view(), name="list"),
    path("new/", views.PersonCreateView.as_view(), name="create"),
    path("<int:pk>/", views.PersonUpdateView.as_view(), name="edit"),
    path("<int:pk>/delete/", views.PersonDeleteView.as_view(), name="delete"),
]
