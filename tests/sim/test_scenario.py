"""sim.scenario: the scenario format, its validation, and the bundled scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sim.scenario import ScenarioError, bundled, load, parse

KNOWN = Path(__file__).parents[1] / "fixtures" / "scenarios" / "known.toml"


def minimal(**wearer: Any) -> dict[str, Any]:
    w: dict[str, Any] = {"id": "w-1", "cgm": {"generator": "anchors", "points": [[0, 100], [1, 110]]}}
    w.update(wearer)
    return {"scenario": {"name": "t", "hours": 1}, "wearer": [w]}


def test_every_bundled_scenario_loads_and_demo_needs_no_shared_data() -> None:
    names = bundled()
    assert {"demo", "day-24h", "faults", "night-hypo"} <= set(names)
    for name in names:
        s = load(name)
        assert s.name == name
        assert s.wearers
    demo = load("demo")
    assert demo.data == "bundled"
    assert not demo.needs_data
    assert not demo.needs_simglucose
    assert load("night-hypo").needs_simglucose
    assert load("af-records").needs_data


def test_a_scenario_file_loads_by_path_and_cuts() -> None:
    s = load(KNOWN)
    assert (s.name, s.hours, len(s.wearers)) == ("known", 4.0, 1)
    assert s.end - s.start == 4 * 3600
    assert {f.kind for f in s.wearers[0].faults} == {
        "corrupt", "contact_loss", "silent", "cgm_artifact", "disconnect", "battery",
    }  # fmt: skip
    assert s.cut(1.5).hours == 1.5
    with pytest.raises(ScenarioError):
        s.cut(5)


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"scenario": {"name": "t"}, "wearer": [{"id": "w"}]}, "scenario.hours"),
        ({"scenario": {"name": "t", "hours": 1, "colour": "red"}, "wearer": []}, "scenario.colour"),
        ({"scenario": {"name": "t", "hours": 1}}, "wearer"),
        ({"scenario": {"name": "t", "hours": 1, "start": "2026-01-01T00:00:00"}, "wearer": []}, "scenario.start"),
        (minimal(cgm={"generator": "anchors", "points": [[1, 100], [0, 110]]}), "wearer[0].cgm.points"),
        (minimal(cgm={"generator": "anchors", "source": "azt1d"}), "wearer[0].cgm.source"),
        (minimal(faults=[{"kind": "disconnect", "device": "strap", "minutes": 5}]), "wearer[0].faults[0].device"),
        (minimal(faults=[{"kind": "melt", "device": "cgm"}]), "wearer[0].faults[0].kind"),
        (minimal(faults=[{"kind": "silent", "device": "cgm"}]), "wearer[0].faults[0].minutes"),
        (minimal(thresholds={"glucose_lo": 60}), "wearer[0].thresholds.glucose_lo"),
        (minimal(strap={"segments": [{"generator": "sinus", "hrv": "dancing"}]}), "wearer[0].strap.segments[0].hrv"),
        (
            minimal(strap={"segments": [{"generator": "sinus"}, {"generator": "sinus"}]}),
            "wearer[0].strap.segments",
        ),
    ],
)
def test_errors_name_the_key(doc: dict[str, Any], key: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse(doc, source="x.toml")
    assert info.value.key == key
    assert info.value.source == "x.toml"


def test_unknown_scenario_names_the_bundled_ones() -> None:
    with pytest.raises(ScenarioError) as info:
        load("no-such-scenario")
    assert "demo" in info.value.problem


def test_thresholds_reach_the_wearer() -> None:
    s = parse(minimal(thresholds={"glucose_low": 65, "hr_high": 130}))
    th = s.wearers[0].thresholds
    assert (th.glucose_low, th.hr_high, th.glucose_urgent_low) == (65.0, 130.0, 54.0)
