"""The daemon's event loop: device links on websocket-client, MQTT on paho.

One thread (the caller of :meth:`Bridge.run`) owns the :class:`~bridge.core.BridgeCore`
and every device socket. It waits on all sockets at once with a selector, reads one
WebSocket frame per readiness, hands it to the core and carries out the effects the core
returns. Work from other threads (the MQTT thread, the short-lived threads that open
device links so an unreachable device never blocks the others) arrives through an inbox
that wakes the selector.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable

import paho.mqtt.client as paho
import websocket

from bridge import protocol
from bridge.config import Config
from bridge.core import (
    BridgeCore,
    CloseLink,
    Connect,
    Effect,
    Publish,
    SendPing,
    SendText,
    Subscribe,
    Unsubscribe,
)
from bridge.mqtt import MqttLink
from bridge.systemd import Notifier

logger = logging.getLogger(__name__)

# Device sockets are non-blocking while the loop reads: a read takes what has arrived
# and returns, and websocket-client keeps a partial frame (header, length, the bytes so
# far) until the next readiness, so a device trickling a frame byte by byte costs the
# loop one short read per byte, never a wait. A send may wait this long for room in the
# socket buffer (messages to devices are a few hundred bytes).
SEND_TIMEOUT = 0.05

_Work = Callable[[], Iterable[Effect]]


class Bridge:
    """Run the bridge until :meth:`stop` is called (from any thread or a signal)."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.monotonic,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        # Readiness and watchdog pings for systemd; does nothing when not given one.
        self.notifier = notifier or Notifier(None, None)
        self._next_ping: float | None = None
        self.core = BridgeCore(
            config.devices,
            timing=config.timing,
            topics=config.topics,
            echo_guard=config.mqtt.protocol != "5",
        )
        self.mqtt = MqttLink(
            config.mqtt,
            will_topic=config.topics.bridge_availability,
            on_connected=lambda: self._post(lambda: self.core.mqtt_connected(clock())),
            on_disconnected=lambda reason: self._post(
                lambda: self.core.mqtt_disconnected(clock())
            ),
            on_message=self._on_mqtt_message,
        )
        self._specs = {spec.key: spec for spec in config.devices}
        self._links: dict[str, websocket.WebSocket] = {}
        # The socket each link registered, kept because websocket-client forgets it
        # when the peer goes away.
        self._socks: dict[str, socket.socket] = {}
        self._selector = selectors.DefaultSelector()
        self._inbox: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = threading.Event()
        self._last_publishes: list[paho.MQTTMessageInfo] = []

    # Control, from any thread.

    def stop(self) -> None:
        """Ask the loop to publish ``offline``, close everything and return."""
        self._stopping.set()
        self._wake()

    def _post(self, work: _Work) -> None:
        self._inbox.put(work)
        self._wake()

    def _wake(self) -> None:
        # A full buffer means the loop is awake already; an error, that it closed.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _on_mqtt_message(self, topic: str, payload: bytes, retained: bool) -> None:
        self._post(
            lambda: self.core.mqtt_message(topic, payload, retained, self.clock())
        )

    # The loop.

    def run(self) -> None:
        """Connect to the broker and every device and serve until stopped."""
        logger.info(
            "starting: %d device(s), broker %s", len(self._specs), self.config.mqtt.url
        )
        self.mqtt.start()
        self._apply(self.core.start(self.clock()))
        self.notifier.ready(
            f"bridging {len(self._specs)} device(s) to {self.config.mqtt.url}"
        )
        if self.notifier.watchdog_interval is not None:
            self._ping_watchdog(self.clock())
        try:
            while not self._stopping.is_set():
                self._step()
        finally:
            self._shutdown()

    def _step(self) -> None:
        deadline = self.core.next_deadline()
        if self._next_ping is not None:
            ping = self._next_ping
            deadline = ping if deadline is None else min(deadline, ping)
        timeout = None if deadline is None else max(0.0, deadline - self.clock())
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                self._drain_wake()
            else:
                self._guarded(functools.partial(self._read, key.data))

        while True:
            try:
                work = self._inbox.get_nowait()
            except queue.Empty:
                break
            self._guarded(functools.partial(self._run_work, work))

        now = self.clock()
        deadline = self.core.next_deadline()
        if deadline is not None and now >= deadline:
            self._guarded(lambda: self._apply(self.core.tick(now)))
        if self._next_ping is not None and now >= self._next_ping:
            self._ping_watchdog(now)

    def _ping_watchdog(self, now: float) -> None:
        # From the loop itself: a loop stuck anywhere stops the pings, and systemd
        # restarts the service once WatchdogSec passes without one.
        interval = self.notifier.watchdog_interval
        assert interval is not None
        self.notifier.watchdog()
        self._next_ping = now + interval

    def _run_work(self, work: _Work) -> None:
        self._apply(work())

    def _guarded(self, step: Callable[[], None]) -> None:
        # A daemon that runs for months survives its own bugs: log and carry on.
        try:
            step()
        except Exception:
            logger.exception("unexpected error in the bridge loop; continuing")

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _read(self, key: str) -> None:
        ws = self._links.get(key)
        if ws is None:
            return
        try:
            opcode, frame = ws.recv_data_frame(control_frame=True)
        except (BlockingIOError, websocket.WebSocketTimeoutException):
            return  # part of a frame; the rest comes with the next readiness
        except (websocket.WebSocketException, OSError, ValueError) as exc:
            self._lost(key, _describe(exc, "link lost"))
            return

        now = self.clock()
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            self._apply(self.core.link_text(key, frame.data, now))
        elif opcode == websocket.ABNF.OPCODE_CLOSE:
            self._lost(key, "closed by the device")
        else:
            self._apply(self.core.link_activity(key, now))

    def _lost(self, key: str, reason: str) -> None:
        self._close(key)
        self._apply(self.core.link_closed(key, self.clock(), reason))

    # Effects.

    def _apply(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, SendText):
                self._send(effect.key, _sender(effect.text))
            elif isinstance(effect, Publish):
                info = self.mqtt.publish(effect.topic, effect.payload, effect.retain)
                if self._stopping.is_set():
                    self._last_publishes.append(info)
            elif isinstance(effect, SendPing):
                self._send(effect.key, lambda ws: ws.ping())
            elif isinstance(effect, Connect):
                self._connect(effect.key)
            elif isinstance(effect, CloseLink):
                logger.debug("closing link %s: %s", effect.key, effect.reason)
                self._close(effect.key, polite=True)
            elif isinstance(effect, Subscribe):
                self.mqtt.subscribe(effect.topics)
            elif isinstance(effect, Unsubscribe):
                self.mqtt.unsubscribe(effect.topics)

    def _send(self, key: str, action: Callable[[websocket.WebSocket], object]) -> None:
        ws = self._links.get(key)
        if ws is None:
            return
        try:
            ws.settimeout(SEND_TIMEOUT)
            try:
                action(ws)
            finally:
                ws.settimeout(0)  # back to non-blocking reads
        except (websocket.WebSocketException, OSError) as exc:
            self._lost(key, _describe(exc, "send failed"))

    def _connect(self, key: str) -> None:
        spec = self._specs[key]
        url = f"ws://{_host_for_url(spec.host)}:{spec.port}/"
        thread = threading.Thread(
            target=self._open_link, args=(key, url), name=f"connect-{key}", daemon=True
        )
        thread.start()

    def _open_link(self, key: str, url: str) -> None:
        """Open a link on a thread of its own and hand it to the loop."""
        try:
            ws = websocket.create_connection(
                url,
                timeout=self.config.connect_timeout,
                subprotocols=[protocol.SUBPROTOCOL],
                suppress_origin=True,
            )
        except Exception as exc:  # whatever the network throws, the loop retries
            reason = _describe(exc, "connect failed")
            self._post(lambda: self.core.link_failed(key, self.clock(), reason))
            return
        self._post(lambda: self._adopt(key, ws))

    def _adopt(self, key: str, ws: websocket.WebSocket) -> Iterable[Effect]:
        if self._stopping.is_set() or key in self._links or ws.sock is None:
            _shut(ws)
            return ()
        ws.settimeout(0)  # non-blocking reads; see SEND_TIMEOUT
        self._links[key] = ws
        self._socks[key] = ws.sock
        self._selector.register(ws.sock, selectors.EVENT_READ, key)
        return self.core.link_opened(key, self.clock())

    def _close(self, key: str, polite: bool = False) -> None:
        ws = self._links.pop(key, None)
        sock = self._socks.pop(key, None)
        if sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
        if ws is None:
            return
        if polite:
            with contextlib.suppress(websocket.WebSocketException, OSError):
                ws.send_close()
        _shut(ws)

    def _shutdown(self) -> None:
        logger.info("stopping")
        self.notifier.stopping()
        self._last_publishes = []
        self._apply(self.core.shutdown(self.clock()))
        self.mqtt.stop(self._last_publishes)
        for key in list(self._links):
            self._close(key)
        # Links opened while stopping arrive late; close them too.
        while True:
            try:
                self._inbox.get_nowait()()
            except queue.Empty:
                break
        for key in list(self._links):
            self._close(key)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        self.notifier.close()
        logger.info("stopped")


def _sender(text: str) -> Callable[[websocket.WebSocket], object]:
    return lambda ws: ws.send(text)


def _shut(ws: websocket.WebSocket) -> None:
    ws.shutdown()  # type: ignore[no-untyped-call]


def _describe(exc: BaseException, default: str) -> str:
    text = str(exc).strip().rstrip(".")
    return (
        f"{type(exc).__name__}: {text}" if text else f"{default} ({type(exc).__name__})"
    )


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
