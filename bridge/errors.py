"""Exceptions raised by the bridge.

All derive from one root::

    BridgeError
    ├── ConfigError      the configuration file or environment is unusable
    ├── ProtocolError    a device sent a message the bridge cannot use
    └── PayloadError     an MQTT payload is not a switch value

Messages are for developers and operators: lower-case, no final period, the bad value
quoted.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base class of every error raised by the bridge."""


class ConfigError(BridgeError):
    """The configuration file or the environment is unusable."""


class ProtocolError(BridgeError):
    """A device sent a message that the bridge cannot use."""


class PayloadError(BridgeError):
    """An MQTT payload is not a switch value."""
