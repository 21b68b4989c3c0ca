"""The UVA/Padova generator (simglucose, an optional dependency: the `sim` and `build` extras). Marked `builder`
so it runs in the builder environment, where simglucose is installed."""

from __future__ import annotations

import numpy as np
import pytest

from sim.build import build
from sim.generators import Meal, UnknownPatientError, uva_padova_glucose
from sim.scenario import load

pytestmark = pytest.mark.builder


def test_an_over_bolused_dinner_gives_a_nocturnal_low() -> None:
    pytest.importorskip("simglucose")
    built = build(load("night-hypo").cut(4))
    g = built.wearers[0].glucose
    assert g is not None
    assert len(g) == 49
    assert g.true.min() < 54  # the blood glucose behind the sensor
    assert np.abs(g.sensor - g.true).max() > 3  # the Dexcom noise model is on
    lows = [e for e in built.truth if e.kind == "glucose_urgent_low" and e.scored]
    assert lows
    assert (lows[0].start - built.scenario.start) / 3600 < 2.0


def test_the_same_seed_gives_the_same_story() -> None:
    pytest.importorskip("simglucose")
    a = uva_padova_glucose(3600, np.random.default_rng(5), meals=[Meal(600, 40)])
    b = uva_padova_glucose(3600, np.random.default_rng(5), meals=[Meal(600, 40)])
    assert np.array_equal(a.sensor, b.sensor)
    assert np.array_equal(a.true, b.true)
    with pytest.raises(UnknownPatientError) as info:
        uva_padova_glucose(600, np.random.default_rng(5), patient="martian#001")
    assert info.value.patient == "martian#001"
