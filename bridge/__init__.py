"""Sonoff LAN-mode <-> MQTT bridge, a standalone daemon with its device simulator.

Layout, from the inside out:

- :mod:`bridge.protocol`: the device's JSON messages and the MQTT payloads.
- :mod:`bridge.core`: the bridge's state machine (devices, commands, topics); it takes
  messages and the time in and hands back effects to perform, never touching a socket.
- :mod:`bridge.mqtt` and :mod:`bridge.runtime`: thin I/O layers on paho-mqtt and
  websocket-client that feed the core and carry out its effects.
- :mod:`bridge.config`: the TOML configuration with environment overrides.
- :mod:`bridge.simulator`: simulated devices speaking the LAN protocol, for tests and
  for trying the bridge without hardware.

Exceptions derive from :class:`bridge.errors.BridgeError`.
"""
