from django.contrib import admin

from pyapp.defects.forms import DefectForm
from pyapp.defects.models import Defect


@admin.register(Defect)
class DefectAdmin(admin.ModelAdmin):
    form = DefectForm
    list_display = ["description", "risk_name", "raised_at"]
    list_filter = ["risk"]
    search_fields = ["description"]
    readonly_fields = ["raised_at"]

    @admin.display(description="risk", ordering="risk")
    def risk_name(self, defect: Defect) -> str:
        return str(defect.get_risk_display())
