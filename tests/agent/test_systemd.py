"""sd_notify over a real AF_UNIX datagram socket standing in for systemd, the watchdog, and the unit file."""

from __future__ import annotations

import asyncio
import configparser
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from agent import systemd
from agent.core import Agent
from agent.daemon import health_check
from tests.conftest import Broker


@dataclass
class FakeSystemd:
    """A bound datagram socket, like the one systemd passes in $NOTIFY_SOCKET, read by a thread."""

    sock: socket.socket
    address: str  # as it goes into NOTIFY_SOCKET
    received: list[tuple[float, str]] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.sock.settimeout(0.1)

        def read() -> None:
            while True:
                try:
                    data = self.sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                self.received.append((time.monotonic(), data.decode()))

        self._thread = threading.Thread(target=read, daemon=True)
        self._thread.start()

    def messages(self) -> list[str]:
        return [m for _, m in self.received]

    def wait_for(self, message: str, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in list(self.received):
                if message in m.splitlines():
                    return t
            time.sleep(0.02)
        raise AssertionError(f"{message!r} not received; got {self.messages()}")

    def close(self) -> None:
        self.sock.close()
        if self._thread is not None:
            self._thread.join(timeout=2)


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSystemd]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    fake = FakeSystemd(sock, str(path))
    fake.start()
    monkeypatch.setenv("NOTIFY_SOCKET", fake.address)
    try:
        yield fake
    finally:
        fake.close()


def test_notify_sends_one_datagram_per_call(notify_socket: FakeSystemd) -> None:
    assert systemd.under_systemd()
    assert systemd.ready()
    assert systemd.status("broker connected,\n2/2 links connected")
    assert systemd.watchdog_ping()
    assert systemd.stopping()
    notify_socket.wait_for("STOPPING=1", timeout=5)
    assert notify_socket.messages() == [
        "READY=1",
        "STATUS=broker connected, 2/2 links connected",  # one line: a newline would start a new assignment
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_notify_to_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"vigil-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    fake = FakeSystemd(sock, "@" + name)
    fake.start()
    monkeypatch.setenv("NOTIFY_SOCKET", fake.address)
    try:
        assert systemd.ready()
        fake.wait_for("READY=1", timeout=5)
    finally:
        fake.close()


def test_no_op_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not systemd.under_systemd()
    assert systemd.notify("READY=1") is False
    assert systemd.watchdog_ping() is False


def test_unreachable_socket_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert systemd.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert systemd.ready() is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", "self", 30.0),
        ("1000000", None, 1.0),  # WATCHDOG_PID is optional
        ("30000000", "1", None),  # meant for another process
        ("30000000", "x", None),
        ("0", "self", None),
        ("", "self", None),
        ("-5", "self", None),
        ("soon", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    usec: str | None, pid: str | None, expected: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    assert systemd.watchdog_interval() == expected


def test_watchdog_pings_only_while_healthy() -> None:
    pings: list[float] = []
    healthy = True

    def check() -> str | None:
        return None if healthy else "core stuck"

    def ping() -> bool:
        pings.append(time.monotonic())
        return True

    async def scenario() -> tuple[int, int, int]:
        nonlocal healthy
        task = asyncio.create_task(systemd.watchdog(0.1, check, ping=ping))  # a ping every 0.05 s
        await asyncio.sleep(0.3)
        before = len(pings)
        healthy = False
        await asyncio.sleep(0.3)
        during = len(pings) - before
        healthy = True
        await asyncio.sleep(0.3)
        after = len(pings) - before - during
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return before, during, after

    before, during, after = asyncio.run(scenario())
    assert before >= 3
    assert during <= 1  # at most the one already due when the check turned
    assert after >= 3


def test_blocked_event_loop_sends_no_pings(notify_socket: FakeSystemd) -> None:
    """The real thing: pings through the socket stop while the loop is blocked, and resume after it."""

    async def scenario() -> tuple[float, float]:
        task = asyncio.create_task(systemd.watchdog(0.2, lambda: None))
        await asyncio.sleep(0.5)
        blocked_from = time.monotonic()
        time.sleep(1.0)  # a synchronous call hogging the loop (a hung SQLite write, say)
        blocked_to = time.monotonic()
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return blocked_from, blocked_to

    blocked_from, blocked_to = asyncio.run(scenario())
    time.sleep(0.2)
    pings = [t for t, m in notify_socket.received if m == "WATCHDOG=1"]
    assert any(t < blocked_from for t in pings)
    assert any(t > blocked_to for t in pings)
    assert not any(blocked_from + 0.05 < t < blocked_to for t in pings)


def test_health_check_sees_stopped_tasks_and_a_stalled_intake() -> None:
    now = [0.0]
    queue: asyncio.Queue[int] = asyncio.Queue()
    stats = SimpleNamespace(accepted=0)
    agent = cast(Agent, SimpleNamespace(queue=queue, stats=stats))

    def accept(n: int) -> None:
        for i in range(n):
            queue.put_nowait(i)
        stats.accepted += n

    async def scenario() -> list[str | None]:
        core = asyncio.create_task(asyncio.sleep(3600), name="core")
        check = health_check(agent, [core], stall_s=20.0, clock=lambda: now[0])
        seen = [check()]  # idle, empty intake: healthy
        accept(5)
        now[0] = 10.0
        seen.append(check())  # waiting, but not for long
        queue.get_nowait()  # the core takes one: progress
        now[0] = 25.0
        seen.append(check())
        now[0] = 46.0
        seen.append(check())  # nothing taken for 21 s
        while not queue.empty():
            queue.get_nowait()
        seen.append(check())
        core.cancel()
        with pytest.raises(asyncio.CancelledError):
            await core
        seen.append(check())
        return seen

    seen = asyncio.run(scenario())
    assert seen[:3] == [None, None, None]
    assert seen[3] == "the core has taken nothing from the intake for 21 s (4 waiting)"
    assert seen[4] is None
    assert seen[5] == "task core has stopped"


# -- the daemon under a fake systemd -----------------------------------------------------------------------


def test_vigil_run_under_systemd(mosquitto: Broker, notify_socket: FakeSystemd, tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.toml"
    password = "s3cret-Pa55word"
    cfg.write_text(
        '[agent]\nid = "pi-sd"\nsite = "home"\ndb = "vigil.db"\nlog_level = "debug"\n'
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\nusername = "vigil"\npassword = "{password}"\n'
        '[[wearers]]\nid = "w1"\n[[wearers.devices]]\nkind = "hr_strap"\naddress = "AA:BB:CC:DD:EE:01"\n'
        '[[wearers.devices]]\nkind = "cgm"\naddress = "AA:BB:CC:DD:EE:02"\n'
    )
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "1000000"}
    env.pop("WATCHDOG_PID", None)
    env.pop("JOURNAL_STREAM", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg), "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        ready_at = notify_socket.wait_for("READY=1")
        notify_socket.wait_for("STATUS=broker connected, 0/2 links connected, outbox 0")
        time.sleep(2.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    stopping_at = notify_socket.wait_for("STOPPING=1", timeout=5)
    messages = notify_socket.messages()
    assert messages[0] == "READY=1"
    pings = [t for t, m in notify_socket.received if m == "WATCHDOG=1"]
    # WatchdogSec=1 s: a ping every 0.5 s from READY until STOPPING, none after it.
    assert len(pings) >= 4, messages
    assert all(ready_at <= t <= stopping_at for t in pings)
    assert max(b - a for a, b in zip([ready_at, *pings], [*pings, stopping_at], strict=True)) < 1.0
    assert "STATUS=stopping: writing the intake, flushing the outbox" in messages
    # JSON logs, one object per line (what the TFLite runtime's C++ code writes while a model loads, too: it
    # arrives as a log record), and no password even at debug level.
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert any(rec["logger"] == "vigil.mqtt" and "connected" in rec["message"] for rec in lines)
    assert all({"time", "level", "logger", "message"} <= rec.keys() for rec in lines)
    assert password not in err


# -- the unit file -------------------------------------------------------------------------------------------


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(systemd.unit_file_text())
    return parser


def test_unit_file_has_what_the_agent_needs() -> None:
    unit = _unit()
    svc = unit["Service"]
    assert svc["Type"] == "notify"
    assert svc["NotifyAccess"] == "main"
    assert svc["WatchdogSec"] == "30"
    assert svc["Restart"] == "always"
    assert svc["RestartPreventExitStatus"] == "2"  # a configuration error (exit 2) needs a person
    assert svc["ExecStart"] == "/opt/vigil/bin/vigil run --config /etc/vigil/vigil.toml"
    assert svc["User"] == "vigil"
    assert svc["SupplementaryGroups"] == "bluetooth"
    assert svc["StateDirectory"] == "vigil"
    assert svc["ConfigurationDirectory"] == "vigil"
    assert svc["UMask"] == "0077"
    assert set(svc["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_BLUETOOTH"}
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert svc[key] == "yes", key
    assert svc["ProtectSystem"] == "strict"
    # The stop must outlast the daemon's outbox flush (run_daemon's flush_timeout, 10 s) and the offline status.
    assert int(svc["TimeoutStopSec"]) >= 20
    # Kept off on purpose: they would cut the agent off from BlueZ (D-Bus) or the broker.
    for key in ("PrivateNetwork", "IPAddressDeny", "PrivateUsers"):
        assert key not in svc, key
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_unit_file_is_package_data() -> None:
    text = (Path(__file__).parents[2] / "agent" / "systemd" / "vigil.service").read_text()
    assert systemd.unit_file_text() == text
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"systemd/*.service"' in pyproject
    out = subprocess.run([sys.executable, "-m", "agent.systemd"], capture_output=True, text=True, check=True)
    assert out.stdout == text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify also checks that ExecStart's program exists; /opt/vigil is not installed here, so /bin/true
    # stands in for it. Everything else is the shipped file.
    text = systemd.unit_file_text().replace("ExecStart=/opt/vigil/bin/vigil", "ExecStart=/bin/true")
    unit = tmp_path / "vigil.service"
    unit.write_text(text)
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "vigil.service" not in res.stderr, res.stderr
