"""The MQTT link on a real broker: which thread sends, and in what order."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest

from bridge.config import MqttSettings
from bridge.mqtt import MqttLink
from tests.support.mqtt import BrokerAddress, MqttProbe, timeout_factor

DISCONNECT = 0xE0


@pytest.mark.parametrize("version", ["5", "3.1.1"])
def test_publishes_from_another_thread_go_out_from_the_link_thread_in_order(
    version: str,
    mqtt_broker: BrokerAddress,
    mqtt_probe: Callable[[BrokerAddress], MqttProbe],
    mqtt_topic_prefix: str,
) -> None:
    """Only the link's thread writes to the socket, so packets keep their order.

    paho sends from the thread that queues a packet unless told otherwise, while the
    link's thread drains the same queue: under load the two swapped packets, and a
    lamp's last state reached the broker before the one it replaced. Which thread
    writes is deterministic where that race is not, so it is what this checks.
    """
    topic = f"{mqtt_topic_prefix}/lamp"
    connected = threading.Event()
    link = MqttLink(
        MqttSettings(
            host=mqtt_broker.host,
            port=mqtt_broker.port,
            client_id=f"link-{uuid.uuid4().hex[:10]}",
            protocol="5" if version == "5" else "3.1.1",
        ),
        will_topic=f"{mqtt_topic_prefix}/availability",
        on_connected=connected.set,
        on_disconnected=lambda reason: None,
        on_message=lambda topic, payload, retained: None,
    )
    writes: list[tuple[str, int]] = []
    send = link.client._sock_send

    def recording_send(buf: bytes) -> int:
        writes.append((threading.current_thread().name, buf[0] & 0xF0))
        return send(buf)

    link.client._sock_send = recording_send  # type: ignore[method-assign]
    probe = mqtt_probe(mqtt_broker)
    probe.subscribe(topic)
    link.start()
    try:
        assert connected.wait(5.0 * timeout_factor()), "link did not connect"
        link.subscribe([topic])  # under 3.1.1 the echoes keep the link's thread busy
        for n in range(50):
            link.publish(topic, str(n).encode(), retain=True)
        probe.wait_for(topic, b"49")
        sent_while_running = {thread for thread, _ in writes}
    finally:
        link.stop()

    assert [m.payload for m in probe.on(topic)] == [str(n).encode() for n in range(50)]
    assert sent_while_running == {"mqtt"}
    assert writes[-1][1] == DISCONNECT
