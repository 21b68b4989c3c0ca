"""`vigil run` as a process: retained online status, then SIGTERM stops it cleanly with an offline status."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Broker


def test_sigterm_stops_cleanly_and_says_offline(mosquitto: Broker, tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.toml"
    cfg.write_text(
        '[agent]\nid = "pi-t"\nsite = "home"\ndb = "state/vigil.db"\n'
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
        '[[wearers]]\nid = "w1"\n[[wearers.devices]]\nkind = "cgm"\naddress = "AA:BB:CC:DD:EE:FF"\n'
    )
    statuses: list[dict[str, Any]] = []
    online = threading.Event()
    offline = threading.Event()

    def on_message(c: paho.Client, u: Any, m: paho.MQTTMessage) -> None:
        status = json.loads(m.payload)
        statuses.append(status)
        (online if status["state"] == "online" else offline).set()

    sub = paho.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("vigil/home/agent/pi-t/status", qos=1)
    sub.loop_start()
    # No Bluetooth adapter here: the link keeps retrying, which must not stop the agent or its status.
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert online.wait(30), "no online status"
        first = statuses[0]
        assert first["agent"] == "pi-t"
        assert first["outbox_depth"] == 0
        assert "w1" in first["links"]
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.loop_stop()
    assert proc.returncode == 0, err
    assert stopped_in < 10
    assert offline.wait(5)
    assert statuses[-1] == {"state": "offline", "agent": "pi-t", "reason": "stopped"}
    db = tmp_path / "state" / "vigil.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
