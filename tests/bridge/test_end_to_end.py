"""The bridge end to end: simulated devices, a real Mosquitto, the real daemon."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from bridge.simulator import Simulator
from tests.bridge.conftest import RunningBridge, device_entry
from tests.support.mqtt import (
    BrokerAddress,
    Mosquitto,
    MqttProbe,
    free_port,
    timeout_factor,
    wait_for,
)

Probe = Callable[[BrokerAddress | Mosquitto], MqttProbe]
Run = Callable[..., RunningBridge]


@pytest.fixture
def hung_listener() -> Iterator[str]:
    """An address that accepts TCP connections and never answers, like a hung device."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def test_device_state_reaches_mqtt_retained(
    mqtt_broker: BrokerAddress, mqtt_probe: Probe, simulator: Simulator, run_bridge: Run
) -> None:
    """The initial state and every press are published retained as 1/0."""
    lamp = simulator.add(outlets=1, state=[True])
    probe = mqtt_probe(mqtt_broker)
    running = run_bridge(mqtt_broker, [lamp])
    probe.subscribe(running.prefix + "/#")

    probe.wait_for(running.topic(lamp), b"1")
    probe.wait_for(running.availability(lamp), b"online")
    simulator.press(lamp)
    probe.wait_for(running.topic(lamp), b"0")

    late = mqtt_probe(mqtt_broker)
    late.subscribe(running.topic(lamp))
    assert late.wait_for(running.topic(lamp), b"0").retain


def test_mqtt_command_switches_the_device(
    mqtt_broker: BrokerAddress, mqtt_probe: Probe, simulator: Simulator, run_bridge: Run
) -> None:
    """A live 1/0 on the topic switches the device, which acknowledges it."""
    lamp = simulator.add(outlets=1)
    probe = mqtt_probe(mqtt_broker)
    running = run_bridge(mqtt_broker, [lamp])
    probe.subscribe(running.topic(lamp))
    probe.wait_for(running.topic(lamp), b"0")

    probe.publish(running.topic(lamp), b"ON", retain=True)

    wait_for(lambda: lamp.state == [True], message="device switched on")
    assert len(lamp.commands) == 1


def test_multi_channel_outlets_are_switched_and_reported_separately(
    mqtt_broker: BrokerAddress, mqtt_probe: Probe, simulator: Simulator, run_bridge: Run
) -> None:
    """Each outlet of a four-gang device has its own topic, both ways."""
    gang = simulator.add(outlets=4, state=[False, False, False, False])
    probe = mqtt_probe(mqtt_broker)
    running = run_bridge(mqtt_broker, [gang])
    probe.subscribe(running.prefix + "/#")
    for outlet in range(4):
        probe.wait_for(running.topic(gang, outlet), b"0")

    probe.publish(running.topic(gang, 1), b"1")
    wait_for(lambda: gang.state == [False, True, False, False], message="outlet 1 on")
    simulator.press(gang, 3)

    probe.wait_for(running.topic(gang, 3), b"1")
    assert gang.state == [False, True, False, True]
    assert probe.last(running.topic(gang, 0)) == b"0"


def test_device_restart_is_followed_by_reconnect_and_republish(
    mqtt_broker: BrokerAddress, mqtt_probe: Probe, simulator: Simulator, run_bridge: Run
) -> None:
    """A rebooted device goes offline, comes back, and its state is republished."""
    lamp = simulator.add(outlets=1)
    probe = mqtt_probe(mqtt_broker)
    running = run_bridge(mqtt_broker, [lamp])
    probe.subscribe(running.prefix + "/#")
    probe.wait_for(running.availability(lamp), b"online")
    seen = len(probe.on(running.availability(lamp)))

    simulator.stop(lamp)
    probe.wait_for(running.availability(lamp), b"offline", after=seen)
    lamp.state[0] = True  # switched by hand while the bridge could not see it
    simulator.start(lamp)

    probe.wait_for(running.availability(lamp), b"online", after=seen)
    probe.wait_for(running.topic(lamp), b"1")
    assert lamp.connections == 2


def test_broker_restart_republishes_every_state(
    private_mqtt_broker: Mosquitto,
    mqtt_probe: Probe,
    simulator: Simulator,
    run_bridge: Run,
) -> None:
    """After the broker restarts empty, every state is back within seconds."""
    lamps = [simulator.add(outlets=1, state=[n % 2 == 0]) for n in range(3)]
    probe = mqtt_probe(private_mqtt_broker)
    running = run_bridge(private_mqtt_broker, lamps)
    probe.subscribe(running.prefix + "/#")
    for lamp in lamps:
        probe.wait_for(running.topic(lamp), b"1" if lamp.state[0] else b"0")

    private_mqtt_broker.restart()

    fresh = mqtt_probe(private_mqtt_broker)
    fresh.subscribe(running.prefix + "/#")
    for lamp in lamps:
        expected = b"1" if lamp.state[0] else b"0"
        fresh.wait_for(running.topic(lamp), expected, timeout=5.0)
    fresh.wait_for(running.bridge_availability, b"online")
    wait_for(lambda: all(not lamp.commands for lamp in lamps), message="no commands")


def test_stale_retained_value_never_switches_the_device(
    mqtt_broker: BrokerAddress,
    mqtt_probe: Probe,
    simulator: Simulator,
    run_bridge: Run,
    mqtt_topic_prefix: str,
) -> None:
    """A retained 1 left on the topic does not switch an off device; 0 replaces it."""
    lamp = simulator.add(outlets=1, state=[False])
    probe = mqtt_probe(mqtt_broker)
    topic = f"{mqtt_topic_prefix}/sonoff-{lamp.deviceid}/Lightbulb/On"
    probe.publish(topic, b"1", retain=True)

    run_bridge(mqtt_broker, [device_entry(lamp, deviceid=lamp.deviceid)])
    probe.subscribe(topic)
    late_seen = probe.wait_for(topic, b"0")

    late = mqtt_probe(mqtt_broker)
    late.subscribe(topic)
    assert late.wait_for(topic, b"0").retain
    assert late_seen.payload == b"0"
    assert lamp.commands == []
    assert lamp.state == [False]


@pytest.mark.parametrize(
    "garbage", ["{this is not json", '{"action":"reboot","deviceid":"x"}', "[]"]
)
def test_garbage_from_a_device_keeps_the_link(
    garbage: str,
    mqtt_broker: BrokerAddress,
    mqtt_probe: Probe,
    simulator: Simulator,
    run_bridge: Run,
) -> None:
    """Malformed JSON or an unknown action is survived; the link still works."""
    lamp = simulator.add(outlets=1)
    probe = mqtt_probe(mqtt_broker)
    running = run_bridge(mqtt_broker, [lamp])
    probe.subscribe(running.topic(lamp))
    probe.wait_for(running.topic(lamp), b"0")

    simulator.send_raw(lamp, garbage)
    simulator.press(lamp)

    probe.wait_for(running.topic(lamp), b"1")
    assert lamp.connections == 1
    assert running.thread.is_alive()


def test_a_device_trickling_a_frame_never_holds_up_the_others(
    mqtt_broker: BrokerAddress,
    mqtt_probe: Probe,
    simulator: Simulator,
    run_bridge: Run,
) -> None:
    """One byte every 20 ms: the loop reads what came and serves the other devices."""
    slow = simulator.add(outlets=1)
    lamp = simulator.add(outlets=1)
    probe = mqtt_probe(mqtt_broker)
    running = run_bridge(mqtt_broker, [slow, lamp])
    probe.subscribe(running.topic(slow))
    probe.subscribe(running.topic(lamp))
    probe.wait_for(running.topic(slow), b"0")
    probe.wait_for(running.topic(lamp), b"0")

    trickling = simulator.trickle(slow, 0, True, gap=0.02)  # over two seconds
    time.sleep(0.2)
    simulator.press(lamp)
    probe.wait_for(running.topic(lamp), b"1")
    sent = slow.trickle_sent
    assert sent < slow.trickle_size // 2, (
        f"the lamp's state waited for the slow frame ({sent} of {slow.trickle_size})"
    )

    trickling.result(20 * timeout_factor())
    probe.wait_for(running.topic(slow), b"1")  # the frame, put together in the end
    assert slow.connections == 1
    assert running.thread.is_alive()


@pytest.mark.parametrize("payload", [b"2", b"maybe", b"\xff\xfe", b"{}"])
def test_invalid_mqtt_payloads_are_ignored(
    payload: bytes,
    mqtt_broker: BrokerAddress,
    mqtt_probe: Probe,
    simulator: Simulator,
    run_bridge: Run,
) -> None:
    """A payload that is no switch value never reaches the device; the bridge lives."""
    lamp = simulator.add(outlets=1)
    probe = mqtt_probe(mqtt_broker)
    running = run_bridge(mqtt_broker, [lamp])
    probe.subscribe(running.topic(lamp))
    probe.wait_for(running.topic(lamp), b"0")

    probe.publish(running.topic(lamp), payload)
    probe.publish(running.topic(lamp), b"true")

    wait_for(lambda: lamp.state == [True], message="valid command after invalid")
    assert [c.outlets for c in lamp.commands] == [{0: True}]


def test_unreachable_devices_do_not_block_the_others(
    mqtt_broker: BrokerAddress,
    mqtt_probe: Probe,
    simulator: Simulator,
    run_bridge: Run,
    hung_listener: str,
) -> None:
    """A refused, a hung and a mute device leave a healthy one working at once."""
    mute = simulator.add(outlets=1, frozen=True)
    lamp = simulator.add(outlets=1)
    probe = mqtt_probe(mqtt_broker)
    running = run_bridge(
        mqtt_broker,
        [
            {"address": f"127.0.0.1:{free_port()}", "name": "refused"},
            {"address": hung_listener, "name": "hung"},
            device_entry(mute),
            lamp,
        ],
    )
    probe.subscribe(running.topic(lamp))
    probe.wait_for(running.topic(lamp), b"0", timeout=1.5)

    probe.publish(running.topic(lamp), b"1")

    wait_for(lambda: lamp.state == [True], timeout=1.0, message="healthy device")


def test_command_for_an_absent_device_is_delivered_on_reconnect(
    mqtt_broker: BrokerAddress, mqtt_probe: Probe, simulator: Simulator, run_bridge: Run
) -> None:
    """A command sent while the device is away is applied once when it comes back."""
    lamp = simulator.add(outlets=1)
    probe = mqtt_probe(mqtt_broker)
    running = run_bridge(mqtt_broker, [lamp])
    probe.subscribe(running.prefix + "/#")
    probe.wait_for(running.availability(lamp), b"online")
    simulator.stop(lamp)
    probe.wait_for(running.availability(lamp), b"offline")

    probe.publish(running.topic(lamp), b"1")
    simulator.start(lamp)

    wait_for(lambda: lamp.state == [True], message="held command delivered")
    probe.wait_for(running.topic(lamp), b"1")
    assert len(lamp.commands) == 1


def test_command_older_than_its_ttl_is_dropped(
    mqtt_broker: BrokerAddress, mqtt_probe: Probe, simulator: Simulator, run_bridge: Run
) -> None:
    """A command held longer than command_ttl is never applied."""
    lamp = simulator.add(outlets=1)
    probe = mqtt_probe(mqtt_broker)
    running = run_bridge(mqtt_broker, [lamp], bridge={"command_ttl": 0.2})
    probe.subscribe(running.prefix + "/#")
    probe.wait_for(running.availability(lamp), b"online")
    simulator.stop(lamp)
    probe.wait_for(running.availability(lamp), b"offline")

    probe.publish(running.topic(lamp), b"1")
    pending = running.bridge.core.sessions[lamp.address].pending
    wait_for(lambda: pending, message="command held")
    wait_for(lambda: not pending, message="command dropped")
    simulator.start(lamp)

    probe.wait_for(running.availability(lamp), b"online", after=1)
    probe.wait_for(running.topic(lamp), b"0", after=1)
    assert lamp.commands == []


@pytest.mark.parametrize("version", ["5", "3.1.1"])
def test_own_publishes_are_not_taken_as_commands(
    version: str,
    mqtt_broker: BrokerAddress,
    mqtt_probe: Probe,
    simulator: Simulator,
    run_bridge: Run,
) -> None:
    """Presses published by the bridge never come back to the device as commands."""
    lamp = simulator.add(outlets=1)
    probe = mqtt_probe(mqtt_broker)
    running = run_bridge(mqtt_broker, [lamp], mqtt={"protocol": version})
    probe.subscribe(running.topic(lamp))
    probe.wait_for(running.topic(lamp), b"0")

    for _ in range(5):
        simulator.press(lamp)
    probe.wait_for(running.topic(lamp), b"1", after=5)
    probe.publish(running.topic(lamp), b"0")

    wait_for(lambda: lamp.state == [False], message="real command applied")
    assert [c.outlets for c in lamp.commands] == [{0: False}]


def test_refused_command_leaves_the_real_state_on_mqtt(
    mqtt_broker: BrokerAddress, mqtt_probe: Probe, simulator: Simulator, run_bridge: Run
) -> None:
    """A command the device refuses is followed by a republish of its real state."""
    lamp = simulator.add(outlets=1, refuse_with=403)
    probe = mqtt_probe(mqtt_broker)
    running = run_bridge(mqtt_broker, [lamp])
    probe.subscribe(running.topic(lamp))
    probe.wait_for(running.topic(lamp), b"0")

    probe.publish(running.topic(lamp), b"1", retain=True)

    probe.wait_for(running.topic(lamp), b"0", after=2)
    assert lamp.state == [False]


def test_hung_device_is_detected_by_ping(
    mqtt_broker: BrokerAddress, mqtt_probe: Probe, simulator: Simulator, run_bridge: Run
) -> None:
    """A device that stops answering, pings included, is marked offline."""
    lamp = simulator.add(outlets=1)
    probe = mqtt_probe(mqtt_broker)
    running = run_bridge(
        mqtt_broker, [lamp], bridge={"ping_interval": 0.2, "ping_timeout": 0.3}
    )
    probe.subscribe(running.availability(lamp))
    probe.wait_for(running.availability(lamp), b"online")

    simulator.hang(lamp)

    probe.wait_for(running.availability(lamp), b"offline", timeout=2.0)


def test_bridge_started_before_the_broker_publishes_once_it_is_up(
    private_mqtt_broker: Mosquitto,
    mqtt_probe: Probe,
    simulator: Simulator,
    run_bridge: Run,
) -> None:
    """With the broker down, devices are served; their state appears once it is up."""
    lamp = simulator.add(outlets=1, state=[True])
    private_mqtt_broker.stop()
    running = run_bridge(private_mqtt_broker, [lamp])
    wait_for(lambda: lamp.clients == 1, message="device linked without a broker")

    private_mqtt_broker.start()

    probe = mqtt_probe(private_mqtt_broker)
    probe.subscribe(running.prefix + "/#")
    probe.wait_for(running.topic(lamp), b"1")
    probe.wait_for(running.availability(lamp), b"online")
