"""The pgzen-bridge command as a process: start, logs, graceful stop, crash."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bridge.simulator import Simulator
from tests.bridge.conftest import ROOT, write_config
from tests.support.mqtt import BrokerAddress, MqttProbe, timeout_factor

Probe = Callable[[BrokerAddress], MqttProbe]


def test_sigterm_stops_gracefully_and_publishes_offline(
    tmp_path: Path,
    mqtt_broker: BrokerAddress,
    mqtt_probe: Probe,
    mqtt_topic_prefix: str,
    daemon: Callable[..., subprocess.Popen[str]],
) -> None:
    """On SIGTERM the daemon marks the bridge and its devices offline and exits 0."""
    with Simulator() as sim:
        lamp = sim.add(outlets=1)
        probe = mqtt_probe(mqtt_broker)
        probe.subscribe(mqtt_topic_prefix + "/#")
        config = write_config(
            tmp_path / "bridge.toml", mqtt_broker, mqtt_topic_prefix, [lamp]
        )
        process = daemon(config)
        device_availability = (
            f"{mqtt_topic_prefix}/bridge/sonoff-{lamp.deviceid}/availability"
        )
        probe.wait_for(device_availability, b"online", timeout=10.0)

        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10 * timeout_factor())

    assert process.returncode == 0, stderr
    probe.wait_for(device_availability, b"offline")
    probe.wait_for(f"{mqtt_topic_prefix}/bridge/availability", b"offline")
    assert "received SIGTERM" in stderr
    assert f"[{lamp.deviceid} dev{lamp.port} {lamp.address}] online" in stderr


def test_crash_leaves_the_last_will(
    tmp_path: Path,
    mqtt_broker: BrokerAddress,
    mqtt_probe: Probe,
    mqtt_topic_prefix: str,
    daemon: Callable[..., subprocess.Popen[str]],
) -> None:
    """A killed daemon's bridge availability turns offline through its last will."""
    with Simulator() as sim:
        lamp = sim.add(outlets=1)
        probe = mqtt_probe(mqtt_broker)
        probe.subscribe(mqtt_topic_prefix + "/bridge/availability")
        config = write_config(
            tmp_path / "bridge.toml", mqtt_broker, mqtt_topic_prefix, [lamp]
        )
        process = daemon(config)
        probe.wait_for(
            f"{mqtt_topic_prefix}/bridge/availability", b"online", timeout=10.0
        )

        process.kill()
        process.communicate()

    probe.wait_for(f"{mqtt_topic_prefix}/bridge/availability", b"offline")


def test_json_logs_carry_the_device_on_every_device_line(
    tmp_path: Path,
    mqtt_broker: BrokerAddress,
    mqtt_probe: Probe,
    mqtt_topic_prefix: str,
    daemon: Callable[..., subprocess.Popen[str]],
) -> None:
    """With --log-format json each line is an object; device lines name the device."""
    with Simulator() as sim:
        lamp = sim.add(outlets=1)
        probe = mqtt_probe(mqtt_broker)
        probe.subscribe(mqtt_topic_prefix + "/#")
        config = write_config(
            tmp_path / "bridge.toml", mqtt_broker, mqtt_topic_prefix, [lamp]
        )
        process = daemon(config, "--log-format", "json", "--log-level", "debug")
        probe.wait_for(
            f"{mqtt_topic_prefix}/sonoff-{lamp.deviceid}/Lightbulb/On", b"0", 10
        )
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10 * timeout_factor())

    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    device_records = [r for r in records if r["logger"] == "bridge.core"]
    assert device_records
    assert all(r["address"] == lamp.address for r in device_records)
    assert any(
        r["device"] == lamp.deviceid and r["message"].endswith("online")
        for r in device_records
    )


def test_check_validates_and_summarises(tmp_path: Path) -> None:
    """--check prints the broker and devices and exits 0 without connecting."""
    config = tmp_path / "bridge.toml"
    config.write_text('[[devices]]\naddress = "10.9.9.9"\noutlets = 2\n')

    result = subprocess.run(
        [sys.executable, "-m", "bridge", "--config", str(config), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "device '10.9.9.9' at 10.9.9.9:8081, outlets 2" in result.stdout


def test_bad_configuration_exits_2_with_one_line(tmp_path: Path) -> None:
    """A configuration error is one readable line and exit status 2."""
    config = tmp_path / "bridge.toml"
    config.write_text('[[devices]]\naddress = "10.9.9.9"\noutlets = 9\n')

    result = subprocess.run(
        [sys.executable, "-m", "bridge", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.strip() == (
        "pgzen-bridge: configuration error: "
        "devices[0].outlets must be from 1 to 4, got 9"
    )
