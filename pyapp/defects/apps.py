from django.apps import AppConfig


class DefectsConfig(AppConfig):
    name = "pyapp.defects"
    label = "defects"
    verbose_name = "defects"

    def ready(self) -> None:
        from pyapp.core import backfills
        from pyapp.defects.type_change import BACKFILL

        backfills.register(BACKFILL)
