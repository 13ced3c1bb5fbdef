from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "pyapp.core"
    label = "core"
    verbose_name = "pgzen core"
