"""The agent's configuration: a TOML file read once at start into frozen dataclasses.

Every value is checked here, before anything starts. A bad value raises :class:`~agent.errors.ConfigError`
naming the dotted key, the value and the problem; ``vigil run`` turns that into one line and exit code 2.

Defaults and where they come from:

* Glucose thresholds are the international consensus ranges (Battelino et al., "Clinical Targets for
  Continuous Glucose Monitoring Data Interpretation", Diabetes Care 2019;42:1593): level 2 hypoglycaemia
  < 54 mg/dL, level 1 < 70 mg/dL, above range > 180 mg/dL, level 2 hyperglycaemia > 250 mg/dL.
* Heart rate: a resting adult range of 40-120 bpm is the default band; tachycardia and bradycardia must be
  sustained (``hr_sustain_s``) before they raise, so a sprint for the bus does not page a caregiver.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEVICE_KINDS = ("hr_strap", "cgm")


@dataclass(frozen=True)
class Thresholds:
    """Per-wearer alert thresholds. Glucose in mg/dL, heart rate in beats per minute."""

    glucose_urgent_low: float = 54.0
    glucose_low: float = 70.0
    glucose_high: float = 180.0
    glucose_urgent_high: float = 250.0
    # A raised glucose alert clears only once the value is this far back on the safe side.
    glucose_hysteresis: float = 5.0
    hr_low: float = 40.0
    hr_high: float = 120.0
    hr_hysteresis: float = 5.0
    # Heart-rate alerts need the condition to hold this long (seconds) before they raise.
    hr_sustain_s: float = 60.0
    # A sensor that has sent nothing for this long raises sensor_stale (a CGM reads every 5 minutes,
    # a strap every second).
    cgm_stale_s: float = 900.0
    strap_stale_s: float = 120.0
    # sensor_battery_low below this level (percent); it clears 5 points above.
    battery_low_pct: float = 15.0


@dataclass(frozen=True)
class AlertPolicy:
    """How alerts are repeated, snoozed and escalated; the ``[alerts]`` table, the same for every wearer."""

    # An unacknowledged alert is announced again ("ongoing") this often; 0 turns it off.
    renotify_urgent_s: float = 900.0
    renotify_warning_s: float = 0.0
    # A link that has been down (reconnecting or lost) this long raises sensor_disconnected.
    disconnected_after_s: float = 300.0
    # Longest snooze accepted; urgent kinds (urgent low, urgent high) are held to the shorter one.
    snooze_max_s: float = 4 * 3600.0
    snooze_max_urgent_s: float = 1800.0

    def renotify_s(self, severity: str) -> float:
        if severity == "urgent":
            return self.renotify_urgent_s
        if severity == "warning":
            return self.renotify_warning_s
        return 0.0


@dataclass(frozen=True)
class DeviceConfig:
    """One BLE peripheral worn by a wearer. Found by address, or else by advertised name."""

    kind: str
    address: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return self.address or self.name or self.kind


@dataclass(frozen=True)
class WearerConfig:
    """A wearer, known only by a pseudonymous id that appears in topics."""

    id: str
    devices: tuple[DeviceConfig, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    root: str = "vigil"
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = 30
    # MQTT 5 by default: a broker's refusal of a publish (an ACL) comes back in the PUBACK, so it can be shown
    # as an error instead of a silent drop. "3.1.1" for brokers without 5 (the demo's embedded amqtt).
    protocol: str = "5"
    # The agent's session (its cmd/ subscriptions, commands sent while it was away) outlives a disconnect by
    # this long; 0 asks for a clean session at every connect.
    session_expiry_s: int = 86400
    # QoS 1 messages in flight at once, unacknowledged by the broker.
    inflight: int = 20
    # Alerts always carry the value and thresholds behind them; the raw input window (RR series, glucose
    # trace) a model saw is added only when this is true. Medical data stays on the device unless asked for.
    include_raw: bool = False


@dataclass(frozen=True)
class AgentConfig:
    id: str = "agent-1"
    site: str = "home"
    db: Path = Path("vigil.db")
    log_level: str = "info"
    # "text" or "json" (one object per line); see agent/logs.py. Under systemd text lines carry no timestamp.
    log_format: str = "text"
    # Model bundles (manifest.json + NAME.tflite + NAME.json); None = the models packaged with the agent.
    models_dir: Path | None = None
    # A wearer's retained state goes out at most this often (s) for new readings; at once when an alert of the
    # wearer or a link changes. 0 = after every batch (a message a second per wearer with a strap).
    state_every_s: float = 5.0
    # A heart-rate strap's notification may wait this long (wall-clock seconds) for others before its batch is
    # written: fewer, larger batches (one durable commit and one cold pass through the code for several
    # wearers). Anything else (a CGM record, a battery level) ends the wait at once. 0 = write each at once.
    # Replays (a virtual clock) never wait.
    heart_batch_s: float = 0.5


@dataclass(frozen=True)
class StoreConfig:
    """Retention: the ``[store]`` table. Readings older than ``retention_days``, then the oldest readings while
    the data exceeds ``max_size_mb``, are deleted every ``prune_every_s``; what was pruned is reported in the
    agent's status. Active alerts and unsent messages are never pruned."""

    retention_days: float = 30.0
    max_size_mb: float = 1024.0
    prune_every_s: float = 600.0


@dataclass(frozen=True)
class Config:
    agent: AgentConfig
    mqtt: MqttConfig
    wearers: tuple[WearerConfig, ...]
    alerts: AlertPolicy = field(default_factory=AlertPolicy)
    store: StoreConfig = field(default_factory=StoreConfig)

    def wearer(self, wearer_id: str) -> WearerConfig:
        for w in self.wearers:
            if w.id == wearer_id:
                return w
        raise KeyError(wearer_id)


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("--config", str(p), "file not found") from None
    except OSError as exc:
        raise ConfigError("--config", str(p), f"cannot read: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", str(p), f"not valid TOML: {exc}") from exc
    return parse_config(data, base_dir=p.parent)


def parse_config(data: Mapping[str, Any], *, base_dir: Path | None = None) -> Config:
    """Validate a configuration already parsed into dicts (from TOML or built in code)."""
    _reject_unknown(data, "", {"agent", "mqtt", "wearers", "alerts", "store"})
    agent = _parse_agent(_table(data, "agent"), base_dir)
    mqtt = _parse_mqtt(_table(data, "mqtt"), base_dir)
    raw_wearers = data.get("wearers")
    if raw_wearers is None:
        raise ConfigError("wearers", None, "at least one [[wearers]] table is required")
    if not isinstance(raw_wearers, list) or not raw_wearers:
        raise ConfigError("wearers", raw_wearers, "must be a non-empty array of tables ([[wearers]])")
    wearers = tuple(_parse_wearer(w, f"wearers[{i}]") for i, w in enumerate(raw_wearers))
    seen: set[str] = set()
    for i, w in enumerate(wearers):
        if w.id in seen:
            raise ConfigError(f"wearers[{i}].id", w.id, "duplicate wearer id")
        seen.add(w.id)
    store = StoreConfig(**_numbers(_table(data, "store"), "store", StoreConfig()))
    if store.max_size_mb < 1:
        raise ConfigError("store.max_size_mb", store.max_size_mb, "must be at least 1 MB")
    if store.prune_every_s < 1:
        raise ConfigError("store.prune_every_s", store.prune_every_s, "must be at least 1 second")
    return Config(agent=agent, mqtt=mqtt, wearers=wearers, alerts=_parse_policy(_table(data, "alerts")), store=store)


def _parse_agent(t: Mapping[str, Any], base_dir: Path | None) -> AgentConfig:
    known = {"id", "site", "db", "log_level", "log_format", "models_dir", "state_every_s", "heart_batch_s"}
    _reject_unknown(t, "agent", known)
    models_dir = _path(t, "agent", "models_dir", base_dir)
    if models_dir is not None and not (models_dir / "manifest.json").is_file():
        raise ConfigError("agent.models_dir", str(models_dir), "has no manifest.json")
    d = AgentConfig()
    db = _path(t, "agent", "db", base_dir) or d.db
    level = _str(t, "agent", "log_level", d.log_level)
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError("agent.log_level", level, "must be one of debug, info, warning, error")
    log_format = t.get("log_format", d.log_format)
    if log_format not in ("text", "json"):
        raise ConfigError("agent.log_format", log_format, "must be one of text, json")
    state_every_s = t.get("state_every_s", d.state_every_s)
    if isinstance(state_every_s, bool) or not isinstance(state_every_s, (int, float)) or not 0 <= state_every_s <= 3600:
        raise ConfigError("agent.state_every_s", state_every_s, "must be a number of seconds from 0 to 3600")
    heart_batch_s = t.get("heart_batch_s", d.heart_batch_s)
    if isinstance(heart_batch_s, bool) or not isinstance(heart_batch_s, (int, float)) or not 0 <= heart_batch_s <= 5:
        raise ConfigError("agent.heart_batch_s", heart_batch_s, "must be a number of seconds from 0 to 5")
    return AgentConfig(
        id=_ident(t, "agent", "id", d.id),
        site=_ident(t, "agent", "site", d.site),
        db=db,
        log_level=level,
        log_format=str(log_format),
        models_dir=models_dir,
        state_every_s=float(state_every_s),
        heart_batch_s=float(heart_batch_s),
    )


def _parse_mqtt(t: Mapping[str, Any], base_dir: Path | None) -> MqttConfig:
    keys = {
        "host",
        "port",
        "root",
        "client_id",
        "username",
        "password",
        "password_file",
        "tls",
        "ca_file",
        "cert_file",
        "key_file",
        "keepalive_s",
        "include_raw",
        "protocol",
        "session_expiry_s",
        "inflight",
    }
    _reject_unknown(t, "mqtt", keys)
    d = MqttConfig()
    port = _int(t, "mqtt", "port", d.port)
    if not 1 <= port <= 65535:
        raise ConfigError("mqtt.port", port, "must be between 1 and 65535")
    keepalive = _int(t, "mqtt", "keepalive_s", d.keepalive_s)
    if not 5 <= keepalive <= 3600:
        raise ConfigError("mqtt.keepalive_s", keepalive, "must be between 5 and 3600 seconds")
    protocol = _str(t, "mqtt", "protocol", d.protocol)
    if protocol not in ("5", "3.1.1"):
        raise ConfigError("mqtt.protocol", protocol, 'must be "5" or "3.1.1"')
    session_expiry = _int(t, "mqtt", "session_expiry_s", d.session_expiry_s)
    if not 0 <= session_expiry <= 0xFFFFFFFF:
        raise ConfigError("mqtt.session_expiry_s", session_expiry, "must be between 0 and 4294967295 seconds")
    inflight = _int(t, "mqtt", "inflight", d.inflight)
    if not 1 <= inflight <= 65535:
        raise ConfigError("mqtt.inflight", inflight, "must be between 1 and 65535")
    root = _str(t, "mqtt", "root", d.root)
    if not root or any(c in root for c in "#+") or root.startswith("/") or root.endswith("/"):
        raise ConfigError("mqtt.root", root, "must be a topic prefix without wildcards or outer slashes")
    password = t.get("password")
    if password is not None and not isinstance(password, str):
        raise ConfigError("mqtt.password", "***", "must be a string")
    password_file = _path(t, "mqtt", "password_file", base_dir)
    if password_file is not None:
        if password is not None:
            raise ConfigError("mqtt.password_file", str(password_file), "give password or password_file, not both")
        try:
            password = password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError("mqtt.password_file", str(password_file), f"cannot read: {exc.strerror}") from exc
    username = t.get("username")
    if username is not None and not isinstance(username, str):
        raise ConfigError("mqtt.username", username, "must be a string")
    if password is not None and username is None:
        raise ConfigError("mqtt.username", None, "a password needs a username")
    tls = _bool(t, "mqtt", "tls", d.tls)
    ca_file = _path(t, "mqtt", "ca_file", base_dir, must_exist=True)
    cert_file = _path(t, "mqtt", "cert_file", base_dir, must_exist=True)
    key_file = _path(t, "mqtt", "key_file", base_dir, must_exist=True)
    if (cert_file is None) != (key_file is None):
        raise ConfigError(
            "mqtt.key_file" if key_file is None else "mqtt.cert_file",
            None,
            "a client certificate needs both cert_file and key_file",
        )
    if not tls and (ca_file or cert_file):
        raise ConfigError("mqtt.tls", tls, "ca_file/cert_file are set but tls is false")
    client_id = t.get("client_id")
    if client_id is not None and (not isinstance(client_id, str) or not client_id):
        raise ConfigError("mqtt.client_id", client_id, "must be a non-empty string")
    return MqttConfig(
        host=_str(t, "mqtt", "host", d.host),
        port=port,
        root=root,
        client_id=client_id,
        username=username,
        password=password,
        tls=tls,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        keepalive_s=keepalive,
        include_raw=_bool(t, "mqtt", "include_raw", d.include_raw),
        protocol=protocol,
        session_expiry_s=session_expiry,
        inflight=inflight,
    )


def _parse_wearer(raw: object, where: str) -> WearerConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(where, raw, "must be a table")
    _reject_unknown(raw, where, {"id", "devices", "thresholds"})
    if "id" not in raw:
        raise ConfigError(f"{where}.id", None, "required: a pseudonymous wearer id (letters, digits, _ . -)")
    wid = _ident(raw, where, "id", "")
    devs_raw = raw.get("devices")
    if not isinstance(devs_raw, list) or not devs_raw:
        raise ConfigError(f"{where}.devices", devs_raw, "must be a non-empty array of tables ([[wearers.devices]])")
    devices = tuple(_parse_device(d, f"{where}.devices[{i}]") for i, d in enumerate(devs_raw))
    thresholds = _parse_thresholds(_table(raw, "thresholds", where), f"{where}.thresholds")
    return WearerConfig(id=wid, devices=devices, thresholds=thresholds)


def _parse_device(raw: object, where: str) -> DeviceConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(where, raw, "must be a table")
    _reject_unknown(raw, where, {"kind", "address", "name"})
    kind = raw.get("kind")
    if kind not in DEVICE_KINDS:
        raise ConfigError(f"{where}.kind", kind, f"must be one of {', '.join(DEVICE_KINDS)}")
    address = raw.get("address")
    name = raw.get("name")
    if address is not None and (not isinstance(address, str) or not address):
        raise ConfigError(f"{where}.address", address, "must be a non-empty string")
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigError(f"{where}.name", name, "must be a non-empty string")
    if address is None and name is None:
        raise ConfigError(f"{where}.address", None, "give the device's address, or its advertised name")
    return DeviceConfig(kind=str(kind), address=address, name=name)


def _parse_policy(t: Mapping[str, Any]) -> AlertPolicy:
    return AlertPolicy(**_numbers(t, "alerts", AlertPolicy()))


def _numbers(t: Mapping[str, Any], where: str, defaults: Any) -> dict[str, float]:
    """Every field of the dataclass ``defaults`` from table ``t``: non-negative finite numbers."""
    names = set(type(defaults).__dataclass_fields__)
    _reject_unknown(t, where, names)
    values: dict[str, float] = {}
    for name in names:
        v = t.get(name, getattr(defaults, name))
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"{where}.{name}", v, "must be a non-negative number")
        values[name] = float(v)
    return values


def _parse_thresholds(t: Mapping[str, Any], where: str) -> Thresholds:
    th = Thresholds(**_numbers(t, where, Thresholds()))
    order = [
        ("glucose_urgent_low", "glucose_low"),
        ("glucose_low", "glucose_high"),
        ("glucose_high", "glucose_urgent_high"),
        ("hr_low", "hr_high"),
    ]
    for lo, hi in order:
        if getattr(th, lo) >= getattr(th, hi):
            raise ConfigError(f"{where}.{lo}", getattr(th, lo), f"must be below {hi} ({getattr(th, hi)})")
    return th


def _table(t: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    v = t.get(key, {})
    if not isinstance(v, Mapping):
        raise ConfigError(_dotted(where, key), v, "must be a table")
    return v


def _reject_unknown(t: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    for k in t:
        if k not in allowed:
            raise ConfigError(_dotted(where, k), t[k], f"unknown key (known: {', '.join(sorted(allowed))})")


def _dotted(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _str(t: Mapping[str, Any], where: str, key: str, default: str) -> str:
    v = t.get(key, default)
    if not isinstance(v, str) or not v:
        raise ConfigError(_dotted(where, key), v, "must be a non-empty string")
    return v


def _ident(t: Mapping[str, Any], where: str, key: str, default: str) -> str:
    v = _str(t, where, key, default)
    if not _ID_RE.match(v):
        raise ConfigError(_dotted(where, key), v, "must be 1-64 letters, digits, '_', '.' or '-' (it is a topic level)")
    return v


def _int(t: Mapping[str, Any], where: str, key: str, default: int) -> int:
    v = t.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(_dotted(where, key), v, "must be an integer")
    return v


def _bool(t: Mapping[str, Any], where: str, key: str, default: bool) -> bool:
    v = t.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(_dotted(where, key), v, "must be true or false")
    return v


def _path(
    t: Mapping[str, Any], where: str, key: str, base_dir: Path | None, *, must_exist: bool = False
) -> Path | None:
    v = t.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or not v:
        raise ConfigError(_dotted(where, key), v, "must be a non-empty path string")
    p = Path(v).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    if must_exist and not p.is_file():
        raise ConfigError(_dotted(where, key), v, "file not found")
    return p
