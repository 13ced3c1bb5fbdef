"""The bridge's TOML configuration, with environment overrides for secrets.

Environment variables win over the file:

- ``PGZEN_BRIDGE_MQTT_URL``: the broker, ``mqtt://host:port`` or ``mqtts://`` for TLS;
- ``PGZEN_BRIDGE_MQTT_USERNAME``, ``PGZEN_BRIDGE_MQTT_PASSWORD``;
- ``PGZEN_BRIDGE_MQTT_PASSWORD_FILE``: a file holding the password (systemd
  credentials);
- ``PGZEN_BRIDGE_APIKEY``: the apikey sent to devices.

See ``docs/bridge.example.toml`` for every key.
"""

from __future__ import annotations

import os
import socket
import string
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from bridge import protocol
from bridge.core import DeviceSpec, Timing, TopicScheme
from bridge.errors import ConfigError

ENV_PREFIX = "PGZEN_BRIDGE_"
DEFAULT_URL = "mqtt://127.0.0.1:1883"


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """How to reach the broker."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    client_id: str = field(
        default_factory=lambda: f"pgzen-bridge-{socket.gethostname()}"
    )
    protocol: Literal["5", "3.1.1"] = "5"
    qos: int = 1
    keepalive: int = 30
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_insecure: bool = False
    reconnect_min: float = 0.5
    reconnect_max: float = 10.0
    connect_timeout: float = 5.0

    @property
    def url(self) -> str:
        """The broker's URL, without credentials."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the daemon needs."""

    mqtt: MqttSettings
    timing: Timing
    topics: TopicScheme
    devices: tuple[DeviceSpec, ...]
    connect_timeout: float = 5.0


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file at ``path``, apply environment overrides and validate."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid toml in {str(path)!r}: {exc}") from exc
    return parse_config(data, os.environ if environ is None else environ)


def parse_config(data: Mapping[str, Any], environ: Mapping[str, str]) -> Config:
    """Build a `Config` from parsed TOML and the environment."""
    _only(data, "", {"mqtt", "topics", "bridge", "devices"})
    bridge = _table(data, "bridge")
    mqtt = _parse_mqtt(_table(data, "mqtt"), environ)
    timing = _parse_timing(bridge)
    topics = _parse_topics(_table(data, "topics"))

    apikey = environ.get(ENV_PREFIX + "APIKEY") or _str(bridge, "apikey", "bridge")
    # No key is built in: without one configured, a fresh one per run is what the
    # vendor app would send on a phone the device has never seen.
    apikey = apikey or str(uuid.uuid4())

    devices = data.get("devices", [])
    if not isinstance(devices, list) or not devices:
        raise ConfigError("no devices: add at least one [[devices]] table")
    specs = tuple(
        _parse_device(entry, index, apikey, topics)
        for index, entry in enumerate(devices)
    )
    keys = [spec.key for spec in specs]
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigError(f"two devices are named or addressed {key!r}")

    connect_timeout = _number(bridge, "connect_timeout", "bridge", 5.0)
    return Config(mqtt, timing, topics, specs, connect_timeout)


# Sections.


def _parse_mqtt(table: Mapping[str, Any], environ: Mapping[str, str]) -> MqttSettings:
    where = "mqtt"
    _only(
        table,
        where,
        {f.name for f in fields(MqttSettings)} - {"host", "port", "tls"}
        | {"url", "password_file"},
    )
    url = (
        environ.get(ENV_PREFIX + "MQTT_URL") or _str(table, "url", where) or DEFAULT_URL
    )
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(
            f"mqtt.url must be mqtt://host[:port] or mqtts://, got {url!r}"
        )
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ConfigError(f"invalid port in mqtt.url {url!r}") from exc

    username = (
        environ.get(ENV_PREFIX + "MQTT_USERNAME")
        or _str(table, "username", where)
        or (unquote(parts.username) if parts.username else None)
    )
    password = environ.get(ENV_PREFIX + "MQTT_PASSWORD") or _str(
        table, "password", where
    )
    password_file = environ.get(ENV_PREFIX + "MQTT_PASSWORD_FILE") or _str(
        table, "password_file", where
    )
    if not password and password_file:
        try:
            password = Path(password_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read mqtt.password_file {password_file!r}: {exc.strerror}"
            ) from exc
    if not password and parts.password:
        password = unquote(parts.password)

    version = str(table.get("protocol", "5"))
    if version not in ("5", "3.1.1"):
        raise ConfigError(f"mqtt.protocol must be '5' or '3.1.1', got {version!r}")
    qos = _int(table, "qos", where, 1)
    if qos not in (0, 1):
        raise ConfigError(f"mqtt.qos must be 0 or 1, got {qos!r}")

    defaults = MqttSettings()
    settings = MqttSettings(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=username or None,
        password=password or None,
        client_id=_str(table, "client_id", where) or defaults.client_id,
        protocol="5" if version == "5" else "3.1.1",
        qos=qos,
        keepalive=_int(table, "keepalive", where, defaults.keepalive),
        ca_file=_str(table, "ca_file", where) or None,
        cert_file=_str(table, "cert_file", where) or None,
        key_file=_str(table, "key_file", where) or None,
        tls_insecure=_bool(table, "tls_insecure", where, False),
        reconnect_min=_number(table, "reconnect_min", where, defaults.reconnect_min),
        reconnect_max=_number(table, "reconnect_max", where, defaults.reconnect_max),
        connect_timeout=_number(
            table, "connect_timeout", where, defaults.connect_timeout
        ),
    )
    if settings.reconnect_max < settings.reconnect_min:
        raise ConfigError("mqtt.reconnect_max must not be below mqtt.reconnect_min")
    if settings.keepalive < 5:
        raise ConfigError(
            f"mqtt.keepalive must be at least 5, got {settings.keepalive!r}"
        )
    return settings


def _parse_timing(table: Mapping[str, Any]) -> Timing:
    names = {f.name for f in fields(Timing)}
    _only(table, "bridge", names | {"apikey", "connect_timeout"})
    defaults = Timing()
    values = {
        name: _number(table, name, "bridge", getattr(defaults, name)) for name in names
    }
    timing = Timing(**values)
    if timing.reconnect_max < timing.reconnect_min:
        raise ConfigError("bridge.reconnect_max must not be below bridge.reconnect_min")
    if not 0 <= timing.reconnect_jitter < 1:
        raise ConfigError("bridge.reconnect_jitter must be from 0 to below 1")
    return timing


def _parse_topics(table: Mapping[str, Any]) -> TopicScheme:
    names = {f.name for f in fields(TopicScheme)}
    _only(table, "topics", names)
    defaults = TopicScheme()
    values = {
        name: _str(table, name, "topics") or getattr(defaults, name) for name in names
    }
    scheme = TopicScheme(**values)
    _check_template(scheme.single, "topics.single", outlets=1)
    _check_template(scheme.multi, "topics.multi", outlets=2)
    _check_template(scheme.device_availability, "topics.device_availability", 1)
    _check_topic(scheme.bridge_availability, "topics.bridge_availability")
    return scheme


def _parse_device(
    entry: object, index: int, apikey: str, topics: TopicScheme
) -> DeviceSpec:
    where = f"devices[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table")
    _only(entry, where, {"address", "name", "outlets", "deviceid", "apikey", "topic"})

    address = _str(entry, "address", where)
    if not address:
        raise ConfigError(f"{where}.address is required")
    host, port = _split_address(address, where)

    outlets: int | None = None
    if "outlets" in entry:
        outlets = _int(entry, "outlets", where, 1)
        if not 1 <= outlets <= protocol.MAX_OUTLETS:
            raise ConfigError(
                f"{where}.outlets must be from 1 to {protocol.MAX_OUTLETS}, "
                f"got {outlets!r}"
            )

    deviceid = _str(entry, "deviceid", where) or None
    if deviceid is not None:
        if not protocol.is_deviceid(deviceid):
            raise ConfigError(
                f"{where}.deviceid must be 10 hex digits, got {deviceid!r}"
            )
        deviceid = deviceid.lower()

    topic = _str(entry, "topic", where) or None
    if topic is not None:
        _check_template(topic, f"{where}.topic", outlets=outlets or 1)
        if outlets is None:
            _check_template(topic, f"{where}.topic", outlets=2)

    name = _str(entry, "name", where) or None
    return DeviceSpec(
        key=name or address,
        host=host,
        port=port,
        name=name,
        outlets=outlets,
        deviceid=deviceid,
        apikey=_str(entry, "apikey", where) or apikey,
        topic=topic,
    )


# Helpers.


def _split_address(address: str, where: str) -> tuple[str, int]:
    """Split ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if "://" in address or "/" in address:
        raise ConfigError(f"{where}.address must be host or host:port, got {address!r}")
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        if not rest:
            return host, protocol.DEFAULT_PORT
        if not rest.startswith(":"):
            raise ConfigError(f"{where}.address is malformed: {address!r}")
        port_text = rest[1:]
    elif address.count(":") == 1:
        host, port_text = address.split(":")
    else:
        return address, protocol.DEFAULT_PORT

    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{where}.address has an invalid port: {address!r}") from None
    if not host or not 0 < port < 65536:
        raise ConfigError(f"{where}.address is malformed: {address!r}")
    return host, port


def _check_template(template: str, where: str, outlets: int) -> None:
    try:
        names = {
            n for _, n, _, _ in string.Formatter().parse(template) if n is not None
        }
    except ValueError as exc:
        raise ConfigError(f"{where} is not a valid template: {template!r}") from exc
    unknown = names - {"deviceid", "name", "outlet", "channel"}
    if unknown:
        raise ConfigError(f"{where} uses unknown placeholder {sorted(unknown)[0]!r}")
    if outlets > 1 and not names & {"outlet", "channel"}:
        raise ConfigError(f"{where} needs {{outlet}} or {{channel}}: {template!r}")
    sample = template.format(deviceid="1000abcdef", name="n", outlet=0, channel=1)
    _check_topic(sample, where)


def _check_topic(topic: str, where: str) -> None:
    if not topic or "+" in topic or "#" in topic or "\0" in topic:
        raise ConfigError(f"{where} is not a valid topic: {topic!r}")


def _only(table: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise ConfigError(f"unknown setting {prefix + key!r}")


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{key}] must be a table")
    return value


def _str(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be a string, got {value!r}")
    return value


def _int(table: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key} must be an integer, got {value!r}")
    return value


def _number(table: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{where}.{key} must be a non-negative number, got {value!r}")
    return float(value)


def _bool(table: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be true or false, got {value!r}")
    return value
