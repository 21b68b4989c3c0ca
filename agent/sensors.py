"""Watching the sensors themselves: silent sensors, lost links, low batteries.

:class:`SensorMonitor` knows every configured device, when it last sent anything, the state of its link and its
battery level, and turns those into :class:`~agent.alerts.Condition` records for the alert engine:

* ``sensor_stale`` — nothing received for longer than the wearer's ``cgm_stale_s`` / ``strap_stale_s``
  (counted from the agent's start for a device never heard from);
* ``sensor_disconnected`` — the link has not been connected for ``disconnected_after_s``;
* ``sensor_battery_low`` — the battery is below ``battery_low_pct`` (it clears 5 points above).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.alerts import SENSOR_BATTERY_LOW, SENSOR_DISCONNECTED, SENSOR_STALE, Condition
from agent.config import Config, Thresholds
from agent.topics import iso_time

BATTERY_HYSTERESIS_PCT = 5.0
_NAMES = {"cgm": "CGM", "hr_strap": "heart-rate strap"}


@dataclass
class _Device:
    wearer: str
    label: str
    kind: str
    thresholds: Thresholds
    last_seen: float
    down_since: float | None
    stale: bool = False
    disconnected: bool = False

    @property
    def name(self) -> str:
        return f"{_NAMES.get(self.kind, self.kind)} {self.label}"

    @property
    def stale_limit(self) -> float:
        return self.thresholds.cgm_stale_s if self.kind == "cgm" else self.thresholds.strap_stale_s


class SensorMonitor:
    def __init__(self, cfg: Config, started: float) -> None:
        self.policy = cfg.alerts
        self._devices: dict[tuple[str, str], _Device] = {
            (w.id, d.label): _Device(w.id, d.label, d.kind, w.thresholds, last_seen=started, down_since=started)
            for w in cfg.wearers
            for d in w.devices
        }

    def seen(self, wearer: str, device: str, t: float) -> list[Condition]:
        """Something arrived from the device at ``t``."""
        dev = self._devices.get((wearer, device))
        if dev is None:
            return []
        dev.last_seen = max(dev.last_seen, t)
        if not dev.stale:
            return []
        dev.stale = False
        reason = f"the {dev.name} is sending again"
        return [self._cond(dev, SENSOR_STALE, False, t, reason, {"stale_limit_s": dev.stale_limit})]

    def link(self, wearer: str, device: str, state: str, t: float) -> list[Condition]:
        dev = self._devices.get((wearer, device))
        if dev is None:
            return []
        if state == "connected":
            dev.down_since = None
            if dev.disconnected:
                dev.disconnected = False
                limit = {"disconnected_after_s": self.policy.disconnected_after_s}
                return [self._cond(dev, SENSOR_DISCONNECTED, False, t, f"the {dev.name} is connected again", limit)]
        elif dev.down_since is None:
            dev.down_since = t
        return []

    def battery(self, wearer: str, device: str, pct: float, t: float) -> list[Condition]:
        dev = self._devices.get((wearer, device))
        if dev is None:
            return []
        low = dev.thresholds.battery_low_pct
        thresholds = {"battery_low_pct": low, "battery_hysteresis_pct": BATTERY_HYSTERESIS_PCT}
        if pct < low:
            active: bool | None = True
            reason = f"the {dev.name}'s battery is at {pct:g}%, below {low:g}%"
        elif pct >= low + BATTERY_HYSTERESIS_PCT:
            active = False
            reason = f"the {dev.name}'s battery is at {pct:g}% again"
        else:
            active, reason = None, ""
        return [self._cond(dev, SENSOR_BATTERY_LOW, active, t, reason, thresholds, {"battery_pct": pct})]

    def tick(self, now: float) -> list[Condition]:
        """Conditions that time alone brings about: silence and long disconnections."""
        out = []
        for dev in self._devices.values():
            silent = now - dev.last_seen
            if not dev.stale and silent > dev.stale_limit:
                dev.stale = True
                reason = f"no data from the {dev.name} for {silent / 60:.0f} min (limit {dev.stale_limit / 60:g} min)"
                values = {"silent_s": round(silent, 1), "last_seen": iso_time(dev.last_seen)}
                out.append(self._cond(dev, SENSOR_STALE, True, now, reason, {"stale_limit_s": dev.stale_limit}, values))
            limit = self.policy.disconnected_after_s
            if dev.down_since is not None and not dev.disconnected and now - dev.down_since > limit:
                dev.disconnected = True
                down = now - dev.down_since
                reason = f"the {dev.name} has not been connected for {down / 60:.0f} min (limit {limit / 60:g} min)"
                values = {"down_s": round(down, 1), "down_since": iso_time(dev.down_since)}
                out.append(
                    self._cond(dev, SENSOR_DISCONNECTED, True, now, reason, {"disconnected_after_s": limit}, values)
                )
        return out

    @staticmethod
    def _cond(
        dev: _Device,
        kind: str,
        active: bool | None,
        t: float,
        reason: str,
        thresholds: dict[str, float],
        values: dict[str, object] | None = None,
    ) -> Condition:
        return Condition(
            wearer=dev.wearer,
            kind=kind,
            active=active,
            t=t,
            severity="warning",
            reason=reason,
            values={"device_kind": dev.kind, **(values or {})},
            thresholds=thresholds,
            subject=dev.label,
        )
