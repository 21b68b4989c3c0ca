"""sim.broker: the local mosquitto the tests and `vigil bench` start."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sim.broker import BrokerError, start_mosquitto


@pytest.mark.mqtt
def test_starts_on_a_free_loopback_port_stops_and_comes_back_on_it(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path)
    try:
        with socket.create_connection((broker.host, broker.port), timeout=1):
            pass
        broker.stop()
        with pytest.raises(ConnectionRefusedError), socket.create_connection((broker.host, broker.port), timeout=1):
            pass
        broker.start()
        with socket.create_connection((broker.host, broker.port), timeout=1):
            pass
    finally:
        broker.stop()


@pytest.mark.mqtt
def test_a_configuration_mosquitto_refuses_is_an_error_that_says_why(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="exited"):
        start_mosquitto(tmp_path, "no_such_option true\n")
