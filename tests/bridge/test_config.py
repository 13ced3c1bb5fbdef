"""The TOML configuration and its environment overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config, parse_config
from bridge.errors import ConfigError

DEVICE = {"address": "192.168.1.50"}


def parse(data: dict[str, Any], **environ: str) -> Any:
    return parse_config({"devices": [DEVICE], **data}, environ)


def test_defaults_follow_the_homekit_convention() -> None:
    """With only a device, the broker is local and topics follow HomeKit/sonoff-<id>."""
    config = parse({})

    assert config.mqtt.url == "mqtt://127.0.0.1:1883"
    assert config.mqtt.protocol == "5"
    assert config.topics.single == "HomeKit/sonoff-{deviceid}/Lightbulb/On"
    assert config.devices[0].port == 8081
    assert config.timing.reconnect_min == 0.5


def test_environment_overrides_broker_and_secrets() -> None:
    """PGZEN_BRIDGE_* variables win over the file."""
    config = parse(
        {"mqtt": {"url": "mqtt://file:1883", "password": "from-file"}},
        PGZEN_BRIDGE_MQTT_URL="mqtts://broker.lan",
        PGZEN_BRIDGE_MQTT_USERNAME="bridge",
        PGZEN_BRIDGE_MQTT_PASSWORD="secret",
        PGZEN_BRIDGE_APIKEY="key-from-env",
    )

    assert (config.mqtt.host, config.mqtt.port, config.mqtt.tls) == (
        "broker.lan",
        8883,
        True,
    )
    assert (config.mqtt.username, config.mqtt.password) == ("bridge", "secret")
    assert config.devices[0].apikey == "key-from-env"


def test_password_can_come_from_a_file(tmp_path: Path) -> None:
    """A password file (systemd credentials) is read and stripped."""
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")

    config = parse({}, PGZEN_BRIDGE_MQTT_PASSWORD_FILE=str(secret))

    assert config.mqtt.password == "s3cret"


def test_apikey_is_random_when_not_configured() -> None:
    """No key is built in: two runs without one send different keys."""
    assert parse({}).devices[0].apikey != parse({}).devices[0].apikey


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("10.0.0.7", "10.0.0.7", 8081),
        ("10.0.0.7:9000", "10.0.0.7", 9000),
        ("lamp.lan", "lamp.lan", 8081),
        ("[fe80::1]:8081", "fe80::1", 8081),
        ("fe80::1", "fe80::1", 8081),
    ],
)
def test_device_addresses_take_an_optional_port(
    address: str, host: str, port: int
) -> None:
    """A device address is a host with an optional port, 8081 by default."""
    spec = parse_config({"devices": [{"address": address}]}, {}).devices[0]

    assert (spec.host, spec.port) == (host, port)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"devices": []}, "no devices"),
        ({"devices": [{"name": "x"}]}, "devices[0].address is required"),
        ({"devices": [DEVICE, DEVICE]}, "two devices"),
        ({"devices": [{**DEVICE, "outlets": 5}]}, "outlets must be from 1 to 4"),
        ({"devices": [{**DEVICE, "deviceid": "xyz"}]}, "10 hex digits"),
        (
            {"devices": [{**DEVICE, "colour": "red"}]},
            "unknown setting 'devices[0].colour'",
        ),
        ({"devices": [DEVICE], "mqtt": {"url": "http://x"}}, "mqtt.url"),
        ({"devices": [DEVICE], "mqtt": {"protocol": "4"}}, "mqtt.protocol"),
        ({"devices": [DEVICE], "bridge": {"ack_timeout": -1}}, "non-negative"),
        ({"devices": [DEVICE], "topics": {"multi": "x/{deviceid}"}}, "needs {outlet}"),
        ({"devices": [DEVICE], "topics": {"single": "x/{serial}"}}, "'serial'"),
        ({"devices": [DEVICE], "topics": {"single": "x/+/{deviceid}"}}, "valid topic"),
        ({"devices": [DEVICE], "extra": {}}, "unknown setting 'extra'"),
    ],
)
def test_bad_settings_are_refused_with_the_value_named(
    data: dict[str, Any], message: str
) -> None:
    """Each mistake raises ConfigError naming the setting or the value."""
    with pytest.raises(
        ConfigError, match=message.replace("[", r"\[").replace("{", r"\{")
    ):
        parse_config(data, {})


def test_toml_file_is_loaded(tmp_path: Path) -> None:
    """The sample configuration in docs/ is valid."""
    sample = Path(__file__).parents[2] / "docs" / "bridge.example.toml"

    config = load_config(sample, environ={})

    assert config.devices


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing file or invalid TOML is a ConfigError, not a traceback."""
    broken = tmp_path / "broken.toml"
    broken.write_text("[mqtt\n")

    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="invalid toml"):
        load_config(broken, environ={})
