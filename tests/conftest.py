"""Shared fixtures: a real mosquitto broker on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

# The suite shares two cores with brokers and subprocesses: Hypothesis's per-example deadline would turn a slow
# moment into a failure that says nothing about the code. Example counts stay at Hypothesis's defaults.
settings.register_profile("vigil", deadline=None)
settings.load_profile("vigil")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        pytest.fail("the mosquitto binary is missing: install the Debian package 'mosquitto' (scripts/test does)")
    return found


@dataclass
class Broker:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    conf: Path
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def start(self) -> None:
        self.process = _spawn(self.conf)
        _wait_listening(self.host, self.port, self.process, self.log)


def _spawn(conf: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mosquitto exited with {proc.returncode}: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"mosquitto did not listen on {host}:{port}")


def run_as() -> str:
    """mosquitto started by root drops to the 'mosquitto' user, which cannot read the test's files: keep ours."""
    return f"user {pwd.getpwuid(os.getuid()).pw_name}\n"


def start_mosquitto(tmp: Path, extra: str = "") -> Broker:
    port = free_port()
    log = tmp / "mosquitto.log"
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"{run_as()}listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"log_dest file {log}\nlog_type all\n{extra}"
    )
    proc = _spawn(conf)
    _wait_listening("127.0.0.1", port, proc, log)
    return Broker("127.0.0.1", port, proc, conf, log)


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
