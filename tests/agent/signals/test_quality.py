"""Quality gates: verdicts as data, and the CGM status names kept in step with firmware_bridge."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.signals.errors import SignalError
from agent.signals.quality import (
    CGM_STATUS_PREFIX,
    REASON_ARTIFACTS,
    REASON_ECTOPICS,
    REASON_NO_CONTACT,
    REASON_TIME_GAP,
    REASON_WARM_UP,
    UNUSABLE_CGM_STATUS,
    Gate,
    RRQualityLimits,
    cgm_status_gate,
    cgm_warm_up_gate,
    combine,
    contact_gate,
    rr_quality_gate,
    rr_quality_mask,
)
from agent.signals.rr import RRWindowing, rr_windows
from firmware_bridge.cgm import (
    CgmMeasurementRecord,
    SensorStatusAnnunciation,
    StatusOctet,
    WarningOctet,
    annunciation_names,
    decode_cgm_measurement,
    encode_cgm_measurement,
)
from firmware_bridge.heart_rate import SensorContact
from firmware_bridge.sfloat import SFloat


def test_contact() -> None:
    assert contact_gate([]) == Gate(True, [])
    assert contact_gate(["detected", SensorContact.UNSUPPORTED]) == Gate(True, [])
    ok, reasons = contact_gate(["detected", "not_detected", "detected"])
    assert (ok, reasons) == (False, [REASON_NO_CONTACT])
    with pytest.raises(SignalError):
        contact_gate(["touching"])


def windows_with(ectopics: int, artifacts: int, gap: bool) -> tuple[np.ndarray, np.ndarray, RRWindowing]:
    w = RRWindowing(n_beats=20, hop=20, context=4, lookahead=2)
    rr = np.full(26, 1.0)
    for k in range(ectopics):  # premature beats, each flagging two intervals
        rr[5 + 4 * k], rr[6 + 4 * k] = 0.6, 1.4
    rr[22 - artifacts : 22] = 3.0
    t = np.cumsum(rr)
    if gap:
        t[15:] += 10.0
    return t, rr, w


@pytest.mark.parametrize(
    ("ectopics", "artifacts", "gap", "reasons"),
    [
        (0, 0, False, []),
        (1, 2, False, []),  # 10% and 10%: at the limits, allowed
        (2, 0, False, [REASON_ECTOPICS]),
        (0, 3, False, [REASON_ARTIFACTS]),
        (0, 0, True, [REASON_TIME_GAP]),
        (2, 3, True, [REASON_ARTIFACTS, REASON_ECTOPICS, REASON_TIME_GAP]),
    ],
)
def test_rr_window_gate_and_mask_agree(ectopics: int, artifacts: int, gap: bool, reasons: list[str]) -> None:
    t, rr, w = windows_with(ectopics, artifacts, gap)
    windows = rr_windows(t, rr, w)
    window = windows.window(0)
    assert window.ectopic_share == ectopics * 2 / 20
    assert window.artifact_share == artifacts / 20
    assert rr_quality_gate(window) == Gate(not reasons, reasons)
    assert list(rr_quality_mask(windows)) == [not reasons]


def test_rr_limits_are_parameters() -> None:
    t, rr, w = windows_with(2, 0, False)
    window = rr_windows(t, rr, w).window(0)
    assert rr_quality_gate(window, RRQualityLimits(max_ectopic_share=0.2)).ok
    with pytest.raises(SignalError):
        RRQualityLimits(max_artifact_share=1.5)


def every_annunciation_name() -> set[str]:
    return set(annunciation_names((1 << 24) - 1))


def test_unusable_status_names_are_firmware_bridge_names() -> None:
    assert every_annunciation_name() >= UNUSABLE_CGM_STATUS
    assert "sensor_malfunction" in UNUSABLE_CGM_STATUS
    assert "result_lower_than_hypo_level" not in UNUSABLE_CGM_STATUS  # a statement about a valid value


def test_cgm_status_gate_on_a_decoded_record() -> None:
    record = CgmMeasurementRecord(
        glucose=SFloat(mantissa=62, exponent=0),
        time_offset_min=300,
        status=StatusOctet.SENSOR_MALFUNCTION | StatusOctet.DEVICE_BATTERY_LOW,
        warning=WarningOctet.RESULT_LOWER_THAN_HYPO_LEVEL,
    )
    (decoded,) = decode_cgm_measurement(encode_cgm_measurement([record]))
    ok, reasons = cgm_status_gate(decoded.status_names())
    assert not ok
    assert reasons == [CGM_STATUS_PREFIX + "sensor_malfunction"]


@pytest.mark.parametrize("flag", list(SensorStatusAnnunciation))
def test_each_status_bit_is_decided(flag: SensorStatusAnnunciation) -> None:
    names = annunciation_names(int(flag))
    assert cgm_status_gate(names).ok == (names[0] not in UNUSABLE_CGM_STATUS)


def test_warm_up() -> None:
    assert cgm_warm_up_gate(2 * 3600.0) == Gate(True, [])
    assert cgm_warm_up_gate(2 * 3600.0 - 1) == Gate(False, [REASON_WARM_UP])
    assert not cgm_warm_up_gate(math.nan).ok
    assert cgm_warm_up_gate(1800.0, warm_up_s=1800.0).ok


def test_combine_keeps_every_reason_once() -> None:
    merged = combine(Gate(True, []), Gate(False, ["a", "b"]), Gate(False, ["b", "c"]))
    assert merged == Gate(False, ["a", "b", "c"])
    assert combine() == Gate(True, [])
