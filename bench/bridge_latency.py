"""Latency, memory and idle CPU of the Sonoff bridge, beside a minimal baseline.

Measured in one run, on this machine, against the simulator and a Mosquitto started
here with ``set_tcp_nodelay true`` (every socket of the benchmark sets TCP_NODELAY too):

- MQTT command to device update: from publishing on the command topic to the command
  arriving at the simulated device;
- press to MQTT state: from pressing a simulated device to the state message arriving
  at a subscriber;
- resident memory and idle CPU of the bridge process.

Each figure is measured for the minimal single-device bridge of
``bench/bridge_baseline.py``, for pgzen-bridge with 1 device and with 200 devices, all
running at once; samples are taken round-robin over the three, so a busy machine weighs
on each alike.

    .venv/bin/python bench/bridge_latency.py [--devices 200] [--samples 300]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bridge_baseline import no_delay  # noqa: E402
from bridge.simulator import ReceivedCommand, SimulatedDevice, Simulator  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_mosquitto(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        "set_tcp_nodelay true\npersistence false\nlog_type error\n"
    )
    process = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return process, port
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("mosquitto did not start")


@dataclass
class Watcher:
    """An MQTT subscriber recording when each topic last changed to a payload."""

    port: int
    arrivals: dict[str, tuple[bytes, float]] = field(default_factory=dict)
    condition: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_socket_open = no_delay
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        self.client.subscribe("bench/#", qos=1)

    def _on_message(self, c: paho.Client, u: object, message: paho.MQTTMessage) -> None:
        now = time.monotonic()
        with self.condition:
            self.arrivals[message.topic] = (bytes(message.payload), now)
            self.condition.notify_all()

    def wait(
        self, topic: str, payload: bytes, after: float, timeout: float = 10
    ) -> float:
        deadline = time.monotonic() + timeout
        with self.condition:
            while True:
                seen = self.arrivals.get(topic)
                if seen and seen[0] == payload and seen[1] >= after:
                    return seen[1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{payload!r} on {topic}")
                self.condition.wait(remaining)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1, retain=True)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class CommandClock:
    """Catches the arrival of commands at simulated devices."""

    arrived: dict[str, float] = field(default_factory=dict)
    condition: threading.Condition = field(default_factory=threading.Condition)

    def hook(self, device: SimulatedDevice, command: ReceivedCommand) -> None:
        with self.condition:
            self.arrived[device.deviceid] = command.at
            self.condition.notify_all()

    def wait(self, deviceid: str, after: float, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        with self.condition:
            while self.arrived.get(deviceid, 0.0) < after:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"command for {deviceid}")
                self.condition.wait(remaining)
            return self.arrived[deviceid]


def topic_for(device: SimulatedDevice) -> str:
    return f"bench/sonoff-{device.deviceid}/Lightbulb/On"


def start_bridge(
    devices: list[SimulatedDevice], port: int, workdir: Path
) -> subprocess.Popen[bytes]:
    lines = [
        f'[mqtt]\nurl = "mqtt://127.0.0.1:{port}"',
        f'client_id = "bench-{len(devices)}"\n',
        '[topics]\nsingle = "bench/sonoff-{deviceid}/Lightbulb/On"',
        'bridge_availability = "bench/bridge/availability"',
        'device_availability = "bench/bridge/sonoff-{deviceid}/availability"\n',
    ]
    for device in devices:
        lines.append(f'[[devices]]\naddress = "{device.address}"\noutlets = 1\n')
    config = workdir / f"bridge-{len(devices)}.toml"
    config.write_text("\n".join(lines))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge",
            "--config",
            str(config),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
    )


def start_baseline(device: SimulatedDevice, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "bridge_baseline.py"),
            "--device",
            device.address,
            "--broker",
            f"127.0.0.1:{port}",
            "--topic",
            topic_for(device),
        ]
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Target:
    """One bridge process under measurement and the devices it serves."""

    name: str
    process: subprocess.Popen[bytes]
    devices: list[SimulatedDevice]
    command_ms: list[float] = field(default_factory=list)
    press_ms: list[float] = field(default_factory=list)


def measure(
    targets: list[Target],
    sim: Simulator,
    watcher: Watcher,
    clock: CommandClock,
    samples: int,
    idle: float,
) -> list[dict[str, float | str | int]]:
    """Take samples round-robin over the targets, so all see the same machine load."""
    start = time.monotonic()
    for target in targets:
        for device in target.devices:
            watcher.wait(topic_for(device), b"1" if device.state[0] else b"0", 0.0, 60)
    print(f"all bridges up after {time.monotonic() - start:.1f} s", flush=True)
    time.sleep(1.0)

    warmup = 20
    for n in range(samples + warmup):
        for target in targets:
            device = target.devices[n % len(target.devices)]
            on = not device.state[0]
            sent = time.monotonic()
            watcher.publish(topic_for(device), b"1" if on else b"0")
            arrived = clock.wait(device.deviceid, sent)
            if n >= warmup:
                target.command_ms.append((arrived - sent) * 1000)
            time.sleep(0.01)  # let the acknowledgement and republish settle

    for n in range(samples + warmup):
        for target in targets:
            device = target.devices[(n * 7) % len(target.devices)]
            payload = b"0" if device.state[0] else b"1"
            pressed = time.monotonic()
            sim.press(device)
            arrived = watcher.wait(topic_for(device), payload, pressed)
            if n >= warmup:
                target.press_ms.append((arrived - pressed) * 1000)
            time.sleep(0.005)

    time.sleep(1.0)
    before = [cpu_seconds(t.process.pid) for t in targets]
    idle_start = time.monotonic()
    time.sleep(idle)
    elapsed = time.monotonic() - idle_start
    used = [
        cpu_seconds(t.process.pid) - b for t, b in zip(targets, before, strict=True)
    ]

    return [
        {
            "name": target.name,
            "devices": len(target.devices),
            "command_p50_ms": round(statistics.median(target.command_ms), 2),
            "command_p95_ms": round(percentile(target.command_ms, 95), 2),
            "press_p50_ms": round(statistics.median(target.press_ms), 2),
            "press_p95_ms": round(percentile(target.press_ms, 95), 2),
            "rss_mib": round(rss_mib(target.process.pid), 1),
            "idle_cpu_pct": round(100 * cpu / elapsed, 2),
        }
        for target, cpu in zip(targets, used, strict=True)
    ]


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--idle", type=float, default=30.0, help="idle CPU window, s")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench/out/bridge_latency.json"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, Simulator(timeout=30) as sim:
        workdir = Path(tmp)
        broker, port = start_mosquitto(workdir)
        watcher = Watcher(port)
        clock = CommandClock()
        targets: list[Target] = []
        try:
            for name, count in [
                ("baseline", 1),
                ("pgzen-bridge", 1),
                ("pgzen-bridge", args.devices),
            ]:
                devices = [
                    sim.add(outlets=1, on_command=clock.hook) for _ in range(count)
                ]
                if name == "baseline":
                    process = start_baseline(devices[0], port)
                else:
                    process = start_bridge(devices, port, workdir)
                targets.append(Target(name, process, devices))
            results = measure(targets, sim, watcher, clock, args.samples, args.idle)
        finally:
            for target in targets:
                stop(target.process)
            watcher.close()
            stop(broker)

    header = (
        f"{'bridge':<14}{'devices':>8}{'cmd p50':>9}{'cmd p95':>9}"
        f"{'press p50':>11}{'press p95':>11}{'RSS MiB':>9}{'idle CPU':>10}"
    )
    print()
    print(header)
    for r in results:
        print(
            f"{r['name']:<14}{r['devices']:>8}{r['command_p50_ms']:>9}"
            f"{r['command_p95_ms']:>9}{r['press_p50_ms']:>11}{r['press_p95_ms']:>11}"
            f"{r['rss_mib']:>9}{str(r['idle_cpu_pct']) + '%':>10}"
        )
    base = results[0]
    for r in results[1:]:
        ratios = ", ".join(
            f"{key} x{float(r[key]) / float(base[key]):.2f}"
            for key in ("command_p95_ms", "press_p95_ms", "rss_mib")
            if float(base[key])
        )
        print(f"{r['name']} ({r['devices']} devices) vs baseline: {ratios}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": f"{platform.node()} {os.cpu_count()} cpus, "
                f"Python {platform.python_version()}",
                "results": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
