from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save
from django.utils.translation import gettext_lazy as _


class AuditConfig(AppConfig):
    name = "pyapp.audit"
    label = "audit"
    verbose_name = _("Audit log")

    def ready(self) -> None:
        from pyapp.audit import signals, tasks
        from pyapp.core.backfills import Backfill, register

        register(
            Backfill(
                name=tasks.CHAIN,
                description=(
                    "each audit row's representation (the str() of its row image)"
                ),
                lock_prefix=tasks.LOCK,
                start=tasks.start_chain,
                progress=tasks.progress,
                default_batch_size=tasks.DEFAULT_BATCH_SIZE,
            )
        )
        post_save.connect(signals.audited_change, dispatch_uid="audit_reprs_save")
        post_delete.connect(signals.audited_change, dispatch_uid="audit_reprs_delete")
