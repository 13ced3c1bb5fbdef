"""The audit log and the representations of its row images.

Both tables are created by ``migrations/0002_audit_log.sql`` and written by the
database (triggers) and by the ``reprs`` backfill chain (``pyapp.audit.tasks``); the
models are unmanaged, mirror the SQL exactly, and are for reading.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.translation import gettext_lazy as _


class Operation(models.TextChoices):
    INSERT = "insert", _("created")
    UPDATE = "update", _("changed")
    DELETE = "delete", _("deleted")
    TRUNCATE = "truncate", _("emptied (truncate)")


class AuditLog(models.Model):
    id = models.BigAutoField(primary_key=True)
    schema_name = models.TextField()
    table_name = models.TextField()
    op = models.TextField(choices=Operation.choices)
    row_key = models.JSONField(null=True)
    old_row = models.JSONField(null=True)
    new_row = models.JSONField(null=True)
    changed_columns = ArrayField(models.TextField(), null=True)
    txid = models.BigIntegerField()
    logged_at = models.DateTimeField()
    actor = models.TextField()
    db_role = models.TextField()

    class Meta:
        managed = False
        db_table = "audit_log"
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log")

    def __str__(self) -> str:
        return f"{self.op} {self.table_name} {self.row_key} by {self.actor}"

    @property
    def image(self) -> dict | None:
        """The row image the application represents: the old one for a delete."""
        return self.old_row if self.op == Operation.DELETE else self.new_row


class InstanceRepr(models.Model):
    audit_log = models.OneToOneField(
        AuditLog,
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_column="audit_log_id",
        related_name="instance_repr",
    )
    audit_txid = models.BigIntegerField()
    repr = models.TextField()
    made_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "instance_repr"
        verbose_name = _("representation")
        verbose_name_plural = _("representations")

    def __str__(self) -> str:
        return self.repr
