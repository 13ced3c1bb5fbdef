"""Readiness and watchdog notifications to systemd, on a real datagram socket."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bridge.runtime import Bridge
from bridge.simulator import Simulator
from bridge.systemd import Notifier
from tests.bridge.conftest import bridge_config, device_entry, write_config
from tests.support.mqtt import BrokerAddress, timeout_factor


class Manager:
    """The service manager's end: a datagram socket that collects notifications."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)

    def receive(self, timeout: float = 5.0) -> str:
        self.sock.settimeout(timeout * timeout_factor())
        return self.sock.recv(4096).decode()

    def wait_for(self, line: str, timeout: float = 5.0) -> list[str]:
        """Messages up to and including the first one with ``line``; fail if none."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout * timeout_factor()
        while time.monotonic() < deadline:
            try:
                message = self.receive(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            seen.append(message)
            if line in message.splitlines():
                return seen
        pytest.fail(f"no {line!r} from the bridge; got {seen!r}")

    def drain(self) -> list[str]:
        self.sock.setblocking(False)
        messages = []
        try:
            while True:
                messages.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return messages
        finally:
            self.sock.setblocking(True)


@pytest.fixture
def manager() -> Iterator[Manager]:
    # A short directory: a socket path must fit in 108 bytes.
    directory = tempfile.mkdtemp(prefix="sd-", dir="/tmp")
    manager = Manager(os.path.join(directory, "notify"))
    yield manager
    manager.sock.close()
    shutil.rmtree(directory, ignore_errors=True)


# Reading the environment.


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "1000000"}, pid=1)
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.ready("x")  # no socket to send to, and no error either


def test_watchdog_interval_is_half_the_limit(manager: Manager) -> None:
    env = {"NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": "30000000"}
    notifier = Notifier.from_environment(env, pid=42)
    assert notifier.watchdog_interval == 15.0
    env["WATCHDOG_PID"] = "42"
    assert Notifier.from_environment(env, pid=42).watchdog_interval == 15.0


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5", " "])
def test_bad_watchdog_time_leaves_the_watchdog_off(
    manager: Manager, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": value}
    with caplog.at_level(logging.WARNING, logger="bridge.systemd"):
        notifier = Notifier.from_environment(env, pid=1)
    assert notifier.enabled, "readiness is still sent"
    assert notifier.watchdog_interval is None
    if value.strip():
        assert f"WATCHDOG_USEC={value!r} is not a positive number" in caplog.text


def test_watchdog_for_another_process_is_not_ours(manager: Manager) -> None:
    env = {
        "NOTIFY_SOCKET": manager.path,
        "WATCHDOG_USEC": "1000000",
        "WATCHDOG_PID": "4242",
    }
    notifier = Notifier.from_environment(env, pid=17)
    assert notifier.enabled
    assert notifier.watchdog_interval is None


def test_relative_socket_path_is_refused_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="bridge.systemd"):
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "run/notify"}, pid=1)
    assert not notifier.enabled
    assert "neither an absolute path nor an abstract socket" in caplog.text


# Sending.


def test_messages_reach_a_path_socket(manager: Manager) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": manager.path}, pid=1)
    notifier.ready("bridging 2 device(s)\nto mqtt://x")
    notifier.watchdog()
    notifier.stopping()
    notifier.close()
    assert manager.receive() == "READY=1\nSTATUS=bridging 2 device(s) to mqtt://x"
    assert manager.receive() == "WATCHDOG=1"
    assert manager.receive() == "STOPPING=1\nSTATUS=stopping"


def test_messages_reach_an_abstract_socket() -> None:
    name = f"pgzen-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5.0)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name}, pid=1)
        notifier.watchdog()
        notifier.close()
        assert sock.recv(100) == b"WATCHDOG=1"


def test_a_missing_manager_is_logged_once_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = tempfile.mkdtemp(prefix="sd-", dir="/tmp")
    path = os.path.join(directory, "notify")
    try:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": path}, pid=1)
        with caplog.at_level(logging.INFO, logger="bridge.systemd"):
            for _ in range(5):
                notifier.watchdog()
            assert caplog.text.count("cannot notify systemd") == 1

            manager = Manager(path)  # the manager comes back
            try:
                notifier.watchdog()
                assert manager.receive() == "WATCHDOG=1"
            finally:
                manager.sock.close()
        assert "notifying systemd again" in caplog.text
        notifier.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# The bridge.


def test_bridge_is_ready_pings_from_its_loop_and_says_when_it_stops(
    manager: Manager, mqtt_broker: BrokerAddress, mqtt_topic_prefix: str
) -> None:
    """Pings come from the loop: while the loop is stuck, none are sent."""
    with Simulator() as sim:
        lamp = sim.add(outlets=1)
        config = bridge_config(mqtt_broker, mqtt_topic_prefix, [device_entry(lamp)])
        notifier = Notifier(manager.path, watchdog_interval=0.05)
        bridge = Bridge(config, notifier=notifier)
        thread = threading.Thread(target=bridge.run, name="bridge", daemon=True)
        thread.start()
        try:
            first = manager.wait_for("READY=1")[-1]
            assert f"STATUS=bridging 1 device(s) to {mqtt_broker.url}" in first
            pings = 0
            while pings < 3:
                pings += manager.receive() == "WATCHDOG=1"

            started, release = threading.Event(), threading.Event()

            def stuck() -> tuple[()]:
                started.set()
                release.wait(10.0)
                return ()

            bridge._post(stuck)
            assert started.wait(5.0 * timeout_factor())
            manager.drain()  # anything sent before the loop got stuck
            time.sleep(0.5)  # ten intervals
            assert manager.drain() == [], "the loop is stuck, so nothing may ping"
            release.set()
            manager.wait_for("WATCHDOG=1")  # pinging again once the loop runs
        finally:
            release.set()
            bridge.stop()
            thread.join(10.0 * timeout_factor())
    assert not thread.is_alive()
    assert any("STOPPING=1" in message.splitlines() for message in manager.drain()), (
        "no STOPPING=1 on stop"
    )


def test_daemon_notifies_the_socket_from_its_environment(
    tmp_path: Path,
    manager: Manager,
    mqtt_broker: BrokerAddress,
    mqtt_topic_prefix: str,
    daemon: Callable[..., subprocess.Popen[str]],
) -> None:
    """pgzen-bridge reads $NOTIFY_SOCKET and $WATCHDOG_USEC as systemd sets them."""
    with Simulator() as sim:
        lamp = sim.add(outlets=1)
        config = write_config(
            tmp_path / "bridge.toml", mqtt_broker, mqtt_topic_prefix, [lamp]
        )
        process = daemon(
            config, env={"NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": "200000"}
        )
        manager.wait_for("READY=1", timeout=10.0)
        manager.wait_for("WATCHDOG=1")
        manager.wait_for("WATCHDOG=1")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10 * timeout_factor())
    assert process.returncode == 0, stderr
    manager.wait_for("STOPPING=1")
