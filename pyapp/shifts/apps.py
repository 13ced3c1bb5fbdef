from django.apps import AppConfig


class ShiftsConfig(AppConfig):
    name = "pyapp.shifts"
    label = "shifts"
