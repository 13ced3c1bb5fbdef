from django.urls import path

from pyapp.defects import views

app_name = "defects"
urlpatterns = [
    path("", views.defect_list, name="list"),
    path("new/", views.defect_create, name="create"),
    path("<int:pk>/", views.defect_edit, name="edit"),
]
