"""The bridge on a broker that wants TLS and a password."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bridge.simulator import Simulator
from tests.bridge.conftest import RunningBridge
from tests.support.mqtt import Mosquitto, wait_for


@pytest.fixture
def secured_broker(
    mosquitto_factory: Callable[[str], Mosquitto],
) -> Iterator[tuple[Mosquitto, Path]]:
    """A Mosquitto with a self-signed certificate and one user, bridge/s3cret."""
    for tool in ("openssl", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} on PATH")
    # Run as root, Mosquitto drops to its own user before reading the password file,
    # so the files live in a directory that user can enter (pytest's tmp_path is 0700).
    with tempfile.TemporaryDirectory(prefix="pgzen-mqtt-tls-") as tmp:
        yield _secure(Path(tmp), mosquitto_factory)


def _secure(
    tmp_path: Path, mosquitto_factory: Callable[[str], Mosquitto]
) -> tuple[Mosquitto, Path]:
    cert, key, passwords = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "pw"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwords), "bridge", "s3cret"],
        check=True,
        capture_output=True,
    )
    for path in (cert, key, passwords):
        path.chmod(0o644)
    tmp_path.chmod(0o755)
    broker = mosquitto_factory(
        f"allow_anonymous false\npassword_file {passwords}\n"
        f"certfile {cert}\nkeyfile {key}\n"
    )
    return broker, cert


def test_tls_and_password_connect(
    secured_broker: tuple[Mosquitto, Path],
    simulator: Simulator,
    run_bridge: Callable[..., RunningBridge],
) -> None:
    """With mqtts://, the CA file and the right password, the device is served."""
    broker, cert = secured_broker
    lamp = simulator.add(outlets=1)
    url = f"mqtts://127.0.0.1:{broker.port}"

    running = run_bridge(
        broker,
        [lamp],
        mqtt={
            "url": url,
            "ca_file": str(cert),
            "username": "bridge",
            "password": "s3cret",
        },
    )

    wait_for(lambda: running.bridge.core.mqtt_up, message="connected over TLS")
    wait_for(lambda: running.bridge.core.sessions[lamp.address].ready, message="device")


def test_wrong_password_is_logged_and_retried(
    secured_broker: tuple[Mosquitto, Path],
    simulator: Simulator,
    run_bridge: Callable[..., RunningBridge],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused login is an ERROR line; the bridge keeps its devices and retries."""
    broker, cert = secured_broker
    lamp = simulator.add(outlets=1)
    url = f"mqtts://127.0.0.1:{broker.port}"

    running = run_bridge(
        broker,
        [lamp],
        mqtt={"url": url, "ca_file": str(cert), "username": "bridge", "password": "no"},
    )

    wait_for(lambda: "refused the connection" in caplog.text, message="refusal logged")
    wait_for(lambda: running.bridge.core.sessions[lamp.address].ready, message="device")
    assert not running.bridge.core.mqtt_up
