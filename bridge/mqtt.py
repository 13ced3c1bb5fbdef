"""The MQTT side: a paho-mqtt 2 client in a thread of its own.

The thread connects, runs paho's network loop, and reconnects with a backoff from
``reconnect_min`` doubling to ``reconnect_max`` when the broker goes away. The bridge's
availability topic is the client's last will (``offline``, retained). Callbacks run on
that thread and must only hand work over to the bridge's own loop.

That thread is also the only one that writes to the socket. Other threads (the bridge's
loop publishing states) only queue packets, which paho's loop sends in queue order. Left
to itself paho sends a packet from whichever thread queues it while the loop's thread
drains the same queue, and two threads sending from one queue can swap packets: a
device's last state could reach the broker before the one it replaced, and the broker
would keep the stale one retained.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.config import MqttSettings
from bridge.core import OFFLINE

logger = logging.getLogger(__name__)

# Topics per SUBSCRIBE packet, to keep packets small with hundreds of devices.
SUBSCRIBE_BATCH = 100


class MqttLink:
    """Keep one connection to the broker and report what happens on it."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        will_topic: str,
        on_connected: Callable[[], None],
        on_disconnected: Callable[[str], None],
        on_message: Callable[[str, bytes, bool], None],
    ) -> None:
        self.settings = settings
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._on_message = on_message
        self._stop = threading.Event()
        self._up = threading.Event()
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)

        v5 = settings.protocol == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else True,
        )
        client.connect_timeout = settings.connect_timeout
        client.will_set(will_topic, OFFLINE, qos=settings.qos, retain=True)
        if settings.username:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            client.tls_set(
                ca_certs=settings.ca_file,
                certfile=settings.cert_file,
                keyfile=settings.key_file,
            )
            client.tls_insecure_set(settings.tls_insecure)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_socket_open = self._handle_socket_open
        # With a write callback set, paho's publish(), subscribe() and disconnect() no
        # longer send from the calling thread: they queue the packet and wake loop(),
        # which selects for writing whenever packets wait (see the module docstring).
        client.on_socket_register_write = _written_by_the_loop
        self.client = client

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    def start(self) -> None:
        self._thread.start()

    def publish(self, topic: str, payload: bytes, retain: bool) -> paho.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=self.settings.qos, retain=retain)

    def subscribe(self, topics: Sequence[str]) -> None:
        qos = self.settings.qos
        for start in range(0, len(topics), SUBSCRIBE_BATCH):
            batch = topics[start : start + SUBSCRIBE_BATCH]
            if self.settings.protocol == "5":
                # noLocal: the broker never hands our own publishes back to us.
                options = SubscribeOptions(qos=qos, noLocal=True)
                self.client.subscribe([(topic, options) for topic in batch])
            else:
                self.client.subscribe([(topic, qos) for topic in batch])

    def unsubscribe(self, topics: Sequence[str]) -> None:
        if topics:
            self.client.unsubscribe(list(topics))

    def stop(
        self, pending: Sequence[paho.MQTTMessageInfo] = (), timeout: float = 2.0
    ) -> None:
        """Wait for ``pending`` publishes, disconnect cleanly and end the thread."""
        deadline = time.monotonic() + timeout
        if self.connected:
            for info in pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    info.wait_for_publish(remaining)
                except (RuntimeError, ValueError):
                    break
        self._stop.set()
        self.client.disconnect()  # queued; the thread sends it and closes the socket
        if self._thread.is_alive():
            self._thread.join(max(0.1, deadline - time.monotonic()) + 1.0)
        if not self._thread.is_alive():
            # The thread may have ended before the DISCONNECT was queued. Nothing else
            # writes now, so send what is left from here (nothing once it is closed).
            self.client.loop_write()

    # The thread.

    def _run(self) -> None:
        settings = self.settings
        first = True
        while not self._stop.is_set():
            try:
                if first:
                    self.client.connect(
                        settings.host, settings.port, keepalive=settings.keepalive
                    )
                    first = False
                else:
                    self.client.reconnect()
            except (OSError, ValueError) as exc:
                self._wait_to_retry(f"cannot connect: {exc}")
                continue

            while not self._stop.is_set():
                rc = self.client.loop(timeout=1.0)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
            if not self._stop.is_set():
                self._wait_to_retry("connection lost")

    def _wait_to_retry(self, reason: str) -> None:
        settings = self.settings
        self._failures += 1
        growth = 2.0 ** min(self._failures - 1, 32)
        delay = min(settings.reconnect_max, settings.reconnect_min * growth)
        log = logger.warning if self._failures == 1 else logger.debug
        log("[broker %s] %s; retrying in %.1f s", settings.url, reason, delay)
        self._stop.wait(delay)

    # paho callbacks, on the thread above. An exception escaping one would stop
    # paho's loop, so each is guarded.

    def _handle_socket_open(
        self, client: paho.Client, userdata: object, sock: object
    ) -> None:
        # paho leaves Nagle's algorithm on, which delays small messages by ~40 ms.
        if isinstance(sock, socket.socket):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:
                logger.debug("[broker %s] no TCP_NODELAY: %s", self.settings.url, exc)

    def _handle_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            logger.error(
                "[broker %s] refused the connection: %s", self.settings.url, reason
            )
            return
        if self._failures > 1:
            logger.info(
                "[broker %s] connected after %d attempts",
                self.settings.url,
                self._failures,
            )
        else:
            logger.info("[broker %s] connected", self.settings.url)
        self._failures = 0
        self._up.set()
        try:
            self._on_connected()
        except Exception:
            logger.exception(
                "[broker %s] error handling the connection", self.settings.url
            )

    def _handle_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_up = self._up.is_set()
        self._up.clear()
        if not was_up:
            return
        if self._stop.is_set():
            logger.info("[broker %s] disconnected", self.settings.url)
        else:
            logger.warning("[broker %s] connection lost: %s", self.settings.url, reason)
        try:
            self._on_disconnected(str(reason))
        except Exception:
            logger.exception(
                "[broker %s] error handling the disconnection", self.settings.url
            )

    def _handle_message(
        self, client: paho.Client, userdata: object, message: paho.MQTTMessage
    ) -> None:
        try:
            self._on_message(
                message.topic, bytes(message.payload), bool(message.retain)
            )
        except Exception:
            logger.exception(
                "[broker %s] error handling a message on %r",
                self.settings.url,
                message.topic,
            )


def _written_by_the_loop(client: paho.Client, userdata: object, sock: object) -> None:
    """Register nothing: the link's thread runs loop(), which sends queued packets."""
