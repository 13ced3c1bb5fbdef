"""Seed a few defects, one of each rating, unless some exist already."""

from __future__ import annotations

from typing import Any

from pyapp.defects.models import Defect, Risk

SAMPLES = [
    ("Fire door on level 2 does not close by itself.", Risk.HIGH),
    ("Loose handrail on the east stairs.", Risk.MEDIUM),
    ("Flickering light in the meeting room.", Risk.LOW),
    ("Emergency exit sign unlit in the car park.", Risk.HIGH),
]


def seed(command: Any, options: dict[str, Any]) -> None:
    if Defect.objects.exists():
        command.stdout.write("Defects: some exist already, none added")
        return
    Defect.objects.bulk_create(
        Defect(description=description, risk=risk) for description, risk in SAMPLES
    )
    command.stdout.write(f"Defects: {len(SAMPLES)} added")
