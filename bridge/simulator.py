"""Simulated Sonoff devices in LAN mode, for tests and for trying the bridge.

Each simulated device listens on its own local port and speaks the protocol described
in :mod:`bridge.protocol`: it answers ``userOnline`` with its device id and the echoed
sequence, pushes its full state soon after, acknowledges commands with the echoed
sequence (or refuses them with a non-zero error when told to), pushes every change to
every other connected client, and answers WebSocket pings. It can be pressed,
restarted, made to drop its connections, or frozen (still connected, never answering).

From Python, :class:`Simulator` runs the devices on an event loop in a background
thread and offers blocking, thread-safe controls::

    with Simulator() as sim:
        lamp = sim.add(outlets=1)
        sim.press(lamp)

From a shell, ``python -m bridge.simulator --devices 3 --outlets 1,2,4`` prints a
matching bridge configuration and reads commands (``press``, ``restart``, ``drop``,
``state``, ``quit``) from standard input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bridge import protocol
from bridge.errors import ProtocolError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Error codes the simulator uses, after the vendor's HTTP-like codes.
ERROR_BAD_REQUEST = 400
ERROR_NOT_ONLINE = 403
ERROR_WRONG_DEVICE = 404


@dataclass(frozen=True, slots=True)
class ReceivedCommand:
    """A command as the device received it, with the monotonic time of arrival."""

    at: float
    outlets: dict[int, bool]
    sequence: str


@dataclass(eq=False)
class SimulatedDevice:
    """One simulated device: its identity, its relays and how it misbehaves."""

    deviceid: str = field(default_factory=lambda: "1000" + secrets.token_hex(3))
    outlets: int = 1
    port: int = 0
    host: str = "127.0.0.1"
    apikey: str = field(default_factory=lambda: str(uuid.uuid4()))
    state: list[bool] = field(default_factory=list)
    state_delay: float = 0.0
    partial_pushes: bool = True
    refuse_with: int | None = None
    frozen: bool = False
    on_command: Callable[[SimulatedDevice, ReceivedCommand], None] | None = None

    commands: list[ReceivedCommand] = field(default_factory=list)
    connections: int = 0
    # The last trickled frame: its size, and how many of its bytes are written.
    trickle_size: int = 0
    trickle_sent: int = 0
    _server: Server | None = None
    _clients: set[ServerConnection] = field(default_factory=set)
    _online: set[ServerConnection] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not protocol.is_deviceid(self.deviceid):
            raise ValueError(f"not a device id: {self.deviceid!r}")
        if not 1 <= self.outlets <= protocol.MAX_OUTLETS:
            raise ValueError(f"outlets out of range: {self.outlets!r}")
        if not self.state:
            self.state = [False] * self.outlets
        self.log = logging.LoggerAdapter(logger, {"device": self.deviceid})

    @property
    def single(self) -> bool:
        return self.outlets == 1

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def clients(self) -> int:
        """How many clients have completed the handshake."""
        return len(self._online)

    @property
    def listening(self) -> bool:
        return self._server is not None

    # Lifecycle, on the simulator's event loop.

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            subprotocols=[Subprotocol(protocol.SUBPROTOCOL)],
            ping_interval=None,
            compression=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.log.info("[%s] listening on %s", self.deviceid, self.address)

    async def stop(self) -> None:
        """Stop listening and drop every client abruptly, like a power cut."""
        server, self._server = self._server, None
        if server is not None:
            server.close(close_connections=False)
        await self.drop(abrupt=True)
        if server is not None:
            await server.wait_closed()

    async def drop(self, abrupt: bool = True) -> None:
        """Drop every client: abruptly (a reset) or with a close frame."""
        clients = list(self._clients)
        for ws in clients:
            if abrupt:
                ws.transport.abort()
            else:
                await ws.close()
        self._clients.clear()
        self._online.clear()

    async def hang(self) -> None:
        """Stop reading from every client, pings included, like a hung device."""
        self.frozen = True
        for ws in self._clients:
            ws.transport.pause_reading()

    async def press(self, outlet: int = 0, on: bool | None = None) -> None:
        """Toggle an outlet (or set it) as a finger on the button would."""
        value = not self.state[outlet] if on is None else on
        self.state[outlet] = value
        self.log.info("[%s] pressed outlet %d: %s", self.deviceid, outlet, value)
        await self._broadcast({outlet: value}, exclude=None)

    async def send_raw(self, text: str) -> None:
        """Send a text frame as is to every client that completed the handshake."""
        for ws in list(self._online):
            await _send(ws, text)

    async def trickle(self, outlet: int, on: bool, gap: float) -> None:
        """Press an outlet, and push the change one byte of the frame every ``gap`` s.

        Like a device on a bad radio link. The frame is written to the transport below
        the WebSocket library, so nothing else may be sent to the clients meanwhile.
        """
        self.state[outlet] = on
        frame = _text_frame(self._push({outlet: on}))
        self.log.info(
            "[%s] trickling outlet %d: %s over %d bytes",
            self.deviceid,
            outlet,
            on,
            len(frame),
        )
        clients = list(self._online)
        self.trickle_size, self.trickle_sent = len(frame), 0
        for n, byte in enumerate(frame):
            if n:
                await asyncio.sleep(gap)
            for ws in clients:
                ws.transport.write(bytes([byte]))
            self.trickle_sent = n + 1

    # The protocol.

    async def _handle(self, ws: ServerConnection) -> None:
        self._clients.add(ws)
        self.connections += 1
        try:
            async for text in ws:
                if self.frozen:
                    continue
                await self._on_message(ws, text)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(ws)
            self._online.discard(ws)

    async def _on_message(self, ws: ServerConnection, text: str | bytes) -> None:
        try:
            message = protocol.parse_client_message(text)
        except ProtocolError as exc:
            self.log.warning("[%s] bad client message: %s", self.deviceid, exc)
            return

        if isinstance(message, protocol.UserOnline):
            self._online.add(ws)
            await _send(
                ws,
                protocol.reply(
                    sequence=message.sequence,
                    deviceid=self.deviceid,
                    apikey=self.apikey,
                ),
            )
            asyncio.get_running_loop().call_later(
                self.state_delay, lambda: asyncio.ensure_future(self._push_all(ws))
            )
            return

        received = ReceivedCommand(
            time.monotonic(), dict(message.outlets), message.sequence
        )
        self.commands.append(received)
        if self.on_command is not None:
            self.on_command(self, received)
        error = self._check(ws, message)
        if error:
            await _send(ws, protocol.reply(sequence=message.sequence, error=error))
            return

        changed = {}
        for outlet, on in message.outlets.items():
            if self.state[outlet] != on:
                changed[outlet] = on
            self.state[outlet] = on
        await _send(
            ws,
            protocol.reply(
                sequence=message.sequence, deviceid=self.deviceid, apikey=self.apikey
            ),
        )
        if changed:
            await self._broadcast(changed, exclude=ws)

    def _check(self, ws: ServerConnection, message: protocol.Command) -> int:
        if ws not in self._online:
            return ERROR_NOT_ONLINE
        if message.deviceid != self.deviceid:
            return ERROR_WRONG_DEVICE
        if not message.outlets or message.single != self.single:
            return ERROR_BAD_REQUEST
        if any(outlet >= self.outlets for outlet in message.outlets):
            return ERROR_BAD_REQUEST
        if self.refuse_with is not None:
            error, self.refuse_with = self.refuse_with, None
            return error
        return 0

    async def _push_all(self, ws: ServerConnection) -> None:
        if ws in self._online:
            await _send(ws, self._push(dict(enumerate(self.state))))

    async def _broadcast(
        self, changed: dict[int, bool], exclude: ServerConnection | None
    ) -> None:
        outlets = changed if self.partial_pushes else dict(enumerate(self.state))
        text = self._push(outlets)
        for ws in list(self._online):
            if ws is not exclude:
                await _send(ws, text)

    def _push(self, outlets: dict[int, bool]) -> str:
        return protocol.state_push(
            deviceid=self.deviceid,
            apikey=self.apikey,
            outlets=outlets,
            single=self.single,
        )


def _text_frame(text: str) -> bytes:
    """One unmasked, final text frame, as a server sends it (RFC 6455, section 5.2)."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes([0x81, size])
    elif size < 1 << 16:
        header = bytes([0x81, 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x81, 127]) + size.to_bytes(8, "big")
    return header + payload


async def _send(ws: ServerConnection, text: str) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.send(text)


class Simulator:
    """Simulated devices on an event loop in a background thread.

    Every method blocks until the loop has done the work, so a test can press a device
    and then wait for the bridge's reaction.
    """

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.devices: list[SimulatedDevice] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sonoff-simulator", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine on the simulator's loop and return its result."""
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(self.timeout)

    def add(self, outlets: int = 1, **options: Any) -> SimulatedDevice:
        """Create and start a device; ``options`` are `SimulatedDevice` fields."""
        device = SimulatedDevice(outlets=outlets, **options)
        self.call(device.start())
        self.devices.append(device)
        return device

    def press(
        self, device: SimulatedDevice, outlet: int = 0, on: bool | None = None
    ) -> None:
        self.call(device.press(outlet, on))

    def drop(self, device: SimulatedDevice, abrupt: bool = True) -> None:
        self.call(device.drop(abrupt))

    def stop(self, device: SimulatedDevice) -> None:
        self.call(device.stop())

    def start(self, device: SimulatedDevice) -> None:
        self.call(device.start())

    def restart(self, device: SimulatedDevice, downtime: float = 0.0) -> None:
        """Reboot the device: drop everything, stay away ``downtime``, listen again."""
        self.call(device.stop())
        if downtime:
            time.sleep(downtime)
        self.call(device.start())

    def hang(self, device: SimulatedDevice) -> None:
        self.call(device.hang())

    def send_raw(self, device: SimulatedDevice, text: str) -> None:
        self.call(device.send_raw(text))

    def trickle(
        self, device: SimulatedDevice, outlet: int, on: bool, gap: float
    ) -> Future[None]:
        """Start :meth:`SimulatedDevice.trickle`; the future is done once sent."""
        return asyncio.run_coroutine_threadsafe(
            device.trickle(outlet, on, gap), self._loop
        )

    def close(self) -> None:
        """Stop every device and the loop."""
        if not self._loop.is_running():
            return

        async def stop_all() -> None:
            await asyncio.gather(*(d.stop() for d in self.devices))

        self.call(stop_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.timeout)
        self._loop.close()


# The command line.


def _config_snippet(devices: Sequence[SimulatedDevice]) -> str:
    lines = ["[mqtt]", 'url = "mqtt://127.0.0.1:1883"', ""]
    for device in devices:
        lines += [
            "[[devices]]",
            f'address = "{device.address}"',
            f"outlets = {device.outlets}",
            f'deviceid = "{device.deviceid}"',
            "",
        ]
    return "\n".join(lines)


def _control(sim: Simulator, line: str) -> bool:
    """Run one interactive command; return False to quit."""
    words = line.split()
    if not words:
        return True
    verb, args = words[0], words[1:]
    if verb in ("quit", "exit"):
        return False
    if verb == "state":
        for index, device in enumerate(sim.devices):
            states = " ".join("on" if on else "off" for on in device.state)
            print(
                f"{index} {device.deviceid} {device.address} {states} "
                f"clients={device.clients}"
            )
        return True
    try:
        device = sim.devices[int(args[0])]
    except (IndexError, ValueError):
        print(f"usage: {verb} DEVICE-INDEX [OUTLET]", file=sys.stderr)
        return True
    if verb == "press":
        sim.press(device, int(args[1]) if len(args) > 1 else 0)
    elif verb == "restart":
        sim.restart(device, downtime=1.0)
    elif verb == "drop":
        sim.drop(device)
    else:
        print(
            f"unknown command {verb!r}: press, restart, drop, state, quit",
            file=sys.stderr,
        )
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run simulated devices until ``quit``, end of input, or a signal."""
    parser = argparse.ArgumentParser(
        prog="python -m bridge.simulator", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--devices", type=int, default=1, help="how many (default 1)")
    parser.add_argument(
        "--outlets",
        default="1",
        help="outlets per device, cycled: e.g. 1,2,4 (default 1)",
    )
    parser.add_argument(
        "--port", type=int, default=8081, help="first port; 0 picks free ones"
    )
    parser.add_argument(
        "--no-input",
        action="store_true",
        help="ignore standard input; run until killed",
    )
    parser.add_argument(
        "--write-config", metavar="FILE", help="write a matching bridge configuration"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if not args.verbose:
        logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        counts = [int(n) for n in args.outlets.split(",")]
    except ValueError:
        parser.error(f"--outlets must be numbers separated by commas: {args.outlets!r}")

    with Simulator() as sim:
        for index in range(args.devices):
            port = args.port + index if args.port else 0
            sim.add(outlets=counts[index % len(counts)], port=port)
        snippet = _config_snippet(sim.devices)
        if args.write_config:
            with open(args.write_config, "w") as file:
                file.write(snippet)
        print(snippet, flush=True)

        if args.no_input:
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
            return 0
        try:
            for line in sys.stdin:
                if not _control(sim, line):
                    break
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
