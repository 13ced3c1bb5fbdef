"""People and their addresses; the tables are created by migrations/0001_people.sql.

The models are unmanaged and mirror the SQL exactly; a test compares them with the
database's catalogue.
"""

from __future__ import annotations

from django.db import connections, models, router
from django.utils.translation import gettext_lazy as _
from django_countries.fields import CountryField

NAME_MAX_LENGTH = 200
STREET_MAX_LENGTH = 200
SUBURB_MAX_LENGTH = 100
POSTCODE_MAX_LENGTH = 10
# The check constraint address_postcode_format, as a Python regular expression.
POSTCODE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9 -]{0,9}"


class Person(models.Model):
    id = models.BigAutoField(primary_key=True)
    name = models.TextField(_("name"), max_length=NAME_MAX_LENGTH)
    date_of_birth = models.DateField(_("date of birth"), null=True, blank=True)

    class Meta:
        managed = False
        db_table = "person"
        ordering = ["name", "id"]
        verbose_name = _("person")
        verbose_name_plural = _("people")

    def __str__(self) -> str:
        return self.name

    @classmethod
    def allocate_id(cls) -> int:
        """Take the next id from the person table's identity sequence."""
        with connections[router.db_for_write(cls)].cursor() as cursor:
            cursor.execute("select nextval(pg_get_serial_sequence('person', 'id'))")
            return int(cursor.fetchone()[0])


class Address(models.Model):
    id = models.BigAutoField(primary_key=True)
    person = models.ForeignKey(
        Person,
        on_delete=models.CASCADE,
        related_name="addresses",
        db_column="person_id",
        verbose_name=_("person"),
    )
    street = models.TextField(_("street"), max_length=STREET_MAX_LENGTH)
    suburb = models.TextField(_("suburb"), max_length=SUBURB_MAX_LENGTH)
    postcode = models.TextField(_("postcode"), max_length=POSTCODE_MAX_LENGTH)
    country = CountryField(_("country"))

    class Meta:
        managed = False
        db_table = "address"
        ordering = ["id"]
        verbose_name = _("address")
        verbose_name_plural = _("addresses")

    def __str__(self) -> str:
        return f"{self.street}, {self.suburb} {self.postcode}, {self.country.code}"
