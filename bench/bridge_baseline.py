"""A minimal single-device Sonoff LAN <-> MQTT bridge: the benchmark's baseline.

It does what a first script on websocket-client and paho-mqtt 2 would do and nothing
more: one device, one topic, no reconnects, no queueing, no stale-value rules. It sets
TCP_NODELAY on every socket, like the bridge, so the comparison is of the code paths.

    python bench/bridge_baseline.py --device 127.0.0.1:8081 --broker 127.0.0.1:1883 \
        --topic HomeKit/sonoff-x/Lightbulb/On
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as paho
import websocket
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions


def no_delay(client: Any, userdata: Any, sock: Any) -> None:
    """Set TCP_NODELAY on the client's socket as soon as it opens."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic", required=True)
    args = parser.parse_args()
    host, port = args.broker.rsplit(":", 1)
    apikey = str(uuid.uuid4())
    deviceid: list[str] = []

    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_socket_open = no_delay

    def on_ws_message(ws: websocket.WebSocketApp, text: str) -> None:
        message = json.loads(text)
        if "deviceid" in message and not deviceid:
            deviceid.append(message["deviceid"])
        if message.get("action") == "update" and "switch" in message.get("params", {}):
            on = message["params"]["switch"] == "on"
            client.publish(args.topic, b"1" if on else b"0", qos=1, retain=True)

    def on_ws_open(ws: websocket.WebSocketApp) -> None:
        ws.send(
            json.dumps(
                {
                    "action": "userOnline",
                    "ts": int(time.time()),
                    "version": 6,
                    "apikey": apikey,
                    "sequence": str(int(time.time() * 1000)),
                    "userAgent": "app",
                }
            )
        )

    app = websocket.WebSocketApp(
        f"ws://{args.device}/",
        subprotocols=["chat"],
        on_open=on_ws_open,
        on_message=on_ws_message,
    )

    def on_mqtt_message(c: paho.Client, u: object, message: paho.MQTTMessage) -> None:
        if message.retain or not deviceid:
            return
        on = message.payload.strip().lower() in (b"1", b"true", b"on")
        app.send(
            json.dumps(
                {
                    "action": "update",
                    "deviceid": deviceid[0],
                    "apikey": apikey,
                    "selfApikey": apikey,
                    "params": {"switch": "on" if on else "off"},
                    "sequence": str(int(time.time() * 1000)),
                    "userAgent": "app",
                }
            )
        )

    client.on_message = on_mqtt_message
    client.on_connect = lambda c, u, f, r, p: c.subscribe(
        args.topic, options=SubscribeOptions(qos=1, noLocal=True)
    )
    client.connect(host, int(port))
    client.loop_start()
    signal.signal(signal.SIGTERM, lambda *_: app.close())
    thread = threading.Thread(target=app.run_forever, kwargs={"ping_interval": 15})
    thread.start()
    thread.join()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
