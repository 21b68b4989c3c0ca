"""TLS, passwords and an ACL on a real mosquitto: the agent connects with the right credentials, refuses a
broker whose certificate does not verify, and shows an ACL refusal as an error in its status."""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from agent.config import MqttConfig
from agent.mqtt import Publisher, status_payload
from agent.store import PRIORITY_ALERT, Store
from tests.conftest import Broker, free_port, mosquitto_binary, run_as

pytestmark = [pytest.mark.reliability, pytest.mark.mqtt]  # point 4 of the reliability suite (issue 4)

PASSWORD = "correct horse battery staple"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)  # fmt: skip


def make_cert(d: Path, ca: str, name: str, cn: str) -> None:
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", cwd=d)  # fmt: skip
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-extfile", ext.name, "-out", f"{name}.pem", cwd=d)  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "ca", "server", "localhost")
    make_cert(d, "rogue-ca", "rogue-server", "localhost")
    return d


def start_tls_broker(tmp: Path, pki: Path, server: str = "server") -> Broker:
    port = free_port()
    passwd = tmp / "passwd"
    passwd.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "agent", PASSWORD], check=True, capture_output=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "watcher", "w"], check=True, capture_output=True)
    acl = tmp / "acl"
    # The agent may publish its status and wearer w1's topics only; w2's alerts are refused.
    acl.write_text(
        "user agent\ntopic readwrite vigil/home/agent/#\ntopic readwrite vigil/home/w1/#\n"
        "user watcher\ntopic read vigil/#\n"
    )
    log = tmp / "mosquitto.log"
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"{run_as()}listener {port} 127.0.0.1\ncafile {pki / 'ca.pem'}\ncertfile {pki / f'{server}.pem'}\n"
        f"keyfile {pki / f'{server}.key'}\nallow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n"
        f"persistence false\nlog_dest file {log}\n"
    )
    for f in (passwd, acl):
        f.chmod(0o600)
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = Broker("127.0.0.1", port, proc, conf, log)
    import socket
    import time

    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return broker
        except OSError:
            time.sleep(0.05)
    broker.stop()
    pytest.fail(f"TLS mosquitto did not start: {log.read_text() if log.exists() else ''}")


def agent_cfg(broker: Broker, pki: Path, **over: object) -> MqttConfig:
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, tls=True, ca_file=pki / "ca.pem", username="agent",
                     password=PASSWORD)  # fmt: skip
    return replace(cfg, **over)  # type: ignore[arg-type]


async def run_publisher(cfg: MqttConfig, store: Store, seconds: float) -> Publisher:
    pub = Publisher(cfg, store, client_id="agent-tls", status_topic="vigil/home/agent/t/status",
                    offline_payload=status_payload("offline"), retry_delay=lambda attempt: 0.2)  # fmt: skip
    task = asyncio.create_task(pub.run())
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if pub.connected and store.outbox_depth() <= pub.refused and not pub.pending():
            break
        await asyncio.sleep(0.05)
    await pub.close(status_payload("offline"))
    task.cancel()
    return pub


def queue(store: Store, wearer: str, n: int) -> None:
    store.write_batch(
        outbox=[
            (
                PRIORITY_ALERT,
                f"vigil/home/{wearer}/alert/glucose_low",
                json.dumps({"id": f"{wearer}-{i}"}).encode(),
                1,
                False,
            )
            for i in range(n)
        ]
    )


def test_right_credentials_deliver_over_tls(pki: Path, tmp_path: Path) -> None:
    broker = start_tls_broker(tmp_path, pki)
    try:
        store = Store(tmp_path / "v.db")
        queue(store, "w1", 3)
        pub = asyncio.run(run_publisher(agent_cfg(broker, pki), store, 15))
        assert pub.connects == 1
        assert pub.acked == 3
        assert store.outbox_depth() == 0
        assert pub.last_error is None
    finally:
        broker.stop()


def test_broker_certificate_that_does_not_verify_is_refused(pki: Path, tmp_path: Path) -> None:
    broker = start_tls_broker(tmp_path, pki, server="rogue-server")
    try:
        store = Store(tmp_path / "v.db")
        queue(store, "w1", 1)
        pub = asyncio.run(run_publisher(agent_cfg(broker, pki), store, 2))
        assert pub.connects == 0
        assert "certificate verify failed" in (pub.last_error or "")
        assert store.outbox_depth() == 1  # kept for a broker it can trust
    finally:
        broker.stop()


def test_wrong_password_is_an_error_not_a_hang(pki: Path, tmp_path: Path) -> None:
    broker = start_tls_broker(tmp_path, pki)
    try:
        store = Store(tmp_path / "v.db")
        pub = asyncio.run(run_publisher(agent_cfg(broker, pki, password="wrong"), store, 2))
        assert pub.connects == 0
        assert "refused" in (pub.last_error or "")
    finally:
        broker.stop()


def test_acl_refusal_shows_as_an_error(pki: Path, tmp_path: Path) -> None:
    broker = start_tls_broker(tmp_path, pki)
    try:
        store = Store(tmp_path / "v.db")
        queue(store, "w1", 2)
        queue(store, "w2", 1)  # not allowed by the ACL
        pub = asyncio.run(run_publisher(agent_cfg(broker, pki), store, 15))
        assert pub.acked == 2
        assert pub.refused == 1
        assert "vigil/home/w2/alert/glucose_low" in (pub.last_error or "")
        assert store.outbox_depth() == 1  # the refused alert is kept, not silently dropped
    finally:
        broker.stop()


def test_acl_refusal_appears_in_the_agents_status(pki: Path, tmp_path: Path) -> None:
    """Through the whole daemon: an alert for a wearer the ACL does not allow shows up in the retained status."""
    import threading

    from agent.clock import VirtualClock
    from agent.config import parse_config
    from agent.core import Agent
    from agent.daemon import run_daemon
    from agent.messages import RawNotification
    from agent.mqtt import make_client
    from sim.bleak_backend import sim_backends
    from sim.peripheral import SimWorld

    broker = start_tls_broker(tmp_path, pki)
    statuses: list[dict[str, object]] = []
    got = threading.Event()
    try:
        cfg = parse_config(
            {
                "agent": {"id": "t", "db": str(tmp_path / "v.db")},
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": True, "ca_file": str(pki / "ca.pem"),
                         "username": "agent", "password": PASSWORD},
                "wearers": [{"id": "w2", "devices": [{"kind": "cgm", "address": "AA:00:00:00:00:09"}]}],
            }
        )  # fmt: skip
        watcher = make_client(replace(cfg.mqtt, username="watcher", password="w"), "status-watcher")

        def on_message(c: object, u: object, m: object) -> None:
            statuses.append(json.loads(m.payload))  # type: ignore[attr-defined]
            if any("/alert/" in t for t in statuses[-1].get("refused_topics", [])):  # type: ignore[attr-defined]
                got.set()

        watcher.on_message = on_message
        watcher.connect("127.0.0.1", broker.port)
        watcher.subscribe("vigil/home/agent/t/status", qos=1)
        watcher.loop_start()
        backends = sim_backends(SimWorld())
        clock = VirtualClock(1_700_000_000.0)

        async def scenario(agent: Agent) -> None:
            low = bytes([0x06, 0x00, 0x32, 0x00, 0x05, 0x00])  # 50 mg/dL
            agent.accept(RawNotification("w2", "AA:00:00:00:00:09", "2AA7", low, clock.now()))
            await asyncio.to_thread(got.wait, 15)

        asyncio.run(
            run_daemon(cfg, clock=clock, scanner_backend=backends.scanner, client_backend=backends.client,
                       until=scenario, flush_timeout=1)
        )  # fmt: skip
        watcher.loop_stop()
        assert got.is_set(), statuses
        last = [s for s in statuses if s["state"] == "online"][-1]
        assert "vigil/home/w2/alert/glucose_urgent_low" in last["refused_topics"]  # type: ignore[operator]
        assert "Not authorized" in str(last["broker_error"])
    finally:
        broker.stop()
