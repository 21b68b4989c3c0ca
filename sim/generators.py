"""Generated signals, from a seed: heartbeats with realistic variability and rhythm events, and glucose.

Heart (:func:`sinus_beats`, :func:`af_beats`, :func:`add_ectopics`, :func:`heart`):

* Sinus rhythm is an integral pulse frequency modulation (IPFM) model: the instantaneous heart period is a mean
  period curve (from a heart-rate curve: resting, sleep, exercise) times ``1 + x(t)``, where ``x`` is a
  stationary Gaussian process whose power spectrum has the two classic peaks of heart-rate variability, as in
  ECGSYN (McSharry et al., IEEE Trans Biomed Eng 50:289, 2003): LF (Mayer waves, 0.1 Hz, sd 0.01 Hz) and HF
  (respiratory sinus arrhythmia at the breathing rate, default 0.25 Hz), mixed by an LF/HF ratio, plus a little
  1/f-like very-low-frequency wander. Beats fall where the integrated frequency crosses a whole number. The
  variability's size (coefficient of variation of RR) is a parameter: about 0.05 awake at rest, more asleep
  (HF dominates), much less in exercise.
* Atrial fibrillation is irregularly irregular: independent RR intervals with no respiratory structure, drawn
  from a gamma distribution around a (usually faster) mean with a coefficient of variation of about 0.25
  (published RR-irregularity detectors separate AF from sinus at CV ~0.1). Labelled :attr:`BeatLabel.AF`.
* Ectopic beats: a premature beat at 55-75% of the running RR, followed by a compensatory pause so that the
  pair spans two sinus intervals (the signature of a ventricular premature beat). Labelled
  :attr:`BeatLabel.ECTOPIC`; an ectopic beat is not AF.

Glucose (:func:`anchored_glucose`, :func:`uva_padova_glucose`):

* ``anchors``: a smooth curve (monotone cubic, no overshoot) through (hour, mg/dL) points, with sensor noise
  around it; the curve is the truth.
* ``uva_padova``: the UVA/Padova type 1 simulator through ``simglucose`` (optional: ``pip install
  'vigil[sim]'``): a virtual patient, meals, basal insulin and meal boluses (with a dosing error factor for
  closed stories such as a nocturnal hypoglycaemia after an over-bolused dinner), and simglucose's CGM sensor
  noise model (Dexcom by default). Its blood glucose is the truth; its CGM reading is the sensor's value.

Everything takes a :class:`numpy.random.Generator`; the same seed gives the same signals.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator

from sim.peripheral import SimError
from sim.signals import BeatLabel, Beats, FloatArray, Glucose

# IPFM integration step (s): the modulation has nothing above 0.5 Hz, and beat times are interpolated
# between grid points, so a 4 Hz grid places them to within a millisecond.
_DT = 0.25
_CGM_MIN, _CGM_MAX = 40.0, 400.0


def curve(anchors: Sequence[tuple[float, float]], hours: FloatArray) -> FloatArray:
    """A smooth, overshoot-free curve through (hour, value) anchors, held flat outside them."""
    xs = np.array([a[0] for a in anchors], dtype=np.float64)
    ys = np.array([a[1] for a in anchors], dtype=np.float64)
    if len(xs) == 1:
        return np.full(len(hours), ys[0])
    if np.any(np.diff(xs) <= 0):
        raise ValueError("curve: anchor hours must increase")
    h = np.clip(hours, xs[0], xs[-1])
    return np.asarray(PchipInterpolator(xs, ys)(h), dtype=np.float64)


@dataclass(frozen=True)
class Hrv:
    """Heart-rate variability of sinus rhythm: ``cv`` is the standard deviation of the modulation relative to
    the mean period; ``lf_hf`` the LF/HF power ratio; ``resp_hz`` the breathing rate (the HF peak)."""

    cv: float = 0.05
    lf_hf: float = 1.5
    resp_hz: float = 0.25
    vlf: float = 0.3  # share of very-low-frequency wander in the modulation's variance


SLEEP_HRV = Hrv(cv=0.07, lf_hf=0.6, resp_hz=0.22)
EXERCISE_HRV = Hrv(cv=0.015, lf_hf=3.0, resp_hz=0.45)


def _hrv_process(n: int, dt: float, hrv: Hrv, rng: np.random.Generator) -> FloatArray:
    """A zero-mean Gaussian process with unit variance and an ECGSYN-like spectrum, on ``n`` points ``dt``
    apart (spectral synthesis: Gaussian amplitudes, random phases, inverse FFT)."""
    m = 1 << max(4, math.ceil(math.log2(max(n, 2))))
    f = np.fft.rfftfreq(m, dt)
    lf = np.exp(-0.5 * ((f - 0.1) / 0.01) ** 2)
    hf = np.exp(-0.5 * ((f - hrv.resp_hz) / 0.01) ** 2)
    spectrum = hrv.lf_hf / (1.0 + hrv.lf_hf) * lf / max(lf.sum(), 1e-12)
    spectrum += 1.0 / (1.0 + hrv.lf_hf) * hf / max(hf.sum(), 1e-12)
    with np.errstate(divide="ignore"):
        vlf = np.where((f > 0.003) & (f < 0.04), 1.0 / np.maximum(f, 1e-9), 0.0)
    spectrum = (1.0 - hrv.vlf) * spectrum + hrv.vlf * vlf / max(vlf.sum(), 1e-12)
    coeffs = np.sqrt(spectrum) * (rng.normal(size=len(f)) + 1j * rng.normal(size=len(f)))
    x = np.fft.irfft(coeffs, m)[:n]
    sd = float(np.std(x))
    return np.asarray(x / sd if sd > 0 else x, dtype=np.float64)


def sinus_beats(
    duration_s: float,
    bpm: Sequence[tuple[float, float]] | Callable[[FloatArray], FloatArray],
    rng: np.random.Generator,
    *,
    hrv: Hrv | None = None,
    hrv_at: Sequence[tuple[float, float, Hrv]] = (),
) -> Beats:
    """Sinus rhythm for ``duration_s`` seconds around a heart-rate curve: (hour, bpm) anchors, or a function
    of time in seconds.

    ``hrv_at`` overrides the variability in (start_s, end_s, Hrv) spans (sleep, exercise); the spans blend
    over a minute so the rhythm has no seams."""
    hrv = hrv or Hrv()
    n = math.ceil(duration_s / _DT) + 2
    t = np.arange(n) * _DT
    rate = bpm(t) if callable(bpm) else curve(bpm, t / 3600.0)
    period = 60.0 / np.clip(rate, 20.0, 240.0)
    cv = np.full(n, hrv.cv)
    x = _hrv_process(n, _DT, hrv, rng)
    for start, end, h in hrv_at:
        local = _hrv_process(n, _DT, h, rng)
        weight = np.clip(np.minimum(t - start, end - t) / 60.0 + 0.5, 0.0, 1.0)
        x = (1 - weight) * x + weight * local
        cv = (1 - weight) * cv + weight * h.cv
    period = period * (1.0 + cv * x)
    freq = 1.0 / period
    phase = np.concatenate([[0.0], np.cumsum(0.5 * (freq[1:] + freq[:-1]) * _DT)])
    k = np.arange(1.0, math.floor(phase[-1]) + 1.0)
    ends = np.interp(k, phase, t)
    ends = ends[ends <= duration_s]
    rr = np.diff(np.concatenate([[0.0], ends]))
    return Beats(ends, rr, np.zeros(len(ends), dtype=np.uint8))


def exercise_bpm(
    base: Callable[[FloatArray], FloatArray], bouts: Sequence[tuple[float, float, float]]
) -> Callable[[FloatArray], FloatArray]:
    """``base`` with exercise bouts (start_s, end_s, peak bpm): a 3-minute rise to the peak, held, and a
    5-minute recovery after the bout."""

    def rate(t: FloatArray) -> FloatArray:
        out = np.asarray(base(t), dtype=np.float64).copy()
        for start, end, peak in bouts:
            up = np.clip((t - start) / 180.0, 0.0, 1.0)
            down = np.clip(1.0 - (t - end) / 300.0, 0.0, 1.0)
            env = np.where(t < end, up, down * np.clip((end - start) / 180.0, 0.0, 1.0))
            out = out + (peak - out) * env
        return out

    return rate


def af_beats(duration_s: float, mean_bpm: float, rng: np.random.Generator, *, cv: float = 0.25) -> Beats:
    """Atrial fibrillation for ``duration_s``: independent gamma-distributed RR intervals (mean 60/mean_bpm s,
    coefficient of variation ``cv``), clipped to 0.25-2.0 s."""
    mean = 60.0 / mean_bpm
    shape = 1.0 / cv**2
    n = int(duration_s / mean * 1.5) + 10
    rr = np.clip(rng.gamma(shape, mean / shape, size=n), 0.25, 2.0)
    ends = np.cumsum(rr)
    keep = ends <= duration_s
    return Beats(ends[keep], rr[keep], np.full(int(keep.sum()), BeatLabel.AF, dtype=np.uint8))


def splice(base: Beats, insert: Beats, start: float, end: float) -> Beats:
    """``base`` with its beats in [start, end) replaced by ``insert`` (relative times, shifted to ``start``).
    The first beat after the insert keeps its end time; its RR interval becomes the gap it now closes."""
    before = base.window(-math.inf, start)
    after = base.window(end, math.inf)
    ins = insert.shifted(start).window(start, end)
    joined = Beats.concat([before, ins, after])
    rr = np.diff(np.concatenate([[joined.t[0] - joined.rr[0]], joined.t])) if len(joined) else joined.rr
    return Beats(joined.t, rr, joined.label)


def add_ectopics(beats: Beats, per_hour: float, rng: np.random.Generator) -> Beats:
    """Turn sinus beats into premature beats at ``per_hour`` on average (Poisson), each followed by a full
    compensatory pause. Only sinus beats with sinus neighbours are touched."""
    if per_hour <= 0 or len(beats) < 3:
        return beats
    t = beats.t.copy()
    rr = beats.rr.copy()
    label = beats.label.copy()
    hours = (t[-1] - t[0]) / 3600.0
    count = rng.poisson(per_hour * hours)
    for i in rng.choice(np.arange(1, len(t) - 1), size=min(count, len(t) - 2), replace=False):
        if label[i - 1] != BeatLabel.SINUS or label[i] != BeatLabel.SINUS or label[i + 1] != BeatLabel.SINUS:
            continue
        pair = rr[i] + rr[i + 1]
        early = rr[i] * rng.uniform(0.55, 0.75)
        t[i] = t[i - 1] + early
        rr[i] = early
        rr[i + 1] = pair - early
        label[i] = label[i + 1] = BeatLabel.ECTOPIC
    return Beats(t, rr, label)


# -- glucose ---------------------------------------------------------------------------------------------------


def anchored_glucose(
    duration_s: float,
    anchors: Sequence[tuple[float, float]],
    rng: np.random.Generator,
    *,
    period_s: float = 300.0,
    noise_mg_dl: float = 3.0,
) -> Glucose:
    """Readings every ``period_s`` from 0 to ``duration_s``: the curve through (hour, mg/dL) anchors is the
    truth; the sensor adds autocorrelated noise (AR(1), rho 0.7) and rounds to whole mg/dL within 40-400."""
    t = np.arange(0.0, duration_s + 1e-9, period_s)
    true = curve(anchors, t / 3600.0)
    noise = np.zeros(len(t))
    e = rng.normal(0.0, noise_mg_dl * math.sqrt(1 - 0.7**2), size=len(t))
    for i in range(len(t)):
        noise[i] = (0.7 * noise[i - 1] if i else 0.0) + e[i]
    sensor = np.clip(np.round(true + noise), _CGM_MIN, _CGM_MAX)
    return Glucose(t, sensor, np.round(true, 1))


class SimglucoseMissing(SimError):
    """simglucose is not installed (it is the optional ``sim`` extra)."""


class UnknownPatientError(ValueError):
    """simglucose has no virtual patient of that name (``patient``)."""

    def __init__(self, patient: str) -> None:
        self.patient = patient
        super().__init__(f"simglucose knows no patient {patient!r} (try adult#001 .. adult#010)")


@dataclass(frozen=True)
class Meal:
    at_s: float
    grams: float
    bolus_factor: float = 1.0  # 1.0: the bolus the carbohydrate ratio asks for; 1.5: 50% too much insulin


def uva_padova_glucose(
    duration_s: float,
    rng: np.random.Generator,
    *,
    patient: str = "adult#001",
    meals: Sequence[Meal] = (),
    basal_factor: float = 1.0,
    warmup_s: float = 0.0,
    sensor: str = "Dexcom",
    period_s: float = 300.0,
) -> Glucose:
    """A closed story from the UVA/Padova simulator (simglucose), one minute at a time.

    The simulation starts ``warmup_s`` before the scenario's time 0 (meal times are relative to time 0 and may
    be negative down to ``-warmup_s``), so a story can begin with a dinner before the night it is about.
    Insulin: basal at the patient's steady-state rate times ``basal_factor``; a bolus with each meal of
    grams / CR times the meal's ``bolus_factor`` (CR from simglucose's Quest table). The sensor (sampled by
    simglucose every 3 minutes for a Dexcom, held in between) is read every ``period_s``. About 8 s of CPU
    per simulated day."""
    try:
        with warnings.catch_warnings():
            # simglucose imports pkg_resources, which warns on current setuptools.
            warnings.simplefilter("ignore")
            from simglucose.patient.t1dpatient import Action, T1DPatient
            from simglucose.sensor.cgm import CGMSensor
    except ImportError as exc:
        raise SimglucoseMissing(
            "the uva_padova generator needs simglucose: pip install 'vigil[sim]' (or the build extra)"
        ) from exc
    seed = int(rng.integers(0, 2**31 - 1))
    warm = math.ceil(warmup_s / 60.0)
    minutes = warm + math.ceil(duration_s / 60.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            p = T1DPatient.withName(patient, seed=seed)
        except (IndexError, KeyError, ValueError) as exc:
            raise UnknownPatientError(patient) from exc
        cgm = CGMSensor.withName(sensor, seed=seed + 1)
        cr = _carb_ratio(patient)
        basal = float(p._params.u2ss) * float(p._params.BW) / 6000.0 * basal_factor  # U/min
        bg = np.zeros(minutes + 1)
        sens = np.zeros(minutes + 1)
        meal_at = {warm + int(m.at_s // 60): m for m in meals}
        bg[0] = float(p.observation.Gsub)
        sens[0] = float(cgm.measure(p))
        for minute in range(1, minutes + 1):
            meal = meal_at.get(minute - 1)
            cho = bolus = 0.0
            if meal is not None:
                cho = meal.grams  # eaten within the minute (g/min)
                bolus = meal.grams / cr * meal.bolus_factor
            p.step(Action(insulin=basal + bolus, CHO=cho))
            bg[minute] = float(p.observation.Gsub)
            sens[minute] = float(cgm.measure(p))
    t = np.arange(0.0, duration_s + 1e-9, period_s)
    idx = np.minimum(warm + (t // 60).astype(int), minutes)
    sensor_mg = np.clip(np.round(sens[idx]), _CGM_MIN, _CGM_MAX)
    return Glucose(t, sensor_mg, np.round(bg[idx], 1))


def _carb_ratio(patient: str) -> float:
    """The patient's carbohydrate ratio (g/U) from simglucose's Quest table; 15 if it has none."""
    import csv
    from importlib.resources import files

    with (files("simglucose") / "params" / "Quest.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("Name") == patient:
                return float(row["CR"])
    return 15.0
