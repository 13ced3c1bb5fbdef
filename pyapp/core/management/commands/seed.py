"""``pgzen seed``: demo data; every app that has a ``seed`` module adds its part.

An app's ``seed`` module may define ``add_arguments(parser)`` and must define
``seed(command, options)``; they run in INSTALLED_APPS order.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand

from pyapp.core.database import require_migrated


def seed_modules() -> list[ModuleType]:
    modules = []
    for config in apps.get_app_configs():
        if not config.name.startswith("pyapp."):
            continue
        try:
            modules.append(importlib.import_module(f"{config.name}.seed"))
        except ModuleNotFoundError as exc:
            if exc.name != f"{config.name}.seed":
                raise
    return modules


class Command(BaseCommand):
    help = "Create demo data (a login, people with addresses, ...). Idempotent."

    def add_arguments(self, parser: Any) -> None:
        for module in seed_modules():
            if hasattr(module, "add_arguments"):
                module.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        require_migrated()
        for module in seed_modules():
            module.seed(self, options)
