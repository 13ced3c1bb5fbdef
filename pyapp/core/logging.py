"""Log records as one line each, with their structured fields appended.

A record logged with ``extra={"action": "backfill_batch", "rows": 1000}`` prints as
``... backfill_batch done action=backfill_batch rows=1000``, so a log reader can grep
by a stable ``action`` and read the numbers that matter.
"""

from __future__ import annotations

import logging

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()) | {
    "message",
    "asctime",
    "taskName",
}


class FieldsFormatter(logging.Formatter):
    """Format ``time level logger message key=value ...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        }
        if fields:
            line += " " + " ".join(
                f"{key}={value!r}"
                if isinstance(value, str) and " " in value
                else f"{key}={value}"
                for key, value in sorted(fields.items())
            )
        return line
