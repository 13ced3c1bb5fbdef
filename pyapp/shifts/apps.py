from django.apps import AppConfig


class ShiftsConfig(AppConfig):
    name = "pyapp.shifts"
    label = "shifts"
    verbose_name = "Shifts"

    def ready(self) -> None:
        from pyapp.core.backfills import Backfill, register
        from pyapp.shifts import tasks

        register(
            Backfill(
                name="shifts",
                description="shift annotations (missing, or stale after a time "
                "zone change), one chain per key range",
                lock_prefix=tasks.LOCK_PREFIX,
                start=tasks.start,
                progress=tasks.progress,
                default_batch_size=tasks.DEFAULT_BATCH_SIZE,
            )
        )
