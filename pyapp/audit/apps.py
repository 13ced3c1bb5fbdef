from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "pyapp.audit"
    label = "audit"
