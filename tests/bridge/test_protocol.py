"""The wire format and the MQTT payloads, without any network."""

from __future__ import annotations

import json

import pytest

from bridge import protocol
from bridge.errors import PayloadError, ProtocolError


def test_user_online_carries_the_fields_the_firmware_expects() -> None:
    """userOnline names its action, version 6, the apikey, sequence and user agent."""
    message = json.loads(protocol.user_online(apikey="k", sequence="17", ts=5))

    assert message == {
        "action": "userOnline",
        "ts": 5,
        "version": 6,
        "apikey": "k",
        "sequence": "17",
        "userAgent": "app",
    }


def test_single_channel_command_uses_switch() -> None:
    """A single-channel command sets params.switch and carries both api keys."""
    text = protocol.switch_command(
        deviceid="1000abcdef",
        apikey="a",
        self_apikey="b",
        sequence="9",
        outlet=None,
        on=False,
    )

    message = json.loads(text)
    assert message["action"] == "update"
    assert message["params"] == {"switch": "off"}
    assert (message["apikey"], message["selfApikey"]) == ("a", "b")
    assert message["deviceid"] == "1000abcdef"
    assert message["sequence"] == "9"


def test_multi_channel_command_names_the_outlet() -> None:
    """A multi-channel command sets one entry of params.switches."""
    text = protocol.switch_command(
        deviceid="1000abcdef",
        apikey="a",
        self_apikey="a",
        sequence="9",
        outlet=2,
        on=True,
    )

    assert json.loads(text)["params"] == {"switches": [{"switch": "on", "outlet": 2}]}


def test_reply_is_parsed_with_its_echoed_sequence() -> None:
    """A reply yields its error, sequence (as text), device id and apikey."""
    message = protocol.parse_device_message(
        '{"error":0,"apikey":"x","sequence":123,"deviceid":"1000ABCDEF"}'
    )

    assert message == protocol.Reply(
        sequence="123", error=0, deviceid="1000abcdef", apikey="x"
    )


def test_update_with_switches_yields_only_the_outlets_it_names() -> None:
    """A partial multi-channel push yields the outlets it carries."""
    message = protocol.parse_device_message(
        '{"action":"update","deviceid":"1000abcdef","params":'
        '{"switches":[{"switch":"off","outlet":3}]}}'
    )

    assert message == protocol.Update(
        deviceid="1000abcdef", outlets={3: False}, single=False
    )


def test_update_without_switch_state_yields_no_outlets() -> None:
    """A push of other parameters (signal strength, say) changes no outlet."""
    message = protocol.parse_device_message('{"action":"update","params":{"rssi":-60}}')

    assert isinstance(message, protocol.Update)
    assert message.outlets == {}


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"action":"sysmsg"}',
        '{"error":"0","sequence":"1"}',
        '{"error":0}',
        '{"action":"update","params":{"switch":"maybe"}}',
        '{"action":"update","params":{"switches":[{"switch":"on"}]}}',
        '{"action":"update","params":{"switches":[{"switch":"on","outlet":9}]}}',
        '{"action":"update","params":[]}',
    ],
)
def test_unusable_device_messages_raise_protocol_error(text: str) -> None:
    """Malformed JSON, unknown actions and bad values raise ProtocolError."""
    with pytest.raises(ProtocolError):
        protocol.parse_device_message(text)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"1", True),
        (b"0", False),
        (b"true", True),
        (b"FALSE", False),
        (b"On", True),
        (b" off\n", False),
        (b"TRUE", True),
    ],
)
def test_switch_payloads_are_read_in_any_case(payload: bytes, expected: bool) -> None:
    """1/0, true/false and on/off are accepted in any case."""
    assert protocol.parse_switch_payload(payload) is expected


@pytest.mark.parametrize("payload", [b"", b"2", b"yes", b"\xff", b"o n", b"1.0"])
def test_other_switch_payloads_are_rejected(payload: bytes) -> None:
    """Anything but the six words raises PayloadError."""
    with pytest.raises(PayloadError):
        protocol.parse_switch_payload(payload)


def test_states_are_published_as_one_and_zero() -> None:
    """State payloads follow the HomeKit bridge convention."""
    assert (
        protocol.format_switch_state(True),
        protocol.format_switch_state(False),
    ) == (
        b"1",
        b"0",
    )


def test_device_side_messages_round_trip() -> None:
    """The simulator's replies and pushes parse back into what they state."""
    push = protocol.state_push(
        deviceid="1000abcdef", apikey="k", outlets={0: True, 1: False}, single=False
    )
    answer = protocol.reply(sequence="5", error=0, deviceid="1000abcdef", apikey="k")

    assert protocol.parse_device_message(push) == protocol.Update(
        deviceid="1000abcdef", outlets={0: True, 1: False}, single=False
    )
    assert protocol.parse_device_message(answer) == protocol.Reply(
        sequence="5", error=0, deviceid="1000abcdef", apikey="k"
    )


def test_client_messages_parse_on_the_device_side() -> None:
    """The device side reads userOnline and switch commands."""
    hello = protocol.parse_client_message(
        protocol.user_online(apikey="k", sequence="1", ts=0)
    )
    command = protocol.parse_client_message(
        protocol.switch_command(
            deviceid="1000abcdef",
            apikey="k",
            self_apikey="k",
            sequence="2",
            outlet=1,
            on=True,
        )
    )

    assert hello == protocol.UserOnline(sequence="1", apikey="k")
    assert command == protocol.Command(
        deviceid="1000abcdef", sequence="2", outlets={1: True}, single=False
    )


def test_device_ids_are_ten_hex_digits() -> None:
    """Only ten hexadecimal digits make a device id."""
    assert protocol.is_deviceid("1000abcdef")
    assert not protocol.is_deviceid("1000abcde")
    assert not protocol.is_deviceid("1000abcdeg")
    assert not protocol.is_deviceid(None)
