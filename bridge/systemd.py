"""Tell systemd how the daemon is doing: readiness, the watchdog, stopping.

Under a unit with ``Type=notify`` systemd hands the service a datagram socket in
``$NOTIFY_SOCKET`` and waits for ``READY=1`` before it counts the service as started.
With ``WatchdogSec=`` it also sets ``$WATCHDOG_USEC`` and restarts the service when no
``WATCHDOG=1`` arrives within that time. The bridge sends ``WATCHDOG=1`` from its own
loop, at half that interval, so a loop that is wedged (not crashed) stops the pings and
is restarted; ``Restart=always`` alone only catches a process that exits.

Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing. A failure to send is
logged once and never stops the bridge: a supervisor that went away is no reason to
stop switching lamps.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class Notifier:
    """Messages to the service manager, as ``sd_notify(3)`` describes them."""

    def __init__(
        self, address: str | bytes | None, watchdog_interval: float | None
    ) -> None:
        self.address = address
        #: Seconds between two ``WATCHDOG=1``; None when no watchdog is asked for.
        self.watchdog_interval = watchdog_interval if address is not None else None
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, pid: int | None = None
    ) -> Notifier:
        """Read ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``.

        A value systemd would never set (a relative socket path, a watchdog time that is
        not a positive integer, a watchdog meant for another process) is logged and that
        part is left off; the bridge runs on either way.
        """
        env = os.environ if environ is None else environ
        pid = os.getpid() if pid is None else pid
        address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        if address is None:
            return cls(None, None)

        interval: float | None = None
        raw = env.get("WATCHDOG_USEC", "").strip()
        owner = env.get("WATCHDOG_PID", "").strip()
        if raw:
            if owner and owner != str(pid):
                logger.info("the systemd watchdog is for process %s, not us", owner)
            elif raw.isdigit() and int(raw) > 0:
                interval = int(raw) / 2_000_000  # half the limit, in seconds
            else:
                logger.warning(
                    "WATCHDOG_USEC=%r is not a positive number of microseconds; "
                    "running without the systemd watchdog",
                    raw,
                )
        return cls(address, interval)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={_one_line(status)}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={_one_line(status)}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        self._send("STOPPING=1\nSTATUS=stopping")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, message: str) -> None:
        if self.address is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto(message.encode(), self.address)
        except OSError as exc:
            # Logged once: a missing manager must not flood the log every few seconds.
            if not self._failed:
                logger.warning("cannot notify systemd at %r: %s", self.address, exc)
                self._failed = True
            return
        if self._failed:
            logger.info("notifying systemd again")
            self._failed = False


def _socket_address(value: str) -> str | bytes | None:
    value = value.strip()
    if not value:
        return None
    if value.startswith("@"):  # Linux abstract namespace: a leading NUL byte
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    logger.warning(
        "NOTIFY_SOCKET=%r is neither an absolute path nor an abstract socket (@name); "
        "not notifying systemd",
        value,
    )
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())
