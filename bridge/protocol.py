"""The Sonoff LAN-mode wire format and the MQTT switch payloads, without any I/O.

Devices on the older ITEAD firmware (1.8 to 2.6) that cannot reach their cloud accept
WebSocket connections on port 8081 with the subprotocol ``chat``. Every message is a
JSON text frame:

- the client opens with ``userOnline``; the device answers with ``error`` 0, its
  ``deviceid`` and the echoed ``sequence``, then pushes its state as an ``update``;
- the client switches the device with an ``update`` carrying ``params``; the device
  acknowledges with ``error`` and the echoed ``sequence``, non-zero meaning refused;
- a physical press makes the device push an ``update`` to every connected client.

Single-channel devices report ``{"switch": "on"}``; multi-channel ones report
``{"switches": [{"switch": "on", "outlet": 0}, ...]}``, later pushes possibly carrying
only the outlets that changed. This module builds and parses both sides of that
exchange; the simulator uses the device side.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.errors import PayloadError, ProtocolError

DEFAULT_PORT = 8081
SUBPROTOCOL = "chat"
PROTOCOL_VERSION = 6
MAX_OUTLETS = 4

_DEVICEID = re.compile(r"[0-9a-fA-F]{10}")
_TRUE = frozenset({"1", "true", "on"})
_FALSE = frozenset({"0", "false", "off"})


# Messages as the bridge sees them.


@dataclass(frozen=True, slots=True)
class Reply:
    """A device's answer to a client message, matched by its echoed sequence."""

    sequence: str
    error: int
    deviceid: str | None = None
    apikey: str | None = None


@dataclass(frozen=True, slots=True)
class Update:
    """A state push from the device: the outlets it mentions, and their values.

    ``single`` is true for the ``switch`` form of a single-channel device.
    """

    deviceid: str | None
    outlets: Mapping[int, bool]
    single: bool


@dataclass(frozen=True, slots=True)
class Command:
    """A switch command from a client, as a device sees it."""

    deviceid: str | None
    sequence: str
    outlets: Mapping[int, bool]
    single: bool


@dataclass(frozen=True, slots=True)
class UserOnline:
    """The opening message of a client, as a device sees it."""

    sequence: str
    apikey: str | None


DeviceMessage = Reply | Update
ClientMessage = UserOnline | Command


def is_deviceid(value: object) -> bool:
    """Tell whether ``value`` is a device id: ten hexadecimal digits."""
    return isinstance(value, str) and _DEVICEID.fullmatch(value) is not None


def _dumps(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def _loads(text: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed json: {_excerpt(text)!r}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"expected a json object, got {_excerpt(text)!r}")
    return message


def _excerpt(text: str | bytes, limit: int = 120) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


def _sequence(message: Mapping[str, Any]) -> str:
    sequence = message.get("sequence")
    if isinstance(sequence, bool) or not isinstance(sequence, str | int):
        raise ProtocolError(f"missing or invalid sequence: {sequence!r}")
    return str(sequence)


def _switch_value(value: object) -> bool:
    if value == "on":
        return True
    if value == "off":
        return False
    raise ProtocolError(f"invalid switch value: {value!r}")


def _parse_params(params: object) -> tuple[dict[int, bool], bool]:
    """Return the outlets that ``params`` sets and whether it is the single form."""
    if not isinstance(params, dict):
        raise ProtocolError(f"invalid params: {params!r}")
    if "switches" in params:
        switches = params["switches"]
        if not isinstance(switches, list):
            raise ProtocolError(f"invalid switches: {switches!r}")
        outlets: dict[int, bool] = {}
        for entry in switches:
            outlet = entry.get("outlet") if isinstance(entry, dict) else None
            if isinstance(outlet, bool) or not isinstance(outlet, int):
                raise ProtocolError(f"invalid switches entry: {entry!r}")
            if not 0 <= outlet < MAX_OUTLETS:
                raise ProtocolError(f"outlet out of range: {outlet!r}")
            outlets[outlet] = _switch_value(entry.get("switch"))
        return outlets, False
    if "switch" in params:
        return {0: _switch_value(params["switch"])}, True
    return {}, False


def _optional_str(message: Mapping[str, Any], key: str) -> str | None:
    value = message.get(key)
    return value if isinstance(value, str) else None


# The client side: what the bridge sends and receives.


def user_online(*, apikey: str, sequence: str, ts: int) -> str:
    """Build the ``userOnline`` message that opens a session."""
    return _dumps(
        {
            "action": "userOnline",
            "ts": ts,
            "version": PROTOCOL_VERSION,
            "apikey": apikey,
            "sequence": sequence,
            "userAgent": "app",
        }
    )


def switch_command(
    *,
    deviceid: str,
    apikey: str,
    self_apikey: str,
    sequence: str,
    outlet: int | None,
    on: bool,
) -> str:
    """Build an ``update`` that switches one outlet (``None``: a single-channel one)."""
    value = "on" if on else "off"
    params: dict[str, Any]
    if outlet is None:
        params = {"switch": value}
    else:
        params = {"switches": [{"switch": value, "outlet": outlet}]}
    return _dumps(
        {
            "action": "update",
            "deviceid": deviceid,
            "apikey": apikey,
            "selfApikey": self_apikey,
            "params": params,
            "sequence": sequence,
            "userAgent": "app",
        }
    )


def parse_device_message(text: str | bytes) -> DeviceMessage:
    """Parse a text frame from a device; raise `ProtocolError` if it is unusable."""
    message = _loads(text)
    action = message.get("action")

    if action is None:
        error = message.get("error")
        if isinstance(error, bool) or not isinstance(error, int):
            raise ProtocolError(f"reply without an integer error: {_excerpt(text)!r}")
        deviceid = _optional_str(message, "deviceid")
        return Reply(
            sequence=_sequence(message),
            error=error,
            deviceid=deviceid.lower() if deviceid else None,
            apikey=_optional_str(message, "apikey"),
        )

    if action == "update":
        outlets, single = _parse_params(message.get("params"))
        deviceid = _optional_str(message, "deviceid")
        return Update(
            deviceid=deviceid.lower() if deviceid else None,
            outlets=outlets,
            single=single,
        )

    raise ProtocolError(f"unknown action: {action!r}")


# The device side: what the simulator sends and receives.


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Parse a text frame from a client; raise `ProtocolError` if it is unusable."""
    message = _loads(text)
    action = message.get("action")
    if action == "userOnline":
        return UserOnline(
            sequence=_sequence(message), apikey=_optional_str(message, "apikey")
        )
    if action == "update":
        outlets, single = _parse_params(message.get("params"))
        deviceid = _optional_str(message, "deviceid")
        return Command(
            deviceid=deviceid.lower() if deviceid else None,
            sequence=_sequence(message),
            outlets=outlets,
            single=single,
        )
    raise ProtocolError(f"unknown action: {action!r}")


def reply(
    *,
    sequence: str,
    error: int = 0,
    deviceid: str | None = None,
    apikey: str | None = None,
) -> str:
    """Build a device's reply echoing ``sequence``."""
    message: dict[str, Any] = {"error": error}
    if apikey is not None:
        message["apikey"] = apikey
    message["sequence"] = sequence
    if deviceid is not None:
        message["deviceid"] = deviceid
    return _dumps(message)


def state_push(
    *, deviceid: str, apikey: str, outlets: Mapping[int, bool], single: bool
) -> str:
    """Build a device's ``update`` push of some or all of its outlets."""
    params: dict[str, Any]
    if single:
        params = {"switch": "on" if outlets[0] else "off"}
    else:
        params = {
            "switches": [
                {"switch": "on" if on else "off", "outlet": outlet}
                for outlet, on in sorted(outlets.items())
            ]
        }
    return _dumps(
        {
            "action": "update",
            "deviceid": deviceid,
            "apikey": apikey,
            "userAgent": "device",
            "params": params,
        }
    )


# MQTT payloads.


def parse_switch_payload(payload: bytes) -> bool:
    """Read an MQTT switch payload: ``1``/``0``, ``true``/``false``, ``on``/``off``.

    Any case and surrounding white space are accepted; anything else raises
    `PayloadError`.
    """
    try:
        word = payload.decode("ascii").strip().lower()
    except UnicodeDecodeError as exc:
        raise PayloadError(f"not a switch value: {payload[:40]!r}") from exc
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise PayloadError(f"not a switch value: {payload[:40]!r}")


def format_switch_state(on: bool) -> bytes:
    """Render a switch state the way HomeKit MQTT bridges expect it."""
    return b"1" if on else b"0"
