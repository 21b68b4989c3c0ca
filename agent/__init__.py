"""Vigil's agent: the daemon that runs on the device.

It takes BLE notifications from heart-rate straps and CGMs, stores every reading durably in SQLite, runs rules
and int8 models over per-wearer windows, and publishes alerts over MQTT through a durable outbox.

Nothing in this package may import TensorFlow: a device has only a TFLite interpreter.
"""

__version__ = "0.1.0"
