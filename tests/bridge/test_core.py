"""The bridge's state machine, driven without any network or clock."""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

import pytest

from bridge import protocol
from bridge.core import (
    ECHO_WINDOW,
    BridgeCore,
    CloseLink,
    Connect,
    DeviceSpec,
    Effect,
    LinkState,
    Publish,
    SendPing,
    SendText,
    Subscribe,
    Timing,
    TopicScheme,
    Unsubscribe,
    effects_of_kind,
)

DEVICEID = "1000abcdef"
OTHER = "10000b0b0b"
TOPIC = f"HomeKit/sonoff-{DEVICEID}/Lightbulb/On"
AVAILABILITY = f"pgzen-bridge/sonoff-{DEVICEID}/availability"


def make_core(*specs: DeviceSpec, **kwargs: Any) -> BridgeCore:
    """Build a core with no jitter and a fixed wall clock."""
    kwargs.setdefault("rng", lambda: 0.5)
    kwargs.setdefault("wall_clock", lambda: 1_700_000_000.0)
    if not specs:
        specs = (DeviceSpec(key="a", host="127.0.0.1", apikey="key"),)
    return BridgeCore(specs, **kwargs)


def sent(effects: list[Effect]) -> list[dict[str, Any]]:
    return [json.loads(e.text) for e in effects_of_kind(effects, SendText)]


def published(effects: list[Effect]) -> list[tuple[str, bytes]]:
    return [(e.topic, e.payload) for e in effects_of_kind(effects, Publish)]


def bring_online(
    core: BridgeCore,
    key: str = "a",
    *,
    now: float = 0.0,
    deviceid: str = DEVICEID,
    state: dict[int, bool] | None = None,
    single: bool = True,
) -> list[Effect]:
    """Connect, shake hands and push the initial state; return every effect."""
    session = core.sessions[key]
    effects: list[Effect] = []
    if session.state is not LinkState.CONNECTING:
        effects += core.retry_now(key, now)
        assert Connect(key) in effects
    effects += core.link_opened(key, now)
    hello = sent(effects)[-1]
    assert hello["action"] == "userOnline"
    effects += core.link_text(
        key,
        protocol.reply(sequence=hello["sequence"], deviceid=deviceid, apikey="dev"),
        now,
    )
    outlets = state if state is not None else {0: True}
    effects += core.link_text(
        key,
        protocol.state_push(
            deviceid=deviceid, apikey="dev", outlets=outlets, single=single
        ),
        now,
    )
    return effects


def ack(
    core: BridgeCore, effects: list[Effect], now: float, error: int = 0
) -> list[Effect]:
    """Acknowledge the last command among ``effects``."""
    sequence = sent(effects)[-1]["sequence"]
    return core.link_text("a", protocol.reply(sequence=sequence, error=error), now)


def test_start_connects_every_device() -> None:
    """Starting asks for one link per configured device."""
    core = make_core(
        DeviceSpec(key="a", host="10.0.0.1"), DeviceSpec(key="b", host="10.0.0.2")
    )

    assert core.start(0.0) == [Connect("a"), Connect("b")]


def test_handshake_opens_with_user_online() -> None:
    """An opened link sends userOnline with the configured apikey."""
    core = make_core()
    core.start(0.0)

    (hello,) = sent(core.link_opened("a", 0.0))

    assert hello["action"] == "userOnline"
    assert hello["apikey"] == "key"
    assert hello["version"] == 6


def test_device_state_and_availability_are_published_retained() -> None:
    """Once the device answers and pushes its state, availability and state go out."""
    core = make_core()
    core.mqtt_connected(0.0)

    effects = bring_online(core, state={0: True})

    assert published(effects) == [(AVAILABILITY, b"online"), (TOPIC, b"1")]
    assert all(e.retain for e in effects_of_kind(effects, Publish))
    assert Subscribe((TOPIC,)) in effects


def test_multi_channel_topics_carry_the_channel() -> None:
    """A multi-channel device gets one topic per outlet, numbered from 1."""
    core = make_core()
    core.mqtt_connected(0.0)

    effects = bring_online(core, state={0: True, 1: False}, single=False)

    assert published(effects)[1:] == [
        (f"HomeKit/sonoff-{DEVICEID}-1/Lightbulb/On", b"1"),
        (f"HomeKit/sonoff-{DEVICEID}-2/Lightbulb/On", b"0"),
    ]


def test_topic_template_is_configurable() -> None:
    """The state topic follows the configured template and the device's name."""
    spec = DeviceSpec(key="a", host="h", name="kitchen", outlets=2)
    core = make_core(spec, topics=TopicScheme(multi="home/{name}/{outlet}/set"))
    core.mqtt_connected(0.0)

    effects = bring_online(core, state={0: True, 1: True}, single=False)

    assert ("home/kitchen/1/set", b"1") in published(effects)


def test_broker_connection_subscribes_and_publishes_bridge_online() -> None:
    """On connecting to the broker the bridge subscribes, then announces itself."""
    core = make_core()
    bring_online(core)

    effects = core.mqtt_connected(1.0)

    assert effects[0] == Subscribe((TOPIC,))
    assert published(effects) == [
        ("pgzen-bridge/availability", b"online"),
        (AVAILABILITY, b"online"),
        (TOPIC, b"1"),
    ]


def test_configured_device_id_subscribes_before_the_device_answers() -> None:
    """With the device id and outlets configured, topics exist from the start."""
    core = make_core(DeviceSpec(key="a", host="h", deviceid=DEVICEID, outlets=1))

    effects = core.mqtt_connected(0.0)

    assert (AVAILABILITY, b"offline") in published(effects)
    assert Subscribe((TOPIC,)) in effects


def test_command_switches_the_device_and_publishes_its_state() -> None:
    """A live command is sent to the device; its acknowledgement publishes the state."""
    core = make_core()
    core.mqtt_connected(0.0)
    bring_online(core, state={0: True})

    effects = core.mqtt_message(TOPIC, b"0", False, 1.0)
    (command,) = sent(effects)
    done = ack(core, effects, 1.01)

    assert command["params"] == {"switch": "off"}
    assert command["deviceid"] == DEVICEID
    assert command["selfApikey"] == "dev"
    assert published(done) == [(TOPIC, b"0")]


def test_multi_channel_command_names_its_outlet() -> None:
    """A command on a channel's topic switches that outlet only."""
    core = make_core()
    core.mqtt_connected(0.0)
    bring_online(core, state={0: True, 1: True}, single=False)

    effects = core.mqtt_message(
        f"HomeKit/sonoff-{DEVICEID}-2/Lightbulb/On", b"off", False, 1
    )

    assert sent(effects)[0]["params"] == {"switches": [{"switch": "off", "outlet": 1}]}


def test_commands_go_one_at_a_time() -> None:
    """A second command waits until the first is acknowledged."""
    core = make_core()
    core.mqtt_connected(0.0)
    bring_online(core, state={0: True, 1: True, 2: True}, single=False)

    first = core.mqtt_message(
        f"HomeKit/sonoff-{DEVICEID}-1/Lightbulb/On", b"0", False, 1
    )
    second = core.mqtt_message(
        f"HomeKit/sonoff-{DEVICEID}-2/Lightbulb/On", b"0", False, 1
    )
    after = ack(core, first, 1.1)

    assert len(sent(first)) == 1
    assert sent(second) == []
    assert sent(after)[0]["params"]["switches"][0]["outlet"] == 1


def test_later_command_for_an_outlet_replaces_a_waiting_one() -> None:
    """Of two waiting commands for one outlet, only the latest is sent."""
    core = make_core()
    core.mqtt_connected(0.0)
    bring_online(core, state={0: True, 1: True}, single=False)
    topic = f"HomeKit/sonoff-{DEVICEID}-2/Lightbulb/On"

    first = core.mqtt_message(
        f"HomeKit/sonoff-{DEVICEID}-1/Lightbulb/On", b"0", False, 1
    )
    core.mqtt_message(topic, b"0", False, 1)
    core.mqtt_message(topic, b"1", False, 1)
    after = ack(core, first, 1.1)

    assert [c["params"] for c in sent(after)] == [
        {"switches": [{"switch": "on", "outlet": 1}]}
    ]


def test_refused_command_republishes_the_real_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A non-zero error is logged and the device's real state is published again."""
    core = make_core()
    core.mqtt_connected(0.0)
    bring_online(core, state={0: True})

    effects = core.mqtt_message(TOPIC, b"0", False, 1.0)
    with caplog.at_level(logging.WARNING):
        done = ack(core, effects, 1.1, error=403)

    assert published(done) == [(TOPIC, b"1")]
    assert "refused outlet 0 off with error 403" in caplog.text
    assert DEVICEID in caplog.text


def test_stale_retained_value_never_switches_the_device() -> None:
    """A disagreeing retained value is not a command; the real state is republished."""
    core = make_core()
    core.mqtt_connected(0.0)
    bring_online(core, state={0: True})

    effects = core.mqtt_message(TOPIC, b"0", True, 1.0)

    assert sent(effects) == []
    assert published(effects) == [(TOPIC, b"1")]


def test_retained_value_before_the_device_reports_is_ignored() -> None:
    """A retained value for a device not yet seen neither switches nor publishes."""
    core = make_core(DeviceSpec(key="a", host="h", deviceid=DEVICEID, outlets=1))
    core.mqtt_connected(0.0)

    effects = core.mqtt_message(TOPIC, b"1", True, 0.1)
    later = bring_online(core, now=0.2, state={0: False})

    assert effects == []
    assert sent(later)[-1]["action"] == "userOnline"
    assert (TOPIC, b"0") in published(later)


def test_invalid_payload_is_logged_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A payload that is no switch value is logged, not sent; state is republished."""
    core = make_core()
    core.mqtt_connected(0.0)
    bring_online(core, state={0: True})

    with caplog.at_level(logging.WARNING):
        effects = core.mqtt_message(TOPIC, b"dim 50%", False, 1.0)

    assert sent(effects) == []
    assert published(effects) == [(TOPIC, b"1")]
    assert "not a switch value" in caplog.text


def test_empty_payload_is_ignored() -> None:
    """An empty payload (an accessory removed) does nothing."""
    core = make_core()
    core.mqtt_connected(0.0)
    bring_online(core)

    assert core.mqtt_message(TOPIC, b"", False, 1.0) == []


def test_command_for_an_offline_device_is_delivered_on_reconnect() -> None:
    """A command held while the device is away is sent once it is back, within TTL."""
    core = make_core(timing=Timing(command_ttl=10.0))
    core.mqtt_connected(0.0)
    bring_online(core, state={0: True})
    core.link_closed("a", 1.0, "connection reset")

    held = core.mqtt_message(TOPIC, b"0", False, 2.0)
    back = bring_online(core, now=3.0, state={0: True})

    assert sent(held) == []
    assert [c["params"] for c in sent(back) if c["action"] == "update"] == [
        {"switch": "off"}
    ]


def test_command_older_than_its_ttl_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A held command expires after the TTL with a log line and is never sent."""
    core = make_core(timing=Timing(command_ttl=5.0))
    core.mqtt_connected(0.0)
    bring_online(core, state={0: True})
    core.link_closed("a", 1.0, "connection reset")
    core.mqtt_message(TOPIC, b"0", False, 2.0)

    with caplog.at_level(logging.WARNING):
        core.tick(7.5)
    back = bring_online(core, now=8.0)

    assert "dropped outlet 0 off" in caplog.text
    assert [c for c in sent(back) if c["action"] == "update"] == []


def test_command_lost_with_its_link_is_never_resent() -> None:
    """A command sent but unacknowledged when the link drops is not sent again."""
    core = make_core()
    core.mqtt_connected(0.0)
    bring_online(core, state={0: True})

    core.mqtt_message(TOPIC, b"0", False, 1.0)
    core.link_closed("a", 1.1, "connection reset")
    back = bring_online(core, now=2.0, state={0: True})

    assert [c for c in sent(back) if c["action"] == "update"] == []
    assert (TOPIC, b"1") in published(back)


def test_commands_wait_for_the_first_state_push() -> None:
    """A held command goes out after the device's initial state, not before."""
    core = make_core(timing=Timing(state_timeout=2.0))
    core.mqtt_connected(0.0)
    bring_online(core)
    core.link_closed("a", 1.0, "reset")
    core.mqtt_message(TOPIC, b"0", False, 1.2)
    core.retry_now("a", 1.5)
    hello = sent(core.link_opened("a", 1.5))[0]

    answered = core.link_text(
        "a", protocol.reply(sequence=hello["sequence"], deviceid=DEVICEID), 1.6
    )
    timed_out = core.tick(3.7)

    assert sent(answered) == []
    assert sent(timed_out)[0]["params"] == {"switch": "off"}


def test_missing_acknowledgement_resets_the_link() -> None:
    """A command unacknowledged within ack_timeout closes the link for a reconnect."""
    core = make_core(timing=Timing(ack_timeout=5.0))
    core.mqtt_connected(0.0)
    bring_online(core)
    core.mqtt_message(TOPIC, b"0", False, 1.0)

    effects = core.tick(6.0)

    assert effects_of_kind(effects, CloseLink)[0].reason == "no acknowledgement"
    assert (AVAILABILITY, b"offline") in published(effects)
    assert core.next_deadline() == pytest.approx(6.5)


def test_handshake_without_reply_times_out() -> None:
    """A device that never answers userOnline is disconnected and retried."""
    core = make_core(timing=Timing(handshake_timeout=5.0))
    core.start(0.0)
    core.link_opened("a", 0.0)

    effects = core.tick(5.0)

    assert effects_of_kind(effects, CloseLink)[0].reason == "no handshake reply"


def test_refused_handshake_closes_the_link() -> None:
    """A handshake answered with a non-zero error is not a session."""
    core = make_core()
    core.start(0.0)
    hello = sent(core.link_opened("a", 0.0))[0]

    effects = core.link_text(
        "a",
        protocol.reply(sequence=hello["sequence"], error=401, deviceid=DEVICEID),
        0.1,
    )

    assert effects_of_kind(effects, CloseLink)
    assert not core.sessions["a"].ready


def test_reconnect_backoff_doubles_from_half_a_second_to_a_cap() -> None:
    """Retry delays are 0.5, 1, 2, 4 ... seconds, never above reconnect_max."""
    core = make_core(timing=Timing(reconnect_min=0.5, reconnect_max=3.0))
    session = core.sessions["a"]

    delays = [session.backoff(n) for n in range(1, 6)]

    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_unreachable_device_is_retried_after_the_backoff() -> None:
    """A failed connect is retried when its backoff has passed, not before."""
    core = make_core()
    core.start(0.0)

    core.link_failed("a", 0.0, "connection refused")

    assert core.tick(0.4) == []
    assert core.tick(0.5) == [Connect("a")]


def test_idle_link_is_pinged_and_closed_without_pong() -> None:
    """After a silent ping_interval a ping goes out; no pong in time closes the link."""
    core = make_core(timing=Timing(ping_interval=10.0, ping_timeout=5.0))
    bring_online(core)

    ping = core.tick(10.0)
    closed = core.tick(15.0)

    assert ping == [SendPing("a")]
    assert effects_of_kind(closed, CloseLink)[0].reason == "no pong"


def test_pong_keeps_the_link() -> None:
    """A pong in time keeps the link open and restarts the interval."""
    core = make_core(timing=Timing(ping_interval=10.0, ping_timeout=5.0))
    bring_online(core)

    core.tick(10.0)
    core.link_activity("a", 10.01)

    assert core.tick(15.0) == []
    assert core.next_deadline() == pytest.approx(20.01)


@pytest.mark.parametrize("text", ["{not json", '{"action":"reboot"}', '"hello"'])
def test_garbage_from_a_device_is_logged_and_the_link_kept(
    text: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Malformed JSON or an unknown action is logged with the device id; no reset."""
    core = make_core()
    bring_online(core)

    with caplog.at_level(logging.WARNING):
        effects = core.link_text("a", text, 1.0)

    assert effects == []
    assert core.sessions["a"].ready
    assert f"[{DEVICEID} 127.0.0.1:8081] ignoring device message" in caplog.text


def test_device_answering_with_another_id_is_refused() -> None:
    """A device whose id differs from the configured one is never bridged."""
    core = make_core(DeviceSpec(key="a", host="h", deviceid=OTHER, outlets=1))
    core.mqtt_connected(0.0)
    core.start(0.0)
    hello = sent(core.link_opened("a", 0.0))[0]

    effects = core.link_text(
        "a", protocol.reply(sequence=hello["sequence"], deviceid=DEVICEID), 0.1
    )

    assert effects_of_kind(effects, CloseLink)[0].reason == "device id mismatch"
    assert published(effects) == []


def test_same_device_at_two_addresses_is_bridged_once() -> None:
    """A second link to a device already bridged is refused, the first kept."""
    core = make_core(DeviceSpec(key="a", host="h1"), DeviceSpec(key="b", host="h2"))
    core.mqtt_connected(0.0)
    bring_online(core, "a")

    core.retry_now("b", 0.0)
    hello = sent(core.link_opened("b", 0.0))[0]
    effects = core.link_text(
        "b", protocol.reply(sequence=hello["sequence"], deviceid=DEVICEID), 0.1
    )
    effects += core.link_text(
        "b",
        protocol.state_push(
            deviceid=DEVICEID, apikey="", outlets={0: True}, single=True
        ),
        0.1,
    )

    assert effects_of_kind(effects, CloseLink)
    assert (AVAILABILITY, b"offline") not in published(effects)
    assert core.sessions["a"].ready


def test_partial_push_publishes_only_changed_outlets() -> None:
    """Later pushes publish the outlets that changed and skip repeats."""
    core = make_core()
    core.mqtt_connected(0.0)
    bring_online(core, state={0: True, 1: True}, single=False)

    changed = core.link_text(
        "a",
        protocol.state_push(
            deviceid=DEVICEID, apikey="", outlets={1: False}, single=False
        ),
        1,
    )
    repeat = core.link_text(
        "a",
        protocol.state_push(
            deviceid=DEVICEID, apikey="", outlets={1: False}, single=False
        ),
        2,
    )

    assert published(changed) == [(f"HomeKit/sonoff-{DEVICEID}-2/Lightbulb/On", b"0")]
    assert published(repeat) == []


def test_configured_outlets_cap_what_the_device_reports() -> None:
    """Outlets beyond the configured count are ignored (a Dual reporting four)."""
    core = make_core(DeviceSpec(key="a", host="h", outlets=2))
    core.mqtt_connected(0.0)

    effects = bring_online(
        core, state={0: True, 1: False, 2: False, 3: False}, single=False
    )

    assert len([t for t, _ in published(effects) if t.startswith("HomeKit/")]) == 2


def test_echo_of_own_publish_is_not_a_command_under_mqtt_311() -> None:
    """With the echo guard, our own publish coming back live switches nothing."""
    core = make_core(echo_guard=True)
    core.mqtt_connected(0.0)
    bring_online(core, state={0: True})
    core.link_text(
        "a",
        protocol.state_push(
            deviceid=DEVICEID, apikey="", outlets={0: False}, single=True
        ),
        1,
    )

    echo_of_on = core.mqtt_message(TOPIC, b"1", False, 1.1)
    echo_of_off = core.mqtt_message(TOPIC, b"0", False, 1.1)
    real = core.mqtt_message(TOPIC, b"1", False, 1.2)

    assert sent(echo_of_on) == sent(echo_of_off) == []
    assert sent(real)[0]["params"] == {"switch": "on"}


def test_nothing_is_published_while_the_broker_is_away() -> None:
    """State changes during a broker outage are published on reconnect."""
    core = make_core()
    core.mqtt_connected(0.0)
    bring_online(core, state={0: True})
    core.mqtt_disconnected(1.0)

    during = core.link_text(
        "a",
        protocol.state_push(
            deviceid=DEVICEID, apikey="", outlets={0: False}, single=True
        ),
        2,
    )
    after = core.mqtt_connected(3.0)

    assert published(during) == []
    assert (TOPIC, b"0") in published(after)


def test_shutdown_announces_everything_offline() -> None:
    """Stopping closes links and publishes device and bridge availability offline."""
    core = make_core()
    core.mqtt_connected(0.0)
    bring_online(core)

    effects = core.shutdown(1.0)

    assert effects_of_kind(effects, CloseLink) == [CloseLink("a", "bridge stopping")]
    assert published(effects) == [
        (AVAILABILITY, b"offline"),
        ("pgzen-bridge/availability", b"offline"),
    ]


def test_outlets_are_learned_from_the_first_push() -> None:
    """Without configured outlets the device's first push decides their number."""
    core = make_core()
    core.mqtt_connected(0.0)

    bring_online(core, state={0: True, 1: True, 2: False, 3: True}, single=False)

    assert core.sessions["a"].outlets == 4


def test_next_deadline_is_the_earliest_of_all_devices() -> None:
    """Deadlines of many devices are tracked separately; the earliest comes first."""
    specs = [DeviceSpec(key=k, host=k) for k in ("a", "b", "c")]
    core = make_core(*specs, timing=Timing(reconnect_min=1.0, ping_interval=10.0))
    core.start(0.0)
    core.link_failed("a", 0.0, "refused")
    core.link_failed("b", 0.5, "refused")
    core.link_opened("c", 0.2)

    assert core.next_deadline() == pytest.approx(1.0)
    assert core.tick(1.0) == [Connect("a")]
    assert core.next_deadline() == pytest.approx(1.5)
    assert core.tick(1.5) == [Connect("b")]
    assert core.next_deadline() == pytest.approx(5.2)  # c's handshake timeout


# MQTT 3.1.1 echoes, against a model of the broker.


class Broker311:
    """An MQTT 3.1.1 broker as the bridge sees it: a clean session, no ``noLocal``.

    It handles the bridge's packets in order. What it delivers to the bridge waits in
    ``queue`` until the test hands it over, so that any interleaving can be staged.
    """

    def __init__(self) -> None:
        self.retained: dict[str, bytes] = {}
        self.subscribed: set[str] = set()
        self.queue: deque[tuple[str, bytes, bool]] = deque()

    def receive(self, effects: Iterable[Effect]) -> None:
        """Handle the bridge's subscriptions and publishes."""
        for effect in effects:
            if isinstance(effect, Subscribe):
                for topic in effect.topics:
                    self.subscribed.add(topic)
                    if topic in self.retained:
                        self.queue.append((topic, self.retained[topic], True))
            elif isinstance(effect, Unsubscribe):
                self.subscribed.difference_update(effect.topics)
            elif isinstance(effect, Publish):
                self.publish(effect.topic, effect.payload, retain=effect.retain)

    def publish(self, topic: str, payload: bytes, *, retain: bool = True) -> None:
        """Take a publish from anyone; subscribers get it live, retain flag clear."""
        if retain:
            self.retained[topic] = payload
        if topic in self.subscribed:
            self.queue.append((topic, payload, False))

    def drop_connection(self) -> None:
        """Forget the bridge's session: its subscriptions and undelivered messages."""
        self.subscribed.clear()
        self.queue.clear()


class Rig:
    """A core with the echo guard, a single-outlet lamp and a 3.1.1 broker.

    The lamp acknowledges every command at once unless ``auto_ack`` is off; each call
    advances the clock by 10 ms.
    """

    def __init__(self, *, on: bool = False, broker_first: bool = True) -> None:
        self.core = make_core(echo_guard=True)
        self.broker = Broker311()
        self.now = 0.0
        self.on = on
        self.commands: list[bool] = []
        self.auto_ack = True
        self._unacked: list[tuple[str, bool]] = []

        if broker_first:
            self.connect()
        self._apply(bring_online(self.core, now=self.now, state={0: on}))
        if not broker_first:
            self.connect()

    def tick(self, seconds: float = 0.01) -> float:
        self.now += seconds
        return self.now

    def connect(self) -> None:
        self._apply(self.core.mqtt_connected(self.tick()))

    def disconnect(self) -> None:
        self.broker.drop_connection()
        self._apply(self.core.mqtt_disconnected(self.tick()))

    def press(self) -> None:
        """Toggle the lamp by hand; it pushes its new state to the bridge."""
        self.on = not self.on
        push = protocol.state_push(
            deviceid=DEVICEID, apikey="", outlets={0: self.on}, single=True
        )
        self._apply(self.core.link_text("a", push, self.tick()))

    def user(self, payload: bytes) -> None:
        """A HomeKit bridge's write: retained, on the state topic."""
        self.broker.publish(TOPIC, payload)

    def deliver(self, count: int | None = None) -> None:
        """Hand the bridge ``count`` queued messages, or all, including new ones."""
        queue = self.broker.queue
        while queue and (count is None or count > 0):
            topic, payload, retained = queue.popleft()
            self._apply(self.core.mqtt_message(topic, payload, retained, self.tick()))
            if count is not None:
                count -= 1

    def ack(self) -> None:
        """Acknowledge the oldest command the lamp has not answered yet."""
        sequence, on = self._unacked.pop(0)
        self.on = on
        reply = protocol.reply(sequence=sequence)
        self._apply(self.core.link_text("a", reply, self.tick()))

    def _apply(self, effects: list[Effect]) -> None:
        self.broker.receive(effects)
        for command in sent(effects):
            if command.get("action") != "update":
                continue
            on = command["params"]["switch"] == "on"
            self.commands.append(on)
            self._unacked.append((command["sequence"], on))
        while self.auto_ack and self._unacked:
            self.ack()


def test_first_state_echo_after_connecting_comes_back_live() -> None:
    """With a device online before the broker, its state's echo is not lost."""
    rig = Rig(on=False, broker_first=False)

    rig.deliver()
    for _ in range(5):
        rig.press()
    rig.deliver()
    rig.user(b"0")
    rig.deliver()

    assert rig.commands == [False]
    assert rig.on is False
    assert rig.broker.retained[TOPIC] == b"0"


def test_connecting_records_no_echo_the_broker_will_not_send() -> None:
    """Publishes made before subscribing leave nothing to swallow a command with."""
    rig = Rig(on=True, broker_first=False)
    rig.deliver()
    rig.press()
    rig.deliver()

    rig.user(b"1")
    rig.deliver()

    assert rig.commands == [True]
    assert rig.on is True


@pytest.mark.parametrize("payload", [b"0", b"1"])
@pytest.mark.parametrize("presses_before", range(6))
@pytest.mark.parametrize("delivered_before", [0, 2, None])
def test_command_among_pending_echoes_is_applied(
    payload: bytes, presses_before: int, delivered_before: int | None
) -> None:
    """A user's write interleaved with echoes of presses switches the lamp, once."""
    rig = Rig(on=False)
    rig.deliver()

    for _ in range(presses_before):
        rig.press()
    rig.deliver(delivered_before)
    rig.user(payload)
    for _ in range(5 - presses_before):
        rig.press()
    rig.deliver()

    wanted = payload == b"1"
    assert rig.on is wanted
    assert set(rig.commands) <= {wanted}
    assert rig.broker.retained[TOPIC] == payload
    assert rig.broker.queue == deque()


def test_same_payload_as_a_pending_echo_is_applied_when_it_overtakes_it() -> None:
    """A write overtaking our identical echo is taken as it; the echo then commands."""
    rig = Rig(on=False)
    rig.deliver()
    rig.press()  # on; its echo waits at the broker
    rig.press()  # off
    rig.broker.queue.appendleft((TOPIC, b"1", False))  # a write that came first

    rig.deliver()

    assert rig.commands == [True]
    assert rig.on is True
    assert rig.broker.retained[TOPIC] == b"1"


def test_commands_while_one_is_in_flight_end_in_the_last_state() -> None:
    """A write back to the current state is not mistaken for a no-op mid-command."""
    rig = Rig(on=False)
    rig.deliver()
    rig.auto_ack = False

    rig.user(b"1")
    rig.deliver()
    rig.user(b"0")
    rig.deliver()
    rig.auto_ack = True
    rig.ack()
    rig.deliver()

    assert rig.commands == [True, False]
    assert rig.on is False
    assert rig.broker.retained[TOPIC] == b"0"


def test_press_between_command_and_its_echo_is_kept() -> None:
    """A press after an acknowledged command is not undone by the command's echo."""
    rig = Rig(on=False)
    rig.deliver()

    rig.user(b"1")
    rig.deliver(1)  # the command; its echo is still queued
    rig.press()
    rig.deliver()

    assert rig.commands == [True]
    assert rig.on is False
    assert rig.broker.retained[TOPIC] == b"0"


def test_redundant_write_switches_nothing_and_publishes_nothing() -> None:
    """A write equal to the published and actual state is ignored."""
    rig = Rig(on=True)
    rig.deliver()

    before = len(rig.broker.queue)
    rig.user(b"1")
    rig.deliver()

    assert rig.commands == []
    assert len(rig.broker.queue) == before == 0


def test_late_echo_of_the_current_state_switches_nothing() -> None:
    """An echo arriving after the window, the state unchanged, is harmless."""
    rig = Rig(on=False)
    rig.deliver()
    rig.press()
    rig.tick(ECHO_WINDOW + 1.0)

    rig.deliver()

    assert rig.commands == []
    assert rig.on is True
    assert rig.broker.queue == deque()


def test_stale_retained_value_on_resubscribe_never_switches() -> None:
    """A write retained while the bridge was away is replaced; commands still work."""
    rig = Rig(on=False)
    rig.deliver()
    rig.disconnect()
    rig.user(b"1")  # retained while nobody was subscribed

    rig.connect()
    rig.deliver()

    assert rig.commands == []
    assert rig.on is False
    assert rig.broker.retained[TOPIC] == b"0"

    rig.user(b"1")
    rig.deliver()

    assert rig.commands == [True]
    assert rig.on is True


def test_echoes_lost_with_the_connection_swallow_nothing() -> None:
    """Echoes that died with a broker connection are not waited for after it."""
    rig = Rig(on=False)
    rig.deliver()
    rig.press()  # on; published, but the connection drops before the echo
    rig.disconnect()
    rig.press()  # off, while the broker is away
    rig.connect()
    rig.deliver()

    rig.user(b"1")
    rig.deliver()

    assert rig.commands == [True]
    assert rig.on is True
