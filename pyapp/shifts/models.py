"""Locations, shifts and their annotations; tables from migrations/0010_shifts.sql.

The models are unmanaged and mirror the SQL exactly. Annotations are written by the
database only (triggers and the backfill in procedures/shifts.sql), never by Django.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

#: Constraint names, for mapping their violations to domain errors.
TIME_ZONE_CONSTRAINT = "location_time_zone_known"
ENDS_AFTER_START_CONSTRAINT = "shift_ends_after_start"
LOCATION_FK_CONSTRAINT = "shift_location_fkey"


class PayClass(models.IntegerChoices):
    STANDARD = 1, _("standard")
    NIGHT = 2, _("night")
    WEEKEND = 3, _("weekend")


class Location(models.Model):
    id = models.BigAutoField(primary_key=True)
    name = models.TextField(_("name"), unique=True, max_length=200)
    time_zone = models.TextField(_("time zone"))
    time_zone_version = models.IntegerField(editable=False, default=1)
    annotations_version = models.IntegerField(editable=False, default=1)

    class Meta:
        managed = False
        db_table = "location"
        ordering = ["name", "id"]
        verbose_name = _("location")
        verbose_name_plural = _("locations")

    def __str__(self) -> str:
        return f"{self.name} ({self.time_zone})"

    @property
    def annotations_stale(self) -> bool:
        """Whether some annotations still follow an earlier time zone."""
        return self.annotations_version < self.time_zone_version


class Shift(models.Model):
    id = models.BigAutoField(primary_key=True)
    location = models.ForeignKey(
        Location,
        on_delete=models.PROTECT,
        related_name="shifts",
        db_column="location_id",
        verbose_name=_("location"),
    )
    starts_at = models.DateTimeField(_("starts at"))
    ends_at = models.DateTimeField(_("ends at"))

    class Meta:
        managed = False
        db_table = "shift"
        ordering = ["id"]
        verbose_name = _("shift")
        verbose_name_plural = _("shifts")

    def __str__(self) -> str:
        return f"{self.location_id}: {self.starts_at:%Y-%m-%d %H:%M} - {self.ends_at}"


class ShiftAnnotation(models.Model):
    shift = models.OneToOneField(
        Shift,
        primary_key=True,
        on_delete=models.DO_NOTHING,  # the database cascades
        related_name="annotation",
        db_column="shift_id",
    )
    local_starts_at = models.DateTimeField()  # timestamp without time zone
    local_ends_at = models.DateTimeField()
    computed_at = models.DateTimeField()
    local_date = models.DateField()
    worked_minutes = models.IntegerField()
    time_zone_version = models.IntegerField()
    weekday = models.SmallIntegerField()
    pay_class = models.SmallIntegerField(choices=PayClass.choices)
    crosses_midnight = models.BooleanField()

    class Meta:
        managed = False
        db_table = "shift_annotation"
        ordering = ["shift_id"]
        verbose_name = _("shift annotation")
        verbose_name_plural = _("shift annotations")

    def __str__(self) -> str:
        pay_class = self.get_pay_class_display()
        return f"shift {self.shift_id}: {self.local_date} {pay_class}"

    @property
    def hours_worked(self) -> float:
        return self.worked_minutes / 60
