from django.contrib import admin

from pyapp.people.models import Address, Person


class AddressInline(admin.TabularInline):
    model = Address
    extra = 0
    max_num = 20


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    list_display = ["name", "date_of_birth"]
    search_fields = ["name"]
    inlines = [AddressInline]
