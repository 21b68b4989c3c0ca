"""The agent's durable store: one SQLite file in WAL mode holding readings, alerts and the MQTT outbox.

One :class:`Store` owns the connection; the rest of the agent hands it whole batches. A batch is one
transaction, committed with ``synchronous=FULL`` before anything downstream hears of it, so a reading or an
alert the agent accepted survives a crash, a power cut or a restart.

The file (and SQLite's ``-wal``/``-shm`` companions) is created readable and writable only by the agent's user.
Schema changes are numbered migrations, each applied in one transaction and recorded in ``PRAGMA user_version``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from agent.errors import StoreError

# Each entry moves the schema from version i to i+1. Never edit a released entry: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE readings (
            id INTEGER PRIMARY KEY,
            wearer TEXT NOT NULL,
            device TEXT NOT NULL,
            kind TEXT NOT NULL,
            t REAL NOT NULL,
            value REAL,
            extra TEXT
        )""",
        "CREATE INDEX readings_wearer_kind_t ON readings (wearer, kind, t)",
        """CREATE TABLE alerts (
            id TEXT PRIMARY KEY,
            episode TEXT NOT NULL,
            wearer TEXT NOT NULL,
            kind TEXT NOT NULL,
            severity TEXT NOT NULL,
            state TEXT NOT NULL,
            t REAL NOT NULL,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX alerts_wearer_t ON alerts (wearer, t)",
        """CREATE TABLE alert_state (
            wearer TEXT NOT NULL,
            kind TEXT NOT NULL,
            episode TEXT NOT NULL,
            raised_at REAL NOT NULL,
            PRIMARY KEY (wearer, kind)
        )""",
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            priority INTEGER NOT NULL,
            topic TEXT NOT NULL,
            payload BLOB NOT NULL,
            qos INTEGER NOT NULL,
            retain INTEGER NOT NULL,
            created REAL NOT NULL
        )""",
        "CREATE INDEX outbox_order ON outbox (priority, seq)",
    ),
    (
        # One row per CGM record: a record is named by its device, its session (the BLE link's session_start)
        # and its time offset, so a record fetched again by RACP backfill, or both notified live and reported,
        # is stored once. Rows without a session_start (stored before, or from a source without one) are
        # outside the index.
        """CREATE UNIQUE INDEX readings_glucose_record ON readings (
            wearer, device, json_extract(extra, '$.session_start'), json_extract(extra, '$.time_offset_min')
        ) WHERE kind = 'glucose' AND json_extract(extra, '$.session_start') IS NOT NULL""",
    ),
)

# Outbox priorities: lower goes first. Alerts (in the order they were raised, so per-wearer order holds)
# overtake any backlog of state updates; a newer retained state message replaces an older unsent one.
SQLITE_FULL = 13  # "database or disk is full", also when PRAGMA max_page_count is reached
PRIORITY_ALERT = 0
PRIORITY_STATE = 1


@dataclass(frozen=True, slots=True)
class Reading:
    """One decoded value. ``kind`` is one of: hr, rr, glucose, battery, body_location."""

    wearer: str
    device: str
    kind: str
    t: float
    value: float
    extra: dict[str, Any] | None = None


# json.dumps of the small extras most readings carry ({"contact": "detected"} with every heart rate), by
# (key, value) when both are strings: the same text, without encoding it again for every reading.
_ONE_STRING_EXTRA: dict[tuple[str, str], str] = {}
_ONE_STRING_EXTRA_MAX = 256


def _extra_json(extra: dict[str, Any] | None) -> str | None:
    if not extra:
        return None
    if len(extra) == 1:
        ((key, value),) = extra.items()
        if type(key) is str and type(value) is str:
            text = _ONE_STRING_EXTRA.get((key, value))
            if text is None:
                text = json.dumps(extra)
                if len(_ONE_STRING_EXTRA) < _ONE_STRING_EXTRA_MAX:
                    _ONE_STRING_EXTRA[(key, value)] = text
            return text
    return json.dumps(extra)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    seq: int
    priority: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class StoredAlert:
    id: str
    episode: str
    wearer: str
    kind: str
    severity: str
    state: str
    t: float
    payload: dict[str, Any]


class Store:
    """The agent's SQLite file. Not thread-safe: one owner (the agent's event loop) uses it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                # Create the file owner-only before SQLite opens it; SQLite gives -wal/-shm the same mode.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(self.path, 0o600)
            conn = sqlite3.connect(self.path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError("open", f"{self.path}: {exc}") from exc
        self._conn = conn
        self.db = sqlite_utils.Database(conn)
        self._execute("PRAGMA journal_mode=WAL")
        self._execute("PRAGMA synchronous=FULL")
        self._execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # -- schema -------------------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        row = self._conn.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    def _migrate(self) -> None:
        current = self.schema_version
        if current > len(MIGRATIONS):
            raise StoreError("migrate", f"{self.path} has schema {current}, newer than this agent knows")
        for version in range(current, len(MIGRATIONS)):
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                for statement in MIGRATIONS[version]:
                    self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {version + 1}")
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._conn.execute("ROLLBACK")
                raise StoreError("migrate", f"to schema {version + 1}: {exc}") from exc

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise _store_error(sql.split()[0].lower(), exc) from exc

    # -- writes -------------------------------------------------------------------------------------------
    def write_batch(
        self,
        readings: Iterable[Reading] = (),
        alerts: Iterable[StoredAlert] = (),
        outbox: Iterable[tuple[int, str, bytes, int, bool]] = (),
        alert_state: Iterable[tuple[str, str, str | None, float]] = (),
        now: float = 0.0,
    ) -> None:
        """Write everything in one transaction, durable when this returns.

        ``outbox`` rows are (priority, topic, payload, qos, retain). ``alert_state`` rows are
        (wearer, kind, episode or None to clear, raised_at).
        """
        try:
            rows: list[tuple[Any, ...]] = []
            glucose_rows: list[tuple[Any, ...]] = []
            for r in readings:
                row = (r.wearer, r.device, r.kind, r.t, r.value, _extra_json(r.extra))
                (glucose_rows if r.kind == "glucose" else rows).append(row)
            alert_rows = [
                (a.id, a.episode, a.wearer, a.kind, a.severity, a.state, a.t, json.dumps(a.payload)) for a in alerts
            ]
        except (TypeError, ValueError) as exc:
            raise StoreError("write", f"cannot serialise: {exc}") from exc
        # Statements with nothing to insert are not run at all: a heart-rate batch in real time is one
        # statement between BEGIN and COMMIT, not three.
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            if rows:
                self._conn.executemany(
                    "INSERT INTO readings (wearer, device, kind, t, value, extra) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
            if glucose_rows:
                # A CGM record already stored (see readings_glucose_record) is skipped, not an error.
                self._conn.executemany(
                    "INSERT OR IGNORE INTO readings (wearer, device, kind, t, value, extra) VALUES (?, ?, ?, ?, ?, ?)",
                    glucose_rows,
                )
            if alert_rows:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO alerts (id, episode, wearer, kind, severity, state, t, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    alert_rows,
                )
            for wearer, kind, episode, raised_at in alert_state:
                if episode is None:
                    self._conn.execute("DELETE FROM alert_state WHERE wearer = ? AND kind = ?", (wearer, kind))
                else:
                    self._conn.execute(
                        "INSERT OR REPLACE INTO alert_state (wearer, kind, episode, raised_at) VALUES (?, ?, ?, ?)",
                        (wearer, kind, episode, raised_at),
                    )
            for priority, topic, payload, qos, retain in outbox:
                if retain and priority == PRIORITY_STATE:
                    self._conn.execute(
                        "DELETE FROM outbox WHERE topic = ? AND retain = 1 AND priority = ?",
                        (topic, priority),
                    )
                self._conn.execute(
                    "INSERT INTO outbox (priority, topic, payload, qos, retain, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (priority, topic, payload, qos, int(retain), now),
                )
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise _store_error("write", exc) from exc

    def outbox_pending(self, limit: int, exclude: Iterable[int] = ()) -> list[OutboxMessage]:
        """The next messages to publish: most urgent first, then oldest first."""
        skip = tuple(exclude)
        marks = ",".join("?" * len(skip))
        where = f"WHERE seq NOT IN ({marks})" if skip else ""
        rows = self._execute(
            f"SELECT seq, priority, topic, payload, qos, retain FROM outbox {where} ORDER BY priority, seq LIMIT ?",
            (*skip, limit),
        ).fetchall()
        return [OutboxMessage(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5])) for r in rows]

    def outbox_done(self, seqs: Iterable[int]) -> None:
        """Remove messages the broker has acknowledged.

        Committed without waiting for the disk (``synchronous=NORMAL``; WAL keeps it atomic, and the next batch's
        ``FULL`` commit makes it durable): a power cut right after loses at most the removal, and the message
        then goes out once more with the same id, which QoS 1 allows and subscribers drop. Saves an fsync per
        acknowledgement, which in real time is one per notification."""
        seq_list = [(s,) for s in seqs]
        if not seq_list:
            return
        try:
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("DELETE FROM outbox WHERE seq = ?", seq_list)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise _store_error("outbox_done", exc) from exc
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA synchronous=FULL")

    # -- reads --------------------------------------------------------------------------------------------
    def outbox_depth(self) -> int:
        return int(self._execute("SELECT count(*) FROM outbox").fetchone()[0])

    def count_readings(self) -> dict[str, int]:
        rows = self._execute("SELECT kind, count(*) FROM readings GROUP BY kind ORDER BY kind").fetchall()
        return {str(k): int(n) for k, n in rows}

    def alerts(self, wearer: str | None = None) -> list[StoredAlert]:
        sql = "SELECT id, episode, wearer, kind, severity, state, t, payload FROM alerts"
        params: tuple[str, ...] = ()
        if wearer is not None:
            sql += " WHERE wearer = ?"
            params = (wearer,)
        rows = self._execute(sql + " ORDER BY t, rowid", params).fetchall()
        return [StoredAlert(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows]

    def active_alerts(self) -> dict[tuple[str, str], tuple[str, float]]:
        """(wearer, kind) -> (episode, raised_at) for every alert raised and not yet cleared."""
        rows = self._execute("SELECT wearer, kind, episode, raised_at FROM alert_state").fetchall()
        return {(r[0], r[1]): (r[2], float(r[3])) for r in rows}

    def cgm_session(self, wearer: str, device: str) -> tuple[float, int] | None:
        """The CGM session the newest stored record of ``device`` belongs to: (session_start, its time offset),
        or None when no record of it carries a session. What a restarted BLE link resumes from."""
        row = self._execute(
            "SELECT json_extract(extra, '$.session_start'), json_extract(extra, '$.time_offset_min') FROM readings"
            " WHERE wearer = ? AND kind = 'glucose' AND device = ? AND json_extract(extra, '$.session_start')"
            " IS NOT NULL ORDER BY t DESC LIMIT 1",
            (wearer, device),
        ).fetchone()
        if row is None or row[1] is None:
            return None
        return float(row[0]), int(row[1])

    def episode_payloads(self, episode: str) -> list[dict[str, Any]]:
        """Every message of an alert episode, oldest first."""
        rows = self._execute("SELECT payload FROM alerts WHERE episode = ? ORDER BY t, rowid", (episode,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- retention ----------------------------------------------------------------------------------------
    def used_bytes(self) -> int:
        """Bytes in use by data (pages not on the free list): what the size limit counts."""
        page_size, pages, free = (
            int(self._execute(f"PRAGMA {p}").fetchone()[0]) for p in ("page_size", "page_count", "freelist_count")
        )
        return (pages - free) * page_size

    def prune(self, now: float, *, max_age_s: float, max_bytes: int, chunk: int = 20_000) -> PruneReport:
        """Delete readings older than ``max_age_s``, then the oldest readings until the data fits ``max_bytes``.
        Ended alerts older than ``max_age_s`` go too; active alerts and the outbox are never pruned."""
        report = PruneReport(bytes_before=self.used_bytes())
        cutoff = now - max_age_s
        report.readings_by_age = self._delete_chunked(
            "DELETE FROM readings WHERE id IN (SELECT id FROM readings WHERE t < ? LIMIT ?)", cutoff, chunk
        )
        report.alerts_by_age = self._delete_chunked(
            "DELETE FROM alerts WHERE rowid IN (SELECT rowid FROM alerts WHERE t < ? AND episode NOT IN"
            " (SELECT episode FROM alert_state) LIMIT ?)",
            cutoff,
            chunk,
        )
        # By size: a thousand of the oldest readings at a time, so no more is deleted than needed.
        while self.used_bytes() > max_bytes:
            n = self._delete_chunked(
                "DELETE FROM readings WHERE id IN (SELECT id FROM readings ORDER BY id LIMIT ?)", None, 1000, once=True
            )
            if n == 0:
                break
            report.readings_by_size += n
        report.bytes_after = self.used_bytes()
        return report

    def _delete_chunked(self, sql: str, cutoff: float | None, chunk: int, *, once: bool = False) -> int:
        total = 0
        while True:
            params: tuple[Any, ...] = (chunk,) if cutoff is None else (cutoff, chunk)
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                n = self._conn.execute(sql, params).rowcount
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise _store_error("prune", exc) from exc
            total += n
            if once or n < chunk:
                return total

    def close(self) -> None:
        self._conn.close()


@dataclass
class PruneReport:
    readings_by_age: int = 0
    alerts_by_age: int = 0
    readings_by_size: int = 0
    bytes_before: int = 0
    bytes_after: int = 0

    @property
    def pruned(self) -> int:
        return self.readings_by_age + self.alerts_by_age + self.readings_by_size


def _store_error(operation: str, exc: sqlite3.Error) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+; 3.10 has only the message
    full = code == SQLITE_FULL if code is not None else "full" in str(exc).lower()
    return StoreError(operation, str(exc), full=full)
