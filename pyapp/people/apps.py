from django.apps import AppConfig


class PeopleConfig(AppConfig):
    name = "pyapp.people"
    label = "people"
