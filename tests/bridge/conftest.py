"""Fixtures for the bridge's end-to-end tests: simulated devices and running bridges."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Config, parse_config
from bridge.runtime import Bridge
from bridge.simulator import SimulatedDevice, Simulator
from tests.support.mqtt import BrokerAddress, Mosquitto, timeout_factor

ROOT = Path(__file__).parents[2]

# Short timings keep the suite fast; the protocol is the same at any scale.
FAST_BRIDGE = {
    "reconnect_min": 0.05,
    "reconnect_max": 0.4,
    "handshake_timeout": 2.0,
    "state_timeout": 0.5,
    "ack_timeout": 2.0,
    "command_ttl": 3.0,
    "ping_interval": 5.0,
    "ping_timeout": 3.0,
}


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """Simulated devices on local ports, stopped when the test ends."""
    with Simulator(timeout=10.0 * timeout_factor()) as sim:
        yield sim


@dataclass
class RunningBridge:
    """A bridge running on a thread of the test process."""

    bridge: Bridge
    thread: threading.Thread
    prefix: str

    def topic(self, device: SimulatedDevice, outlet: int | None = None) -> str:
        if outlet is None:
            return f"{self.prefix}/sonoff-{device.deviceid}/Lightbulb/On"
        return f"{self.prefix}/sonoff-{device.deviceid}-{outlet + 1}/Lightbulb/On"

    def availability(self, device: SimulatedDevice) -> str:
        return f"{self.prefix}/bridge/sonoff-{device.deviceid}/availability"

    @property
    def bridge_availability(self) -> str:
        return f"{self.prefix}/bridge/availability"

    def stop(self) -> None:
        self.bridge.stop()
        self.thread.join(10.0 * timeout_factor())
        assert not self.thread.is_alive(), "bridge did not stop"


def bridge_config(
    broker: BrokerAddress | Mosquitto,
    prefix: str,
    devices: list[dict[str, Any]],
    *,
    bridge: dict[str, Any] | None = None,
    mqtt: dict[str, Any] | None = None,
) -> Config:
    """Build a configuration as the TOML file would, with fast timings."""
    data = {
        "mqtt": {
            "url": broker.url,
            "client_id": f"bridge-{prefix.rsplit('/', 1)[-1]}",
            "reconnect_min": 0.05,
            "reconnect_max": 0.5,
            **(mqtt or {}),
        },
        "bridge": {**FAST_BRIDGE, **(bridge or {})},
        "topics": {
            "single": prefix + "/sonoff-{deviceid}/Lightbulb/On",
            "multi": prefix + "/sonoff-{deviceid}-{channel}/Lightbulb/On",
            "bridge_availability": prefix + "/bridge/availability",
            "device_availability": prefix + "/bridge/sonoff-{deviceid}/availability",
        },
        "devices": devices,
    }
    return parse_config(data, environ={})


def device_entry(device: SimulatedDevice, **extra: Any) -> dict[str, Any]:
    return {"address": device.address, "outlets": device.outlets, **extra}


@pytest.fixture
def run_bridge(
    mqtt_topic_prefix: str,
) -> Iterator[Callable[..., RunningBridge]]:
    """Start bridges for devices on a broker; each is stopped when the test ends."""
    running: list[RunningBridge] = []

    def start(
        broker: BrokerAddress | Mosquitto,
        devices: list[SimulatedDevice | dict[str, Any]],
        **options: Any,
    ) -> RunningBridge:
        entries = [d if isinstance(d, dict) else device_entry(d) for d in devices]
        config = bridge_config(broker, mqtt_topic_prefix, entries, **options)
        bridge = Bridge(config)
        thread = threading.Thread(target=bridge.run, name="bridge", daemon=True)
        thread.start()
        handle = RunningBridge(bridge, thread, mqtt_topic_prefix)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        if handle.thread.is_alive():
            handle.stop()


def write_config(
    path: Path, broker: BrokerAddress, prefix: str, devices: list[SimulatedDevice]
) -> Path:
    lines = [
        "[mqtt]",
        f'url = "{broker.url}"',
        f'client_id = "daemon-{prefix.rsplit("/", 1)[-1]}"',
        "",
        "[topics]",
        f'single = "{prefix}/sonoff-{{deviceid}}/Lightbulb/On"',
        f'multi = "{prefix}/sonoff-{{deviceid}}-{{channel}}/Lightbulb/On"',
        f'bridge_availability = "{prefix}/bridge/availability"',
        f'device_availability = "{prefix}/bridge/sonoff-{{deviceid}}/availability"',
        "",
        "[bridge]",
        "reconnect_min = 0.05",
        "reconnect_max = 0.5",
        "",
    ]
    for device in devices:
        lines += [
            "[[devices]]",
            f'address = "{device.address}"',
            f'name = "dev{device.port}"',
            f"outlets = {device.outlets}",
            "",
        ]
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def daemon() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start pgzen-bridge processes; kill leftovers when the test ends."""
    processes: list[subprocess.Popen[str]] = []

    def start(
        config: Path, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "--config", str(config), *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()
