"""Shared fixtures: a real mosquitto broker on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from sim import broker as sim_broker
from sim.broker import Mosquitto as Broker
from sim.broker import free_port, run_as

__all__ = [
    "DEVICE_RUNTIMES",
    "Broker",
    "device_runtime_params",
    "free_port",
    "mosquitto_binary",
    "run_as",
    "runtime_installed",
    "start_mosquitto",
]

# The suite shares two cores with brokers and subprocesses: Hypothesis's per-example deadline would turn a slow
# moment into a failure that says nothing about the code. Example counts stay at Hypothesis's defaults.
settings.register_profile("vigil", deadline=None)
settings.load_profile("vigil")


DEVICE_RUNTIMES = ("ai-edge-litert", "tflite-runtime")
_RUNTIME_MODULES = {"ai-edge-litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime"}


def runtime_installed(name: str) -> bool:
    return importlib.util.find_spec(_RUNTIME_MODULES[name]) is not None


def device_runtime_params() -> list[object]:
    """Each device runtime as a ``pytest.param``. ai-edge-litert is a hard dependency: never skipped.
    tflite-runtime is an extra; where it is not installed the skip says so in the report (-ra) rather than
    vanishing from the parametrization."""
    return [
        pytest.param(
            name,
            marks=pytest.mark.skipif(
                name != "ai-edge-litert" and not runtime_installed(name),
                reason=f"{name} is not installed here",
            ),
        )
        for name in DEVICE_RUNTIMES
    ]


def start_mosquitto(tmp: Path, extra: str = "", *, port: int | None = None) -> Broker:
    """A mosquitto for a test (``sim.broker``); a broker that cannot start fails the test, saying why."""
    try:
        return sim_broker.start_mosquitto(tmp, extra, port=port)
    except sim_broker.BrokerError as exc:
        pytest.fail(f"{exc} (scripts/test installs it)")


def mosquitto_binary() -> str:
    found = sim_broker.mosquitto_binary()
    if found is None:
        pytest.fail("the mosquitto binary is missing: install the Debian package 'mosquitto' (scripts/test does)")
    return found


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A fresh mosquitto broker for one test."""
    broker = start_mosquitto(tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that starts a broker through the ``mosquitto`` fixture carries the ``mqtt`` marker, so
    ``pytest -m "not mqtt"`` runs where mosquitto is not installed."""
    for item in items:
        if "mosquitto" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.mqtt)
