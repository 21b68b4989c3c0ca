"""Configuration: valid files load into frozen values; every bad value names its key, value and problem."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from agent.config import Thresholds, load_config, parse_config
from agent.errors import ConfigError

GOOD = """
[agent]
id = "pi-bedroom"
site = "home"
db = "data/vigil.db"

[mqtt]
host = "broker.local"
port = 8883
tls = false

[[wearers]]
id = "w-7f3a"
[wearers.thresholds]
glucose_low = 72
[[wearers.devices]]
kind = "cgm"
name = "CGM-SIM"
[[wearers.devices]]
kind = "hr_strap"
address = "AA:BB:CC:DD:EE:01"
"""


def minimal(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"wearers": [{"id": "w1", "devices": [{"kind": "cgm", "name": "x"}]}]}
    data.update(over)
    return data


def test_good_file_loads_with_defaults_and_relative_db(tmp_path: Path) -> None:
    p = tmp_path / "vigil.toml"
    p.write_text(GOOD)
    cfg = load_config(p)
    assert cfg.agent.id == "pi-bedroom"
    assert cfg.agent.db == tmp_path / "data" / "vigil.db"
    assert cfg.mqtt.port == 8883
    assert cfg.mqtt.root == "vigil"
    w = cfg.wearer("w-7f3a")
    assert w.thresholds.glucose_low == 72
    assert w.thresholds.glucose_urgent_low == Thresholds().glucose_urgent_low == 54
    assert [d.kind for d in w.devices] == ["cgm", "hr_strap"]
    assert w.devices[1].label == "AA:BB:CC:DD:EE:01"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.agent.id = "x"  # type: ignore[misc]


def test_consensus_defaults() -> None:
    th = Thresholds()
    assert (th.glucose_urgent_low, th.glucose_low, th.glucose_high, th.glucose_urgent_high) == (
        54,
        70,
        180,
        250,
    )


@pytest.mark.parametrize(
    ("data", "key", "value"),
    [
        ({}, "wearers", None),
        (minimal(mqtt={"port": 70000}), "mqtt.port", 70000),
        (minimal(mqtt={"port": "1883"}), "mqtt.port", "1883"),
        (minimal(mqtt={"root": "vigil/#"}), "mqtt.root", "vigil/#"),
        (minimal(mqtt={"hots": "x"}), "mqtt.hots", "x"),
        (minimal(agent={"site": "my site"}), "agent.site", "my site"),
        (minimal(mqtt={"password": "p"}), "mqtt.username", None),
        (
            {"wearers": [{"id": "w1", "devices": [{"kind": "glucometer"}]}]},
            "wearers[0].devices[0].kind",
            "glucometer",
        ),
        ({"wearers": [{"id": "w1", "devices": []}]}, "wearers[0].devices", []),
        ({"wearers": [{"devices": [{"kind": "cgm"}]}]}, "wearers[0].id", None),
        ({"wearers": [{"id": "w1", "devices": [{"kind": "cgm"}]}]}, "wearers[0].devices[0].address", None),
        (
            {"wearers": [{"id": "w1", "devices": [{"kind": "cgm", "name": "x"}], "thresholds": {"glucose_low": 50}}]},
            "wearers[0].thresholds.glucose_urgent_low",
            54.0,
        ),
        (
            {"wearers": [{"id": "w1", "devices": [{"kind": "cgm", "name": "x"}], "thresholds": {"hr_high": "fast"}}]},
            "wearers[0].thresholds.hr_high",
            "fast",
        ),
        (
            {
                "wearers": [
                    {"id": "w", "devices": [{"kind": "cgm", "name": "x"}]},
                    {"id": "w", "devices": [{"kind": "cgm", "name": "y"}]},
                ]
            },
            "wearers[1].id",
            "w",
        ),
    ],
)
def test_bad_values_name_key_and_value(data: dict[str, Any], key: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.key == key
    assert info.value.value == value
    assert info.value.problem
    assert key in str(info.value)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.problem == "file not found"
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent\nid=1")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.key == "--config"
    assert "TOML" in info.value.problem


def test_password_file_is_read_and_not_echoed(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    cfg = parse_config(minimal(mqtt={"username": "agent", "password_file": "pw"}), base_dir=tmp_path)
    assert cfg.mqtt.password == "s3cret"
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(mqtt={"username": "agent", "password": 5}))
    assert "5" not in str(info.value)


def test_tls_files_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(mqtt={"tls": True, "ca_file": "missing.pem"}), base_dir=tmp_path)
    assert info.value.key == "mqtt.ca_file"
