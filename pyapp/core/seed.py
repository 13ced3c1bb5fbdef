"""Seed a login for trying the pages: user ``demo``, a staff superuser.

The password is ``PGZEN_DEMO_PASSWORD`` when set, else one generated once and kept in
the data directory, and printed so the person trying pgzen can sign in.
"""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model

from db.config import persistent_secret

DEMO_USERNAME = "demo"


def demo_password() -> str:
    configured = os.environ.get("PGZEN_DEMO_PASSWORD", "").strip()
    if configured:
        return configured
    return persistent_secret("demo_password", 12)


def seed(command: Any, options: dict[str, Any]) -> None:
    password = demo_password()
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(
        username=DEMO_USERNAME, defaults={"is_staff": True, "is_superuser": True}
    )
    if created or not user.check_password(password):
        user.set_password(password)
        user.save()
    command.stdout.write(f"Sign in as {DEMO_USERNAME} / {password}")
