"""A local mosquitto on a free loopback port, started and stopped by its user: the tests' brokers and the one
``vigil bench`` measures against. Debian and Ubuntu: ``apt-get install mosquitto``."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


class BrokerError(RuntimeError):
    """mosquitto is not installed, exited, or did not listen; the message says which."""


def mosquitto_binary() -> str | None:
    """The mosquitto executable: on PATH, or where Debian puts it (``/usr/sbin`` is not on every user's PATH)."""
    found = shutil.which("mosquitto")
    if found is None and Path("/usr/sbin/mosquitto").exists():
        found = "/usr/sbin/mosquitto"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def run_as() -> str:
    """The config line that keeps mosquitto as the current user: started by root it drops to the 'mosquitto'
    user, which cannot read the caller's files (certificates, password files, its own log folder)."""
    return f"user {pwd.getpwuid(os.getuid()).pw_name}\n"


@dataclass
class Mosquitto:
    """A running broker; ``stop()`` and ``start()`` take it down and bring it back on the same port."""

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


def start_mosquitto(folder: Path, extra: str = "", *, log_all: bool = True, port: int | None = None) -> Mosquitto:
    """A mosquitto on a free loopback port, anonymous, without persistence, logging to ``folder`` (every event
    with ``log_all``, else mosquitto's default); ``extra`` is appended to its configuration. Raises
    :class:`BrokerError` when it cannot be started. ``port`` picks the port instead (a test that lets a client
    fail to connect first)."""
    port = free_port() if port is None else port
    log = folder / "mosquitto.log"
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"{run_as()}listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
        f"log_dest file {log}\n{'log_type all' if log_all else ''}\n{extra}"
    )
    proc = _spawn(conf)
    _wait_listening(HOST, port, proc, log)
    return Mosquitto(HOST, port, proc, conf, log)


def _spawn(conf: Path) -> subprocess.Popen[bytes]:
    binary = mosquitto_binary()
    if binary is None:
        raise BrokerError("the mosquitto binary is missing: install the Debian package 'mosquitto'")
    return subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"mosquitto exited with {proc.returncode}: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise BrokerError(f"mosquitto did not listen on {host}:{port}")
