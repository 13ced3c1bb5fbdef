"""The ``pgzen-bridge`` command: run the Sonoff LAN <-> MQTT bridge."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType

from bridge.config import load_config
from bridge.errors import ConfigError

logger = logging.getLogger("bridge")

# Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the record's extras (device, address) as keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif fmt == "journal":
        # systemd adds the time and the unit; keep the line short.
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgzen-bridge",
        description="Bridge Sonoff switches in LAN mode to an MQTT broker.",
    )
    parser.add_argument(
        "--config",
        "-c",
        default=os.environ.get("PGZEN_BRIDGE_CONFIG"),
        help="TOML configuration file (default: $PGZEN_BRIDGE_CONFIG)",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("PGZEN_BRIDGE_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
    )
    parser.add_argument(
        "--log-format",
        default=os.environ.get("PGZEN_BRIDGE_LOG_FORMAT", "text"),
        choices=["text", "journal", "json"],
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the configuration, print a summary and exit",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bridge until SIGTERM or SIGINT; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.config:
        parser.error("--config is required (or set PGZEN_BRIDGE_CONFIG)")
    configure_logging(args.log_level, args.log_format)

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"pgzen-bridge: configuration error: {exc}", file=sys.stderr)
        return 2

    if args.check:
        print(f"broker {config.mqtt.url} as {config.mqtt.client_id!r}")
        for spec in config.devices:
            outlets = spec.outlets or "auto"
            print(f"device {spec.key!r} at {spec.address}, outlets {outlets}")
        return 0

    from bridge.runtime import Bridge
    from bridge.systemd import Notifier

    bridge = Bridge(config, notifier=Notifier.from_environment())

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s", signal.Signals(signum).name)
        bridge.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    bridge.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
