from typing import Any

from django.contrib import admin

from pyapp.people.forms import ADDRESS_ABSOLUTE_MAX, ADDRESS_MAX
from pyapp.people.models import Address, Person


class AddressInline(admin.TabularInline):
    model = Address
    extra = 0
    max_num = ADDRESS_MAX

    def get_formset(self, request: Any, obj: Any = None, **kwargs: Any) -> Any:
        # The same limits as the people pages: enforced, and no huge forged forms.
        kwargs.setdefault("validate_max", True)
        kwargs.setdefault("absolute_max", ADDRESS_ABSOLUTE_MAX)
        return super().get_formset(request, obj, **kwargs)


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    list_display = ["name", "date_of_birth"]
    search_fields = ["name"]
    inlines = [AddressInline]
