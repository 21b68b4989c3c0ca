"""RhythmDetector.prefetch: the windows a batch of beats completes, cut, cleaned and encoded in one vectorised
call, must give exactly what feeding the beats one at a time gives: the same windows (hashes), quality verdicts,
probabilities, conditions and states, for every beat, whatever the batch sizes, across the buffer's eviction,
with artifacts, lost contact, several wearers interleaved, and beats that differ from the announced ones."""

from __future__ import annotations

import itertools
import random
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.clock import VirtualClock
from agent.core import Agent
from agent.models import PACKAGED_MODELS_DIR, LoadedModel, load_models
from agent.rhythm import MODEL_NAME, RhythmDetector
from agent.signals import windows as signal_windows
from agent.store import Store
from model_build.rhythm.data import load_set
from sim.bench_parts import scenario_notes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    models, _ = load_models(PACKAGED_MODELS_DIR)
    (rhythm,) = [m for m in models if m.name == MODEL_NAME]
    return rhythm


def _stream(seed: int) -> list[tuple[str, float, float, str]]:
    """Two wearers' beats, interleaved in arrival order: real AF and sinus records back to back, with a gap of
    three hours (past the buffer's two-hour horizon: it lets old beats go), out-of-range and NaN intervals, and
    a stretch without skin contact."""
    rng = np.random.default_rng(seed)
    afdb = {r.record: r for r in load_set(FIXTURES, "afdb").records}
    nsr = load_set(FIXTURES, "nsr2db").records
    out: list[tuple[str, float, float, str]] = []
    for wearer, parts in (("a", [afdb["04746"], nsr[0], afdb["06426"]]), ("b", [nsr[1], afdb["04908"]])):
        rr = np.concatenate([r.rr_s for r in parts])
        t = T0 + np.cumsum(rr)
        t[len(rr) // 2 :] += 3 * 3600.0  # the gap
        bad = rng.choice(len(rr), size=len(rr) // 200, replace=False)
        rr[bad[::2]] = 0.1  # out of range
        rr[bad[1::2]] = np.nan
        contact = np.full(len(rr), "detected", dtype=object)
        start = int(rng.integers(100, len(rr) - 200))
        contact[start : start + 60] = "not_detected"
        out += [(wearer, ti, ri, c) for ti, ri, c in zip(t.tolist(), rr.tolist(), contact.tolist(), strict=True)]
    out.sort(key=lambda beat: beat[1])
    return out


def _key(result: tuple[list[Any], dict[str, Any] | None]) -> str:
    return repr(result)  # conditions and states in full; repr, so that NaN values compare equal


def _window_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = signal_windows.RRBuffer.window

    def counted(self: signal_windows.RRBuffer) -> Any:
        calls.append(1)
        return real(self)

    monkeypatch.setattr(signal_windows.RRBuffer, "window", counted)
    return calls


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_prefetched_windows_give_what_one_at_a_time_gives(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    beats = _stream(seed)
    calls = _window_calls(monkeypatch)
    one_by_one = RhythmDetector(model)
    expected = [_key(one_by_one.feed_rr(w, t, rr, c)) for w, t, rr, c in beats]
    cut_alone = len(calls)
    assert sum("'af_probability': None" not in e and "'sha256'" in e for e in expected) > 100  # scored windows
    assert any("'irregular': True" in e for e in expected)
    assert any("'irregular': False" in e for e in expected)
    assert any("no skin contact" in e for e in expected)
    assert any("rr_time_gap" in e for e in expected)

    calls.clear()
    rng = random.Random(seed)
    batched = RhythmDetector(model)
    got: list[str] = []
    i = 0
    while i < len(beats):
        batch = beats[i : i + rng.choice([1, 2, 5, 11, 12, 13, 24, 25, 47, 100, 250, 500, 1200])]
        i += len(batch)
        for wearer in ("a", "b"):
            announced = [(t, rr) for w, t, rr, _ in batch if w == wearer]
            if announced and rng.random() < 0.1:  # a wrong announcement: the detector must notice
                j = rng.randrange(len(announced))
                announced[j] = (announced[j][0], announced[j][1] + 0.001)
            batched.prefetch(wearer, announced)
        got += [_key(batched.feed_rr(w, t, rr, c)) for w, t, rr, c in batch]
    assert got == expected
    assert len(calls) < cut_alone / 3  # most windows came from the vectorised pass


def test_agent_handle_with_and_without_prefetch_stores_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo scenario's first 80 minutes (AF from 0:31 in w-ann) through Agent.handle in random batches, once
    as the agent runs and once with prefetch switched off: the same readings, alerts, outbox and states."""
    playable, notes = scenario_notes(80 / 60, "demo")
    sizes = random.Random(5)
    partition = []
    i = 0
    while i < len(notes):
        k = sizes.choice([1, 3, 20, 100, 500])
        partition.append(notes[i : i + k])
        i += k

    def run(db: Path) -> tuple[list[Any], list[str]]:
        counter = itertools.count()
        monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=next(counter)))
        cfg = playable.make_config(db, {"host": "127.0.0.1", "port": 1, "protocol": "5"})
        store = Store(db)
        agent = Agent(cfg, store, clock=VirtualClock(playable.start))
        assert agent.rhythm is not None
        seen: list[str] = []
        real_feed = agent.rhythm.feed_rr

        def feed(*args: Any) -> Any:
            result = real_feed(*args)
            seen.append(_key(result))
            return result

        monkeypatch.setattr(agent.rhythm, "feed_rr", feed)
        for batch in partition:
            agent.handle(batch)
        store.close()
        conn = sqlite3.connect(db)
        rows = [
            conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            for table in ("readings", "alerts", "alert_state", "outbox")
        ]
        conn.close()
        return rows, seen

    with_prefetch = run(tmp_path / "with.db")
    monkeypatch.setattr(RhythmDetector, "prefetch", lambda self, wearer, beats: None)
    without = run(tmp_path / "without.db")
    assert with_prefetch == without
    rows, seen = with_prefetch
    assert any("heart_irregular_rhythm" in str(row) for row in rows[1])  # the AF was alerted
    assert sum("'sha256'" in s for s in seen) > 300
