"""A model whose bundle fails its checks is refused: the agent says so in an alert and its status, and runs on
its rules; once the bundle is sound again, a restart clears the alert."""

from __future__ import annotations

import shutil
from pathlib import Path

from agent.clock import VirtualClock
from agent.config import parse_config
from agent.core import Agent
from agent.store import Store

FIXTURE = Path(__file__).parents[1] / "fixtures" / "models" / "tiny"
T0 = 1_700_000_000.0


def agent(tmp_path: Path, models: Path) -> Agent:
    cfg = parse_config(
        {
            "agent": {"models_dir": str(models)},
            "wearers": [
                {"id": "w1", "devices": [{"kind": "cgm", "name": "a"}]},
                {"id": "w2", "devices": [{"kind": "cgm", "name": "b"}]},
            ],
        }
    )
    return Agent(cfg, Store(tmp_path / "v.db"), clock=VirtualClock(T0))


def test_tampered_model_is_refused_and_said_then_cleared(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(FIXTURE, models)
    good = (models / "tiny.tflite").read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    (models / "tiny.tflite").write_bytes(bytes(bad))

    a = agent(tmp_path, models)
    assert a.models == []
    assert [p.name for p in a.model_problems] == ["tiny"]
    a.tick(T0 + 1)
    raised = [(x.wearer, x.kind, x.state, x.payload["device"]) for x in a.store.alerts()]
    assert raised == [
        ("w1", "agent_model_unavailable", "raised", "tiny"),
        ("w2", "agent_model_unavailable", "raised", "tiny"),
    ]
    assert "sha256" in a.store.alerts()[0].payload["reason"]
    a.store.close()

    (models / "tiny.tflite").write_bytes(good)
    b = agent(tmp_path, models)
    assert [m.name for m in b.models] == ["tiny"]
    b.tick(T0 + 2)
    states = [(x.wearer, x.state) for x in b.store.alerts() if x.kind == "agent_model_unavailable"]
    assert states[-2:] == [("w1", "cleared"), ("w2", "cleared")]
    assert b.store.active_alerts() == {}
