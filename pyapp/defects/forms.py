"""The defect form: the rating is chosen and shown by name, stored as its number."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from pyapp.defects.models import DESCRIPTION_MAX_LENGTH, Defect, Risk

# The value each option posts: the rating's name, never its stored number.
_BY_NAME = {risk.name.lower(): risk for risk in Risk}


class RiskField(forms.ChoiceField):
    """A rating by name ("high", "High", " HIGH ") in, a ``Risk`` out."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "choices", [(name, risk.label) for name, risk in _BY_NAME.items()]
        )
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        """Show a stored number (or a ``Risk``) as its name."""
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return Risk(value).name.lower()
            except ValueError:
                return value
        return value

    def to_python(self, value: Any) -> Risk | None:
        if value in self.empty_values:
            return None
        name = str(value).strip().lower()
        if name not in _BY_NAME:
            raise ValidationError(
                self.error_messages["invalid_choice"],
                code="invalid_choice",
                params={"value": value},
            )
        return _BY_NAME[name]

    def validate(self, value: Any) -> None:
        # to_python already refused anything that is not a rating.
        forms.Field.validate(self, value)


class DefectForm(forms.ModelForm):
    risk = RiskField(label=_("Risk"))

    class Meta:
        model = Defect
        fields = ["description", "risk"]
        widgets = {"description": forms.Textarea(attrs={"rows": 4})}
        error_messages = {
            "description": {"required": _("Describe the defect.")},
        }

    def clean_description(self) -> str:
        description = self.cleaned_data["description"].strip()
        if not description:
            raise ValidationError(_("Describe the defect."), code="blank")
        if len(description) > DESCRIPTION_MAX_LENGTH:
            raise ValidationError(
                _("Keep the description under %(max)d characters."),
                code="too_long",
                params={"max": DESCRIPTION_MAX_LENGTH},
            )
        return description
