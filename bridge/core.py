"""The bridge's state machine: devices, commands and topics, without any I/O.

The I/O layers feed :class:`BridgeCore` with what happened (a link opened, a text
frame arrived, an MQTT message came in, time passed) and carry out the effects it
returns (connect, send a frame, close a link, publish, subscribe). Time is always
passed in, so every rule below is tested without a socket or a clock:

- each device gets one link; it opens with ``userOnline`` and is ready once the device
  has answered and its outlets are known;
- commands go to a device one at a time, each waiting for its acknowledgement; a command
  for a device that is not ready waits at most ``command_ttl`` and is then dropped, and
  a command whose link is lost before its acknowledgement is never resent;
- a retained MQTT value (delivered because of a subscription) is never a command: when
  it disagrees with the device, the device's state is republished;
- the bridge's own publishes are not commands (MQTT 5 ``noLocal`` on the subscription,
  or with MQTT 3.1.1 a ledger of the echoes still to come back, see `BridgeCore`);
- a lost link is retried after a backoff that starts at ``reconnect_min`` and doubles up
  to ``reconnect_max``.
"""

from __future__ import annotations

import enum
import heapq
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bridge import protocol
from bridge.errors import PayloadError, ProtocolError

logger = logging.getLogger(__name__)

_E = TypeVar("_E")

ONLINE = b"online"
OFFLINE = b"offline"

# How long an MQTT 3.1.1 echo of our own publish is waited for before it is forgotten.
# Echoes are never lost while the connection lasts (see BridgeCore), so this only
# bounds the damage of a broker that drops one; a late echo is harmless (it equals the
# device's state) unless the device changed within the window.
ECHO_WINDOW = 5.0


# Configuration the core needs.


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One configured device: where it is and what is known of it beforehand."""

    key: str
    host: str
    port: int = protocol.DEFAULT_PORT
    name: str | None = None
    outlets: int | None = None
    deviceid: str | None = None
    apikey: str = ""
    topic: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Timing:
    """Timeouts and intervals, in seconds."""

    handshake_timeout: float = 5.0
    state_timeout: float = 2.0
    ack_timeout: float = 5.0
    command_ttl: float = 10.0
    ping_interval: float = 15.0
    ping_timeout: float = 10.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    reconnect_jitter: float = 0.1


@dataclass(frozen=True, slots=True)
class TopicScheme:
    """Topic templates.

    State and command templates accept ``{deviceid}``, ``{name}`` (the configured name,
    else the device id), ``{outlet}`` (from 0) and ``{channel}`` (from 1).
    """

    single: str = "HomeKit/sonoff-{deviceid}/Lightbulb/On"
    multi: str = "HomeKit/sonoff-{deviceid}-{channel}/Lightbulb/On"
    bridge_availability: str = "pgzen-bridge/availability"
    device_availability: str = "pgzen-bridge/sonoff-{deviceid}/availability"

    def state_topic(
        self, spec: DeviceSpec, deviceid: str, outlets: int, outlet: int
    ) -> str:
        template = spec.topic or (self.single if outlets == 1 else self.multi)
        return template.format(
            deviceid=deviceid,
            name=spec.name or deviceid,
            outlet=outlet,
            channel=outlet + 1,
        )

    def availability_topic(self, spec: DeviceSpec, deviceid: str) -> str:
        return self.device_availability.format(
            deviceid=deviceid, name=spec.name or deviceid
        )


# Effects the I/O layers carry out.


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a WebSocket link to the device; report back with ``link_opened`` or
    ``link_failed``."""

    key: str


@dataclass(frozen=True, slots=True)
class SendText:
    """Send a text frame on the device's link."""

    key: str
    text: str


@dataclass(frozen=True, slots=True)
class SendPing:
    """Send a WebSocket ping on the device's link."""

    key: str


@dataclass(frozen=True, slots=True)
class CloseLink:
    """Close the device's link; the core already counts it as closed."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish an MQTT message."""

    topic: str
    payload: bytes
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Subscribe to command topics."""

    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Unsubscribe from command topics."""

    topics: tuple[str, ...]


Effect = Connect | SendText | SendPing | CloseLink | Publish | Subscribe | Unsubscribe


# Logging with the device on every line.


class DeviceLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefix records with the device; attach it as ``device`` and ``address``."""

    def __init__(self, base: logging.Logger, session: DeviceSession) -> None:
        super().__init__(base, {})
        self.session = session

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        session = self.session
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("device", session.deviceid or "?")
        extra.setdefault("address", session.spec.address)
        kwargs["extra"] = extra
        return f"[{session.label}] {msg}", kwargs


# One device.


class LinkState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    HANDSHAKE = "handshake"
    READY = "ready"


@dataclass(slots=True)
class _Pending:
    outlet: int
    on: bool
    received: float


@dataclass(slots=True)
class _InFlight:
    sequence: str
    outlet: int
    on: bool
    sent: float


@dataclass(frozen=True, slots=True)
class _Ready:
    """The device answered the handshake and its outlets are known."""


@dataclass(frozen=True, slots=True)
class _Lost:
    """A ready device's link went away."""


@dataclass(frozen=True, slots=True)
class _State:
    """Outlet states to publish; ``force`` even if unchanged since the last publish."""

    outlets: dict[int, bool]
    force: bool


_Event = _Ready | _Lost | _State


@dataclass(slots=True)
class DeviceSession:
    """The protocol state of one device and its link.

    Methods record effects (for the link) and events (for :class:`BridgeCore`); the
    core drains both after each call.
    """

    spec: DeviceSpec
    timing: Timing
    wall_clock: Callable[[], float] = time.time
    rng: Callable[[], float] = random.random

    state: LinkState = LinkState.IDLE
    deviceid: str | None = None
    device_apikey: str | None = None
    outlets: int | None = None
    switch: dict[int, bool] = field(default_factory=dict)
    fresh: bool = False
    published: dict[int, bool] = field(default_factory=dict)
    pending: dict[int, _Pending] = field(default_factory=dict)
    in_flight: _InFlight | None = None
    failures: int = 0
    retry_at: float | None = 0.0
    deadline_handshake: float | None = None
    deadline_state: float | None = None
    last_rx: float = 0.0
    ping_sent: float | None = None
    was_ready: bool = False
    handshake_sequence: str = ""

    effects: list[Effect] = field(default_factory=list)
    events: list[_Event] = field(default_factory=list)
    log: DeviceLogger = field(init=False)
    _sequence: int = 0
    _capped: bool = False

    def __post_init__(self) -> None:
        self.deviceid = self.spec.deviceid
        self.outlets = self.spec.outlets
        self.log = DeviceLogger(logger, self)
        self._sequence = int(self.wall_clock() * 1000)

    @property
    def label(self) -> str:
        name = f" {self.spec.name}" if self.spec.name else ""
        return f"{self.deviceid or '?'}{name} {self.spec.address}"

    @property
    def ready(self) -> bool:
        return self.state is LinkState.READY and self.outlets is not None

    def known(self, outlet: int) -> bool | None:
        """Return the outlet's state if the current link has reported it."""
        if self.fresh and self.ready:
            return self.switch.get(outlet)
        return None

    def next_sequence(self) -> str:
        # Milliseconds like the vendor app, kept strictly increasing.
        self._sequence = max(self._sequence + 1, int(self.wall_clock() * 1000))
        return str(self._sequence)

    # Link lifecycle.

    def tick_connect(self, now: float) -> None:
        retry_at = self.retry_at
        if self.state is LinkState.IDLE and retry_at is not None and now >= retry_at:
            self.state = LinkState.CONNECTING
            self.retry_at = None
            self.effects.append(Connect(self.spec.key))

    def opened(self, now: float) -> None:
        if self.state is not LinkState.CONNECTING:
            self.log.warning("link opened in state %s; closing it", self.state.value)
            self.effects.append(CloseLink(self.spec.key, "unexpected link"))
            return

        self.state = LinkState.HANDSHAKE
        self.last_rx = now
        self.ping_sent = None
        self.deadline_handshake = now + self.timing.handshake_timeout
        self.handshake_sequence = self.next_sequence()
        self.log.debug("link open; sending userOnline")
        self.effects.append(
            SendText(
                self.spec.key,
                protocol.user_online(
                    apikey=self.spec.apikey,
                    sequence=self.handshake_sequence,
                    ts=int(self.wall_clock()),
                ),
            )
        )

    def failed(self, now: float, reason: str) -> None:
        if self.state is not LinkState.CONNECTING:
            return
        self._down(now, reason, close=False)

    def closed(self, now: float, reason: str) -> None:
        if self.state in (LinkState.IDLE, LinkState.CONNECTING):
            return
        self._down(now, reason, close=False)

    def _down(self, now: float, reason: str, *, close: bool) -> None:
        if close:
            self.effects.append(CloseLink(self.spec.key, reason))
        was_ready = self.ready
        self.state = LinkState.IDLE
        self.fresh = False
        self.deadline_handshake = self.deadline_state = None
        self.ping_sent = None

        if self.in_flight is not None:
            self.log.warning(
                "link lost before the device acknowledged %s; not resending",
                _describe(self.in_flight.outlet, self.in_flight.on),
            )
            self.in_flight = None

        self.failures += 1
        delay = self.backoff(self.failures)
        self.retry_at = now + delay
        if was_ready:
            self.log.warning("offline: %s; reconnecting in %.1f s", reason, delay)
            self.events.append(_Lost())
        elif self.failures == 1:
            self.log.warning("unreachable: %s; retrying in %.1f s", reason, delay)
        elif delay >= self.timing.reconnect_max and not self._capped:
            self.log.warning(
                "still unreachable after %d attempts: %s; retrying every %.0f s",
                self.failures,
                reason,
                self.timing.reconnect_max,
            )
        else:
            self.log.debug("unreachable: %s; retrying in %.1f s", reason, delay)
        self._capped = delay >= self.timing.reconnect_max

    def refuse(self, now: float, reason: str) -> None:
        """Close a link the bridge will not use, without announcing the device."""
        self._down(now, reason, close=True)
        self.events = [e for e in self.events if not isinstance(e, _Lost)]
        self.deviceid = self.spec.deviceid

    def backoff(self, failures: int) -> float:
        """Return the delay before reconnect attempt number ``failures``."""
        timing = self.timing
        growth = 2.0 ** min(failures - 1, 32)
        delay = min(timing.reconnect_max, timing.reconnect_min * growth)
        jitter = 1.0 + timing.reconnect_jitter * (2.0 * self.rng() - 1.0)
        return min(timing.reconnect_max, delay * jitter)

    # Device messages.

    def activity(self, now: float) -> None:
        self.last_rx = now
        self.ping_sent = None

    def receive(self, text: str | bytes, now: float) -> None:
        if self.state not in (LinkState.HANDSHAKE, LinkState.READY):
            return
        self.activity(now)

        try:
            message = protocol.parse_device_message(text)
        except ProtocolError as exc:
            self.log.warning("ignoring device message: %s", exc)
            return

        if isinstance(message, protocol.Reply):
            self._on_reply(message, now)
        else:
            self._on_update(message, now)
        self._pump(now)

    def _on_reply(self, message: protocol.Reply, now: float) -> None:
        if self.state is LinkState.HANDSHAKE:
            if message.sequence != self.handshake_sequence:
                self.log.warning("ignoring reply %r during handshake", message.sequence)
                return
            self._on_handshake(message, now)
            return

        flight = self.in_flight
        if flight is None or message.sequence != flight.sequence:
            self.log.debug("ignoring reply to unknown sequence %r", message.sequence)
            return

        self.in_flight = None
        if message.error != 0:
            self.log.warning(
                "device refused %s with error %d",
                _describe(flight.outlet, flight.on),
                message.error,
            )
            known = self.known(flight.outlet)
            if known is not None:
                self.events.append(_State({flight.outlet: known}, force=True))
            return

        self.log.debug(
            "device acknowledged %s in %.1f ms",
            _describe(flight.outlet, flight.on),
            (now - flight.sent) * 1000,
        )
        self.switch[flight.outlet] = flight.on
        self.events.append(_State({flight.outlet: flight.on}, force=True))

    def _on_handshake(self, message: protocol.Reply, now: float) -> None:
        if message.error != 0:
            self._down(now, f"handshake refused with error {message.error}", close=True)
            return
        deviceid = message.deviceid
        if not protocol.is_deviceid(deviceid):
            reason = f"handshake reply without a device id: {deviceid!r}"
            self._down(now, reason, close=True)
            return
        assert deviceid is not None
        if self.spec.deviceid is not None and deviceid != self.spec.deviceid:
            self.log.error(
                "device answered as %r, configured as %r; refusing it",
                deviceid,
                self.spec.deviceid,
            )
            self._down(now, "device id mismatch", close=True)
            return

        previous = self.deviceid
        self.deviceid = deviceid
        self.device_apikey = message.apikey or self.spec.apikey
        self.state = LinkState.READY
        self.deadline_handshake = None
        self.deadline_state = now + self.timing.state_timeout
        if self.failures > 1:
            self.log.info("online after %d failed attempts", self.failures)
        else:
            self.log.info("online")
        self.failures = 0
        self.was_ready = True
        if previous is not None and previous != deviceid:
            self.log.warning("device id changed from %r", previous)
            self.switch.clear()
        if self.outlets is not None:
            self.events.append(_Ready())

    def _on_update(self, message: protocol.Update, now: float) -> None:
        if self.state is not LinkState.READY:
            self.log.warning("ignoring update before the handshake reply")
            return
        if message.deviceid is not None and message.deviceid != self.deviceid:
            self.log.warning("ignoring update for device %r", message.deviceid)
            return
        if not message.outlets:
            self.log.debug("update without switch state")
            return

        if self.outlets is None:
            self.outlets = 1 if message.single else max(message.outlets) + 1
            self.log.info("%d outlet(s), from the device's state", self.outlets)
            self.events.append(_Ready())
        outlets = {k: v for k, v in message.outlets.items() if k < self.outlets}
        if len(outlets) < len(message.outlets):
            self.log.debug("ignoring outlets beyond %d", self.outlets)

        first = not self.fresh
        self.switch.update(outlets)
        self.fresh = True
        if first:
            self.deadline_state = None
            self.log.debug("state %s", _describe_all(self.switch))
            # The first push after connecting carries the whole state.
            self.events.append(_State(dict(self.switch), force=True))
        else:
            self.log.debug("update %s", _describe_all(outlets))
            self.events.append(_State(outlets, force=False))

    # Commands.

    def command(self, outlet: int, on: bool, now: float) -> None:
        if outlet in self.pending:
            self.log.debug("%s supersedes a waiting command", _describe(outlet, on))
            del self.pending[outlet]
        self.pending[outlet] = _Pending(outlet, on, now)
        if self.state is not LinkState.READY:
            self.log.info(
                "device offline; holding %s for up to %.1f s",
                _describe(outlet, on),
                self.timing.command_ttl,
            )
        self._pump(now)

    def _can_send(self, now: float) -> bool:
        if not self.ready or self.in_flight is not None:
            return False
        # Until the first push the device's state is unknown; wait for it a while.
        return self.fresh or self.deadline_state is None

    def _pump(self, now: float) -> None:
        while self.pending and self._can_send(now):
            outlet = next(iter(self.pending))
            item = self.pending.pop(outlet)
            age = now - item.received
            if age > self.timing.command_ttl:
                self._drop(item, age)
                continue
            assert self.deviceid is not None
            sequence = self.next_sequence()
            self.in_flight = _InFlight(sequence, outlet, item.on, now)
            self.log.debug("sending %s", _describe(outlet, item.on))
            self.effects.append(
                SendText(
                    self.spec.key,
                    protocol.switch_command(
                        deviceid=self.deviceid,
                        apikey=self.spec.apikey,
                        self_apikey=self.device_apikey or self.spec.apikey,
                        sequence=sequence,
                        outlet=None if self.outlets == 1 else outlet,
                        on=item.on,
                    ),
                )
            )

    def _drop(self, item: _Pending, age: float) -> None:
        self.log.warning(
            "dropped %s: device not ready within %.1f s",
            _describe(item.outlet, item.on),
            age,
        )

    # Time.

    def tick(self, now: float) -> None:
        self.tick_connect(now)
        timing = self.timing

        if self.state is not LinkState.READY:
            for outlet, item in list(self.pending.items()):
                age = now - item.received
                if age > timing.command_ttl:
                    del self.pending[outlet]
                    self._drop(item, age)

        if self.state is LinkState.HANDSHAKE:
            deadline = self.deadline_handshake
            if deadline is not None and now >= deadline:
                self._down(now, "no handshake reply", close=True)
                return

        if self.state is LinkState.READY:
            flight = self.in_flight
            if flight is not None and now - flight.sent >= timing.ack_timeout:
                self._down(now, "no acknowledgement", close=True)
                return
            if self.deadline_state is not None and now >= self.deadline_state:
                self.deadline_state = None
                if not self.fresh:
                    self.log.warning("no state from the device; sending commands")
                    self._pump(now)

        if self.state in (LinkState.HANDSHAKE, LinkState.READY):
            if self.ping_sent is None:
                if now - self.last_rx >= timing.ping_interval:
                    self.ping_sent = now
                    self.effects.append(SendPing(self.spec.key))
            elif now - self.ping_sent >= timing.ping_timeout:
                self._down(now, "no pong", close=True)

    def next_deadline(self) -> float | None:
        timing = self.timing
        candidates: list[float] = []
        if self.state is LinkState.IDLE and self.retry_at is not None:
            candidates.append(self.retry_at)
        if self.state is not LinkState.READY:
            candidates.extend(
                p.received + timing.command_ttl for p in self.pending.values()
            )
        if self.state in (LinkState.HANDSHAKE, LinkState.READY):
            if self.deadline_handshake is not None:
                candidates.append(self.deadline_handshake)
            if self.deadline_state is not None:
                candidates.append(self.deadline_state)
            if self.in_flight is not None:
                candidates.append(self.in_flight.sent + timing.ack_timeout)
            if self.ping_sent is None:
                candidates.append(self.last_rx + timing.ping_interval)
            else:
                candidates.append(self.ping_sent + timing.ping_timeout)
        return min(candidates, default=None)


def _describe(outlet: int, on: bool) -> str:
    return f"outlet {outlet} {'on' if on else 'off'}"


def _describe_all(outlets: dict[int, bool]) -> str:
    return ", ".join(_describe(k, v) for k, v in sorted(outlets.items()))


# The whole bridge.


class BridgeCore:
    """All devices of one bridge and their MQTT topics.

    Every method takes the current monotonic time and returns the effects to carry out,
    in order.

    With MQTT 3.1.1 (``echo_guard``) the broker hands the bridge its own publishes back,
    live, indistinguishable from a user's write. The core keeps, per command topic, the
    payloads it published whose echo has not come back yet, in order. The ledger is
    exact because no echo is ever lost: a publish is recorded only once the topic's
    subscription was requested on the current connection (and the subscription goes out
    before any publish, so the broker, which handles one client's packets in order,
    delivers it), and the ledger is forgotten whenever the connection is. A live message
    is then handled thus:

    - it consumes the earliest entry with the same payload and is ignored: it is that
      echo, or a user's write that overtook it, in which case the echo itself arrives
      later without an entry and is applied in its place, so the device still ends in
      the commanded state (a press within that round trip then loses to the command;
      without message identities MQTT 3.1.1 cannot tell the two apart);
    - else, if it equals what the bridge last published, the device has that state
      and no command for the outlet is waiting or in flight, it is ignored: applying it
      would change nothing (this also absorbs an echo later than ``ECHO_WINDOW``);
    - else it is a command.
    """

    def __init__(
        self,
        specs: Sequence[DeviceSpec],
        *,
        timing: Timing | None = None,
        topics: TopicScheme | None = None,
        echo_guard: bool = False,
        wall_clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.timing = timing or Timing()
        self.topics = topics or TopicScheme()
        self.echo_guard = echo_guard
        self.sessions: dict[str, DeviceSession] = {}
        for spec in specs:
            if spec.key in self.sessions:
                raise ValueError(f"duplicate device key: {spec.key!r}")
            self.sessions[spec.key] = DeviceSession(
                spec, self.timing, wall_clock=wall_clock, rng=rng
            )
        self.mqtt_up = False
        self._routes: dict[str, tuple[DeviceSession, int]] = {}
        self._device_topics: dict[str, tuple[str, ...]] = {}
        # MQTT 3.1.1 only: per topic, our publishes whose echo is still to come, and
        # the topics whose subscription was requested on the current connection.
        self._echoes: dict[str, deque[tuple[bytes, float]]] = {}
        self._subscribed: set[str] = set()
        self._out: list[Effect] = []
        # Deadlines: a heap of (time, order, key) with lazy deletion; _due holds each
        # session's current deadline, and an entry that disagrees with it is stale.
        # Ticking and waiting then cost O(log n), not a scan of every device.
        self._order = {key: index for index, key in enumerate(self.sessions)}
        self._heap: list[tuple[float, int, str]] = []
        self._due: dict[str, float | None] = {}
        for session in self.sessions.values():
            if session.deviceid is not None and session.outlets is not None:
                self._route(session)

    # Devices.

    def start(self, now: float) -> list[Effect]:
        """Begin connecting every device."""
        effects: list[Effect] = []
        for key in self.sessions:
            effects += self.retry_now(key, now)
        return effects

    def retry_now(self, key: str, now: float) -> list[Effect]:
        """Connect to an idle device at once, skipping what is left of its backoff."""
        session = self.sessions[key]
        if session.state is LinkState.IDLE:
            session.retry_at = now
        return self._run(key, now, lambda s: s.tick_connect(now))

    def link_opened(self, key: str, now: float) -> list[Effect]:
        """Start the handshake on a link that `Connect` opened."""
        return self._run(key, now, lambda s: s.opened(now))

    def link_failed(self, key: str, now: float, reason: str) -> list[Effect]:
        """Schedule a retry after a `Connect` that did not open a link."""
        return self._run(key, now, lambda s: s.failed(now, reason))

    def link_closed(self, key: str, now: float, reason: str) -> list[Effect]:
        """Schedule a reconnect after the device or the network closed the link."""
        return self._run(key, now, lambda s: s.closed(now, reason))

    def link_text(self, key: str, text: str | bytes, now: float) -> list[Effect]:
        """Handle a text frame from the device."""
        return self._run(key, now, lambda s: s.receive(text, now))

    def link_activity(self, key: str, now: float) -> list[Effect]:
        """Note a pong or any other frame that proves the link alive."""
        return self._run(key, now, lambda s: s.activity(now))

    # MQTT.

    def mqtt_connected(self, now: float) -> list[Effect]:
        """Subscribe, then publish availability and every known state."""
        self.mqtt_up = True
        self._echoes.clear()
        self._subscribed.clear()

        # Subscribing first makes the broker hand back every state publish below (the
        # echo guard counts on it); what it delivers first is the value retained before.
        if self._routes:
            self._subscribe(tuple(self._routes))
        self._publish(self.topics.bridge_availability, ONLINE, now)
        for session in self.sessions.values():
            session.published.clear()
            if session.deviceid is None:
                continue
            topic = self.topics.availability_topic(session.spec, session.deviceid)
            self._publish(topic, ONLINE if session.ready else OFFLINE, now)
            if session.ready and session.fresh:
                self._publish_states(session, dict(session.switch), True, now)
        return self._drain()

    def mqtt_disconnected(self, now: float) -> list[Effect]:
        # The session is clean: echoes still due and subscriptions die with it.
        self.mqtt_up = False
        self._echoes.clear()
        self._subscribed.clear()
        return []

    def mqtt_message(
        self, topic: str, payload: bytes, retained: bool, now: float
    ) -> list[Effect]:
        """Handle a message on a command topic."""
        route = self._routes.get(topic)
        if route is None:
            logger.debug("ignoring message on unknown topic %r", topic)
            return []
        session, outlet = route

        if not retained and self._is_echo(topic, payload, now):
            return []
        if not payload:
            session.log.debug("empty payload on %r (accessory removed)", topic)
            return []

        try:
            on = protocol.parse_switch_payload(payload)
        except PayloadError as exc:
            session.log.warning("ignoring payload on %r: %s", topic, exc)
            self._republish(session, outlet, now)
            return self._drain()

        if retained:
            known = session.known(outlet)
            if known is not None and known != on:
                session.log.info(
                    "stale retained %s on %r; republishing the device's state",
                    _describe(outlet, on),
                    topic,
                )
                self._republish(session, outlet, now)
            return self._drain()

        if self.echo_guard and self._changes_nothing(session, outlet, payload):
            session.log.debug(
                "%s on %r is the state already; ignoring it",
                _describe(outlet, on),
                topic,
            )
            return []

        return self._run(session.spec.key, now, lambda s: s.command(outlet, on, now))

    # Time and shutdown.

    def tick(self, now: float) -> list[Effect]:
        """Handle every timeout that has come due."""
        due: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            if self._due.get(key) == deadline:
                self._due[key] = None
                due.append(key)
        for key in due:
            session = self.sessions[key]
            session.tick(now)
            self._collect(session, now)
        return self._drain()

    def next_deadline(self) -> float | None:
        """Return when `tick` has work next, or None."""
        heap = self._heap
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def shutdown(self, now: float) -> list[Effect]:
        """Close every link and publish every availability as offline."""
        for session in self.sessions.values():
            if session.state in (LinkState.HANDSHAKE, LinkState.READY):
                session.effects.append(CloseLink(session.spec.key, "bridge stopping"))
            session.state = LinkState.IDLE
            session.retry_at = None
            for outlet, item in session.pending.items():
                session.log.warning(
                    "dropped %s: bridge stopping", _describe(outlet, item.on)
                )
            session.pending.clear()
            self._out.extend(session.effects)
            session.effects.clear()
            if session.deviceid is not None:
                topic = self.topics.availability_topic(session.spec, session.deviceid)
                self._publish(topic, OFFLINE, now)
        self._publish(self.topics.bridge_availability, OFFLINE, now)
        return self._drain()

    # Internals.

    def _run(
        self, key: str, now: float, step: Callable[[DeviceSession], None]
    ) -> list[Effect]:
        session = self.sessions[key]
        step(session)
        self._collect(session, now)
        return self._drain()

    def _collect(self, session: DeviceSession, now: float) -> None:
        while session.effects or session.events:
            self._out.extend(session.effects)
            session.effects.clear()
            events, session.events = session.events, []
            for event in events:
                if isinstance(event, _Ready):
                    self._on_ready(session, now)
                elif isinstance(event, _Lost):
                    self._on_lost(session, now)
                else:
                    self._publish_states(session, event.outlets, event.force, now)
        self._schedule(session)

    def _schedule(self, session: DeviceSession) -> None:
        key = session.spec.key
        deadline = session.next_deadline()
        if deadline != self._due.get(key):
            self._due[key] = deadline
            if deadline is not None:
                heapq.heappush(self._heap, (deadline, self._order[key], key))

    def _on_ready(self, session: DeviceSession, now: float) -> None:
        assert session.deviceid is not None
        for key, other in self.sessions.items():
            twin = other is not session and other.deviceid == session.deviceid
            if twin and other.ready:
                session.log.error("device is already bridged as %r; refusing it", key)
                session.refuse(now, "duplicate device")
                return
        self._route(session)
        topic = self.topics.availability_topic(session.spec, session.deviceid)
        self._publish(topic, ONLINE, now)

    def _on_lost(self, session: DeviceSession, now: float) -> None:
        assert session.deviceid is not None
        topic = self.topics.availability_topic(session.spec, session.deviceid)
        self._publish(topic, OFFLINE, now)

    def _route(self, session: DeviceSession) -> None:
        """Map the device's command topics to it, subscribing to new ones."""
        assert session.deviceid is not None and session.outlets is not None
        key = session.spec.key
        topics = tuple(
            self.topics.state_topic(
                session.spec, session.deviceid, session.outlets, outlet
            )
            for outlet in range(session.outlets)
        )
        old = self._device_topics.get(key, ())
        if old == topics:
            return

        for topic in old:
            self._routes.pop(topic, None)
        gone = tuple(t for t in old if t not in topics)
        for topic in gone:
            self._subscribed.discard(topic)
            self._echoes.pop(topic, None)
        if gone and self.mqtt_up:
            self._out.append(Unsubscribe(gone))

        fresh: list[str] = []
        for outlet, topic in enumerate(topics):
            taken = self._routes.get(topic)
            if taken is not None and taken[0] is not session:
                session.log.error(
                    "topic %r is already used by %s; not subscribing",
                    topic,
                    taken[0].label,
                )
                continue
            self._routes[topic] = (session, outlet)
            fresh.append(topic)
        self._device_topics[key] = topics
        if fresh and self.mqtt_up:
            self._subscribe(tuple(fresh))

    def _subscribe(self, topics: tuple[str, ...]) -> None:
        self._subscribed.update(topics)
        self._out.append(Subscribe(topics))

    def _republish(self, session: DeviceSession, outlet: int, now: float) -> None:
        known = session.known(outlet)
        if known is not None:
            self._publish_states(session, {outlet: known}, True, now)

    def _publish_states(
        self,
        session: DeviceSession,
        outlets: dict[int, bool],
        force: bool,
        now: float,
    ) -> None:
        if session.deviceid is None or session.outlets is None:
            return
        for outlet, on in sorted(outlets.items()):
            if not force and session.published.get(outlet) == on:
                continue
            topic = self.topics.state_topic(
                session.spec, session.deviceid, session.outlets, outlet
            )
            if self._publish(topic, protocol.format_switch_state(on), now):
                session.published[outlet] = on

    def _publish(self, topic: str, payload: bytes, now: float) -> bool:
        if not self.mqtt_up:
            return False
        # Only a subscribed topic echoes; recording any other publish would leave an
        # entry no echo ever consumes, waiting to swallow a user's identical command.
        if self.echo_guard and topic in self._subscribed:
            self._echoes.setdefault(topic, deque()).append((payload, now))
        self._out.append(Publish(topic, payload, retain=True))
        return True

    def _is_echo(self, topic: str, payload: bytes, now: float) -> bool:
        """Consume the earliest expected echo equal to ``payload`` (MQTT 3.1.1 only)."""
        ledger = self._echoes.get(topic)
        if not ledger:
            return False
        while ledger and now - ledger[0][1] > ECHO_WINDOW:
            ledger.popleft()

        # Not only the head: should an echo ever be lost, the entries behind it still
        # match, and only the lost payload waits out the window.
        for index, (expected, _) in enumerate(ledger):
            if expected == payload:
                del ledger[index]
                return True
        return False

    def _changes_nothing(
        self, session: DeviceSession, outlet: int, payload: bytes
    ) -> bool:
        """Tell whether a live message would leave the device and the broker as is."""
        known = session.known(outlet)
        flight = session.in_flight
        return (
            known is not None
            and session.published.get(outlet) == known
            and payload == protocol.format_switch_state(known)
            and outlet not in session.pending
            and (flight is None or flight.outlet != outlet)
        )

    def _drain(self) -> list[Effect]:
        out, self._out = self._out, []
        return out


def effects_of_kind(effects: Iterable[Effect], kind: type[_E]) -> list[_E]:
    """Return the effects of one kind, in order (a helper for tests and tools)."""
    return [e for e in effects if isinstance(e, kind)]
