"""The glucose forecaster on the device: per-wearer windows in, a forecast with its interval and the
predicted-low condition out. numpy only; the model runs through :mod:`agent.models` (int8 TFLite).

How ``agent.core`` uses it (``Agent._forecast``)::

    from agent.forecast import GlucoseForecaster, MODEL_NAME
    model = next(m for m in models if m.name == MODEL_NAME)         # from agent.models.load_models
    forecaster = GlucoseForecaster(model, thresholds={w.id: w.thresholds for w in cfg.wearers})
    conditions, state = forecaster.feed(wearer, t, mg_dl, status_names, session_start)
    for cond in conditions:                                         # [] or one glucose_predicted_low
        events += engine.assess(cond)
    ws.values["forecast"] = state                                   # the retained state topic

``feed`` takes every CGM reading of a wearer, in any order (backfill included): ``t`` in epoch seconds,
``mg_dl`` as stored (``inf``/``-inf`` for High/Low, NaN for no value: neither enters a window),
``status_names`` the reading's Sensor Status Annunciation names (``CgmRecord.status_names()``), and
``session_start`` the epoch time of the sensor session's start (``None`` when the source does not know it:
the warm-up gate is then not applied, and the state says ``"warm_up": "unknown"``).

It returns the conditions for :meth:`agent.alerts.AlertEngine.assess` and the state values::

    {"status": "ok" | "suppressed",
     "reasons": [...],                       # why suppressed: cgm_status:<bit>, cgm_warm_up, no_window
     "model": {"name", "version", "sha256"},
     "window": {"start", "end", "sha256"},   # ISO times of the input window's first and last grid points
     "horizons_min": [15, 30, 45, 60],
     "mg_dl": [...], "lower_mg_dl": [...], "upper_mg_dl": [...],   # forecast and its interval per horizon
     "interval": 0.8,
     "predicted_low": {"active": true | false | null, "trigger_mg_dl": x, "threshold_mg_dl": x}}

When suppressed, the forecast keys are absent and no condition is returned: an active predicted-low episode
then stays as it is until the next usable forecast (the sensor alerts cover a failing sensor).

The model (``glucose.tflite``, card params :class:`ForecastParams`) reads the last ``length`` grid values
(``agent.signals.glucose``, the same windows ``model_build`` trains on) encoded by :func:`encode_windows` and
outputs, per horizon, the change from the last value of the mean forecast and of the 10% and 90% quantiles
(:func:`decode_outputs`); the quantiles are widened by offsets calibrated on TRAIN validation subjects.

Predicted low (``glucose_predicted_low``, severity warning): with ``T`` the wearer's ``glucose_low``
(default 70 mg/dL), the trigger is the lowest forecast (``statistic`` "mean" or "lower") at the horizons up to
``alert_horizon_s``; active below ``T + margin``, cleared at or above ``T + margin + hysteresis``, unchanged
in between, and raised once it has held ``sustain_s``. Margin, statistic and sustain were tuned on TRAIN
validation subjects (``model_build.glucose``); the card records them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.alerts import GLUCOSE_PREDICTED_LOW, Condition
from agent.config import Thresholds
from agent.errors import ModelError
from agent.models import LoadedModel
from agent.signals.glucose import GlucoseGridding, GlucoseWindow, GlucoseWindowing
from agent.signals.quality import cgm_status_gate, cgm_warm_up_gate, combine
from agent.signals.windows import WearerWindows
from agent.topics import iso_time

MODEL_NAME = "glucose"
KIND = GLUCOSE_PREDICTED_LOW
REASON_NO_WINDOW = "no_window"
STATISTICS = ("mean", "lower")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ForecastParams:
    """The card's ``params``: windows, input encoding, output decoding, interval calibration, alert rule."""

    length: int
    horizons_s: tuple[float, ...]
    step_s: float
    max_gap_s: float
    origin_s: float
    diff_scale: float
    level_center: float
    level_scale: float
    clip: float
    output_scale: float
    quantiles: tuple[float, float]
    lower_offset_mg_dl: tuple[float, ...]
    upper_offset_mg_dl: tuple[float, ...]
    min_mg_dl: float
    max_mg_dl: float
    alert_statistic: str
    alert_horizon_s: float
    alert_margin_mg_dl: float
    alert_hysteresis_mg_dl: float
    alert_sustain_s: float
    warm_up_s: float

    def __post_init__(self) -> None:
        n = len(self.horizons_s)
        problems = {
            "length": self.length < 2,
            "horizons_s": n == 0,
            "lower_offset_mg_dl": len(self.lower_offset_mg_dl) != n,
            "upper_offset_mg_dl": len(self.upper_offset_mg_dl) != n,
            "alert_statistic": self.alert_statistic not in STATISTICS,
            "alert_horizon_s": not any(h <= self.alert_horizon_s for h in self.horizons_s),
            "diff_scale": not self.diff_scale > 0,
            "level_scale": not self.level_scale > 0,
            "output_scale": not self.output_scale > 0,
            "clip": not self.clip > 0,
        }
        for name, bad in problems.items():
            if bad:
                raise ValueError(f"forecast params: {name} = {getattr(self, name)!r} is not usable")

    @property
    def gridding(self) -> GlucoseGridding:
        return GlucoseGridding(step_s=self.step_s, max_gap_s=self.max_gap_s, origin_s=self.origin_s)

    @property
    def windowing(self) -> GlucoseWindowing:
        return GlucoseWindowing(self.length, self.horizons_s, self.gridding)

    @property
    def horizons(self) -> int:
        return len(self.horizons_s)

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.length, 2)

    @property
    def output_size(self) -> int:
        return 3 * self.horizons

    def to_json(self) -> dict[str, Any]:
        return {
            "length": self.length,
            "horizons_s": list(self.horizons_s),
            "step_s": self.step_s,
            "max_gap_s": self.max_gap_s,
            "origin_s": self.origin_s,
            "encoding": {
                "channels": ["diff", "level"],
                "diff_scale": self.diff_scale,
                "level_center": self.level_center,
                "level_scale": self.level_scale,
                "clip": self.clip,
            },
            "outputs": {
                "layout": ["mean", "q_low", "q_high"],
                "scale": self.output_scale,
                "quantiles": list(self.quantiles),
                "lower_offset_mg_dl": list(self.lower_offset_mg_dl),
                "upper_offset_mg_dl": list(self.upper_offset_mg_dl),
                "min_mg_dl": self.min_mg_dl,
                "max_mg_dl": self.max_mg_dl,
            },
            "predicted_low": {
                "statistic": self.alert_statistic,
                "horizon_s": self.alert_horizon_s,
                "margin_mg_dl": self.alert_margin_mg_dl,
                "hysteresis_mg_dl": self.alert_hysteresis_mg_dl,
                "sustain_s": self.alert_sustain_s,
                "warm_up_s": self.warm_up_s,
            },
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ForecastParams:
        """Read the card's params; ``KeyError``/``ValueError``/``TypeError`` on a missing or bad field."""
        enc, out, low = obj["encoding"], obj["outputs"], obj["predicted_low"]
        if list(enc["channels"]) != ["diff", "level"] or list(out["layout"]) != ["mean", "q_low", "q_high"]:
            raise ValueError("forecast params: unknown encoding channels or output layout")
        q_low, q_high = (float(q) for q in out["quantiles"])
        return cls(
            length=int(obj["length"]),
            horizons_s=tuple(float(h) for h in obj["horizons_s"]),
            step_s=float(obj["step_s"]),
            max_gap_s=float(obj["max_gap_s"]),
            origin_s=float(obj["origin_s"]),
            diff_scale=float(enc["diff_scale"]),
            level_center=float(enc["level_center"]),
            level_scale=float(enc["level_scale"]),
            clip=float(enc["clip"]),
            output_scale=float(out["scale"]),
            quantiles=(q_low, q_high),
            lower_offset_mg_dl=tuple(float(v) for v in out["lower_offset_mg_dl"]),
            upper_offset_mg_dl=tuple(float(v) for v in out["upper_offset_mg_dl"]),
            min_mg_dl=float(out["min_mg_dl"]),
            max_mg_dl=float(out["max_mg_dl"]),
            alert_statistic=str(low["statistic"]),
            alert_horizon_s=float(low["horizon_s"]),
            alert_margin_mg_dl=float(low["margin_mg_dl"]),
            alert_hysteresis_mg_dl=float(low["hysteresis_mg_dl"]),
            alert_sustain_s=float(low["sustain_s"]),
            warm_up_s=float(low["warm_up_s"]),
        )


def encode_windows(past: npt.ArrayLike, params: ForecastParams) -> npt.NDArray[np.float32]:
    """Windows ``(n, length)`` in mg/dL -> model input ``(n, length, 2)``: the 5-minute change over
    ``diff_scale`` (0 for the first value) and the level ``(v - level_center) / level_scale``, both clipped to
    ``+-clip``. Two channels of similar range share the input tensor's one int8 scale well."""
    p = np.asarray(past, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != params.length:
        raise ValueError(f"windows must be (n, {params.length}), got {p.shape}")
    diff = np.diff(p, axis=1, prepend=p[:, :1]) / params.diff_scale
    level = (p - params.level_center) / params.level_scale
    x: npt.NDArray[np.float32] = np.clip(np.stack([diff, level], axis=-1), -params.clip, params.clip).astype(np.float32)
    return x


@dataclass(frozen=True, eq=False)
class Forecasts:
    """Per window and horizon (mg/dL): the mean forecast and the calibrated interval around it."""

    mean: FloatArray
    lower: FloatArray
    upper: FloatArray


def decode_outputs(raw: npt.ArrayLike, last: npt.ArrayLike, params: ForecastParams) -> Forecasts:
    """Model outputs ``(n, 3 * horizons)`` and the windows' last values ``(n,)`` -> :class:`Forecasts`.

    The interval is the quantile outputs moved out by the calibrated offsets, and never excludes the mean
    forecast (quantile outputs may cross it); everything is clipped to ``[min_mg_dl, max_mg_dl]``."""
    out = np.asarray(raw, dtype=np.float64)
    h = params.horizons
    if out.ndim != 2 or out.shape[1] != 3 * h:
        raise ValueError(f"model outputs must be (n, {3 * h}), got {out.shape}")
    base = np.asarray(last, dtype=np.float64).reshape(-1, 1)
    mean = base + params.output_scale * out[:, :h]
    lower = base + params.output_scale * out[:, h : 2 * h] - np.asarray(params.lower_offset_mg_dl)
    upper = base + params.output_scale * out[:, 2 * h :] + np.asarray(params.upper_offset_mg_dl)
    lo, hi = params.min_mg_dl, params.max_mg_dl
    return Forecasts(
        mean=np.clip(mean, lo, hi),
        lower=np.clip(np.minimum(lower, mean), lo, hi),
        upper=np.clip(np.maximum(upper, mean), lo, hi),
    )


def alert_trigger(forecasts: Forecasts, params: ForecastParams) -> FloatArray:
    """Per window, the value the predicted-low rule compares with ``T + margin``."""
    use = np.asarray([h <= params.alert_horizon_s for h in params.horizons_s])
    values = forecasts.mean if params.alert_statistic == "mean" else forecasts.lower
    trigger: FloatArray = values[:, use].min(axis=1)
    return trigger


def alert_state(trigger: float, threshold: float, params: ForecastParams) -> bool | None:
    """True below ``threshold + margin``, False at or above that plus the hysteresis, None in between."""
    on = threshold + params.alert_margin_mg_dl
    if trigger < on:
        return True
    if trigger >= on + params.alert_hysteresis_mg_dl:
        return False
    return None


@dataclass
class _Wearer:
    windows: WearerWindows
    newest_t: float = -math.inf
    last_window: GlucoseWindow | None = None
    last_forecast: Forecasts | None = None


class GlucoseForecaster:
    """Forecasts for every wearer from one loaded ``glucose`` model; see the module docstring."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        thresholds: Mapping[str, Thresholds] | None = None,
        params: ForecastParams | None = None,
    ) -> None:
        if params is None:
            if model.card is None:
                raise ModelError(model.name, "has no card to read the forecast params from")
            try:
                params = ForecastParams.from_json(model.card.params)
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelError(model.name, f"card params are not forecast params: {exc!r}") from exc
        want_in = (1, *params.input_shape)
        want_out = (1, params.output_size)
        if model.input.shape != want_in or model.output.shape != want_out:
            raise ModelError(
                model.name,
                f"tensors {model.input.shape} -> {model.output.shape} do not fit the params ({want_in} -> {want_out})",
            )
        self.model = model
        self.params = params
        self._thresholds = dict(thresholds or {})
        self._default = Thresholds()
        g = params.gridding
        # The window's own reach plus an hour for readings a CGM backfills late.
        self._horizon_s = (params.length - 1) * g.step_s + g.max_gap_s + 3600.0
        self._windowing = GlucoseWindowing(params.length, (), g)
        self._wearers: dict[str, _Wearer] = {}

    def threshold(self, wearer: str) -> float:
        return float(self._thresholds.get(wearer, self._default).glucose_low)

    def predict(self, past: npt.ArrayLike) -> Forecasts:
        """Forecasts for windows ``(n, length)`` (mg/dL) through the int8 model."""
        p = np.asarray(past, dtype=np.float64).reshape(-1, self.params.length)
        raw = self.model.predict(encode_windows(p, self.params))
        return decode_outputs(np.reshape(raw, (p.shape[0], -1)), p[:, -1], self.params)

    def feed(
        self,
        wearer: str,
        t: float,
        mg_dl: float,
        status_names: Iterable[str] = (),
        session_start: float | None = None,
    ) -> tuple[list[Condition], dict[str, Any]]:
        """One CGM reading of ``wearer``; see the module docstring for what comes back."""
        w = self._wearers.get(wearer)
        if w is None:
            w = self._wearers[wearer] = _Wearer(WearerWindows(None, self._windowing, horizon_s=self._horizon_s))
        status = cgm_status_gate(status_names)
        if status.ok:
            w.windows.add_glucose(t, mg_dl)
        w.newest_t = max(w.newest_t, t)
        window = w.windows.glucose_window()
        gates = [status]
        if window is not None and session_start is not None:
            gates.append(cgm_warm_up_gate(window.t_start_s - session_start, self.params.warm_up_s))
        verdict = combine(*gates)
        reasons = list(verdict.reasons)
        if window is None:
            reasons.append(REASON_NO_WINDOW)
        state: dict[str, Any] = {"model": self._model_id()}
        if session_start is None:
            state["warm_up"] = "unknown"
        if reasons or window is None:
            state.update(status="suppressed", reasons=reasons)
            return [], state
        if window is not w.last_window or w.last_forecast is None:
            w.last_window, w.last_forecast = window, self.predict(window.mg_dl[np.newaxis])
        forecast = w.last_forecast
        threshold = self.threshold(wearer)
        trigger = float(alert_trigger(forecast, self.params)[0])
        active = alert_state(trigger, threshold, self.params)
        window_ref = {"start": iso_time(window.t_start_s), "end": iso_time(window.t_end_s), "sha256": window.sha256}
        horizons_min = [round(h / 60.0) for h in self.params.horizons_s]
        mean, lower, upper = (_rounded(a[0]) for a in (forecast.mean, forecast.lower, forecast.upper))
        state.update(
            status="ok",
            reasons=[],
            window=window_ref,
            horizons_min=horizons_min,
            mg_dl=mean,
            lower_mg_dl=lower,
            upper_mg_dl=upper,
            interval=round(self.params.quantiles[1] - self.params.quantiles[0], 3),
            predicted_low={"active": active, "trigger_mg_dl": round(trigger, 1), "threshold_mg_dl": threshold},
        )
        condition = Condition(
            wearer=wearer,
            kind=KIND,
            active=active,
            t=w.newest_t,
            severity="warning",
            reason=self._reason(active, trigger, threshold, horizons_min, mean, lower, upper),
            values={
                "glucose_mg_dl": float(window.mg_dl[-1]),
                "forecast_mg_dl": dict(zip(map(str, horizons_min), mean, strict=True)),
                "lower_mg_dl": dict(zip(map(str, horizons_min), lower, strict=True)),
                "upper_mg_dl": dict(zip(map(str, horizons_min), upper, strict=True)),
                "trigger_mg_dl": round(trigger, 1),
            },
            thresholds={
                "glucose_low": threshold,
                "predicted_low_margin": self.params.alert_margin_mg_dl,
                "predicted_low_hysteresis": self.params.alert_hysteresis_mg_dl,
                "predicted_low_horizon_s": self.params.alert_horizon_s,
            },
            sustain_s=self.params.alert_sustain_s,
            source={"type": "model", "model": self._model_id(), "window": window_ref},
            raw={
                "glucose_mg_dl": [v if math.isfinite(v) else None for v in window.mg_dl.tolist()],
                "step_s": self.params.step_s,
            },
        )
        return [condition], state

    def _model_id(self) -> dict[str, str]:
        return {"name": self.model.name, "version": self.model.version, "sha256": self.model.sha256}

    def _reason(
        self,
        active: bool | None,
        trigger: float,
        threshold: float,
        horizons_min: Sequence[int],
        mean: Sequence[float],
        lower: Sequence[float],
        upper: Sequence[float],
    ) -> str:
        p = self.params
        within = max(m for m, h in zip(horizons_min, p.horizons_s, strict=True) if h <= p.alert_horizon_s)
        which = "forecast" if p.alert_statistic == "mean" else "forecast's lower bound"
        shown = ", ".join(
            f"{m} min {v:.0f} ({lo:.0f}-{hi:.0f})"
            for m, v, lo, hi in zip(horizons_min, mean, lower, upper, strict=True)
            if m <= within
        )
        on = threshold + p.alert_margin_mg_dl
        if active is False:
            return f"predicted low cleared: the {which} within {within} min is {trigger:.0f} mg/dL [{shown}]"
        if active is None:
            return (
                f"predicted low unchanged: the {which} within {within} min is {trigger:.0f} mg/dL, between"
                f" {on:g} and {on + p.alert_hysteresis_mg_dl:g} mg/dL [{shown}]"
            )
        return (
            f"predicted low: the {which} within {within} min is {trigger:.0f} mg/dL, below {on:g} mg/dL"
            f" (low threshold {threshold:g}) [{shown}]"
        )


def _rounded(values: FloatArray) -> list[float]:
    return [round(float(v), 1) for v in values]
