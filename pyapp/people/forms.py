"""PersonForm: a person and all their addresses, validated and saved as one form.

:class:`PersonForm` is a ModelForm that owns the address inline formset
(:attr:`PersonForm.addresses`). Validity, ``has_changed()``, media, ``is_multipart()``
and the error summary cover both, and :meth:`PersonForm.save` writes the person and
the changed address rows in one transaction, so Django's plain ``CreateView`` and
``UpdateView`` use it as they use any ModelForm. The one extra a view has to know is
:class:`PersonNotSaved`: when the database refuses a row, ``save()`` puts the error on
the form and raises it, and the view shows the form again.

Guards, each a clear form error and nothing saved:

- at most :data:`ADDRESS_MAX` addresses; a forged ``TOTAL_FORMS`` builds at most
  :data:`ADDRESS_ABSOLUTE_MAX` forms; a missing or tampered management form;
- an address id that is not one of this person's addresses (another person's, or
  deleted meanwhile), an id on a new row, or the same id twice;
- a duplicate or stale submit. An edit form carries the *version* of what it showed
  (a digest of the person and their addresses as read); if the stored state differs
  when it comes back, nothing is saved and the page shows the current state, with
  what was submitted that differs from it (:meth:`PersonForm.differences`), so
  nothing typed is lost. A create form carries a signed person id allocated when the
  page was shown, and the person is inserted with that id, so a second submit of the
  same form hits the primary key.
- a row refused by a constraint: the constraint's name is mapped to a message on the
  failing field (:data:`CONSTRAINT_ERRORS`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Any

from django import forms
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, router, transaction
from django.forms.models import BaseInlineFormSet, inlineformset_factory
from django.forms.utils import ErrorDict
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from pyapp.people.countries import CountryNameField
from pyapp.people.models import (
    NAME_MAX_LENGTH,
    POSTCODE_PATTERN,
    STREET_MAX_LENGTH,
    SUBURB_MAX_LENGTH,
    Address,
    Person,
)

ADDRESS_MAX = 20
# Enough forms to remove every address and add as many new ones in one submit, and
# no more: a forged TOTAL_FORMS beyond this builds no extra forms.
ADDRESS_ABSOLUTE_MAX = 2 * ADDRESS_MAX
ADDRESSES_PREFIX = "addresses"
# The submit button that adds an address row by a round trip (no JavaScript needed).
ADD_ADDRESS = "add_address"
EARLIEST_DATE_OF_BIRTH = date(1850, 1, 1)
KEY_SALT = "pyapp.people.forms.PersonForm.key"
# Hit by a second submit of one create form: its key is the person's id.
PERSON_PKEY = "person_pkey"

# Constraint name (migrations/0001_people.sql) -> (field, message, error code). A
# field of None puts the message on the row or the person as a whole.
CONSTRAINT_ERRORS: dict[str, tuple[str | None, Any, str]] = {
    "person_name_not_blank": ("name", _("Enter the person's name."), "required"),
    "person_name_length": (
        "name",
        _("Enter a name of at most %(max)d characters.") % {"max": NAME_MAX_LENGTH},
        "max_length",
    ),
    "person_date_of_birth_range": (
        "date_of_birth",
        _("Enter a date of birth on or after 1 January 1850."),
        "min_value",
    ),
    "address_person_fkey": (
        None,
        _("This person was deleted while you were editing, so nothing was saved."),
        "person_gone",
    ),
    "address_street_not_blank": ("street", _("Enter the street."), "required"),
    "address_street_length": (
        "street",
        _("Enter a street of at most %(max)d characters.") % {"max": STREET_MAX_LENGTH},
        "max_length",
    ),
    "address_suburb_not_blank": ("suburb", _("Enter the suburb."), "required"),
    "address_suburb_length": (
        "suburb",
        _("Enter a suburb of at most %(max)d characters.") % {"max": SUBURB_MAX_LENGTH},
        "max_length",
    ),
    "address_postcode_format": (
        "postcode",
        _(
            "Enter a postcode of letters, digits, spaces and hyphens, starting with "
            "a letter or digit."
        ),
        "invalid",
    ),
    "address_country_code": (
        "country",
        _("Enter a country from the list, by its name or its two-letter code."),
        "unknown_country",
    ),
}
UNMAPPED_DATABASE_ERROR = _(
    "The database refused this row, so nothing was saved. Check it and try again."
)
ROW_GONE = _(
    "This address was removed or belongs to someone else, so it can't be changed "
    "here. Reload the page to see the current addresses."
)


class PersonNotSaved(Exception):
    """The database refused a row; the reason is now an error on the form."""


def constraint_name(exc: BaseException) -> str | None:
    """Return the name of the constraint behind a database error, if any."""
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)


def _digest(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:18]).decode()


def _person_state(person: Person) -> list[Any]:
    return [person.pk, person.name, person.date_of_birth]


def _address_state(address: Address) -> list[Any]:
    country = getattr(address.country, "code", address.country)
    return [address.pk, address.street, address.suburb, address.postcode, country]


class ControlField(forms.CharField):
    """A hidden field that steers the form; it never counts as a change."""

    widget = forms.HiddenInput

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)

    def has_changed(self, initial: Any, data: Any) -> bool:
        return False


class AddressIdField(forms.Field):
    """The hidden id of an address row, checked against this person's addresses.

    Django's own field looks each id up in the whole table (a query per row) and lets
    another person's id through, to be skipped silently on save; this one checks
    the rows the formset already read.
    """

    widget = forms.HiddenInput
    default_error_messages = {
        "gone": ROW_GONE,
        "unexpected": _(
            "This new address came with an id; reload the page and add it again."
        ),
    }

    def __init__(self, rows: dict[int, Address], *, existing: bool, **kwargs: Any):
        super().__init__(required=False, **kwargs)
        self.rows = rows
        self.existing = existing

    def clean(self, value: Any) -> Address | None:
        if not self.existing:
            if value in self.empty_values:
                return None
            raise ValidationError(self.error_messages["unexpected"], code="unexpected")
        try:
            return self.rows[int(value)]
        except (KeyError, TypeError, ValueError):
            raise ValidationError(self.error_messages["gone"], code="gone") from None

    def has_changed(self, initial: Any, data: Any) -> bool:
        return False


# What a person types in an address row. Not AddressForm._meta.fields: the inline
# formset appends its foreign key to that list.
ADDRESS_FIELDS = ("street", "suburb", "postcode", "country")


class AddressForm(forms.ModelForm):
    """One address row. ``number`` is its 1-based position, for labels."""

    country = CountryNameField(
        label=_("Country"),
        error_messages={"required": _("Enter the country.")},
    )

    class Meta:
        model = Address
        fields = list(ADDRESS_FIELDS)
        widgets = {
            "street": forms.TextInput(attrs={"size": 40}),
            "suburb": forms.TextInput(attrs={"size": 24}),
            "postcode": forms.TextInput(attrs={"size": 10}),
        }
        error_messages = {
            "street": {"required": _("Enter the street.")},
            "suburb": {"required": _("Enter the suburb.")},
            "postcode": {
                "required": _("Enter the postcode."),
                "max_length": _(
                    "Enter a postcode of at most %(limit_value)d characters "
                    "(it has %(show_value)d)."
                ),
            },
        }

    def __init__(self, *args: Any, defer_validation: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.defer_validation = defer_validation
        # Autofill sections keep the browser from filling every row with one address.
        section = f"section-{self.prefix}"
        autocomplete = {
            "street": "street-address",
            "suburb": "address-level2",
            "postcode": "postal-code",
            "country": "country-name",
        }
        for name, token in autocomplete.items():
            self.fields[name].widget.attrs["autocomplete"] = f"{section} {token}"

    @property
    def index(self) -> str:
        return (self.prefix or "").rsplit("-", 1)[-1]

    @property
    def number(self) -> str:
        """The row's position from 1, or ``__num__`` on the empty form."""
        return str(int(self.index) + 1) if self.index.isdigit() else "__num__"

    @property
    def row_id(self) -> str:
        return f"address-{self.index}"

    def full_clean(self) -> None:
        if self.defer_validation:
            # Re-shown after "Add another address": not checked yet, no errors.
            self._errors = ErrorDict(renderer=self.renderer)
            self.cleaned_data = {}
            return
        super().full_clean()

    def clean_postcode(self) -> str:
        postcode = self.cleaned_data["postcode"]
        if not re.fullmatch(POSTCODE_PATTERN, postcode):
            raise ValidationError(
                CONSTRAINT_ERRORS["address_postcode_format"][1], code="invalid"
            )
        return postcode


class BaseAddressFormSet(BaseInlineFormSet):
    """The addresses of one person; see the module docstring for its guards."""

    default_error_messages = {
        "missing_management_form": _(
            "The list of addresses on this page was incomplete, so nothing was "
            "saved. Reload the page and try again."
        ),
        "too_many_forms": format_lazy(
            _("A person can have at most {} addresses. Remove some and try again."),
            ADDRESS_MAX,
        ),
        "too_few_forms": _("Add at least %(num)d address."),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.error_messages = {**self.error_messages, **self.default_error_messages}
        self.saving_form: AddressForm | None = None

    def get_queryset(self) -> Any:
        if not hasattr(self, "_queryset"):
            queryset = super().get_queryset()
            # One read; the snapshot is the version's input, taken before any form
            # writes cleaned values onto these objects.
            self.rows_by_pk = {row.pk: row for row in queryset}
            self.loaded_state = [_address_state(row) for row in queryset]
        return self._queryset

    def add_fields(self, form: forms.Form, index: int | None) -> None:
        super().add_fields(form, index)
        self.get_queryset()
        existing = index is not None and index < self.initial_form_count()
        initial = None if form.instance._state.adding else form.instance.pk
        form.fields[self._pk_field.name] = AddressIdField(
            self.rows_by_pk, existing=existing, initial=initial
        )
        form.fields[self.fk.name].error_messages["invalid_choice"] = ROW_GONE
        if "DELETE" in form.fields:
            form.fields["DELETE"].label = format_lazy(
                _("Remove address {}"), form.number
            )

    @property
    def live_count(self) -> int:
        """Rows on the page that are not marked for removal."""
        if not self.is_bound:
            return self.total_form_count()
        delete = forms.CheckboxInput()
        return sum(
            1
            for form in self.forms
            if not delete.value_from_datadict(
                self.data, self.files, form.add_prefix("DELETE")
            )
        )

    def full_clean(self) -> None:
        super().full_clean()
        deferred = self.form_kwargs.get("defer_validation")
        if deferred and self.management_form.is_valid():
            self._non_form_errors = self.error_class(
                error_class="nonform", renderer=self.renderer
            )

    def clean(self) -> None:
        seen: dict[int, AddressForm] = {}
        for form in self.initial_forms:
            row = form.cleaned_data.get(self._pk_field.name)
            if row is None:
                continue
            if row.pk in seen:
                form.add_error(
                    None,
                    ValidationError(
                        _("This address is also address %(other)s on this page."),
                        code="duplicate",
                        params={"other": seen[row.pk].number},
                    ),
                )
            seen[row.pk] = form

    # Each write goes through one of these, so a refused row is known by its form.

    def save_new(self, form: AddressForm, commit: bool = True) -> Address:
        self.saving_form = form
        return super().save_new(form, commit=commit)

    def save_existing(
        self, form: AddressForm, obj: Address, commit: bool = True
    ) -> Address:
        self.saving_form = form
        address = form.save(commit=False)
        fields = [name for name in form.changed_data if name in form._meta.fields]
        # update_fields: only what changed, and an error (not a silent INSERT of a
        # fresh row) if the row was deleted meanwhile.
        if fields:
            address.save(update_fields=fields)
        return address

    def delete_existing(self, obj: Address, commit: bool = True) -> None:
        self.saving_form = None
        super().delete_existing(obj, commit=commit)


AddressFormSet = inlineformset_factory(
    Person,
    Address,
    form=AddressForm,
    formset=BaseAddressFormSet,
    extra=0,
    max_num=ADDRESS_MAX,
    validate_max=True,
    absolute_max=ADDRESS_ABSOLUTE_MAX,
    can_delete=True,
)


@dataclass(frozen=True)
class SummaryItem:
    """One line of the error summary: where, what, and the element to link to."""

    label: str
    message: str
    anchor: str | None


@dataclass(frozen=True)
class Difference:
    """One line of a stale submit's comparison: a field, its stored and sent values.

    ``stored`` is the value as the current form shows it, ``submitted`` the value as
    typed ("" for empty). Where there is no value to show, a note is said instead:
    ``stored_note`` ("Not stored", "Removed"), ``submitted_note`` ("Remove this
    address"). ``anchor`` is the id of the field or row on the current page, if any.
    """

    label: str
    anchor: str | None
    stored: str = ""
    submitted: str = ""
    stored_note: str = ""
    submitted_note: str = ""


def _shown(bound: forms.BoundField) -> str:
    """Return the value an unbound field shows, as its widget renders it."""
    value = bound.field.widget.format_value(bound.value())
    return "" if value is None else str(value)


def _typed(bound: forms.BoundField) -> str:
    """Return the raw submitted value of a bound field ("" when blank or absent)."""
    value = bound.data
    text = "" if value is None else str(value)
    return text if text.strip() else ""


def _as_pk(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _row_changed(now: AddressForm, sent: AddressForm) -> bool:
    """Tell whether a submitted row differs from a stored row in any field."""
    return any(
        now[name].field.has_changed(now[name].initial, sent[name].data)
        for name in ADDRESS_FIELDS
    )


def _stored_row_differences(
    now: AddressForm, sent: AddressForm, removing: bool
) -> list[Difference]:
    """List how a submitted row differs from the stored row of its id."""
    row = format_lazy(_("Address {}"), now.number)
    if removing:
        shown = (_shown(now[name]) for name in ADDRESS_FIELDS)
        return [
            Difference(
                str(row),
                now.row_id,
                stored=", ".join(value for value in shown if value),
                submitted_note=str(_("Remove this address")),
            )
        ]
    return [
        Difference(
            f"{row}: {now[name].label}",
            now[name].id_for_label,
            stored=_shown(now[name]),
            submitted=_typed(sent[name]),
        )
        for name in ADDRESS_FIELDS
        if now[name].field.has_changed(now[name].initial, sent[name].data)
    ]


class PersonForm(forms.ModelForm):
    """A person and their addresses as one form; see the module docstring."""

    version = ControlField()
    key = ControlField()

    class Meta:
        model = Person
        fields = ["name", "date_of_birth"]
        widgets = {
            "name": forms.TextInput(attrs={"autocomplete": "off", "size": 40}),
            "date_of_birth": forms.DateInput(
                format="%Y-%m-%d", attrs={"type": "date", "min": "1850-01-01"}
            ),
        }
        error_messages = {
            "name": {
                "required": _("Enter the person's name."),
                "max_length": _(
                    "Enter a name of at most %(limit_value)d characters "
                    "(it has %(show_value)d)."
                ),
            },
            "date_of_birth": {
                "invalid": _("Enter the date of birth as a real date, like 1970-12-31.")
            },
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.adding_address = self.is_bound and ADD_ADDRESS in self.data
        # The row "Add another address" appends (its first field gets the focus).
        self.new_row_index = self._new_row_index() if self.adding_address else None
        self.loaded_person = _person_state(self.instance)
        self.stale = False
        self.already_saved_pk: int | None = None
        self.fields["name"].max_length = NAME_MAX_LENGTH
        self.fields["date_of_birth"].widget.attrs["max"] = (
            timezone.localdate().isoformat()
        )
        # Callables, so the id is taken (and the version computed) only when an
        # unbound form is rendered; a bound form carries its own.
        if self.instance._state.adding:
            del self.fields["version"]
            if not self.is_bound:
                self.initial["key"] = new_person_key
        else:
            del self.fields["key"]
            if not self.is_bound:
                self.initial["version"] = lambda: self.loaded_version

    # --- the formset -----------------------------------------------------------

    @cached_property
    def addresses(self) -> BaseAddressFormSet:
        """The address formset: same data, files and instance, prefix "addresses"."""
        data = self._data_with_new_row() if self.adding_address else self.data
        formset = AddressFormSet(
            data=data if self.is_bound else None,
            files=self.files if self.is_bound else None,
            instance=self.instance,
            prefix=ADDRESSES_PREFIX,
            form_kwargs={"defer_validation": self.adding_address},
        )
        if not self.is_bound and self.instance._state.adding:
            formset.extra = 1  # a new person's page starts with one empty row
        if self.new_row_index is not None and self.new_row_index < len(formset.forms):
            # The page comes back with focus on the row the button added.
            formset.forms[self.new_row_index].fields["street"].widget.attrs[
                "autofocus"
            ] = True
        return formset

    def _new_row_index(self) -> int | None:
        try:
            total = int(self.data.get(f"{ADDRESSES_PREFIX}-TOTAL_FORMS", ""))
        except ValueError:
            return None
        return total if 0 <= total < ADDRESS_ABSOLUTE_MAX else None

    def _data_with_new_row(self) -> Any:
        data = self.data.copy()
        if self.new_row_index is not None:
            data[f"{ADDRESSES_PREFIX}-TOTAL_FORMS"] = str(self.new_row_index + 1)
        return data

    @property
    def can_add_address(self) -> bool:
        return self.addresses.live_count < ADDRESS_MAX

    @property
    def loaded_version(self) -> str:
        """A digest of the person and their addresses as this form read them."""
        self.addresses.get_queryset()
        return _digest([self.loaded_person, self.addresses.loaded_state])

    # --- the form as one unit --------------------------------------------------

    def is_valid(self) -> bool:
        if self.adding_address:
            return False
        return super().is_valid() and self.addresses.is_valid()

    def has_changed(self) -> bool:
        return super().has_changed() or self.addresses.has_changed()

    def is_multipart(self) -> bool:
        return super().is_multipart() or self.addresses.is_multipart()

    @property
    def media(self) -> forms.Media:
        own = forms.Media(js=[forms.Script("people/person-form.js", defer=True)])
        return own + super().media + self.addresses.media

    def full_clean(self) -> None:
        if self.adding_address and self.addresses.management_form.is_valid():
            self._errors = ErrorDict(renderer=self.renderer)
            self.cleaned_data = {}
            return
        super().full_clean()

    def clean_date_of_birth(self) -> date | None:
        value = self.cleaned_data["date_of_birth"]
        if value is not None and value < EARLIEST_DATE_OF_BIRTH:
            raise ValidationError(
                CONSTRAINT_ERRORS["person_date_of_birth_range"][1], code="min_value"
            )
        if value is not None and value > timezone.localdate():
            raise ValidationError(
                _("Enter a date of birth that is not in the future."), code="future"
            )
        return value

    def clean_key(self) -> int | None:
        try:
            return int(signing.loads(self.cleaned_data["key"], salt=KEY_SALT))
        except (signing.BadSignature, TypeError, ValueError):
            raise ValidationError(
                _("This form could not be checked. Reload the page and try again."),
                code="bad_key",
            ) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if "version" in self.fields and cleaned.get("version") != self.loaded_version:
            self.stale = True
            raise ValidationError(
                _(
                    "This person was changed after you opened this page (by a second "
                    "submit of this form, or by someone else), so nothing was saved. "
                    "The form now shows the current details; what you submitted is "
                    "compared with them below."
                ),
                code="stale",
            )
        if not self.addresses.is_valid():
            self.add_error(
                None,
                ValidationError(
                    _("Correct the addresses marked below."), code="invalid_addresses"
                ),
            )
        return cleaned

    # --- saving ----------------------------------------------------------------

    def save(self, commit: bool = True) -> Person:
        """Save the person and every changed address row in one transaction.

        Only changed rows are written. On a database error the transaction rolls
        back, the error is added to the form (on the failing row's field where the
        constraint says which) and :class:`PersonNotSaved` is raised.

        WARNING: the transaction is ``atomic(savepoint=False)``: inside a caller's
        transaction it joins it, and after ``PersonNotSaved`` that transaction is
        doomed; run no further queries in it (it rolls back when it ends).
        """
        if not commit:
            raise ValueError(
                "PersonForm.save() saves the addresses too; no commit=False"
            )
        if not self.is_valid():
            raise ValueError("PersonForm.save() needs a valid form")
        person = self.instance
        creating = person._state.adding
        self.addresses.saving_form = None
        try:
            with transaction.atomic(using=router.db_for_write(Person), savepoint=False):
                if creating:
                    person.pk = self.cleaned_data["key"]
                    person.save(force_insert=True)
                elif self.changed_data:
                    person.save(update_fields=self.changed_data)
                self.addresses.instance = person
                self.addresses.save()
        except DatabaseError as exc:
            if not isinstance(exc, IntegrityError) and type(exc) is not DatabaseError:
                raise  # a server or connection failure, not this data's fault
            if creating:
                person.pk = None
                person._state.adding = True
            self._add_save_error(exc, creating)
            raise PersonNotSaved(str(exc)) from exc
        return person

    def _add_save_error(self, exc: DatabaseError, creating: bool) -> None:
        name = constraint_name(exc)
        row = self.addresses.saving_form
        if creating and name == PERSON_PKEY:
            self.already_saved_pk = self.cleaned_data["key"]
            self.add_error(
                None,
                ValidationError(
                    _("This form was already saved; it was probably submitted twice."),
                    code="already_saved",
                ),
            )
            return
        if name is None:
            # update_fields matched no row: it was deleted while the form was open.
            field, message, code = None, ROW_GONE, "gone"
        else:
            field, message, code = CONSTRAINT_ERRORS.get(
                name, (None, UNMAPPED_DATABASE_ERROR, "database")
            )
        target: forms.BaseForm = row if row is not None else self
        if field not in target.fields:
            field = None
        target.add_error(field, ValidationError(message, code=code))
        if row is not None:
            self.add_error(
                None,
                ValidationError(
                    _("Correct the addresses marked below."), code="invalid_addresses"
                ),
            )

    # --- a stale submit --------------------------------------------------------

    def differences(self, current: PersonForm) -> list[Difference]:
        """List what this bound form submitted that differs from ``current``.

        ``current`` is an unbound form of the person as stored now, the form a stale
        submit is answered with; labels and anchors are those of its page. Fields
        are compared as Django compares them (``Field.has_changed``). Submitted
        address rows are matched to stored ones by id, never by position: a changed
        stored row lists its changed fields, one marked for removal says so, and a
        new row, or one whose id is no longer this person's (removed meanwhile, or
        not theirs at all), lists every value typed in it. Only the submitted data
        and the rows ``current`` read are used: no query, and nothing of another
        person's address. A row that cannot be placed (a missing or tampered
        management form) is left out; the formset's own error says why.
        """
        items: list[Difference] = []
        for name in self._meta.fields:
            if name not in self.fields or name not in current.fields:
                continue
            now, sent = current[name], self[name]
            if sent.field.has_changed(now.initial, sent.data):
                items.append(
                    Difference(
                        str(now.label),
                        now.id_for_label,
                        stored=_shown(now),
                        submitted=_typed(sent),
                    )
                )
        items.extend(self._address_differences(current.addresses))
        return items

    def _address_differences(self, current: BaseAddressFormSet) -> list[Difference]:
        submitted = self.addresses
        initial_count = submitted.initial_form_count()
        stored = {row.instance.pk: row for row in current.forms}

        # Pair each submitted row with the stored row of its id, if any; rows past
        # INITIAL_FORMS are new whatever id they carry, as Django builds them.
        pairs: list[tuple[AddressForm, AddressForm | None, bool]] = []
        seen: set[int] = set()
        for index, sent in enumerate(submitted.forms):
            existing = index < initial_count
            pk = _as_pk(sent[submitted._pk_field.name].data) if existing else None
            if pk is not None and pk in seen:
                continue  # the same id twice (a tampered page): compared once
            if pk is not None:
                seen.add(pk)
            pairs.append((sent, stored.get(pk) if pk is not None else None, existing))
        # Stored rows no submitted row points at were added after the page was
        # opened, perhaps by a first submit of this very page.
        unclaimed = [row for pk, row in stored.items() if pk not in seen]

        items: list[Difference] = []
        new = gone = 0
        for sent, now, existing in pairs:
            removing = "DELETE" in sent.fields and bool(sent["DELETE"].data)
            if now is not None:
                items.extend(_stored_row_differences(now, sent, removing))
                continue

            # Not stored: a new row, or one removed meanwhile (or never this
            # person's). Removing it loses nothing, and neither does a row that an
            # unclaimed stored row already holds; otherwise every typed value is
            # listed. What the page first showed is not sent back, so a removed
            # row is listed whether or not it was edited.
            typed = [
                name
                for name in ADDRESS_FIELDS
                if sent[name].field.has_changed(None, sent[name].data)
            ]
            if removing or not typed:
                continue
            twin = next((row for row in unclaimed if not _row_changed(row, sent)), None)
            if twin is not None:
                unclaimed.remove(twin)
                continue
            if existing:
                gone += 1
                row, note = format_lazy(_("Removed address {}"), gone), _("Removed")
            else:
                new += 1
                row, note = format_lazy(_("New address {}"), new), _("Not stored")
            items.extend(
                Difference(
                    f"{row}: {sent[name].label}",
                    None,
                    submitted=_typed(sent[name]),
                    stored_note=str(note),
                )
                for name in typed
            )
        return items

    # --- presentation ----------------------------------------------------------

    def error_summary(self) -> list[SummaryItem]:
        """Every error on the page, each with the id of the element it is about."""
        items = []
        for error in self.non_field_errors().as_data():
            if error.code != "invalid_addresses":
                items.extend(SummaryItem("", m, None) for m in error.messages)
        for name, errors in self.errors.items():
            if name != forms.forms.NON_FIELD_ERRORS and name in self.fields:
                bound = self[name]
                anchor = bound.id_for_label if not bound.is_hidden else None
                label = str(bound.label) if not bound.is_hidden else ""
                items.extend(SummaryItem(label, m, anchor) for m in errors)
        if not self.is_bound:
            return items
        items.extend(
            SummaryItem(str(_("Addresses")), m, "addresses")
            for m in self.addresses.non_form_errors()
        )
        for form in self.addresses.forms:
            row = format_lazy(_("Address {}"), form.number)
            for name, errors in form.errors.items():
                field = form[name] if name in form.fields else None
                if field is None or field.is_hidden:
                    label, anchor = str(row), form.row_id
                else:
                    label = f"{row}: {field.label}"
                    anchor = field.id_for_label
                items.extend(SummaryItem(label, m, anchor) for m in errors)
        return items


def new_person_key() -> str:
    """Allocate a person id for a create form and sign it (see module docstring)."""
    return signing.dumps(Person.allocate_id(), salt=KEY_SALT)
