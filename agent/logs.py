"""Log set-up for every ``vigil`` verb: readable text, or one JSON object per line for log shippers.

``text``: ``2025-01-01 03:12:45,123 WARNING vigil.mqtt: broker ...: disconnected``, then any ``extra=`` fields as
``key=value``. Under systemd (stderr is the journal stream named by ``$JOURNAL_STREAM``) the timestamp is left
out, since journald stamps every line, and each line starts with a syslog priority (``<4>``) that journald turns
into the entry's priority, so ``journalctl -p warning`` works.

``json``: ``{"time": "2025-01-01T03:12:45.123Z", "level": "warning", "logger": "vigil.mqtt", "message": "...",
...}`` with every ``extra=`` field (``wearer``, ``device``, ``kind``, ...) as a key of its own and an exception,
if any, as the string field ``exc``. Time is UTC, ISO 8601, to the millisecond.

What may be logged. MQTT passwords never: the configured password is redacted from every line as a last line of
defence (nothing logs it on purpose). Medical data (glucose and heart-rate values, raw sensor payloads, which
encode them) only at debug level: the default levels must be safe to paste into a bug report or ship to a log
server. Wearers appear only by their pseudonymous ids. One known exception remains: agent/core.py logs the hex of
a payload the codecs rejected as a warning; the reason and the payload's length are enough there, and the hex
belongs at debug.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
REDACTED = "***"
# Secrets shorter than this are not redacted: replacing every "ab" in every line would make logs unreadable
# and protect nothing a guess would not find.
MIN_SECRET_LEN = 4

# Attributes every LogRecord has; whatever else a record carries came from ``extra=``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
# syslog priorities (sd-daemon(3)) by logging level.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call added with ``extra=``."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


def syslog_priority(levelno: int) -> int:
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


class _Redactor:
    def __init__(self, secrets: Iterable[str | None]) -> None:
        forms: set[str] = set()
        for s in secrets:
            if s and len(s) >= MIN_SECRET_LEN:
                forms.add(s)
                forms.add(json.dumps(s)[1:-1])  # as it appears inside a JSON string
        # Longest first, so a secret that contains another is replaced whole.
        self.forms = sorted(forms, key=len, reverse=True)

    def __call__(self, line: str) -> str:
        for s in self.forms:
            line = line.replace(s, REDACTED)
        return line


class TextFormatter(logging.Formatter):
    """The classic one-line format, ``extra=`` fields appended as ``key=value``."""

    def __init__(
        self, *, timestamps: bool = True, priority_prefix: bool = False, secrets: Iterable[str | None] = ()
    ) -> None:
        super().__init__(TEXT_FORMAT if timestamps else JOURNAL_TEXT_FORMAT)
        self.priority_prefix = priority_prefix
        self.redact = _Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = extra_fields(record)
        if extra:
            head, sep, tail = line.partition("\n")  # after the message, before a traceback
            fields = " ".join(f"{k}={v}" for k, v in extra.items())
            line = f"{head} {fields}{sep}{tail}"
        if self.priority_prefix:
            line = f"<{syslog_priority(record.levelno)}>{line}"
        return self.redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; see the module docstring for the fields."""

    def __init__(self, *, priority_prefix: bool = False, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.priority_prefix = priority_prefix
        self.redact = _Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, tz=timezone.utc)
        out: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            out[key if key not in out else f"extra_{key}"] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        line = json.dumps(out, ensure_ascii=False, default=str)
        if self.priority_prefix:
            line = f"<{syslog_priority(record.levelno)}>{line}"
        return self.redact(line)


if TYPE_CHECKING:
    _StreamHandler = logging.StreamHandler[TextIO]
else:  # subscriptable at run time only from Python 3.11
    _StreamHandler = logging.StreamHandler


class _StderrHandler(_StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (as logging's last-resort handler does),
    so a replaced stderr (pytest's capture, a redirect) never receives writes after it was closed."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def under_journal(stream: TextIO) -> bool:
    """True when ``stream`` is connected to journald: ``$JOURNAL_STREAM`` names its device and inode.

    Comparing them, as systemd.exec(5) advises, tells a service's own stderr from one a child redirected
    elsewhere (``vigil run 2>file`` under systemd, a test capturing stderr)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    dev, sep, ino = expected.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return f"{st.st_dev}:{st.st_ino}" == f"{dev}:{ino}"


def setup_logging(
    level: str | int,
    fmt: str = "text",
    *,
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
    journal: bool | None = None,
) -> logging.Handler:
    """Send the root logger's records at ``level`` and above to ``stream`` (stderr) in format ``fmt``.

    Called again (``vigil run`` once the configuration is read), it replaces the handler it installed before
    and leaves other handlers (pytest's, an embedding application's) alone. ``secrets`` are redacted from
    every line. ``journal`` overrides the detection of journald's stream.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: must be one of {', '.join(FORMATS)}")
    if journal is None:
        journal = under_journal(stream if stream is not None else sys.stderr)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter(priority_prefix=journal, secrets=secrets)
    else:
        formatter = TextFormatter(timestamps=not journal, priority_prefix=journal, secrets=secrets)
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(formatter)
    handler.set_name("vigil")
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == "vigil":
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
