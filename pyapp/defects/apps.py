from django.apps import AppConfig


class DefectsConfig(AppConfig):
    name = "pyapp.defects"
    label = "defects"
