"""Atrial-fibrillation detection in the agent: RR intervals in, AF probability and irregular-rhythm conditions out.

Numpy only (the model runs through ``agent.models.LoadedModel``, i.e. the agent's TFLite runtime). One
:class:`RhythmDetector` serves every wearer::

    detector = RhythmDetector(load_model(PACKAGED_MODELS_DIR, "rhythm"))   # params come from the model card
    conditions, state = detector.feed_rr(wearer, t, rr_s, contact)
    for c in conditions:
        events.extend(engine.assess(c))          # agent.alerts.AlertEngine
    if state is not None:
        wearer_state.values["rhythm"] = state     # the retained state topic

``feed_rr`` takes one RR interval as ``agent.core`` stamps it: ``rr_s`` seconds long, ending at ``t`` (epoch
seconds; the last interval of a Heart Rate Measurement ends at the notification's arrival), with the
notification's sensor-contact status (``firmware_bridge.heart_rate.SensorContact`` or its value,
``"not_detected"``, ``"detected"``, ``"unsupported"``; ``None`` when unknown). Beats go into the wearer's
``agent.signals.windows.WearerWindows`` buffer, which cuts the very windows ``model_build.rhythm`` trained and
was evaluated on (same cleaning, same window grid: every ``hop`` beats a window of ``n_beats``, cleaned with
``context`` beats before and ``lookahead`` after; the card's ``params`` give them).

Most calls return ``([], None)``. When the beat completes a new window, the window is gated, then scored:

1. Gates (``agent.signals.quality``): no notification behind the window's cleaning segment may say "no skin
   contact", and the window may hold at most the card's share of artifacts and of ectopic intervals, and no
   time gap. A window that fails is not scored and does not count either way in the alert policy; the
   returned condition is ``active=None`` (change nothing) and its reason, like the state, names the gate.
2. Score: the window's cleaned intervals are encoded (:func:`model_input`) and run through the int8 model;
   the window is *irregular* when the AF probability is at least the card's threshold.
3. Alert policy, k of n: the ``heart_irregular_rhythm`` condition is active when at least ``k`` of the last
   ``n`` scored windows are irregular, inactive (clears) when none of them is, and unchanged in between.
   Windows older than ``max_age_s`` before the newest no longer count (a long gap starts the count afresh).
   ``k`` and ``n`` were chosen by measurement on TRAIN records (the card's ``build.selection`` shows how).

The condition names the model (name, version, sha256) and the window (ISO start and end, its sha256, as
``agent.signals.digest`` defines it), and says in words what was irregular: the window's normalised RMSSD,
Shannon entropy and COSEn against the values 95% of sinus-rhythm windows stay below on TRAIN (the card's
``params.reference``). Those figures are worked out only for a condition the engine may announce (active, or
inactive after an active one, or the first verdict for a wearer, when an episode may be open from before a
restart); an "in between" or a "regular" that follows "regular" says the probability and the count only.

The state (returned with every new window): ``{"af_probability": p or None, "irregular": bool or None,
"irregular_windows": count, "scored_windows": m, "policy": {"k", "n", "threshold"}, "quality": {"ok",
"reasons"}, "window": {"start", "end", "sha256", "beats"}, "model": {"name", "version"}}`` (the window
counts only when the window was scored).

Cost, measured on the build host (x86_64, shared 2 cores, ai-edge-litert): one inference (quantize, invoke,
dequantize) 0.034 ms median; a beat that completes a window 0.97 ms (cleaning its segment, encoding, the
inference, the figures for the reason); 79 µs a beat on average with a window every 12 beats. A Raspberry Pi is
several times slower; nothing here grows with the time a wearer has been connected. When a batch brings
several windows' worth of beats (a replay, a backlog), :meth:`RhythmDetector.prefetch` cuts, cleans and encodes
them in one vectorised call: 4 h of ``day-24h`` through ``Agent.handle`` went from 2.2 to 0.9 s.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.alerts import HEART_IRREGULAR_RHYTHM, Condition
from agent.errors import ModelError
from agent.models import LoadedModel
from agent.signals.errors import SignalError
from agent.signals.quality import (
    REASON_ARTIFACTS,
    REASON_ECTOPICS,
    REASON_NO_CONTACT,
    REASON_TIME_GAP,
    Gate,
    RRQualityLimits,
    combine,
    contact_gate,
    rr_quality_gate,
)
from agent.signals.rr import RRCleaning, RRWindow, RRWindowing, cosen, nrmssd, rr_windows, shannon_entropy
from agent.signals.windows import WearerWindows
from agent.topics import iso_time
from firmware_bridge.heart_rate import SensorContact

KIND = HEART_IRREGULAR_RHYTHM
SEVERITY = "warning"
MODEL_NAME = "rhythm"

# --- model input -------------------------------------------------------------------------------------------

# Template tolerance of the density channels: COSEn's r (Lake & Moorman 2011), 30 ms.
DENSITY_R_S = 0.03
_CHUNK = 4096  # windows encoded per batch: bounds the (windows, n, n) comparison arrays


def _relative(rr_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """RR / window mean - 1, clipped to [-1, 1]: the rhythm's shape, whatever the rate."""
    out: npt.NDArray[np.float64] = np.clip(rr_s / rr_s.mean(axis=-1, keepdims=True) - 1.0, -1.0, 1.0)
    return out


def _densities(rr_s: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per beat, the share of the window's other beats within r of it (templates of length 1), and of its
    other beat pairs within r of (RR_i, RR_(i+1)) (length 2; 0 for the last beat): the matches sample
    entropy counts, kept per beat so that the network sees where the regularity is."""
    n = rr_s.shape[-1]
    close = np.abs(rr_s[..., :, np.newaxis] - rr_s[..., np.newaxis, :]) <= DENSITY_R_S
    one = (close.sum(axis=-1) - 1) / (n - 1)
    pairs = close[..., :-1, :-1] & close[..., 1:, 1:]
    two = np.zeros_like(rr_s)
    two[..., :-1] = (pairs.sum(axis=-1) - 1) / (n - 2)
    return one.astype(np.float64), two


def _cosen_channel(rr_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The window's COSEn (NaN and +inf, no regularity at all, as the top), clipped to [-3, 1] and mapped to
    [-1, 1]; the same value on every beat."""
    c = cosen(rr_s)
    c = np.where(np.isnan(c) | (c > 1.0), 1.0, np.maximum(c, -3.0))
    return np.broadcast_to(((c + 1.0) / 2.0)[..., np.newaxis], rr_s.shape)


def _relative_only(rr_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    return _relative(rr_s)[..., np.newaxis].astype(np.float32)


def _relative_density(rr_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    one, two = _densities(rr_s)
    out: npt.NDArray[np.float32] = np.stack([_relative(rr_s), one, two], axis=-1).astype(np.float32)
    return out


def _relative_density_cosen(rr_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    one, two = _densities(rr_s)
    out: npt.NDArray[np.float32] = np.stack([_relative(rr_s), one, two, _cosen_channel(rr_s)], axis=-1).astype(
        np.float32
    )
    return out


# Input encodings by the name a card's ``params.input`` gives (every channel within [-1, 1], so that one
# int8 scale serves them all); a changed encoding gets a new name. ``model_build.rhythm.select`` compared them.
ENCODINGS: Mapping[str, Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float32]]] = {
    "rr_relative_v1": _relative_only,
    "rr_relative_density_v1": _relative_density,
    "rr_relative_density_cosen_v1": _relative_density_cosen,
}


def model_input(rr_s: npt.ArrayLike, encoding: str) -> npt.NDArray[np.float32]:
    """Cleaned RR windows ``(..., n_beats)`` in seconds to the model's input ``(..., n_beats, channels)``."""
    try:
        encode = ENCODINGS[encoding]
    except KeyError:
        raise ValueError(f"unknown input encoding {encoding!r}; known: {', '.join(ENCODINGS)}") from None
    rr = np.asarray(rr_s, dtype=np.float64)
    if rr.ndim != 2 or rr.shape[0] <= _CHUNK:
        return encode(rr)
    return np.concatenate([encode(rr[i : i + _CHUNK]) for i in range(0, rr.shape[0], _CHUNK)])


# --- parameters from the card --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRule:
    """k of the last n scored windows irregular raises; none of them clears; ``max_age_s`` bounds the history."""

    k: int
    n: int
    max_age_s: float

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ValueError(f"need 1 <= k <= n, got k={self.k} n={self.n}")
        if not (self.max_age_s > 0 and math.isfinite(self.max_age_s)):
            raise ValueError(f"max_age_s must be a finite number > 0, got {self.max_age_s}")


@dataclass(frozen=True)
class RhythmParams:
    """What the agent needs from the card's ``params`` (``to_json`` writes, ``from_json`` reads them)."""

    windowing: RRWindowing
    cleaning: RRCleaning
    limits: RRQualityLimits
    encoding: str
    threshold: float
    alert: AlertRule
    reference: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        w, c, q = self.windowing, self.cleaning, self.limits
        return {
            "windowing": {
                "n_beats": w.n_beats,
                "hop": w.hop,
                "context": w.context,
                "lookahead": w.lookahead,
                "max_time_gap_s": w.max_time_gap_s,
            },
            "cleaning": {
                "min_rr_s": c.min_rr_s,
                "max_rr_s": c.max_rr_s,
                "alpha": c.alpha,
                "c1": c.c1,
                "c2": c.c2,
                "median_beats": c.median_beats,
                "min_threshold_fraction": c.min_threshold_fraction,
            },
            "quality": {
                "max_artifact_share": q.max_artifact_share,
                "max_ectopic_share": q.max_ectopic_share,
                "max_time_gaps": q.max_time_gaps,
            },
            "input": self.encoding,
            "threshold": self.threshold,
            "alert": {"k": self.alert.k, "n": self.alert.n, "max_age_s": self.alert.max_age_s},
            "reference": dict(self.reference),
        }

    @classmethod
    def from_json(cls, params: Mapping[str, Any], *, model: str = MODEL_NAME) -> RhythmParams:
        """Read a card's ``params``; :class:`ModelError` names what is missing or wrong."""
        try:
            w, c, q, a = params["windowing"], params["cleaning"], params["quality"], params["alert"]
            encoding = str(params["input"])
            if encoding not in ENCODINGS:
                raise ValueError(f"input encoding {encoding!r} is not one this agent knows ({', '.join(ENCODINGS)})")
            threshold = float(params["threshold"])
            if not 0.0 < threshold < 1.0:
                raise ValueError(f"threshold must be a probability strictly between 0 and 1, got {threshold}")
            return cls(
                windowing=RRWindowing(
                    n_beats=int(w["n_beats"]),
                    hop=int(w["hop"]),
                    context=int(w["context"]),
                    lookahead=int(w["lookahead"]),
                    max_time_gap_s=float(w["max_time_gap_s"]),
                ),
                cleaning=RRCleaning(
                    min_rr_s=float(c["min_rr_s"]),
                    max_rr_s=float(c["max_rr_s"]),
                    alpha=float(c["alpha"]),
                    c1=float(c["c1"]),
                    c2=float(c["c2"]),
                    median_beats=int(c["median_beats"]),
                    min_threshold_fraction=float(c["min_threshold_fraction"]),
                ),
                limits=RRQualityLimits(
                    max_artifact_share=float(q["max_artifact_share"]),
                    max_ectopic_share=float(q["max_ectopic_share"]),
                    max_time_gaps=int(q["max_time_gaps"]),
                ),
                encoding=encoding,
                threshold=threshold,
                alert=AlertRule(k=int(a["k"]), n=int(a["n"]), max_age_s=float(a["max_age_s"])),
                reference={str(k): float(v) for k, v in dict(params.get("reference", {})).items()},
            )
        except (KeyError, TypeError, ValueError, SignalError) as exc:
            raise ModelError(model, f"card params unusable: {type(exc).__name__}: {exc}") from exc


# --- the k-of-n policy (pure; model_build replays it on TRAIN to choose k and n) ------------------------------


class KOfN:
    """The alert policy's memory for one wearer: the last ``n`` scored windows, irregular or not."""

    def __init__(self, rule: AlertRule) -> None:
        self.rule = rule
        self._history: deque[tuple[float, bool]] = deque(maxlen=rule.n)

    def push(self, t_end: float, irregular: bool) -> tuple[bool | None, int, int]:
        """Add a scored window ending at ``t_end``; return (active, irregular count, windows counted)."""
        while self._history and self._history[0][0] < t_end - self.rule.max_age_s:
            self._history.popleft()
        self._history.append((t_end, irregular))
        count = sum(1 for _, flag in self._history if flag)
        active: bool | None = True if count >= self.rule.k else (False if count == 0 else None)
        return active, count, len(self._history)


# --- the detector ---------------------------------------------------------------------------------------------


@dataclass
class _Ahead:
    """Windows cut and encoded ahead of the beats that complete them (``RhythmDetector.prefetch``).

    ``beats`` are the (t, rr) pairs expected from beat number ``first`` on; ``windows`` maps a window's start
    index to the window and its model input. A beat that differs from the expected one drops all of it."""

    first: int
    beats: list[tuple[float, float]]
    windows: dict[int, tuple[RRWindow, npt.NDArray[np.float32]]]


@dataclass
class _Wearer:
    windows: WearerWindows
    policy: KOfN
    no_contact: deque[int] = field(default_factory=deque)  # beat indices whose notification said no contact
    last_start: int = -1
    # The last verdict (True/False) this detector gave the alert engine; None before the first (an episode
    # may then be open from before a restart).
    told: bool | None = None
    ahead: _Ahead | None = None


# The detector needs only the beats its next window rests on, and the buffer keeps those (width + hop beats)
# whatever its horizon. With a horizon this short its capacity is exactly that many beats: 54 per wearer instead
# of the room for two hours of them, and old beats go by count.
_RR_HORIZON_S = 1.0

# SensorContact(contact) is NOT_DETECTED, for the values and members feed_rr is given (an enum lookup per beat
# costs more than the rest of a beat that completes no window).
_NOT_DETECTED = {c: c is SensorContact.NOT_DETECTED for c in SensorContact} | {
    c.value: c is SensorContact.NOT_DETECTED for c in SensorContact
}

_REASON_WORDS = {
    REASON_NO_CONTACT: "the strap reported no skin contact",
    REASON_ARTIFACTS: "too many artifact intervals (missed or extra beats)",
    REASON_ECTOPICS: "too many ectopic (premature) beats",
    REASON_TIME_GAP: "a gap in the beats (lost notifications)",
}


class RhythmDetector:
    """Per-wearer RR buffers, the rhythm model and its alert policy (see the module docstring)."""

    def __init__(self, model: LoadedModel, params: RhythmParams | None = None) -> None:
        if params is None:
            if model.card is None:
                raise ModelError(model.name, "no model card: pass RhythmParams")
            params = RhythmParams.from_json(model.card.params, model=model.name)
        n = params.windowing.n_beats
        expected = (1, n, model_input(np.ones((1, n)), params.encoding).shape[-1])
        if tuple(model.input.shape) != expected:
            raise ModelError(model.name, f"input tensor shape {model.input.shape} does not fit the params' {expected}")
        self.model = model
        self.params = params
        self._wearers: dict[str, _Wearer] = {}

    def _wearer(self, wearer: str) -> _Wearer:
        state = self._wearers.get(wearer)
        if state is None:
            p = self.params
            buffers = WearerWindows(p.windowing, None, cleaning=p.cleaning, horizon_s=_RR_HORIZON_S)
            state = self._wearers[wearer] = _Wearer(windows=buffers, policy=KOfN(p.alert))
        return state

    def prefetch(self, wearer: str, beats: Sequence[tuple[float, float]]) -> None:
        """Announce the next ``feed_rr`` beats of ``wearer`` as (t, rr_s) pairs, in order (``agent.core`` does
        for each batch): the windows they will complete are cut, cleaned and encoded now, all in one vectorised
        call, instead of one at a time as each completes. Nothing else changes: ``feed_rr`` still takes every
        beat and returns exactly what it would have (a window's content depends only on its segment's raw
        beats, and every operation works row by row); a beat that is not the announced one makes it cut the
        rest one at a time again. Fewer than two windows to come: nothing is done ahead."""
        ws = self._wearer(wearer)
        ws.ahead = None
        buffer = ws.windows.rr
        assert buffer is not None
        w = self.params.windowing
        seen = buffer.beats_seen
        end = seen + len(beats)
        if end < w.width:
            return
        # The newest window after each of the beats: one every hop beats, from the first past the current one.
        first = w.context + (max(seen + 1, w.width) - w.width) // w.hop * w.hop
        if first <= ws.last_start:
            first += w.hop
        last = w.context + (end - w.width) // w.hop * w.hop
        if last < first + w.hop:
            return
        starts = np.arange(first, last + 1, w.hop, dtype=np.int64)
        base = int(starts[0]) - w.context  # the first beat any of them needs
        if base < seen:
            t_kept, rr_kept = buffer.beats()
            kept = seen - base
            if kept > t_kept.size:
                return  # not expected: the buffer keeps width + hop beats; cut them one at a time then
            t_all = np.concatenate([t_kept[t_kept.size - kept :], np.array([b[0] for b in beats], dtype=np.float64)])
            rr_all = np.concatenate([rr_kept[rr_kept.size - kept :], np.array([b[1] for b in beats], dtype=np.float64)])
        else:
            t_all = np.array([b[0] for b in beats[base - seen :]], dtype=np.float64)
            rr_all = np.array([b[1] for b in beats[base - seen :]], dtype=np.float64)
        if not np.all(np.isfinite(t_all)):
            return  # feed_rr will refuse that beat; leave it to do so
        cut = rr_windows(t_all, rr_all, w, self.params.cleaning, starts=starts - base, index_offset=base)
        encoded = model_input(cut.rr_s, self.params.encoding)
        windows = {int(start): (cut.window(i), encoded[i]) for i, start in enumerate(starts.tolist())}
        ws.ahead = _Ahead(first=seen, beats=list(beats), windows=windows)

    def feed_rr(
        self, wearer: str, t: float, rr_s: float, contact: SensorContact | str | None = None
    ) -> tuple[list[Condition], dict[str, Any] | None]:
        """One RR interval of ``wearer``; see the module docstring for what comes back."""
        ws = self._wearer(wearer)
        buffer = ws.windows.rr
        assert buffer is not None
        index = buffer.beats_seen
        ahead = ws.ahead
        if ahead is not None:
            i = index - ahead.first
            if not (0 <= i < len(ahead.beats) and ahead.beats[i] == (t, rr_s)):
                ws.ahead = ahead = None
        buffer.add(t, rr_s)
        if contact is not None:
            no_contact = _NOT_DETECTED.get(contact)
            if no_contact is None:  # not one of them: SensorContact says so (ValueError) or knows it
                no_contact = SensorContact(contact) is SensorContact.NOT_DETECTED
            if no_contact:
                ws.no_contact.append(index)
        w = self.params.windowing
        seen = index + 1
        if seen < w.width:
            return [], None
        start = w.context + (seen - w.width) // w.hop * w.hop  # the buffer's newest window
        if start == ws.last_start:
            return [], None
        ready = None
        if ahead is not None:
            ready = ahead.windows.pop(start, None)
            if not ahead.windows:
                ws.ahead = None
        if ready is None:
            window = buffer.window()
            assert window is not None
            assert window.start_index == start
            encoded = None
        else:
            window, encoded = ready
        ws.last_start = start
        first = start - w.context
        while ws.no_contact and ws.no_contact[0] < first:
            ws.no_contact.popleft()
        in_segment = [SensorContact.NOT_DETECTED] if any(i < first + w.width for i in ws.no_contact) else []
        gate = combine(contact_gate(in_segment), rr_quality_gate(window, self.params.limits))
        return self._assess(wearer, ws, window, gate, encoded)

    def _assess(
        self, wearer: str, ws: _Wearer, window: RRWindow, gate: Gate, encoded: npt.NDArray[np.float32] | None
    ) -> tuple[list[Condition], dict[str, Any] | None]:
        p = self.params
        span = {"start": iso_time(window.t_start_s), "end": iso_time(window.t_end_s), "sha256": window.sha256}
        state: dict[str, Any] = {
            "af_probability": None,
            "irregular": None,
            "policy": {"k": p.alert.k, "n": p.alert.n, "threshold": p.threshold},
            "quality": {"ok": gate.ok, "reasons": list(gate.reasons)},
            "window": {**span, "beats": p.windowing.n_beats},
            "model": {"name": self.model.name, "version": self.model.version},
        }
        base = self._condition_base(wearer, window, span)
        if not gate.ok:
            why = "; ".join(_REASON_WORDS.get(r, r) for r in gate.reasons)
            reason = f"rhythm not assessed for the window ending {span['end']}: {why}"
            return [Condition(**base, active=None, reason=reason, values={"quality": list(gate.reasons)})], state
        if encoded is None:  # not cut ahead (RhythmDetector.prefetch): encode it now
            encoded = model_input(window.rr_s[np.newaxis], p.encoding)[0]
        prob = float(self.model.predict(encoded[np.newaxis])[0, 0])
        irregular = prob >= p.threshold
        active, count, counted = ws.policy.push(window.t_end_s, irregular)
        state.update(
            af_probability=round(prob, 4), irregular=irregular, irregular_windows=count, scored_windows=counted
        )
        policy = f"{count} of the last {counted} windows ({p.windowing.n_beats} beats each) irregular"
        if active is None or (active is False and ws.told is False):
            # Nothing for the engine to announce: in between changes nothing, and "regular" without an
            # episode open stays silent. The figures for the words (sample entropy twice) are skipped: this is
            # nearly every window of nearly every wearer.
            values = {"af_probability": round(prob, 4), "irregular_windows": count, "scored_windows": counted}
            verdict = "rhythm uncertain" if active is None else "rhythm regular"
            reason = f"{verdict}: {policy}; latest window AF probability {prob:.2f}"
            return [Condition(**base, active=active, reason=reason, values=values)], state
        ws.told = active
        values, words = self._describe(window.rr_s, prob)
        values.update(irregular_windows=count, scored_windows=counted)
        if active is True:
            reason = (
                f"irregular rhythm, atrial fibrillation suspected: {policy} (alert at {p.alert.k} of {p.alert.n});"
                f" latest window {words}"
            )
        else:
            reason = f"rhythm regular again: none of the last {counted} windows irregular; latest window {words}"
        return [Condition(**base, active=active, reason=reason, values=values)], state

    def _condition_base(self, wearer: str, window: RRWindow, span: dict[str, str]) -> dict[str, Any]:
        p, m = self.params, self.model
        thresholds = {"af_probability": p.threshold, "k": float(p.alert.k), "n": float(p.alert.n)}
        thresholds.update(p.reference)
        return {
            "wearer": wearer,
            "kind": KIND,
            "t": window.t_end_s,
            "severity": SEVERITY,
            "thresholds": thresholds,
            "sustain_s": 0.0,
            "source": {
                "type": "model",
                "model": {"name": m.name, "version": m.version, "sha256": m.sha256},
                "window": dict(span),
            },
            "raw": {"rr_s": window.rr_s.tolist()},
        }

    def _describe(self, rr_s: npt.NDArray[np.float64], prob: float) -> tuple[dict[str, Any], str]:
        """The window's irregularity figures, and a sentence comparing them with sinus rhythm on TRAIN."""
        row = rr_s[np.newaxis]
        figures = {
            "nrmssd": float(nrmssd(row)[0]),
            "shannon_entropy": float(shannon_entropy(row)[0]),
            "cosen": float(cosen(row)[0]),
        }
        labels = {"nrmssd": "normalised RMSSD", "shannon_entropy": "Shannon entropy", "cosen": "COSEn"}
        parts = []
        for key, value in figures.items():
            ref = self.params.reference.get(f"{key}_sinus_p95")
            shown = f"{value:.3g}" if math.isfinite(value) else ("undefined" if math.isnan(value) else "unbounded")
            if ref is None or not math.isfinite(value):
                parts.append(f"{labels[key]} {shown}")
            else:
                side = "above" if value > ref else "within"
                parts.append(
                    f"{labels[key]} {shown} ({side} the {ref:.3g} that 95% of sinus-rhythm windows stay below)"
                )
        hr = 60.0 / float(np.mean(rr_s))
        values: dict[str, Any] = {
            "af_probability": round(prob, 4),
            "mean_hr_bpm": round(hr, 1),
            **{k: (round(v, 4) if math.isfinite(v) else None) for k, v in figures.items()},
        }
        return values, f"AF probability {prob:.2f}, {', '.join(parts)}, mean rate {hr:.0f} bpm"
