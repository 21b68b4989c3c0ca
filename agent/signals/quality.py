"""Quality gates: may this window drive a model-driven alert? Each gate returns ``Gate(ok, reasons)`` as data.

``reasons`` holds short, stable codes (the ``REASON_*`` constants; CGM status reasons are ``cgm_status:`` plus
the annunciation name) for the state topic and the logs. A gate only ever suppresses *model-driven* output (a
forecast, an AF probability); rule alerts on the values themselves stay with the alert engine, so a reading
"below what the device can process" still raises an urgent low even though it never enters a model window.

Gates:

- ``contact_gate``: the heart-rate strap reported "no skin contact" (Heart Rate Measurement flags bits 1-2,
  value 2; ``firmware_bridge.heart_rate.SensorContact.NOT_DETECTED``) for any notification the window rests on.
  "Unsupported" passes: such straps cannot say.
- ``rr_quality_gate`` / ``rr_quality_mask``: too large a share of artifacts or of ectopic intervals in an RR
  window (``agent.signals.rr``), or a gap in its beat times. Defaults: at most 10% artifacts, at most 10%
  ectopics, no time gap. Measured with 64-beat windows (hop 32) on the TRAIN records: of afdb's windows that are
  AFIB throughout, 0.08% fail on artifacts and 0.13% on ectopics; of its windows that are N throughout, 0.51%
  and 5.32% (afdb's patients have frequent premature beats, which mimic irregularity); of nsr2db's, 0.01% and
  0.50%. Issue 7 may tune these; the model bundle should record what it used.
- ``cgm_status_gate``: a Sensor Status Annunciation bit that makes the value unusable as a model input. The
  names are those ``firmware_bridge.cgm.annunciation_names`` gives (the strings the agent stores with each
  reading). Unusable (``UNUSABLE_CGM_STATUS``), from the meaning the CGM Service specification (Bluetooth SIG,
  CGMS 1.0.2, Sensor Status Annunciation field) gives each bit:
  session_stopped (no session: not a live measurement), sensor_type_incorrect_for_device, sensor_malfunction,
  general_device_fault, calibration_required (readings are not valid until calibrated),
  sensor_temperature_too_high / too_low (outside the operating range), result_lower_than_device_can_process /
  result_higher_than_device_can_process (the value is a bound, not a measurement).
  Usable: device_battery_low, device_specific_alert (vendor-defined, no meaning to act on), calibration
  recommended / not allowed, time_synchronization_required (the agent stamps live readings with its own clock),
  the patient low/high and hypo/hyper level bits and the rate-of-change bits (statements about a valid value),
  and reserved bits.
- ``cgm_warm_up_gate``: the sensor session is younger than the warm-up time. Default 2 h, the longest of the
  common sensors' warm-ups as their makers state them: Dexcom G6 2 h, Medtronic Guardian 4 up to 2 h,
  FreeStyle Libre 2 and 3 1 h, Dexcom G7 30 min. Pass the time from session start to the oldest reading the
  decision rests on (a window's ``t_start_s``), so that no warm-up reading enters a model window. The CGM
  Measurement's Time Offset is that time in minutes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from agent.signals.errors import SignalError
from agent.signals.rr import RRWindow, RRWindows
from firmware_bridge.cgm import SensorStatusAnnunciation, annunciation_names
from firmware_bridge.heart_rate import SensorContact

REASON_NO_CONTACT = "sensor_contact_not_detected"
REASON_ARTIFACTS = "too_many_artifacts"
REASON_ECTOPICS = "too_many_ectopics"
REASON_TIME_GAP = "rr_time_gap"
REASON_WARM_UP = "cgm_warm_up"
CGM_STATUS_PREFIX = "cgm_status:"

DEFAULT_WARM_UP_S = 2 * 3600.0


def _status_name(flag: SensorStatusAnnunciation) -> str:
    (name,) = annunciation_names(int(flag))
    return name


UNUSABLE_CGM_STATUS: frozenset[str] = frozenset(
    _status_name(flag)
    for flag in (
        SensorStatusAnnunciation.SESSION_STOPPED,
        SensorStatusAnnunciation.SENSOR_TYPE_INCORRECT_FOR_DEVICE,
        SensorStatusAnnunciation.SENSOR_MALFUNCTION,
        SensorStatusAnnunciation.GENERAL_DEVICE_FAULT,
        SensorStatusAnnunciation.CALIBRATION_REQUIRED,
        SensorStatusAnnunciation.SENSOR_TEMPERATURE_TOO_HIGH,
        SensorStatusAnnunciation.SENSOR_TEMPERATURE_TOO_LOW,
        SensorStatusAnnunciation.RESULT_LOWER_THAN_DEVICE_CAN_PROCESS,
        SensorStatusAnnunciation.RESULT_HIGHER_THAN_DEVICE_CAN_PROCESS,
    )
)


class Gate(NamedTuple):
    """A gate's verdict: ``ok`` and, when not ok, the reason codes."""

    ok: bool
    reasons: list[str]


def combine(*gates: Gate) -> Gate:
    """All gates at once: ok when every one is, with every reason, in order, each once."""
    reasons = list(dict.fromkeys(reason for gate in gates for reason in gate.reasons))
    return Gate(all(gate.ok for gate in gates), reasons)


def _verdict(reasons: list[str]) -> Gate:
    return Gate(not reasons, reasons)


def contact_gate(contacts: Iterable[SensorContact | str]) -> Gate:
    """Fails when any of the notifications behind a window said "no skin contact"."""
    states = []
    for contact in contacts:
        try:
            states.append(SensorContact(contact))
        except ValueError as exc:
            raise SignalError("contacts", contact, "not a SensorContact value") from exc
    return _verdict([REASON_NO_CONTACT] if SensorContact.NOT_DETECTED in states else [])


@dataclass(frozen=True)
class RRQualityLimits:
    """Largest share of artifact and of ectopic intervals, and most time gaps, a usable RR window may have."""

    max_artifact_share: float = 0.1
    max_ectopic_share: float = 0.1
    max_time_gaps: int = 0

    def __post_init__(self) -> None:
        for name in ("max_artifact_share", "max_ectopic_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SignalError(name, getattr(self, name), "must be a share between 0 and 1")
        if self.max_time_gaps < 0:
            raise SignalError("max_time_gaps", self.max_time_gaps, "must be >= 0")

    def failures(
        self, artifact_share: npt.ArrayLike, ectopic_share: npt.ArrayLike, time_gaps: npt.ArrayLike
    ) -> dict[str, npt.NDArray[np.bool_]]:
        """Reason code -> where it applies; the one comparison both the gate and the mask use."""
        return {
            REASON_ARTIFACTS: np.asarray(artifact_share) > self.max_artifact_share,
            REASON_ECTOPICS: np.asarray(ectopic_share) > self.max_ectopic_share,
            REASON_TIME_GAP: np.asarray(time_gaps) > self.max_time_gaps,
        }


def rr_quality_gate(window: RRWindow, limits: RRQualityLimits | None = None) -> Gate:
    """Fails a window with too many artifacts or ectopic intervals, or with gaps in its beat times."""
    failed = (limits or RRQualityLimits()).failures(window.artifact_share, window.ectopic_share, window.time_gaps)
    return _verdict([reason for reason, bad in failed.items() if bool(bad)])


def rr_quality_mask(windows: RRWindows, limits: RRQualityLimits | None = None) -> npt.NDArray[np.bool_]:
    """``rr_quality_gate(w).ok`` for every window at once (for model_build)."""
    failed = (limits or RRQualityLimits()).failures(windows.artifact_share, windows.ectopic_share, windows.time_gaps)
    ok = np.ones(len(windows), dtype=bool)
    for bad in failed.values():
        ok &= ~bad
    return ok


def cgm_status_gate(status_names: Iterable[str], unusable: frozenset[str] = UNUSABLE_CGM_STATUS) -> Gate:
    """Fails when a reading carries an annunciation bit in ``unusable``; one reason per such bit."""
    names = list(dict.fromkeys(status_names))
    return _verdict([CGM_STATUS_PREFIX + name for name in names if name in unusable])


def cgm_warm_up_gate(time_since_session_start_s: float, warm_up_s: float = DEFAULT_WARM_UP_S) -> Gate:
    """Fails while the sensor session is younger than ``warm_up_s`` (NaN counts as too young)."""
    if not warm_up_s >= 0.0:
        raise SignalError("warm_up_s", warm_up_s, "must be >= 0")
    return _verdict([] if time_since_session_start_s >= warm_up_s else [REASON_WARM_UP])
