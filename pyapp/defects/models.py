"""Defects and their risk rating; the table comes from migrations/0020 and 0021.

The rating is stored as an integer (3 high, 2 medium, 1 low) so it sorts and compares;
people see and choose it by name. The model is unmanaged and mirrors the SQL exactly.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

DESCRIPTION_MAX_LENGTH = 2000


class Risk(models.IntegerChoices):
    """The stored number of each rating, and the name people see."""

    HIGH = 3, _("High")
    MEDIUM = 2, _("Medium")
    LOW = 1, _("Low")


class Defect(models.Model):
    id = models.BigAutoField(primary_key=True)
    description = models.TextField(_("description"), max_length=DESCRIPTION_MAX_LENGTH)
    risk = models.IntegerField(_("risk"), choices=Risk.choices)
    raised_at = models.DateTimeField(_("raised at"), db_default=Now())

    class Meta:
        managed = False
        db_table = "defect"
        # Highest risk first, then the newest: the list page's order, which the
        # index defect_risk_raised_at_idx serves.
        ordering = ["-risk", "-raised_at", "-id"]
        verbose_name = _("defect")
        verbose_name_plural = _("defects")

    def __str__(self) -> str:
        return f"{self.get_risk_display()}: {self.description[:60]}"
