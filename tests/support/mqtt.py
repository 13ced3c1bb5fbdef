"""A real MQTT broker for tests, and a small client to watch and drive it.

Fixtures:

- ``mqtt_broker`` (session): the broker named by ``PGZEN_TEST_MQTT_URL``
  (``mqtt://host:port``), else a Mosquitto process started on a free loopback port and
  stopped at the end of the session. Without a ``mosquitto`` binary the tests that need
  it are skipped, or fail when ``PGZEN_REQUIRE_MQTT=1``.
- ``private_mqtt_broker`` (function): a Mosquitto process of the test's own, which the
  test may stop and restart; ``mosquitto_factory`` starts ones with extra configuration.
- ``mqtt_topic_prefix``: a topic prefix unique to the test, so a shared broker is safe.
- ``mqtt_probe``: a factory of `MqttProbe` clients, disconnected at the end of the test.

Waiting uses `wait_for`, whose timeouts scale with ``PGZEN_TEST_TIMEOUT_FACTOR``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def timeout_factor() -> float:
    """Return the multiplier for every test timeout (``PGZEN_TEST_TIMEOUT_FACTOR``)."""
    return float(os.environ.get("PGZEN_TEST_TIMEOUT_FACTOR", "1"))


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 5.0,
    message: str | Callable[[], str] = "condition",
    interval: float = 0.005,
) -> None:
    """Poll ``predicate`` until it is true; fail the test after the scaled timeout.

    A callable ``message`` is called at the timeout, to describe what was seen by then.
    """
    deadline = time.monotonic() + timeout * timeout_factor()
    while not predicate():
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            pytest.fail(f"timed out after {timeout * timeout_factor():.1f} s: {text}")
        time.sleep(interval)


def free_port() -> int:
    """Return a TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_mosquitto() -> str | None:
    """Return the path of a ``mosquitto`` binary, if there is one."""
    for candidate in MOSQUITTO_CANDIDATES:
        path = shutil.which(candidate)
        if path:
            return path
    return None


def _missing_broker(reason: str) -> None:
    if os.environ.get("PGZEN_REQUIRE_MQTT") == "1":
        pytest.fail(f"{reason} (PGZEN_REQUIRE_MQTT=1)")
    pytest.skip(reason)


@dataclass
class Mosquitto:
    """A Mosquitto process on a loopback port, which can be stopped and restarted."""

    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    extra_config: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def start(self) -> None:
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "set_tcp_nodelay true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n" + self.extra_config
        )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 5.0 * timeout_factor()
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self.process.returncode}: "
                    f"{self.log_path.read_text(errors='replace')[-500:]!r}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"mosquitto did not listen on {self.port}"
                    ) from None
                time.sleep(0.01)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, downtime: float = 0.0) -> None:
        """Stop the broker (retained messages are lost: no persistence) and start it."""
        self.stop()
        if downtime:
            time.sleep(downtime)
        self.start()


@dataclass(frozen=True)
class BrokerAddress:
    """Where a broker listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def _start_mosquitto(workdir: Path, extra_config: str = "") -> Mosquitto:
    binary = find_mosquitto()
    if binary is None:
        _missing_broker(
            "no mosquitto binary on PATH; install mosquitto or set PGZEN_TEST_MQTT_URL"
        )
    assert binary is not None
    for _ in range(3):
        broker = Mosquitto(binary, workdir, extra_config=extra_config)
        try:
            broker.start()
        except RuntimeError:
            continue  # the port was taken between choosing and binding it
        return broker
    raise RuntimeError(f"mosquitto failed to start; see {workdir}")


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerAddress]:
    """A broker for the whole session: ``PGZEN_TEST_MQTT_URL``'s, or our own."""
    url = os.environ.get("PGZEN_TEST_MQTT_URL")
    if url:
        parts = urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname:
            pytest.fail(f"PGZEN_TEST_MQTT_URL must be mqtt://host:port, got {url!r}")
        yield BrokerAddress(parts.hostname, parts.port or 1883)
        return

    broker = _start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield BrokerAddress(broker.host, broker.port)
    finally:
        broker.stop()


@pytest.fixture
def private_mqtt_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto process for this test alone, to stop and restart at will."""
    broker = _start_mosquitto(tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[[str], Mosquitto]]:
    """Start Mosquitto processes with extra configuration lines (TLS, passwords)."""
    brokers: list[Mosquitto] = []

    def start(extra_config: str) -> Mosquitto:
        workdir = tmp_path / f"mosquitto-{len(brokers)}"
        workdir.mkdir()
        broker = _start_mosquitto(workdir, extra_config)
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mqtt_topic_prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix no other test (or run) uses."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name)[:40]
    return f"pgzen-test/{name}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float


class MqttProbe:
    """A test's own MQTT client: subscribes, records what arrives, publishes."""

    def __init__(self, host: str, port: int) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"probe-{uuid.uuid4().hex[:10]}",
            protocol=paho.MQTTv5,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_socket_open = self._on_socket_open
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._connected.wait(5.0 * timeout_factor()):
            raise RuntimeError(f"probe could not connect to {host}:{port}")

    def _on_socket_open(
        self, client: paho.Client, userdata: object, sock: object
    ) -> None:
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.set()

    def _on_message(
        self, client: paho.Client, userdata: object, message: paho.MQTTMessage
    ) -> None:
        received = Received(
            message.topic,
            bytes(message.payload),
            bool(message.retain),
            time.monotonic(),
        )
        with self._lock:
            self.messages.append(received)

    def subscribe(self, topic: str) -> None:
        """Subscribe and wait for the broker's acknowledgement."""
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe(topic, qos=1)
        if not done.wait(5.0 * timeout_factor()):
            raise RuntimeError(f"no SUBACK for {topic!r}")

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        """Publish with QoS 1 and wait until the broker has it."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5.0 * timeout_factor())

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def last(self, topic: str) -> bytes | None:
        """The payload of the latest message on ``topic``."""
        messages = self.on(topic)
        return messages[-1].payload if messages else None

    def wait_for(
        self, topic: str, payload: bytes, timeout: float = 5.0, after: int = 0
    ) -> Received:
        """Wait for ``payload`` on ``topic``, among messages from number ``after``."""
        found: list[Received] = []

        def arrived() -> bool:
            found[:] = [m for m in self.on(topic)[after:] if m.payload == payload]
            return bool(found)

        def seen() -> str:  # at the timeout, not when the wait began
            return f"{payload!r} on {topic!r}; got {self.on(topic)!r}"

        wait_for(arrived, timeout, seen)
        return found[0]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_probe() -> Iterator[Callable[[BrokerAddress | Mosquitto], MqttProbe]]:
    """Make probes connected to a broker; they disconnect when the test ends."""
    probes: list[MqttProbe] = []

    def make(broker: BrokerAddress | Mosquitto) -> MqttProbe:
        probe = MqttProbe(broker.host, broker.port)
        probes.append(probe)
        return probe

    yield make
    for probe in probes:
        probe.close()
