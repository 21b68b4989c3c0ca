"""Structured logs: text and JSON lines, extra fields, journald's stream, redaction, config and flag."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import cli, logs
from agent.config import parse_config
from agent.errors import ConfigError

WEARERS = [{"id": "w1", "devices": [{"kind": "cgm", "address": "AA:BB:CC:DD:EE:FF"}]}]


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _emit(fmt: str, *, journal: bool = False, secrets: tuple[str, ...] = (), **kw: Any) -> str:
    out = io.StringIO()
    logs.setup_logging("debug", fmt, stream=out, journal=journal, secrets=secrets)
    logging.getLogger("vigil.test").warning(kw.pop("msg", "glucose alert for %s"), "w1", **kw)
    return out.getvalue()


def test_json_line_has_the_fields_and_the_extras() -> None:
    line = _emit("json", extra={"wearer": "w1", "device": "cgm-1", "kind": "glucose_low"})
    assert line.endswith("\n")
    assert line.count("\n") == 1
    rec = json.loads(line)
    assert rec["level"] == "warning"
    assert rec["logger"] == "vigil.test"
    assert rec["message"] == "glucose alert for w1"
    assert (rec["wearer"], rec["device"], rec["kind"]) == ("w1", "cgm-1", "glucose_low")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["time"])
    assert "exc" not in rec


def test_json_exception_is_one_string_field_on_one_line() -> None:
    out = io.StringIO()
    logs.setup_logging("info", "json", stream=out, journal=False)
    try:
        raise ValueError("bad\npayload")
    except ValueError:
        logging.getLogger("vigil.test").exception("decode failed", extra={"time": "clash", "n": object()})
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["exc"].startswith("Traceback")
    assert "ValueError: bad\npayload" in rec["exc"]
    assert rec["extra_time"] == "clash"  # an extra named like a fixed field does not replace it
    assert rec["time"] != "clash"
    assert rec["n"].startswith("<object")  # not JSON-serialisable: its str()


def test_text_is_the_classic_format_with_extras_appended() -> None:
    line = _emit("text", extra={"wearer": "w1"})
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING vigil.test: glucose alert for w1 wearer=w1\n", line
    )
    assert re.fullmatch(r"\S+ \S+ WARNING vigil.test: glucose alert for w1\n", _emit("text"))


def test_under_journald_no_timestamps_and_a_syslog_priority() -> None:
    assert _emit("text", journal=True) == "<4>WARNING vigil.test: glucose alert for w1\n"
    line = _emit("json", journal=True)
    assert line.startswith("<4>{")
    assert json.loads(line[3:])["level"] == "warning"


@pytest.mark.parametrize(
    ("level", "priority"), [(logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3), (50, 2)]
)
def test_syslog_priorities(level: int, priority: int) -> None:
    assert logs.syslog_priority(level) == priority


def test_journal_stream_is_recognised_by_device_and_inode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (tmp_path / "a").open("w") as a, (tmp_path / "b").open("w") as b:
        st = os.fstat(a.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert logs.under_journal(a)
        assert not logs.under_journal(b)  # stderr redirected elsewhere by a child or a test
        assert not logs.under_journal(io.StringIO())
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert not logs.under_journal(a)
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not logs.under_journal(a)
        # setup_logging detects it by itself.
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        logs.setup_logging("info", "text", stream=a)
        logging.getLogger("vigil.test").info("hello")
    assert (tmp_path / "a").read_text() == "<6>INFO vigil.test: hello\n"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_passwords_are_redacted(fmt: str) -> None:
    password = 'pa"ss\\word'
    out = _emit(fmt, secrets=(password,), msg=f"connecting as %s with {password}", extra={"pw": password})
    assert "word" not in out
    assert out.count(logs.REDACTED) == 2
    if fmt == "json":
        rec = json.loads(out)
        assert rec["message"] == "connecting as w1 with ***"
        assert rec["pw"] == "***"


def test_short_secrets_are_not_redacted() -> None:
    assert logs.REDACTED not in _emit("text", secrets=("w1", ""), msg="for %s")


def test_setup_replaces_only_its_own_handler() -> None:
    other = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(other)
    first, second = io.StringIO(), io.StringIO()
    logs.setup_logging("info", "text", stream=first, journal=False)
    logs.setup_logging("warning", "json", stream=second, journal=False)
    logging.getLogger("vigil.test").info("dropped: below warning")
    logging.getLogger("vigil.test").error("kept")
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["message"] == "kept"
    assert other in root.handlers
    assert sum(h.get_name() == "vigil" for h in root.handlers) == 1


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="xml"):
        logs.setup_logging("info", "xml")


# -- configuration and command line ---------------------------------------------------------------------------


def test_config_log_format() -> None:
    assert parse_config({"wearers": WEARERS}).agent.log_format == "text"
    assert parse_config({"agent": {"log_format": "json"}, "wearers": WEARERS}).agent.log_format == "json"
    with pytest.raises(ConfigError) as err:
        parse_config({"agent": {"log_format": "xml"}, "wearers": WEARERS})
    assert (err.value.key, err.value.value, err.value.problem) == (
        "agent.log_format",
        "xml",
        "must be one of text, json",
    )


@pytest.mark.parametrize(
    ("configured", "flag", "verbose", "expected_formatter", "expected_level"),
    [
        (None, None, False, logs.TextFormatter, logging.INFO),
        ("json", None, False, logs.JsonFormatter, logging.INFO),
        ("json", "text", False, logs.TextFormatter, logging.INFO),
        (None, "json", True, logs.JsonFormatter, logging.DEBUG),
    ],
)
def test_vigil_run_log_format_and_level(
    configured: str | None,
    flag: str | None,
    verbose: bool,
    expected_formatter: type[logging.Formatter],
    expected_level: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agent.daemon

    async def no_daemon(cfg: Any, **kw: Any) -> None:
        return None

    monkeypatch.setattr(agent.daemon, "run_daemon", no_daemon)
    cfg = tmp_path / "vigil.toml"
    fmt_line = f'log_format = "{configured}"\n' if configured else ""
    cfg.write_text(
        f'[agent]\nlog_level = "info"\n{fmt_line}[mqtt]\nusername = "u"\npassword = "hunter2-long"\n'
        '[[wearers]]\nid = "w1"\n[[wearers.devices]]\nkind = "cgm"\naddress = "AA:BB:CC:DD:EE:FF"\n'
    )
    argv = [*(["-v"] if verbose else []), "run", "--config", str(cfg), *(["--log-format", flag] if flag else [])]
    assert cli.main(argv) == 0
    root = logging.getLogger()
    (handler,) = [h for h in root.handlers if h.get_name() == "vigil"]
    assert type(handler.formatter) is expected_formatter
    assert root.level == expected_level
    record = logging.LogRecord("vigil.test", logging.INFO, __file__, 1, "password %s", ("hunter2-long",), None)
    assert "hunter2-long" not in handler.format(record)


def test_bad_log_format_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--config", str(tmp_path / "x.toml"), "--log-format", "xml"])
    assert exit_.value.code == 2
    assert "--log-format" in capsys.readouterr().err
