"""The simulator speaks the LAN protocol as the firmware does, to a raw client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from bridge import protocol
from bridge.simulator import SimulatedDevice, Simulator
from tests.support.mqtt import timeout_factor


def connect(device: SimulatedDevice) -> websocket.WebSocket:
    ws = websocket.create_connection(
        f"ws://{device.address}/", subprotocols=["chat"], timeout=5 * timeout_factor()
    )
    return ws


def receive(ws: websocket.WebSocket) -> dict[str, Any]:
    message = json.loads(ws.recv())
    assert isinstance(message, dict)
    return message


def hello(ws: websocket.WebSocket, sequence: str = "1700000000001") -> dict[str, Any]:
    ws.send(protocol.user_online(apikey="app-key", sequence=sequence, ts=1700000000))
    return receive(ws)


def command(
    ws: websocket.WebSocket,
    device: SimulatedDevice,
    on: bool,
    outlet: int | None = None,
) -> None:
    ws.send(
        protocol.switch_command(
            deviceid=device.deviceid,
            apikey="app-key",
            self_apikey=device.apikey,
            sequence="42",
            outlet=outlet,
            on=on,
        )
    )


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


def test_handshake_echoes_the_sequence_and_names_the_device(sim: Simulator) -> None:
    """userOnline is answered with error 0, the echoed sequence and a 10-digit id."""
    device = sim.add(outlets=1)
    ws = connect(device)

    answer = hello(ws, sequence="123456")

    assert answer["error"] == 0
    assert answer["sequence"] == "123456"
    assert protocol.is_deviceid(answer["deviceid"])
    assert answer["deviceid"] == device.deviceid
    assert ws.subprotocol == "chat"
    ws.close()


def test_full_state_is_pushed_after_the_handshake(sim: Simulator) -> None:
    """A multi-channel device pushes every outlet as switches after answering."""
    device = sim.add(outlets=4, state=[True, False, True, False])
    ws = connect(device)
    hello(ws)

    push = receive(ws)

    assert push["action"] == "update"
    assert push["params"]["switches"] == [
        {"switch": "on", "outlet": 0},
        {"switch": "off", "outlet": 1},
        {"switch": "on", "outlet": 2},
        {"switch": "off", "outlet": 3},
    ]
    ws.close()


def test_command_is_acknowledged_and_pushed_to_other_clients(sim: Simulator) -> None:
    """The commanding client gets the ack; every other client gets the update."""
    device = sim.add(outlets=1)
    first, second = connect(device), connect(device)
    for ws in (first, second):
        hello(ws)
        receive(ws)

    command(first, device, on=True)

    assert receive(first) == {
        "error": 0,
        "apikey": device.apikey,
        "sequence": "42",
        "deviceid": device.deviceid,
    }
    assert receive(second)["params"] == {"switch": "on"}
    assert device.state == [True]


def test_press_is_pushed_to_every_client(sim: Simulator) -> None:
    """A press sends only the changed outlet to all connected clients."""
    device = sim.add(outlets=2)
    clients = [connect(device) for _ in range(3)]
    for ws in clients:
        hello(ws)
        receive(ws)

    sim.press(device, 1)

    for ws in clients:
        assert receive(ws)["params"] == {"switches": [{"switch": "on", "outlet": 1}]}


@pytest.mark.parametrize(
    ("setup", "expected"),
    [("refuse", 403), ("before_hello", 403), ("wrong_form", 400)],
)
def test_refusals_carry_a_non_zero_error(
    sim: Simulator, setup: str, expected: int
) -> None:
    """Refused commands are answered with a non-zero error and change nothing."""
    device = sim.add(outlets=1, refuse_with=403 if setup == "refuse" else None)
    ws = connect(device)
    if setup != "before_hello":
        hello(ws)
        receive(ws)

    command(ws, device, on=True, outlet=0 if setup == "wrong_form" else None)

    assert receive(ws)["error"] == expected
    assert device.state == [False]


def test_pings_are_answered(sim: Simulator) -> None:
    """A WebSocket ping gets a pong."""
    device = sim.add(outlets=1)
    ws = connect(device)

    ws.ping(b"alive?")
    opcode, frame = ws.recv_data_frame(control_frame=True)

    assert opcode == websocket.ABNF.OPCODE_PONG
    assert frame.data == b"alive?"


def test_restart_drops_clients_and_listens_again(sim: Simulator) -> None:
    """A restarted device drops its links and accepts new ones on the same port."""
    device = sim.add(outlets=1)
    ws = connect(device)
    hello(ws)
    port = device.port

    sim.restart(device)

    with pytest.raises((websocket.WebSocketException, OSError)):
        for _ in range(3):
            ws.recv()
    assert device.port == port
    again = connect(device)
    assert hello(again)["error"] == 0
