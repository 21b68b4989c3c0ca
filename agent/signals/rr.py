"""RR intervals: cleaning, windows of N beats with their quality, and the classic AF-detector features.

Cleaning (``clean_rr``), in this order, on each segment of beats independently:

1. **Physiologic range.** An interval outside ``[min_rr_s, max_rr_s]`` (default 0.25-2.0 s, i.e. 240-30 bpm)
   or not finite is ``OUT_OF_RANGE``. Measured on the TRAIN records: below 0.25 s lie 0.09% of afdb's AFIB
   intervals and 0.07% of its N intervals; above 2.0 s lie 0.01% (AFIB) and 0.03% (N) of afdb and 0.18% of
   nsr2db, nearly all of those above 3 s, i.e. gaps in the recording rather than beats. Out-of-range
   intervals are filled by interpolation before step 2 so that they do not distort its thresholds.
2. **Beat classification** after Lipponen JA, Tarvainen MP. A robust algorithm for heart rate variability
   time series artefact correction using novel beat classification. J Med Eng Technol 2019;43(3):173-181,
   doi:10.1080/03091902.2019.1640306 (the method behind Kubios' automatic correction). With
   dRR_n = RR_n - RR_(n-1) and mRR_n = RR_n - median of the 11 intervals centred on n (negative values
   doubled), each normalised by a threshold Th = alpha * quartile deviation of its absolute values
   (alpha = 5.2):
   - a beat with |dRR| > 1 is ``ECTOPIC`` when its neighbours' dRR make the short-long (or long-short) shape
     of a premature beat: S11 = dRR_n, S12 = max (dRR_(n-1), dRR_(n+1)) if dRR_n > 0 else their min, and
     (S11 > 1 and S12 < -c1 S11 - c2) or (S11 < -1 and S12 > -c1 S11 + c2), c1 = 0.13, c2 = 0.17. For a
     premature beat this catches a fully compensatory pause; the short coupling interval before it comes out
     of the next test as short;
   - otherwise it, and the next beat when |dRR_(n+1)| < |dRR_(n+2)|, is tested for long/short:
     S22 = min (dRR_(n+1), dRR_(n+2)) if dRR_n >= 0 else their max; long = S11 > 1 and S22 < -1,
     short = S11 < -1 and S22 > 1, or |mRR| > 3. A long beat with |RR/2 - medRR| < Th2 is ``MISSED`` (a beat
     the detector did not see), a short one with |RR_n + RR_(n+1) - medRR| < Th2 is ``EXTRA`` (a false
     detection; both halves of the split interval are flagged), any other ``LONG_SHORT``.
   The flow follows the paper's Figure 1 as NeuroKit2's ``signal_fixpeaks(method="kubios")`` implements it.
   Differences from the paper, each on purpose:
   - Long/short intervals are split: one shorter than its local median (and not half of an extra
     detection) is a real beat that came early, a premature beat, and counts ``ECTOPIC``, as does a long
     interval flagged right after it or after an ectopic one (its pause). Only the remaining long intervals
     stay ``LONG_SHORT``. The paper's subspace test calls a premature beat ectopic only when its pause
     compensates fully; premature atrial beats often do not (afdb record 06995 has runs of them), and as
     "long/short" they would have counted as artifacts, so the quality gate would have blamed the sensor
     for the heart.
   - Thresholds come from the whole segment being cleaned (``RRWindowing.width`` beats, about the paper's 91)
     rather than a sliding 91-beat window, so that a window's content depends only on its own segment.
   - Each threshold is at least ``min_threshold_fraction`` (20%) of the segment's median RR. Without a floor
     a very regular or coarsely quantised series (quartile deviation 0, e.g. nsr2db's 7.8 ms ticks at rest)
     flags every change as an artifact. 20% is the size of Malik's classic rule (Malik M, Farrell T, Cripps
     T, Camm AJ. Heart rate variability in relation to prognosis after myocardial infarction: selection of
     optimal processing techniques. Eur Heart J 1989;10:1060-1074): no beat that differs from its predecessor
     by less than 20% of the segment's median RR is ever a candidate.
3. **Correction in place.** Every flagged interval is replaced by linear interpolation (over beat index)
   between the nearest unflagged intervals, or held at the nearest one at an edge. Nothing is inserted or
   deleted, unlike the paper's correction of missed and extra beats, so a window keeps exactly N intervals
   aligned with the recording's per-beat labels and times; a window with many corrections is rejected by the
   quality gate instead. A segment with no unflagged interval is clipped to the range.

A series in which no interval is flagged comes back unchanged, bit for bit.

Known limit, measured: the thresholds adapt to the segment's own spread, which is what leaves atrial
fibrillation alone (on afdb's TRAIN AFIB windows 2.2% of intervals are flagged, against 2.7% in its N windows
and 0.6% on nsr2db), but premature beats frequent enough to dominate the spread (about one beat in five, as in
afdb record 06995) widen the thresholds too, and then they pass unflagged: the window looks irregular and
clean. Telling such runs from AF is left to the detector; cleaning cannot, without also flattening AF.

Windows (``rr_windows``): window k holds beats ``[s, s + n_beats)`` with ``s = context + k * hop``, counted
from the first beat of the stream. It is cleaned as part of the segment ``[s - context, s + n_beats +
lookahead)``: ``context`` earlier beats give the first beats their predecessors and the thresholds more data,
``lookahead`` later beats let the classifier see the compensatory pause after a premature last beat (the
agent waits that many beats). A window's content is a function of its segment's raw beats only; this is what
lets the agent's rolling buffer and ``model_build`` cut identical windows.

Quality per window: ``artifact_share`` (share of its N intervals classified ``OUT_OF_RANGE``, ``MISSED``,
``EXTRA`` or ``LONG_SHORT``: detection errors), ``ectopic_share`` (``ECTOPIC``: a premature beat usually flags two
intervals, its short coupling interval and its pause) and ``time_gaps``: beats whose time since the previous
beat differs from their RR interval by more than ``max_time_gap_s``. The agent stamps beats from notification
arrival times (``agent.core``: the last interval of a notification ends at its arrival), which jitter by up to
about a second because a strap sends once a second; a gap above 2 s means lost notifications (a dropped link),
and the intervals on both sides of it are not successive.

Features (along the last axis, one value per window; RR in seconds):

- ``rmssd``: sqrt(mean((RR_(n+1) - RR_n)^2)). Task Force of the ESC and NASPE. Heart rate variability:
  standards of measurement, physiological interpretation and clinical use. Circulation 1996;93:1043-1065.
- ``nrmssd``: RMSSD / mean RR, the normalised RMSSD of Dash S, Chon KH, Lu S, Raeder EA. Automatic real time
  detection of atrial fibrillation. Ann Biomed Eng 2009;37(9):1701-1709, doi:10.1007/s10439-009-9740-z.
- ``pnn50``: share of successive differences with |dRR| > 50 ms (Task Force 1996). The denominator is the
  number of differences (n - 1), the population NN50 is counted in.
- ``shannon_entropy``: entropy of the histogram of the window's RR values in 16 equal bins between its min and
  max (Dash et al. 2009), -sum p ln p / ln(16), so 0 (all in one bin) to 1 (uniform). Dash et al. first trim
  outlying intervals from each 128-beat segment (the 8 longest and 8 shortest, as we recall the paper; not
  checked against its text here); trimming is left to the caller.
- ``sample_entropy``: SampEn(m, r) = -ln(A / B) of Richman JS, Moorman JR. Physiological time-series analysis
  using approximate entropy and sample entropy. Am J Physiol Heart Circ Physiol 2000;278:H2039-H2049. B and A
  count pairs of templates of length m and m + 1 (Chebyshev distance <= r, no self-matches) among the same
  n - m starting points. NaN when B = 0, +inf when A = 0 < B (both undefined in the paper's terms).
- ``cosen``: COSEn = SampEn + ln(2r) - ln(mean RR), Lake DE, Moorman JR. Accurate estimation of entropy in
  very short physiological time series: the problem of atrial fibrillation detection in implanted ventricular
  devices. Am J Physiol Heart Circ Physiol 2011;300:H319-H325, doi:10.1152/ajpheart.00561.2010; defaults
  m = 1, r = 30 ms. The paper lets r grow until enough matches are found for a confident estimate; here r is
  fixed (so that a window's feature depends on the window alone), and COSEn is NaN or +inf where SampEn is.
  On afdb's TRAIN records, 64-beat windows, cleaned: AUC of AFIB against N windows 0.998 for COSEn, 0.96 for
  pNN50, 0.93 for nRMSSD (0.91 before cleaning), 0.72 for the Shannon entropy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from agent.signals.digest import readonly_copy, window_sha256
from agent.signals.errors import SignalError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
ClassArray = npt.NDArray[np.uint8]

# Windows cleaned per vectorised batch in rr_windows: bounds memory (about 20 float64 temporaries of
# chunk x width) without changing any result, since every operation works row by row.
_CHUNK_WINDOWS = 4096


class BeatClass(IntEnum):
    """What cleaning decided about one interval (stored per beat as uint8)."""

    NORMAL = 0
    OUT_OF_RANGE = 1
    ECTOPIC = 2
    MISSED = 3
    EXTRA = 4
    LONG_SHORT = 5


ARTIFACT_CLASSES = (BeatClass.OUT_OF_RANGE, BeatClass.MISSED, BeatClass.EXTRA, BeatClass.LONG_SHORT)


@dataclass(frozen=True)
class RRCleaning:
    """Cleaning parameters; the defaults are the paper's constants and the ranges measured above."""

    min_rr_s: float = 0.25
    max_rr_s: float = 2.0
    alpha: float = 5.2
    c1: float = 0.13
    c2: float = 0.17
    median_beats: int = 11
    min_threshold_fraction: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.min_rr_s < self.max_rr_s:
            raise SignalError("min_rr_s/max_rr_s", (self.min_rr_s, self.max_rr_s), "need 0 < min_rr_s < max_rr_s")
        for name in ("alpha", "min_threshold_fraction"):
            if not getattr(self, name) > 0.0:
                raise SignalError(name, getattr(self, name), "must be > 0")
        if self.median_beats < 3 or self.median_beats % 2 == 0:
            raise SignalError("median_beats", self.median_beats, "must be odd and >= 3")


@dataclass(frozen=True)
class RRWindowing:
    """Where windows fall: ``n_beats`` per window, a new one every ``hop`` beats, cleaned with ``context``
    beats before and ``lookahead`` beats after. ``n_beats`` and ``hop`` belong to the model (issue 7 chooses
    them; a model bundle records them)."""

    n_beats: int
    hop: int
    context: int = 16
    lookahead: int = 2
    max_time_gap_s: float = 2.0

    def __post_init__(self) -> None:
        if self.n_beats < 8:
            raise SignalError("n_beats", self.n_beats, "must be >= 8")
        if self.hop < 1:
            raise SignalError("hop", self.hop, "must be >= 1")
        if self.context < 1:
            raise SignalError("context", self.context, "must be >= 1: the first beat needs its predecessor")
        if not 0 <= self.lookahead <= 8:
            raise SignalError("lookahead", self.lookahead, "must be 0-8")
        if not self.max_time_gap_s > 0.0:
            raise SignalError("max_time_gap_s", self.max_time_gap_s, "must be > 0")

    @property
    def width(self) -> int:
        """Beats in the segment each window is cleaned from."""
        return self.context + self.n_beats + self.lookahead


@dataclass(frozen=True)
class CleanedRR:
    """``clean_rr``'s result, same shape as its input: corrected intervals and each one's ``BeatClass``."""

    rr_s: FloatArray
    beat_class: ClassArray


@dataclass(frozen=True, eq=False)
class RRWindow:
    """One window of ``n_beats`` intervals.

    ``start_index`` counts beats from the first beat of the stream (the batch input's index 0, or the first beat
    a rolling buffer received). The span runs from the start of the first interval (its end time minus its raw
    length) to the end of the last. ``rr_s`` is what features and models consume; ``sha256`` hashes it. The
    arrays are read-only: a window is shared (the rolling buffer caches it) and its hash must stay true.
    """

    start_index: int
    t_start_s: float
    t_end_s: float
    rr_s: FloatArray
    raw_rr_s: FloatArray
    beat_class: ClassArray
    artifact_share: float
    ectopic_share: float
    time_gaps: int

    @cached_property
    def sha256(self) -> str:
        return window_sha256(self.rr_s)


@dataclass(frozen=True, eq=False)
class RRWindows:
    """Many windows, one per row (``rr_windows``'s result); ``window(i)`` gives row i as an ``RRWindow``."""

    start_index: IntArray
    t_start_s: FloatArray
    t_end_s: FloatArray
    rr_s: FloatArray
    raw_rr_s: FloatArray
    beat_class: ClassArray
    artifact_share: FloatArray
    ectopic_share: FloatArray
    time_gaps: IntArray

    def __len__(self) -> int:
        return int(self.start_index.shape[0])

    def window(self, i: int) -> RRWindow:
        return RRWindow(
            start_index=int(self.start_index[i]),
            t_start_s=float(self.t_start_s[i]),
            t_end_s=float(self.t_end_s[i]),
            rr_s=readonly_copy(self.rr_s[i]),
            raw_rr_s=readonly_copy(self.raw_rr_s[i]),
            beat_class=readonly_copy(self.beat_class[i]),
            artifact_share=float(self.artifact_share[i]),
            ectopic_share=float(self.ectopic_share[i]),
            time_gaps=int(self.time_gaps[i]),
        )


# ---------------------------------------------------------------------------------------------------- cleaning


def clean_rr(rr_s: npt.ArrayLike, cleaning: RRCleaning | None = None) -> CleanedRR:
    """Classify and correct the intervals along the last axis (each row of a 2-D input is its own segment).

    At least 3 intervals per segment. See the module docstring for the rules.
    """
    params = cleaning or RRCleaning()
    rr = np.asarray(rr_s, dtype=np.float64)
    if rr.ndim == 0 or rr.shape[-1] < 3:
        raise SignalError("rr_s", rr.shape, "need at least 3 intervals along the last axis")
    rows = rr.reshape(-1, rr.shape[-1])
    classes = _classify(rows, params)
    corrected = _correct(rows, classes, params)
    return CleanedRR(rr_s=corrected.reshape(rr.shape), beat_class=classes.reshape(rr.shape))


def _classify(rr: FloatArray, p: RRCleaning) -> ClassArray:
    """Lipponen & Tarvainen (2019) classification of each row of ``rr`` (rows, n)."""
    in_range = np.isfinite(rr) & (rr >= p.min_rr_s) & (rr <= p.max_rr_s)
    filled = _interpolate_rows(rr, in_range, p)
    floor = p.min_threshold_fraction * _quantile(np.sort(filled, axis=-1), 0.5)

    drr = np.zeros_like(filled)
    drr[:, 1:] = np.diff(filled, axis=-1)
    th1 = np.maximum(p.alpha * _quartile_deviation(np.abs(drr)), floor)
    d = drr / th1

    med = _rolling_median(filled, p.median_beats)
    mrr = filled - med
    mrr = np.where(mrr < 0.0, 2.0 * mrr, mrr)
    th2 = np.maximum(p.alpha * _quartile_deviation(np.abs(mrr)), floor)
    m = mrr / th2

    padded = _reflect(d, 2)
    d_prev, d_next, d_next2 = padded[:, 1:-3], padded[:, 3:-1], padded[:, 4:]
    s12 = np.where(d > 0.0, np.maximum(d_prev, d_next), np.where(d < 0.0, np.minimum(d_prev, d_next), 0.0))
    s22 = np.where(d >= 0.0, np.minimum(d_next, d_next2), np.maximum(d_next, d_next2))

    candidate = np.abs(d) > 1.0
    ectopic = candidate & (((d > 1.0) & (s12 < -p.c1 * d - p.c2)) | ((d < -1.0) & (s12 > -p.c1 * d + p.c2)))
    first = candidate & ~ectopic
    following = np.zeros_like(first)
    following[:, 1:] = (first & (np.abs(d_next) < np.abs(d_next2)))[:, :-1]
    is_long = (d > 1.0) & (s22 < -1.0)
    is_short = (d < -1.0) & (s22 > 1.0)
    long_short = (first | following) & (is_long | is_short | (np.abs(m) > 3.0))

    rr_next = np.concatenate([filled[:, 1:], filled[:, -1:]], axis=-1)
    missed = long_short & is_long & (np.abs(filled / 2.0 - med) < th2)
    extra = long_short & is_short & (np.abs(filled + rr_next - med) < th2)
    extra = extra | np.concatenate([extra[:, :1] & False, extra[:, :-1]], axis=-1)  # and the split's second half

    # Premature beats the subspace test does not call ectopic (the pause does not compensate fully): a flagged
    # interval shorter than its local median that is not half of a split one is a real beat that came early,
    # and a flagged longer interval right after it is its pause.
    plain = long_short & ~missed & ~extra
    premature = plain & (mrr < 0.0)
    pause = np.zeros_like(premature)
    pause[:, 1:] = plain[:, 1:] & (mrr[:, 1:] > 0.0) & (premature | ectopic)[:, :-1]

    classes = np.full(rr.shape, BeatClass.NORMAL, dtype=np.uint8)
    classes[long_short] = BeatClass.LONG_SHORT
    classes[missed] = BeatClass.MISSED
    classes[extra] = BeatClass.EXTRA
    classes[ectopic | premature | pause] = BeatClass.ECTOPIC
    classes[~in_range] = BeatClass.OUT_OF_RANGE
    return classes


def _correct(rr: FloatArray, classes: ClassArray, p: RRCleaning) -> FloatArray:
    """Replace every flagged interval; unflagged ones are returned untouched."""
    return _interpolate_rows(rr, classes == BeatClass.NORMAL, p)


def _interpolate_rows(values: FloatArray, good: BoolArray, p: RRCleaning) -> FloatArray:
    """Row-wise linear interpolation over index of the ``~good`` entries from the nearest good ones.

    Edges hold the nearest good value; a row with no good entry is clipped to the physiologic range (NaN to
    its middle). Good entries are copied, never recomputed.
    """
    n = values.shape[-1]
    index = np.arange(n)
    before = np.maximum.accumulate(np.where(good, index, -1), axis=-1)
    after = np.minimum.accumulate(np.where(good, index, n)[:, ::-1], axis=-1)[:, ::-1]
    has_before, has_after = before >= 0, after < n
    rows = np.arange(values.shape[0])[:, None]
    v_before = values[rows, np.clip(before, 0, n - 1)]
    v_after = values[rows, np.clip(after, 0, n - 1)]
    span = np.where(after > before, after - before, 1)  # good entries have before == after
    weight = (index - before) / span
    between = v_before + (v_after - v_before) * weight
    fallback = np.clip(np.where(np.isnan(values), (p.min_rr_s + p.max_rr_s) / 2.0, values), p.min_rr_s, p.max_rr_s)
    estimate = np.where(
        has_before & has_after, between, np.where(has_before, v_before, np.where(has_after, v_after, fallback))
    )
    return np.where(good, values, estimate)


# Small numpy calls dominate the cost of cleaning one segment on the device, so the order statistics below
# are computed from one sort per row instead of np.percentile / np.median (about 4x faster for one segment).


def _quantile(sorted_rows: FloatArray, q: float) -> FloatArray:
    """The q-quantile of each sorted row, shape (rows, 1), interpolating linearly between order statistics
    (numpy's default method, Hyndman & Fan type 7)."""
    position = q * (sorted_rows.shape[-1] - 1)
    lo = int(np.floor(position))
    hi = min(lo + 1, sorted_rows.shape[-1] - 1)
    low = sorted_rows[:, lo : lo + 1]
    result: FloatArray = low + (sorted_rows[:, hi : hi + 1] - low) * (position - lo)
    return result


def _quartile_deviation(x: FloatArray) -> FloatArray:
    """(Q3 - Q1) / 2 of each row, shape (rows, 1)."""
    ordered = np.sort(x, axis=-1)
    result: FloatArray = (_quantile(ordered, 0.75) - _quantile(ordered, 0.25)) / 2.0
    return result


def _reflect(x: FloatArray, k: int) -> FloatArray:
    """Each row extended by k mirrored values at both ends (numpy's ``reflect`` padding); needs n > k."""
    return np.concatenate([x[:, k:0:-1], x, x[:, -2 : -k - 2 : -1]], axis=-1)


def _rolling_median(x: FloatArray, width: int) -> FloatArray:
    """Centred running median of each row; the ends mirror the row (``reflect``), which needs n > width // 2."""
    half = width // 2
    padded = _reflect(x, half) if x.shape[-1] > half else np.pad(x, ((0, 0), (half, half)), mode="edge")
    result: FloatArray = np.sort(sliding_window_view(padded, width, axis=-1), axis=-1)[..., half]
    return result


# ----------------------------------------------------------------------------------------------------- windows


def window_starts(n_beats_seen: int, windowing: RRWindowing) -> IntArray:
    """Start indices of every complete window in a stream of ``n_beats_seen`` beats."""
    last = n_beats_seen - windowing.n_beats - windowing.lookahead
    if last < windowing.context:
        return np.zeros(0, dtype=np.int64)
    return np.arange(windowing.context, last + 1, windowing.hop, dtype=np.int64)


def rr_windows(
    t_s: npt.ArrayLike,
    rr_s: npt.ArrayLike,
    windowing: RRWindowing,
    cleaning: RRCleaning | None = None,
    *,
    starts: npt.ArrayLike | None = None,
    index_offset: int = 0,
) -> RRWindows:
    """Cut and clean every complete window of a beat stream.

    ``t_s[i]`` is the time the i-th interval ended (its beat), ``rr_s[i]`` its length; both 1-D, same length,
    times finite. ``starts`` (default: ``window_starts(len(rr_s), windowing)``) picks windows by the index of
    their first beat in these arrays; ``index_offset`` is added to the reported ``start_index`` (the rolling
    buffer passes how many beats it has already let go).
    """
    t, rr = _beats(t_s, rr_s)
    params = cleaning or RRCleaning()
    first = window_starts(rr.shape[0], windowing) if starts is None else np.asarray(starts, dtype=np.int64)
    if first.ndim != 1 or (
        first.size
        and (first.min() < windowing.context or first.max() + windowing.n_beats + windowing.lookahead > rr.shape[0])
    ):
        raise SignalError("starts", first.shape, "every window needs its context and lookahead beats inside the input")
    chunks = [first[i : i + _CHUNK_WINDOWS] for i in range(0, first.size, _CHUNK_WINDOWS)] or [first]
    parts = [_cut(t, rr, chunk, windowing, params) for chunk in chunks]
    joined = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return RRWindows(
        start_index=first + index_offset,
        t_start_s=joined["t_start_s"],
        t_end_s=joined["t_end_s"],
        rr_s=joined["rr_s"],
        raw_rr_s=joined["raw_rr_s"],
        beat_class=joined["beat_class"],
        artifact_share=joined["artifact_share"],
        ectopic_share=joined["ectopic_share"],
        time_gaps=joined["time_gaps"],
    )


def _beats(t_s: npt.ArrayLike, rr_s: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    t = np.asarray(t_s, dtype=np.float64)
    rr = np.asarray(rr_s, dtype=np.float64)
    if t.ndim != 1 or rr.shape != t.shape:
        raise SignalError("t_s/rr_s", (t.shape, rr.shape), "need two 1-D arrays of the same length")
    if not np.all(np.isfinite(t)):
        raise SignalError("t_s", t.shape, "beat times must be finite")
    return t, rr


def _cut(
    t: FloatArray, rr: FloatArray, starts: IntArray, w: RRWindowing, p: RRCleaning
) -> dict[str, npt.NDArray[np.generic]]:
    """Clean the segments of the windows starting at ``starts`` and keep the window part of each."""
    segment = starts[:, None] - w.context + np.arange(w.width)
    keep = slice(w.context, w.context + w.n_beats)
    cleaned = clean_rr(rr[segment], p) if starts.size else CleanedRR(rr[segment], np.zeros(segment.shape, np.uint8))
    window_rr, window_class = cleaned.rr_s[:, keep], cleaned.beat_class[:, keep]
    raw = rr[segment][:, keep]
    since_previous = np.diff(t[segment], axis=-1)[:, w.context - 1 : w.context - 1 + w.n_beats]
    gaps = np.count_nonzero(np.abs(since_previous - raw) > w.max_time_gap_s, axis=-1)
    artifacts = (window_class != BeatClass.NORMAL) & (window_class != BeatClass.ECTOPIC)
    ends = starts + w.n_beats - 1
    return {
        "t_start_s": t[starts] - np.where(np.isfinite(rr[starts]), rr[starts], 0.0),
        "t_end_s": t[ends],
        "rr_s": window_rr,
        "raw_rr_s": raw,
        "beat_class": window_class,
        "artifact_share": np.count_nonzero(artifacts, axis=-1) / w.n_beats,
        "ectopic_share": np.count_nonzero(window_class == BeatClass.ECTOPIC, axis=-1) / w.n_beats,
        "time_gaps": gaps.astype(np.int64),
    }


# ---------------------------------------------------------------------------------------------------- features


def _rows(rr_s: npt.ArrayLike, minimum: int) -> FloatArray:
    rr = np.asarray(rr_s, dtype=np.float64)
    if rr.ndim == 0 or rr.shape[-1] < minimum:
        raise SignalError("rr_s", rr.shape, f"need at least {minimum} intervals along the last axis")
    return rr


def rmssd(rr_s: npt.ArrayLike) -> FloatArray:
    """Root mean square of successive differences, seconds (Task Force 1996)."""
    rr = _rows(rr_s, 2)
    return np.asarray(np.sqrt(np.mean(np.square(np.diff(rr, axis=-1)), axis=-1)), dtype=np.float64)


def nrmssd(rr_s: npt.ArrayLike) -> FloatArray:
    """RMSSD divided by the mean interval (Dash et al. 2009), dimensionless."""
    rr = _rows(rr_s, 2)
    return np.asarray(rmssd(rr) / np.mean(rr, axis=-1), dtype=np.float64)


def pnn50(rr_s: npt.ArrayLike, threshold_s: float = 0.05) -> FloatArray:
    """Share of successive differences larger than ``threshold_s`` in magnitude (0-1)."""
    rr = _rows(rr_s, 2)
    big = np.abs(np.diff(rr, axis=-1)) > threshold_s
    return np.asarray(np.count_nonzero(big, axis=-1) / big.shape[-1], dtype=np.float64)


def shannon_entropy(rr_s: npt.ArrayLike, bins: int = 16) -> FloatArray:
    """Entropy of the histogram of RR values in ``bins`` equal bins from min to max, normalised to 0-1."""
    if bins < 2:
        raise SignalError("bins", bins, "must be >= 2")
    rr = _rows(rr_s, 2)
    flat = rr.reshape(-1, rr.shape[-1])
    low = flat.min(axis=-1, keepdims=True)
    width = flat.max(axis=-1, keepdims=True) - low
    scaled = np.divide(flat - low, width, out=np.zeros_like(flat), where=width > 0.0)
    which = np.minimum((scaled * bins).astype(np.int64), bins - 1)
    offsets = np.arange(flat.shape[0], dtype=np.int64)[:, None] * bins
    counts = np.bincount((which + offsets).ravel(), minlength=flat.shape[0] * bins).reshape(-1, bins)
    p = counts / flat.shape[-1]
    terms = np.where(counts > 0, p * np.log(np.where(counts > 0, p, 1.0)), 0.0)
    entropy = -terms.sum(axis=-1) / np.log(bins)
    return np.asarray(entropy.reshape(rr.shape[:-1]), dtype=np.float64)


def sample_entropy(rr_s: npt.ArrayLike, m: int = 2, r_s: float = 0.03) -> FloatArray:
    """SampEn(m, r) of Richman & Moorman (2000) with tolerance ``r_s`` in the input's unit (seconds)."""
    matches_m, matches_m1 = _template_matches(rr_s, m, r_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = -np.log(matches_m1 / matches_m)
    return np.asarray(np.where(matches_m > 0, result, np.nan), dtype=np.float64)


def cosen(rr_s: npt.ArrayLike, m: int = 1, r_s: float = 0.03) -> FloatArray:
    """Coefficient of sample entropy (Lake & Moorman 2011): SampEn + ln(2r) - ln(mean RR)."""
    rr = _rows(rr_s, m + 2)
    return np.asarray(sample_entropy(rr, m, r_s) + np.log(2.0 * r_s) - np.log(np.mean(rr, axis=-1)), dtype=np.float64)


def _template_matches(rr_s: npt.ArrayLike, m: int, r_s: float) -> tuple[FloatArray, FloatArray]:
    """(B, A): pairs i < j of the n - m templates matching at length m, and at length m + 1."""
    if m < 1:
        raise SignalError("m", m, "must be >= 1")
    if not r_s > 0.0:
        raise SignalError("r_s", r_s, "must be > 0")
    rr = _rows(rr_s, m + 2)
    flat = rr.reshape(-1, rr.shape[-1])
    n = flat.shape[-1]
    count = n - m
    upper = np.triu(np.ones((count, count), dtype=bool), k=1)
    b_counts = np.empty(flat.shape[0], dtype=np.float64)
    a_counts = np.empty(flat.shape[0], dtype=np.float64)
    step = max(1, 2_000_000 // (n * n))
    for lo in range(0, flat.shape[0], step):
        block = flat[lo : lo + step]
        close = np.abs(block[:, :, None] - block[:, None, :]) <= r_s
        match_m = upper & close[:, :count, :count]
        for lag in range(1, m):
            match_m &= close[:, lag : lag + count, lag : lag + count]
        match_m1 = match_m & close[:, m : m + count, m : m + count]
        b_counts[lo : lo + step] = np.count_nonzero(match_m, axis=(1, 2))
        a_counts[lo : lo + step] = np.count_nonzero(match_m1, axis=(1, 2))
    return b_counts.reshape(rr.shape[:-1]), a_counts.reshape(rr.shape[:-1])
