"""The in-process parts of ``vigil bench``: each figure next to the bare cost of the work it cannot avoid.

Every comparison runs the agent's way and the bare way in alternating rounds and keeps the median of the
per-round ratios, so that a neighbour taking the CPU for a while moves both sides of a ratio alike.

* decode: 0x2A37 and 0x2AA7 payloads (real ones, from tests/fixtures/gatt_golden.json) through the codecs.
* store: reading rows through :meth:`agent.store.Store.write_batch` against ``BEGIN; executemany; COMMIT`` of
  the same rows, already as tuples, into the same schema with the same pragmas (WAL, ``synchronous=FULL``).
* inference: :meth:`agent.models.LoadedModel.predict` (quantize, invoke, dequantize, checks, lock) against
  ``interpreter.invoke()`` alone on a second interpreter of the same model, input already in place.
* end to end: the first hours of the ``day-24h`` scenario's notifications through :meth:`agent.core.Agent.handle`
  in batches of ``BATCH_MAX`` (what the core takes at maximum speed: decode, store, windows, models, alerts,
  outbox), against the sum of the bare parts for the same readings: the codecs on every payload; the rows the
  agent wrote (readings, alerts, outbox) inserted bare in as many transactions; the windows cut and encoded in
  one vectorised pass per signal, as ``model_build`` does; and a bare invoke for every inference the agent ran.
  The rules of the alert engine have no bare counterpart (a comparison per reading) and count as overhead.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.clock import VirtualClock
from agent.core import BATCH_MAX, Agent
from agent.forecast import ForecastParams, encode_windows
from agent.messages import RawNotification
from agent.models import (
    PACKAGED_MODELS_DIR,
    LoadedModel,
    dequantize_table,
    load_models,
    quantize,
    quantize_thresholds,
)
from agent.rhythm import RhythmParams, model_input
from agent.runtime import Interpreter, load_interpreter
from agent.signals.glucose import resample_glucose
from agent.signals.rr import rr_windows
from agent.store import Reading, Store
from firmware_bridge.battery import decode_battery_level
from firmware_bridge.cgm import decode_cgm_measurement
from firmware_bridge.heart_rate import decode_heart_rate_measurement

HR_PAYLOAD = bytes.fromhex("164d1603")  # Polar H7: contact detected, one RR interval
CGM_PAYLOAD = bytes.fromhex("0d4373002c010324001a003e04")  # one record: Cal/Temp, trend, quality, E2E-CRC

DECODERS: dict[str, Callable[[bytes], object]] = {
    "2A37": decode_heart_rate_measurement,
    "2AA7": decode_cgm_measurement,
    "2A19": decode_battery_level,
}


def per_call(fn: Callable[[], object], seconds: float) -> float:
    """Seconds per call of ``fn``, over about ``seconds`` (batches grown until one is measurable)."""
    batch = 1
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min(0.01, seconds / 4):
            break
        batch *= 2
    count = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        for _ in range(batch):
            fn()
        count += batch
        elapsed = time.perf_counter() - start
    return elapsed / count


def compare(
    agent_way: Callable[[], object], bare: Callable[[], object], *, seconds: float, rounds: int
) -> dict[str, float]:
    """Alternating rounds of both; medians of the times per call and of the per-round ratios."""
    ours, theirs, ratios = [], [], []
    for _ in range(rounds):
        b = per_call(bare, seconds)
        a = per_call(agent_way, seconds)
        ours.append(a)
        theirs.append(b)
        ratios.append(a / b)
    return {
        "agent_s": statistics.median(ours),
        "bare_s": statistics.median(theirs),
        "ratio": statistics.median(ratios),
    }


# -- decode ----------------------------------------------------------------------------------------------------


def decode_rates(*, seconds: float, rounds: int) -> dict[str, float]:
    hr = [1.0 / per_call(lambda: decode_heart_rate_measurement(HR_PAYLOAD), seconds) for _ in range(rounds)]
    cgm = [1.0 / per_call(lambda: decode_cgm_measurement(CGM_PAYLOAD), seconds) for _ in range(rounds)]
    return {"decode_hr_per_s": round(statistics.median(hr)), "decode_cgm_per_s": round(statistics.median(cgm))}


# -- store -----------------------------------------------------------------------------------------------------

INSERT_READING = "INSERT INTO readings (wearer, device, kind, t, value, extra) VALUES (?, ?, ?, ?, ?, ?)"


def _strap_readings(n: int, t0: float = 1.7e9) -> list[Reading]:
    """What straps produce: a heart rate with its contact status, then about one RR interval each."""
    out: list[Reading] = []
    t = t0
    while len(out) < n:
        out.append(Reading("w0", "B0:00:00:00:00:01", "hr", t, 70.0, {"contact": "detected"}))
        out.append(Reading("w0", "B0:00:00:00:00:01", "rr", t, 0.857))
        t += 1.0
    return out[:n]


def bare_connection(path: Path) -> sqlite3.Connection:
    """A connection to a database with the store's schema, set up as the store sets up its own."""
    Store(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def store_rates(folder: Path, *, batch: int, seconds: float, rounds: int) -> dict[str, float]:
    readings = _strap_readings(batch)
    rows = [(r.wearer, r.device, r.kind, r.t, r.value, json.dumps(r.extra) if r.extra else None) for r in readings]
    store = Store(folder / f"store-{batch}.db")
    conn = bare_connection(folder / f"bare-{batch}.db")

    def ours() -> None:
        store.write_batch(readings=readings, now=1.7e9)

    def bare() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_READING, rows)
        conn.execute("COMMIT")

    try:
        r = compare(ours, bare, seconds=seconds, rounds=rounds)
    finally:
        store.close()
        conn.close()
    return {
        "rows_per_s": round(batch / r["agent_s"]),
        "bare_rows_per_s": round(batch / r["bare_s"]),
        "over_bare_ratio": round(r["ratio"], 3),
    }


# -- inference -------------------------------------------------------------------------------------------------


def model_inputs(model: LoadedModel, seed: int = 0) -> npt.NDArray[np.float32]:
    """An input in the range the encodings produce ([-1, 1] per channel)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, model.input.shape).astype(np.float32)


def second_interpreter(model: LoadedModel) -> Interpreter:
    """Another interpreter of the same packaged file on the same runtime: what the bare costs run on."""
    content = (PACKAGED_MODELS_DIR / f"{model.name}.tflite").read_bytes()
    interpreter, _ = load_interpreter(content, runtime=model.runtime, name=model.name)
    return interpreter


def bare_invoker(model: LoadedModel) -> Callable[[], None]:
    """``invoke`` of a second interpreter of the same file and runtime, its input set once."""
    interpreter = second_interpreter(model)
    index = int(interpreter.get_input_details()[0]["index"])
    interpreter.set_tensor(index, quantize(model_inputs(model), model.input))
    return interpreter.invoke


def inference_steps(model: LoadedModel, *, seconds: float, rounds: int) -> dict[str, float]:
    """Microseconds per call of what any wrapper of this int8 model must do around ``invoke()``, each step
    timed alone on a second interpreter of the same file (the same operations ``LoadedModel.predict`` uses):

    * ``io_only``: write an already-quantized input into the input tensor, ``invoke()``, copy the output out:
      the least a Python caller can do;
    * ``quantize``: float input to int8 (the search over the 255 steps of ``quantize()``);
    * ``dequantize``: int8 output to float (a 256-entry table);
    * ``finite_check``: refusing NaN and infinite inputs.
    """
    interpreter = second_interpreter(model)
    in_view = interpreter.tensor(int(interpreter.get_input_details()[0]["index"]))
    out_view = interpreter.tensor(int(interpreter.get_output_details()[0]["index"]))
    x = model_inputs(model)
    q = quantize(x, model.input)
    thresholds = quantize_thresholds(model.input)
    table = dequantize_table(model.output)
    zeros = np.zeros(x.size, dtype=np.float32)

    def io_only() -> npt.NDArray[np.int8]:
        view = in_view()
        view[...] = q
        del view
        interpreter.invoke()
        out: npt.NDArray[np.int8] = out_view().copy()
        return out

    def quantize_step() -> object:
        return thresholds.searchsorted(x, side="right") - 128

    out_q = io_only()  # the output tensor has its buffer once the model has run

    def dequantize_step() -> object:
        return table[out_q]

    def finite_check() -> object:
        return math.isfinite(x.reshape(-1).dot(zeros))

    steps = {"io_only": io_only, "quantize": quantize_step, "dequantize": dequantize_step, "finite_check": finite_check}
    return {
        name: round(1e6 * statistics.median(per_call(fn, seconds) for _ in range(rounds)), 2)
        for name, fn in steps.items()
    }


def inference_rates(*, runtime: str | None, seconds: float, rounds: int) -> dict[str, dict[str, Any]]:
    models, problems = load_models(PACKAGED_MODELS_DIR, runtime=runtime)
    if problems:
        raise RuntimeError("; ".join(f"{p.name}: {p.reason}" for p in problems))
    out: dict[str, dict[str, Any]] = {}
    for model in models:
        predict = functools.partial(model.predict, model_inputs(model))
        r = compare(predict, bare_invoker(model), seconds=seconds, rounds=rounds)
        out[model.name] = {
            "runtime": model.runtime,
            "wrapper_us": round(r["agent_s"] * 1e6, 2),
            "bare_invoke_us": round(r["bare_s"] * 1e6, 2),
            "wrapper_over_bare_ratio": round(r["ratio"], 3),
            "steps_us": inference_steps(model, seconds=seconds, rounds=rounds),
        }
    return out


# -- end to end ------------------------------------------------------------------------------------------------


def scenario_notes(hours: float, scenario: str = "day-24h") -> tuple[Any, list[RawNotification]]:
    """A bundled scenario (default ``day-24h``) cut to ``hours``: its playable and its notifications as a link
    hands them over."""
    from sim.player import FeedEvent
    from sim.replay import from_scenario

    playable = from_scenario(scenario, hours=hours)
    owner = {addr: w for w, d in playable.devices.items() for addr in d.values()}
    notes = [
        RawNotification(owner[e.address], e.address, e.characteristic, e.data, e.t)
        for e in playable.events
        if isinstance(e, FeedEvent) and e.address in owner
    ]
    return playable, notes


def _chunks(items: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def run_agent(playable: Any, notes: Sequence[RawNotification], db: Path) -> dict[str, Any]:
    """The notes through ``Agent.handle`` in batches of ``BATCH_MAX``; the wall time and what it did."""
    cfg = playable.make_config(db, {"host": "127.0.0.1", "port": 1, "protocol": "5"})
    store = Store(db)
    agent = Agent(cfg, store, clock=VirtualClock(playable.start))
    calls: Counter[str] = Counter()
    for m in agent.models:
        real = m.predict

        def counted(x: Any, _real: Callable[[Any], Any] = real, _name: str = m.name) -> Any:
            calls[_name] += 1
            return _real(x)

        setattr(m, "predict", counted)  # noqa: B010  (an instance attribute over the method)
    batches = _chunks(notes, BATCH_MAX)
    start = time.perf_counter()
    for batch in batches:
        agent.handle(batch)
    wall = time.perf_counter() - start
    store.close()
    return {
        "wall_s": wall,
        "readings": sum(agent.stats.readings.values()),
        "transactions": agent.stats.batches,
        "inferences": dict(calls),
        "runtime": {m.name: m.runtime for m in agent.models},
        "models": agent.models,
    }


def bare_parts(
    notes: Sequence[RawNotification], db: Path, folder: Path, ran: dict[str, Any], invoke_s: dict[str, float]
) -> dict[str, float]:
    """The bare cost of the same readings: see the module docstring."""
    start = time.perf_counter()
    for n in notes:
        decoder = DECODERS.get(n.characteristic)
        if decoder is not None:
            decoder(n.data)
    decode_s = time.perf_counter() - start

    src = sqlite3.connect(db)
    readings = src.execute("SELECT wearer, device, kind, t, value, extra FROM readings ORDER BY id").fetchall()
    alerts = src.execute("SELECT id, episode, wearer, kind, severity, state, t, payload FROM alerts").fetchall()
    outbox = src.execute("SELECT priority, topic, payload, qos, retain, created FROM outbox").fetchall()
    src.close()
    conn = bare_connection(folder / "bare-e2e.db")
    k = max(1, ran["transactions"])
    start = time.perf_counter()
    for i in range(k):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_READING, readings[i * len(readings) // k : (i + 1) * len(readings) // k])
        conn.executemany(
            "INSERT INTO alerts (id, episode, wearer, kind, severity, state, t, payload)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            alerts[i * len(alerts) // k : (i + 1) * len(alerts) // k],
        )
        conn.executemany(
            "INSERT INTO outbox (priority, topic, payload, qos, retain, created) VALUES (?, ?, ?, ?, ?, ?)",
            outbox[i * len(outbox) // k : (i + 1) * len(outbox) // k],
        )
        conn.execute("COMMIT")
    store_s = time.perf_counter() - start
    conn.close()

    models = {m.name: m for m in ran["models"]}
    start = time.perf_counter()
    if "rhythm" in models:
        rp = RhythmParams.from_json(models["rhythm"].card.params)
        rr = [(t, v) for (_, _, kind, t, v, _) in readings if kind == "rr"]
        if rr:
            t_s, rr_s = np.array(rr).T
            windows = rr_windows(t_s, rr_s, rp.windowing, rp.cleaning)
            if len(windows):
                model_input(windows.rr_s, rp.encoding)
    if "glucose" in models:
        fp = ForecastParams.from_json(models["glucose"].card.params)
        g = [(t, v) for (_, _, kind, t, v, _) in readings if kind == "glucose" and v is not None]
        if g:
            t_s, mg = np.array(g).T
            grid = resample_glucose(t_s, mg, fp.gridding)
            if grid.mg_dl.size >= fp.length:
                past = np.lib.stride_tricks.sliding_window_view(grid.mg_dl, fp.length)
                encode_windows(past, fp)
    windows_s = time.perf_counter() - start
    infer_s = sum(invoke_s.get(name, 0.0) * n for name, n in ran["inferences"].items())
    return {
        "decode_s": decode_s,
        "store_s": store_s,
        "windows_s": windows_s,
        "invoke_s": infer_s,
        "sum_s": decode_s + store_s + windows_s + infer_s,
    }


def end_to_end(folder: Path, *, hours: float, repeats: int, invoke_s: dict[str, float]) -> dict[str, Any]:
    playable, notes = scenario_notes(hours)
    runs = []
    for i in range(repeats):
        db = folder / f"e2e-{i}.db"
        ran = run_agent(playable, notes, db)
        bare = bare_parts(notes, db, folder, ran, invoke_s)
        (folder / "bare-e2e.db").unlink()
        runs.append((ran, bare))
    ratios = [ran["wall_s"] / bare["sum_s"] for ran, bare in runs]
    walls = [ran["wall_s"] for ran, _ in runs]
    readings = runs[0][0]["readings"]
    median_bare = {key: round(statistics.median(b[key] for _, b in runs), 4) for key in runs[0][1]}
    return {
        "e2e_readings_per_s": round(readings / statistics.median(walls)),
        "e2e_over_bare_ratio": round(statistics.median(ratios), 3),
        "detail": {
            "hours": hours,
            "notifications": len(notes),
            "readings": readings,
            "transactions": runs[0][0]["transactions"],
            "inferences": runs[0][0]["inferences"],
            "runtime": runs[0][0]["runtime"],
            "agent_s": [round(w, 3) for w in walls],
            # At full speed, to set against the real-time section's CPU time per notification.
            "agent_us_per_notification": round(1e6 * statistics.median(walls) / len(notes), 1),
            "ratios": [round(r, 3) for r in ratios],
            "bare_median_s": median_bare,
        },
    }


def finite_positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
