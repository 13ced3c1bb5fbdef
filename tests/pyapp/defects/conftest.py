"""Fixtures for the defect pages: a signed-in client and a defect factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from pyapp.defects.models import Defect, Risk


@pytest.fixture
def make_defect(db: None) -> Callable[..., Defect]:
    """Make a defect; ``raised_at`` may be given to fix the order within a rating."""

    def make(
        description: str = "Loose handrail", risk: Risk = Risk.MEDIUM, **fields: Any
    ) -> Defect:
        return Defect.objects.create(description=description, risk=risk, **fields)

    return make


@pytest.fixture
def signed_in(client: Client, db: None) -> Client:
    user = get_user_model().objects.create_user("inspector", password="x" * 12)
    client.force_login(user)
    return client
