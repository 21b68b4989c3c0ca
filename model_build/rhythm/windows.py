"""Windows of a set's records, cut by the agent's own code, with their labels and quality.

Windows come from ``agent.signals.rr.rr_windows`` (cleaning and cutting) and are gated by
``agent.signals.quality.rr_quality_mask``: the very functions the agent's rolling buffer runs, so a window
here is bit for bit the window the agent scores for the same beats (tested).

Labels, from the per-beat reference rhythm (afdb), decided before any model was trained:

- ``AF`` (1) when AFIB beats are at least half of the window's beats (``af_share >= 0.5``);
- ``not AF`` (0) when they are fewer and the window has no atrial flutter (AFL) beat; sinus (``N``, which in
  afdb covers every other rhythm) and AV junctional rhythm (``J``: regular, no fibrillation) are not AF;
- ``unlabelled`` (-1) when AFIB is a minority and AFL beats are present. Flutter is neither: with variable AV
  conduction its RR series is as irregular as AF's, with fixed conduction it is regular, and an alert on it
  is not a false alarm clinically (it carries the same stroke risk). Such windows are left out of training
  and of the window metrics, and counted.

A set with no per-beat labels takes the rhythm its documentation states (``split.ASSUME_RHYTHM``: nsr2db is
sinus throughout) or leaves its windows unlabelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.signals.quality import RRQualityLimits, rr_quality_mask
from agent.signals.rr import RRCleaning, RRWindowing, RRWindows, rr_windows
from model_build.rhythm.data import Rhythm, RRRecord
from model_build.rhythm.split import ASSUME_RHYTHM

AF_MAJORITY = 0.5
LABEL_AF, LABEL_NOT_AF, LABEL_NONE = 1, 0, -1

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class WindowTable:
    """Windows of many records, one per row, in record order then time order."""

    record: npt.NDArray[np.str_]  # record_key(): "set/record"
    start_index: IntArray
    t_start_s: FloatArray
    t_end_s: FloatArray
    rr_s: FloatArray  # cleaned, (n, n_beats): what features and the model read
    quality_ok: npt.NDArray[np.bool_]
    artifact_share: FloatArray
    ectopic_share: FloatArray
    af_share: FloatArray  # NaN where the record has no per-beat labels
    label: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def take(self, mask: npt.NDArray[np.bool_] | IntArray) -> WindowTable:
        return WindowTable(**{name: getattr(self, name)[mask] for name in _FIELDS})

    @staticmethod
    def concat(tables: Sequence[WindowTable], n_beats: int) -> WindowTable:
        if not tables:
            return empty_table(n_beats)
        return WindowTable(**{name: np.concatenate([getattr(t, name) for t in tables]) for name in _FIELDS})


_FIELDS = (
    "record",
    "start_index",
    "t_start_s",
    "t_end_s",
    "rr_s",
    "quality_ok",
    "artifact_share",
    "ectopic_share",
    "af_share",
    "label",
)


def empty_table(n_beats: int) -> WindowTable:
    return WindowTable(
        record=np.zeros(0, dtype=str),
        start_index=np.zeros(0, dtype=np.int64),
        t_start_s=np.zeros(0),
        t_end_s=np.zeros(0),
        rr_s=np.zeros((0, n_beats)),
        quality_ok=np.zeros(0, dtype=bool),
        artifact_share=np.zeros(0),
        ectopic_share=np.zeros(0),
        af_share=np.zeros(0),
        label=np.zeros(0, dtype=np.int8),
    )


def record_key(record: RRRecord) -> str:
    """``set/record``: unique across sets (the window table's ``record`` column)."""
    return f"{record.set}/{record.record}"


def beat_rhythm(record: RRRecord) -> npt.NDArray[np.uint8] | None:
    """The record's per-beat rhythm codes, or the rhythm its set's documentation states, or ``None``."""
    if record.rhythm is not None:
        return record.rhythm
    assumed = ASSUME_RHYTHM.get(record.set)
    if assumed is None:
        return None
    return np.full(len(record), int(assumed), dtype=np.uint8)


def label_windows(rhythm: npt.NDArray[np.uint8] | None, starts: IntArray, n_beats: int) -> tuple[FloatArray, IntArray]:
    """(AF share, label) of the windows of ``n_beats`` beats starting at ``starts`` (see the module docstring)."""
    if rhythm is None:
        return np.full(starts.shape, np.nan), np.full(starts.shape, LABEL_NONE, dtype=np.int64)
    af = np.concatenate([[0], np.cumsum(rhythm == Rhythm.AFIB)])
    afl = np.concatenate([[0], np.cumsum(rhythm == Rhythm.AFL)])
    af_share = (af[starts + n_beats] - af[starts]) / n_beats
    has_afl = (afl[starts + n_beats] - afl[starts]) > 0
    label = np.where(af_share >= AF_MAJORITY, LABEL_AF, np.where(has_afl, LABEL_NONE, LABEL_NOT_AF))
    return af_share.astype(np.float64), label.astype(np.int64)


def record_windows(
    record: RRRecord,
    windowing: RRWindowing,
    cleaning: RRCleaning | None = None,
    limits: RRQualityLimits | None = None,
) -> WindowTable:
    """Every complete window of one record, as the agent would cut them from its beats in order."""
    if len(record) < windowing.width:
        return empty_table(windowing.n_beats)
    w: RRWindows = rr_windows(record.t_s, record.rr_s, windowing, cleaning)
    af_share, label = label_windows(beat_rhythm(record), w.start_index, windowing.n_beats)
    return WindowTable(
        record=np.full(len(w), record_key(record)),
        start_index=w.start_index,
        t_start_s=w.t_start_s,
        t_end_s=w.t_end_s,
        rr_s=w.rr_s,
        quality_ok=rr_quality_mask(w, limits),
        artifact_share=w.artifact_share,
        ectopic_share=w.ectopic_share,
        af_share=af_share,
        label=label.astype(np.int8),
    )


def set_windows(
    records: Sequence[RRRecord],
    windowing: RRWindowing,
    cleaning: RRCleaning | None = None,
    limits: RRQualityLimits | None = None,
) -> WindowTable:
    return WindowTable.concat([record_windows(r, windowing, cleaning, limits) for r in records], windowing.n_beats)
