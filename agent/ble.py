"""The BLE link: one :class:`DeviceLink` per configured device, on bleak.

A link moves bytes unchanged. Every notification, and every characteristic read at connect (battery level,
body sensor location, CGM features), goes to the sink as a :class:`~agent.messages.RawNotification` stamped
with the agent clock, synchronously from bleak's callback. The one thing a link reads out of the bytes is a
CGM's time offsets (with ``firmware_bridge``), to know which records it missed and when each was measured;
see "CGM backfill" below.

The life of a link (``run()``, until cancelled)::

    find it      by address when configured, else by advertised name (the first match's address is then
                 kept, so a second device with the same name cannot take its place)
    connect      within connect_timeout, holding the adapter's connect lock if one is shared
    set up       read the readable characteristics of its profile and send them to the sink, then subscribe
    stream       until the link drops
    back off     backoff(attempt) seconds, then find it again

States reported through ``on_state(wearer, device_label, state)``, only when they change:

* ``connecting``   not connected yet since start; trying.
* ``connected``    subscribed; notifications flow.
* ``reconnecting`` was connected, the link dropped or a retry failed; trying again.
* ``lost``         ``lost_after`` attempts in a row have failed (not found, refused, timed out). The link
  keeps trying, with the delay grown towards ``backoff_cap`` (60 s by default): a strap taken off for
  the night comes back without anyone restarting the agent.

Backoff: ``attempt`` counts retries since the last *stable* connection (one that stayed up for
``stable_after`` seconds), so a device whose link flaps is not hammered, while one that drops after hours
of service is retried after about ``backoff_base`` seconds.

Failures are contained: bleak's errors (``BleakError`` and its subclasses, timeouts, OS errors from D-Bus)
become :class:`~agent.errors.LinkError` at this boundary, are logged and retried; anything unexpected is
logged with its traceback and retried too. A link's failure never leaves its task, so one device cannot stop
another's link. Cancelling ``run()`` disconnects the device before returning, because BlueZ would otherwise
keep the connection and the device would stop advertising.

On a Pi, run the links of one adapter (4 to 7) concurrently and give them one shared ``connect_lock``:
BlueZ and many adapters fail ("Operation already in progress") when connections are set up in parallel.
Scanning is not serialized.

CGM backfill. A CGM keeps the records it measured while nobody listened; a CGM link with a Record Access
Control Point (0x2A52) fetches them after every connect, so a drop-out loses no glucose reading:

* Set up subscribes to CGM Measurement and to the RACP's indications, then the link writes "Report stored
  records, Time Offset >= N" and waits for the RACP Response Code (``racp_timeout`` s without a record or the
  response is a failure). The records come as ordinary 0x2AA7 notifications and go to the sink like live ones;
  ``stats.backfilled`` counts the records that arrived while a report ran (a live one measured meanwhile
  included). "No records found" is success. A failure (any other Response Code, a refused write, a timeout)
  is logged and counted, tried up to ``racp_attempts`` times per connection with backoff, and never touches
  the live stream.
* N is one past the newest time offset received; or, while an earlier backfill has not ended well, where
  that one started, so what a failed or interrupted backfill did not bring is asked for again, at the next
  attempt or the next connect.
* The time line (:class:`CgmTimeline`): a CGM record carries minutes since its session started, not a clock
  time. The link anchors the session at its first live record: session start = arrival time - time offset
  (a record arrives after it is measured, so this is at most the offset's rounding, under a minute, late;
  for a sensor measuring every whole number of minutes every live record gives the same anchor). Each 0x2AA7
  notification goes to the sink as a :class:`CgmNotification` carrying that ``session_start``; the core
  stamps each record at ``session_start + 60 * time_offset`` and the store keeps one row per (wearer,
  device, session_start, time offset). A live record whose time offset is below the newest one received
  (offsets count from 0 again) and that lies more than ``session_tolerance`` s off the anchor starts a new
  session (sensor changed or restarted): the link re-anchors on it. A late record with a higher offset
  (a notification a stack queued during the drop-out, say) does not move the anchor.
* First sight of a session (the agent's first connect, or a new session): nothing can be fetched before the
  first live record anchors the time line; then the link asks for the last ``first_backfill_h`` hours by time
  offset.
* Agent restarts: the daemon hands each CGM link the session its store last recorded for that device (anchor
  and newest time offset, :meth:`agent.store.Store.cgm_session`) through :meth:`CgmTimeline.resume`. The first
  live record decides: if its anchor lies within ``session_tolerance`` of the stored one, the session goes on
  under the stored anchor (so a record fetched again is named as before and stored once) and the backfill
  asks for everything after the stored newest offset, however long the agent was down; otherwise it is a new
  session, anchored on that record. No backfill runs before that record: records of an unknown session
  must not be stamped on an old time line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError, BleakGATTProtocolError

from agent.backoff import backoff
from agent.clock import Clock
from agent.config import DeviceConfig
from agent.errors import ConfigError, LinkError
from agent.messages import RawNotification
from firmware_bridge.cgm import decode_cgm_measurement
from firmware_bridge.errors import CodecError
from firmware_bridge.racp import (
    RacpOpCode,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    RacpValue,
    decode_racp,
    encode_racp,
)

logger = logging.getLogger("vigil.ble")

LinkState = Literal["connecting", "connected", "reconnecting", "lost"]
Sink = Callable[[RawNotification], None]
OnState = Callable[[str, str, str], None]

# What bleak raises at us when the radio, BlueZ or the device misbehave. Anything else is a bug somewhere.
_BLE_ERRORS: tuple[type[BaseException], ...] = (
    BleakError,
    asyncio.TimeoutError,
    TimeoutError,
    OSError,
    EOFError,
)
_SIG_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"
# "No records found" is a backfill that found nothing missing.
_REPORT_ENDED_WELL = (RacpResponseCode.SUCCESS, RacpResponseCode.NO_RECORDS_FOUND)
_T = TypeVar("_T")


@dataclass(frozen=True)
class CharSpec:
    """One characteristic a kind of device offers: where it is and what the link does with it.

    ``required`` ones must be there (and notify, if ``subscribe``), or the connection counts as failed.
    Optional ones are used when present; a refusal (an ATT error, e.g. insufficient authentication) is
    logged and the link goes on without them. ``role`` marks the two a CGM link treats specially: its
    measurements (whose time offsets it follows) and the Record Access Control Point (see "CGM backfill").
    """

    service: str
    characteristic: str
    required: bool = False
    read: bool = False
    subscribe: bool = False
    role: Literal["cgm_measurement", "racp"] | None = None


PROFILES: Mapping[str, tuple[CharSpec, ...]] = MappingProxyType(
    {
        "hr_strap": (
            CharSpec("180D", "2A37", required=True, subscribe=True),  # Heart Rate Measurement
            CharSpec("180D", "2A38", read=True),  # Body Sensor Location
            CharSpec("180F", "2A19", read=True, subscribe=True),  # Battery Level
        ),
        "cgm": (
            CharSpec("181F", "2AA7", required=True, subscribe=True, role="cgm_measurement"),  # CGM Measurement
            # CGM Feature: says whether measurements carry the E2E-CRC, so the decoder needs it.
            CharSpec("181F", "2AA8", read=True),
            CharSpec("180F", "2A19", read=True, subscribe=True),  # Battery Level
            # Record Access Control Point: indications on, after CGM Measurement, to fetch missed records.
            CharSpec("181F", "2A52", subscribe=True, role="racp"),
        ),
    }
)


@dataclass(frozen=True)
class LinkPolicy:
    """Timeouts (seconds), backoff and the ``lost`` threshold for a link. See the module docstring."""

    scan_timeout: float = 10.0
    connect_timeout: float = 20.0
    gatt_timeout: float = 10.0  # each read or subscribe at connect
    disconnect_timeout: float = 10.0
    backoff_base: float = 1.0
    backoff_factor: float = 2.0
    backoff_cap: float = 60.0
    backoff_jitter: float = 0.1
    lost_after: int = 5
    stable_after: float = 30.0
    # CGM backfill (see the module docstring).
    racp_timeout: float = 30.0  # a report fails after this long without a record or the response
    racp_attempts: int = 3  # reports tried per connection before waiting for the next one
    first_backfill_h: float = 3.0  # what to fetch when a session is first seen
    session_tolerance: float = 180.0  # a live record this far (s) off the session's anchor starts a new one

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"ble.{f.name}", v, "must be a finite number >= 0")
        if self.lost_after < 1:
            raise ConfigError("ble.lost_after", self.lost_after, "must be at least 1")
        if self.racp_attempts < 1:
            raise ConfigError("ble.racp_attempts", self.racp_attempts, "must be at least 1")
        if self.backoff_factor < 1:
            raise ConfigError("ble.backoff_factor", self.backoff_factor, "must be at least 1")
        if self.backoff_jitter > 1:
            raise ConfigError("ble.backoff_jitter", self.backoff_jitter, "must be between 0 and 1")


@dataclass
class LinkStats:
    """Counters for one link, for status reports and tests."""

    attempts: int = 0
    connections: int = 0
    link_losses: int = 0
    notifications: int = 0
    reads: int = 0
    sink_errors: int = 0
    backfill_requests: int = 0  # RACP report procedures started
    backfill_failures: int = 0  # ... that ended in anything but Success or No records found
    backfilled: int = 0  # CGM records that arrived while a report procedure ran
    sessions: int = 0  # CGM sessions anchored (the first one, and each new one seen)


@dataclass(frozen=True, slots=True)
class CgmNotification(RawNotification):
    """A CGM Measurement notification, with the epoch time at which the link places its session's time offset
    0 (``None`` before the session is anchored). The core stamps each record at
    ``session_start + 60 * time_offset_min``; see "CGM backfill" in the module docstring."""

    session_start: float | None = None


@dataclass
class CgmTimeline:
    """What a CGM link knows of its sensor's session, across reconnections. Pure bookkeeping, no I/O.

    ``session_start``: the anchor (epoch seconds of time offset 0), from the first live record of the session.
    ``newest``: the highest time offset received in the session. ``pending_from``: when not ``None``, the
    records from this time offset on are owed by a backfill; otherwise every record up to ``newest`` has been
    received.
    """

    first_backfill_min: int = 180
    tolerance: float = 180.0
    session_start: float | None = None
    newest: int | None = None
    pending_from: int | None = None
    resumed: bool = False  # the anchor is a previous run's, not yet confirmed by a live record

    def resume(self, session_start: float, newest: int) -> None:
        """Take up the session an earlier run of the agent stored (its anchor and newest time offset). The first
        live record decides: on the same time line (within ``tolerance``) the session goes on and what was
        measured after ``newest`` is owed; otherwise it is a new session. Nothing is owed before that."""
        self.session_start, self.newest, self.pending_from, self.resumed = session_start, newest, None, True

    @property
    def owed(self) -> int | None:
        """The time offset a backfill should start at now, or None (nothing owed, or not known yet)."""
        return None if self.resumed else self.pending_from

    def connected(self) -> None:
        """A (re)connection: whatever was measured since the newest record received is owed. Call it before
        subscribing, so that a live record arriving before the backfill does not cover up the gap."""
        if self.session_start is not None and self.newest is not None and self.pending_from is None:
            self.pending_from = self.newest + 1

    def received(self, offsets: list[int], arrival: float, *, live: bool) -> bool:
        """Records arrived at ``arrival`` (``live``: not while a report procedure ran). True if they start a
        session (the first, or a new one), which owes the records of its last ``first_backfill_min``."""
        newest = max(offsets)
        anchor = arrival - 60.0 * newest
        if live and self.resumed and self.session_start is not None:
            self.resumed = False
            if abs(anchor - self.session_start) <= self.tolerance:
                self.newest = newest if self.newest is None else max(self.newest, newest)
                return False  # the stored session goes on: its anchor stands, the gap since is owed
            self.session_start = None  # another session: anchored below, like a first one
        restarted = (
            self.session_start is not None
            and self.newest is not None
            and newest < self.newest
            and abs(anchor - self.session_start) > self.tolerance
        )
        if live and (self.session_start is None or restarted):
            self.session_start = round(anchor, 3)
            self.newest = newest
            self.pending_from = max(0, newest - self.first_backfill_min)
            return True
        if self.session_start is None:
            return False  # nothing anchors these yet (cannot happen: reports start only once anchored)
        self.newest = newest if self.newest is None else max(self.newest, newest)
        return False

    def backfilled(self, start: int) -> None:
        """The report of the records from ``start`` on ended well: nothing up to ``newest`` is owed now."""
        if self.pending_from == start:
            self.pending_from = None


class DeviceLink:
    """The BLE link to one device of one wearer. See the module docstring.

    ``scanner_backend``/``client_backend`` default to bleak's platform backend (BlueZ on Linux); the
    simulator passes its own. ``sleep`` (for the backoff delays) and ``rand`` (the backoff jitter) are
    injectable so tests need not wait.
    """

    def __init__(
        self,
        wearer: str,
        device: DeviceConfig,
        sink: Sink,
        clock: Clock,
        *,
        scanner_backend: type[BaseBleakScanner] | None = None,
        client_backend: type[BaseBleakClient] | None = None,
        on_state: OnState | None = None,
        policy: LinkPolicy | None = None,
        connect_lock: asyncio.Lock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if device.kind not in PROFILES:
            raise ConfigError("device.kind", device.kind, f"must be one of {', '.join(PROFILES)}")
        if not device.address and not device.name:
            raise ConfigError("device", device, "needs an address or a name to be found by")
        self.wearer = wearer
        self.device = device
        self.label = device.label
        self.policy = policy or LinkPolicy()
        self.state: LinkState | None = None
        self.last_error: LinkError | None = None
        self.stats = LinkStats()
        # The address in use: the configured one, or the first device found by name (then kept).
        self.address: str | None = device.address
        self._profile = PROFILES[device.kind]
        self._sink = sink
        self._clock = clock
        self._scanner_backend = scanner_backend
        self._client_backend = client_backend
        self._on_state = on_state
        self._connect_lock = connect_lock
        self._sleep = sleep
        self._rand = rand
        self._failures = 0  # attempts in a row that did not get connected
        self._attempt = 0  # backoff exponent: retries since the last stable connection
        self._ever_connected = False
        # CGM backfill state; see the module docstring.
        self.timeline = CgmTimeline(round(self.policy.first_backfill_h * 60), self.policy.session_tolerance)
        self._backfill_due = asyncio.Event()
        self._racp_char: BleakGATTCharacteristic | None = None
        self._racp_waiter: asyncio.Future[RacpValue] | None = None
        self._racp_activity = 0.0  # loop time of the last record or response of the running report
        self._live_after = 0.0  # loop time before which records may still be a timed-out report's

    def __repr__(self) -> str:
        return f"DeviceLink({self.wearer}/{self.label}, {self.state})"

    async def run(self) -> None:
        """Keep the device connected until cancelled. Never returns otherwise; never raises but on cancel."""
        self._report("connecting")
        while True:
            self.stats.attempts += 1
            try:
                up_for = await self._session()
            except LinkError as exc:
                self._failed(exc)
            except Exception as exc:
                logger.exception("%s/%s: unexpected error in the BLE link", self.wearer, self.label)
                err = LinkError(self.label, f"unexpected {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                self._failed(err)
            else:
                if up_for >= self.policy.stable_after:
                    self._attempt = 0
                self._report("reconnecting")
            p = self.policy
            delay = backoff(
                self._attempt, base=p.backoff_base, factor=p.backoff_factor, cap=p.backoff_cap,
                jitter=p.backoff_jitter, rand=self._rand,
            )  # fmt: skip
            self._attempt += 1
            logger.debug("%s/%s: next attempt in %.1f s", self.wearer, self.label, delay)
            await self._sleep(delay)

    # -- one connection, from finding the device to losing it ----------------------------------------------

    async def _session(self) -> float:
        """Find, connect, set up, stream; return how long (s) the link was up. Raise LinkError on failure."""
        device = await self._find()
        disconnected = asyncio.Event()
        try:
            client = BleakClient(
                device,
                disconnected_callback=lambda _client: disconnected.set(),
                timeout=self.policy.connect_timeout,
                backend=self._client_backend,
            )
        except _BLE_ERRORS as exc:  # no usable platform backend, say
            raise LinkError(self.label, f"no BLE client: {_describe(exc)}") from exc
        try:
            async with self._connect_lock or contextlib.nullcontext():
                try:
                    await _within(self.policy.connect_timeout, client.connect())
                except _BLE_ERRORS as exc:
                    raise LinkError(self.label, f"connect failed: {_describe(exc)}") from exc
                await self._set_up(client)
            if disconnected.is_set() or not client.is_connected:
                raise LinkError(self.label, "the link dropped while setting up")
            loop = asyncio.get_running_loop()
            started = loop.time()
            self._connected()
            backfill = None if self._racp_char is None else loop.create_task(self._backfill(client, self._racp_char))
            try:
                await disconnected.wait()
            finally:
                if backfill is not None:
                    backfill.cancel()
                    await asyncio.wait({backfill})
            up_for = loop.time() - started
            self.stats.link_losses += 1
            logger.warning("%s/%s: link lost after %.0f s", self.wearer, self.label, up_for)
            return up_for
        finally:
            await self._close(client)

    async def _find(self) -> BLEDevice:
        extra: BleakScanner.ExtraArgs = {}
        if self._scanner_backend is not None:
            extra["backend"] = self._scanner_backend
        timeout = self.policy.scan_timeout
        try:
            if self.address is not None:
                device = await BleakScanner.find_device_by_address(self.address, timeout=timeout, **extra)
            else:
                name = self.device.name

                def by_name(d: BLEDevice, ad: AdvertisementData) -> bool:
                    return (ad.local_name or d.name) == name

                device = await BleakScanner.find_device_by_filter(by_name, timeout=timeout, **extra)
        except _BLE_ERRORS as exc:
            raise LinkError(self.label, f"scan failed: {_describe(exc)}") from exc
        if device is None:
            raise LinkError(self.label, f"not found: nothing advertised as it for {timeout:g} s")
        if self.address is None:
            self.address = device.address
            logger.info("%s/%s: found by name at %s; keeping that address", self.wearer, self.label, device.address)
        return device

    async def _set_up(self, client: BleakClient) -> None:
        """Read the profile's readable characteristics (to the sink), then subscribe. Raise LinkError."""
        found: list[tuple[CharSpec, BleakGATTCharacteristic]] = []
        try:
            services = client.services
            for spec in self._profile:
                service = services.get_service(spec.service)
                char = service.get_characteristic(spec.characteristic) if service is not None else None
                if char is None:
                    if spec.required:
                        raise LinkError(self.label, f"the device has no {spec.characteristic} in {spec.service}")
                    continue
                found.append((spec, char))
        except BleakError as exc:
            raise LinkError(self.label, f"service discovery: {_describe(exc)}") from exc

        for spec, char in found:
            if spec.read and "read" in char.properties:
                data = await self._gatt(client.read_gatt_char(char), spec, "read")
                if data is not None:
                    self.stats.reads += 1
                    self._deliver(spec.characteristic, data)
        self._racp_char = None
        self._racp_waiter = None
        self.timeline.connected()
        if self.timeline.owed is not None:
            self._backfill_due.set()
        for spec, char in found:
            if not spec.subscribe:
                continue
            if not {"notify", "indicate"} & set(char.properties):
                if spec.required:
                    raise LinkError(self.label, f"{spec.characteristic} can neither notify nor indicate")
                continue
            callback = {"cgm_measurement": self._on_cgm_measurement, "racp": self._on_racp}.get(
                spec.role or "", self._on_notify(_short_uuid(char.uuid))
            )
            subscribed = await self._gatt(_start_notify(client, char, callback), spec, "subscribe")
            if spec.role == "racp" and subscribed and "write" in char.properties:
                self._racp_char = char

    async def _gatt(self, op: Awaitable[_T], spec: CharSpec, what: str) -> _T | None:
        """Await one GATT operation within gatt_timeout; None if an optional one was refused."""
        try:
            return await _within(self.policy.gatt_timeout, op)
        except BleakGATTProtocolError as exc:
            if spec.required:
                raise LinkError(self.label, f"{what} {spec.characteristic}: {_describe(exc)}") from exc
            logger.info("%s/%s: %s %s refused (%s); going on without it",
                        self.wearer, self.label, what, spec.characteristic, exc)  # fmt: skip
            return None
        except _BLE_ERRORS as exc:
            raise LinkError(self.label, f"{what} {spec.characteristic}: {_describe(exc)}") from exc

    async def _close(self, client: BleakClient) -> None:
        """Disconnect, whatever state the client is in; never raise (but let a cancellation through)."""
        try:
            await _within(self.policy.disconnect_timeout, client.disconnect())
        except _BLE_ERRORS as exc:
            logger.info("%s/%s: disconnect: %s", self.wearer, self.label, _describe(exc))
        except Exception:
            logger.exception("%s/%s: unexpected error while disconnecting", self.wearer, self.label)

    # -- the data path ---------------------------------------------------------------------------------------

    def _on_notify(self, characteristic: str) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        def on_notify(_sender: BleakGATTCharacteristic, data: bytearray) -> None:
            self.stats.notifications += 1
            self._deliver(characteristic, data)

        return on_notify

    def _on_cgm_measurement(self, _sender: BleakGATTCharacteristic, data: bytearray) -> None:
        """CGM Measurement: follow the time offsets (time line, what is owed), then deliver as it came."""
        self.stats.notifications += 1
        now = self._clock.now()
        try:
            offsets = [record.time_offset_min for record in decode_cgm_measurement(data)]
        except CodecError:
            offsets = []  # delivered all the same: the core rejects it and counts it
        if offsets:
            loop = asyncio.get_running_loop()
            reporting = self._racp_waiter is not None
            if reporting:
                self.stats.backfilled += len(offsets)
                self._racp_activity = loop.time()
            live = not reporting and loop.time() >= self._live_after
            if self.timeline.received(offsets, now, live=live):
                self.stats.sessions += 1
                logger.info("%s/%s: CGM session anchored at %.0f (time offset %d)", self.wearer, self.label,
                            self.timeline.session_start or 0.0, max(offsets))  # fmt: skip
            if self.timeline.owed is not None:
                self._backfill_due.set()
        self._deliver("2AA7", data, now, session_start=self.timeline.session_start)

    def _on_racp(self, _sender: BleakGATTCharacteristic, data: bytearray) -> None:
        waiter = self._racp_waiter
        try:
            value = decode_racp(data)
        except CodecError as exc:
            logger.warning("%s/%s: ill-formed RACP indication %s: %s", self.wearer, self.label, bytes(data).hex(),
                           exc.reason)  # fmt: skip
            if waiter is not None and not waiter.done():
                waiter.set_exception(LinkError(self.label, f"ill-formed RACP response: {exc.reason}"))
            return
        if waiter is None or waiter.done():
            logger.info("%s/%s: RACP indication with no procedure running: %s", self.wearer, self.label, value)
            return
        waiter.set_result(value)

    async def _backfill(self, client: BleakClient, racp: BleakGATTCharacteristic) -> None:
        """Fetch what is owed whenever something is, until cancelled (the connection ends) or out of attempts."""
        failures = 0
        while True:
            await self._backfill_due.wait()
            start = self.timeline.owed
            if start is None:
                self._backfill_due.clear()
                continue
            if await self._report_from(client, racp, start):
                self.timeline.backfilled(start)
                failures = 0
                if self.timeline.owed is None:
                    self._backfill_due.clear()
                continue
            failures += 1
            if failures >= self.policy.racp_attempts:
                logger.warning("%s/%s: backfill failed %d times; records from time offset %d are asked for at the "
                               "next connection", self.wearer, self.label, failures, start)  # fmt: skip
                return
            p = self.policy
            await self._sleep(backoff(failures - 1, base=p.backoff_base, factor=p.backoff_factor, cap=p.backoff_cap,
                                      jitter=p.backoff_jitter, rand=self._rand))  # fmt: skip

    async def _report_from(self, client: BleakClient, racp: BleakGATTCharacteristic, start: int) -> bool:
        """One "Report stored records, Time Offset >= start" procedure; True if it ended well."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[RacpValue] = loop.create_future()
        self._racp_waiter = waiter
        self._racp_activity = loop.time()
        self.stats.backfill_requests += 1
        before = self.stats.backfilled
        problem = ""
        try:
            request = encode_racp(RacpRequest.report_from(start))
            await _within(self.policy.gatt_timeout, client.write_gatt_char(racp, request, response=True))
            while not waiter.done():
                left = self._racp_activity + self.policy.racp_timeout - loop.time()
                if left <= 0:
                    problem = f"no record or response for {self.policy.racp_timeout:g} s"
                    # Records of this report may still come: they are not live ones.
                    self._live_after = loop.time() + self.policy.racp_timeout
                    break
                await asyncio.wait({waiter}, timeout=left)
            response = waiter.result() if waiter.done() else None
        except LinkError as exc:
            problem, response = exc.reason, None
        except _BLE_ERRORS as exc:
            problem, response = _describe(exc), None
        finally:
            self._racp_waiter = None
            if not waiter.done():
                waiter.cancel()
        if (
            isinstance(response, RacpResponse)
            and response.request_op_code == RacpOpCode.REPORT_STORED_RECORDS
            and response.response_code in _REPORT_ENDED_WELL
        ):
            logger.info("%s/%s: backfill from time offset %d: %d record(s)", self.wearer, self.label, start,
                        self.stats.backfilled - before)  # fmt: skip
            return True
        self.stats.backfill_failures += 1
        logger.warning("%s/%s: backfill from time offset %d failed: %s", self.wearer, self.label, start,
                       problem or f"response {response}")  # fmt: skip
        return False

    def _deliver(
        self,
        characteristic: str,
        data: bytes | bytearray,
        received_at: float | None = None,
        *,
        session_start: float | None = None,
    ) -> None:
        now = self._clock.now() if received_at is None else received_at
        note = (
            RawNotification(self.wearer, self.label, characteristic, bytes(data), now)
            if session_start is None
            else CgmNotification(self.wearer, self.label, characteristic, bytes(data), now, session_start)
        )
        try:
            self._sink(note)
        except Exception:
            # The sink is the agent's own intake and must not raise; if it does, the link keeps going.
            self.stats.sink_errors += 1
            logger.exception("%s/%s: the sink raised on %s", self.wearer, self.label, characteristic)

    # -- state -----------------------------------------------------------------------------------------------

    def _connected(self) -> None:
        self.stats.connections += 1
        self._failures = 0
        self._ever_connected = True
        self.last_error = None
        logger.info("%s/%s: connected", self.wearer, self.label)
        self._report("connected")

    def _failed(self, exc: LinkError) -> None:
        self._failures += 1
        self.last_error = exc
        if self._failures >= self.policy.lost_after:
            level = logging.WARNING if self.state != "lost" else logging.DEBUG
            logger.log(level, "%s/%s: lost (%d attempts failed): %s", self.wearer, self.label, self._failures,
                       exc.reason)  # fmt: skip
            self._report("lost")
        else:
            logger.warning("%s/%s: %s", self.wearer, self.label, exc.reason)
            self._report("reconnecting" if self._ever_connected else "connecting")

    def _report(self, state: LinkState) -> None:
        if state == self.state:
            return
        self.state = state
        if self._on_state is None:
            return
        try:
            self._on_state(self.wearer, self.label, state)
        except Exception:
            logger.exception("%s/%s: on_state raised on %s", self.wearer, self.label, state)


@dataclass(frozen=True)
class NearbyDevice:
    """A device seen advertising, for ``vigil doctor``."""

    address: str
    name: str | None
    rssi: int
    service_uuids: tuple[str, ...]


async def discover(timeout: float = 5.0, scanner_backend: type[BaseBleakScanner] | None = None) -> list[NearbyDevice]:
    """Scan for ``timeout`` seconds; the devices seen, strongest signal first. Raises LinkError."""
    extra: BleakScanner.ExtraArgs = {}
    if scanner_backend is not None:
        extra["backend"] = scanner_backend
    try:
        seen = await BleakScanner.discover(timeout, return_adv=True, **extra)
    except _BLE_ERRORS as exc:
        raise LinkError("adapter", f"scan failed: {_describe(exc)}") from exc
    found = [
        NearbyDevice(d.address, ad.local_name or d.name, ad.rssi, tuple(_short_uuid(u) for u in ad.service_uuids))
        for d, ad in seen.values()
    ]
    return sorted(found, key=lambda n: (-n.rssi, n.address))


async def _within(seconds: float, op: Awaitable[_T]) -> _T:
    """``op``'s result, or ``asyncio.TimeoutError`` after ``seconds`` (``op`` is then cancelled).

    Not ``asyncio.wait_for``: up to Python 3.11 it returns the result, and swallows the cancellation, when
    the task is cancelled just as ``op`` completes (CPython gh-86296), and a link that ignores its
    cancellation keeps the agent from shutting down. Here a cancellation always wins, and ``op`` is
    cancelled and waited for, so bleak can clean up, before it propagates.
    """
    task = asyncio.ensure_future(op)
    task.add_done_callback(_retrieve)  # an error it raises after we stopped listening is not "unretrieved"
    try:
        await asyncio.wait({task}, timeout=seconds)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        raise asyncio.TimeoutError(f"no answer within {seconds:g} s")
    return task.result()


async def _start_notify(client: BleakClient, char: BleakGATTCharacteristic, callback: Any) -> bool:
    await client.start_notify(char, callback)
    return True


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _short_uuid(uuid: str) -> str:
    """ "0000180d-0000-1000-8000-00805f9b34fb" -> "180D"; a vendor UUID stays 128-bit."""
    u = uuid.lower()
    if len(u) == 36 and u.startswith("0000") and u.endswith(_SIG_BASE_SUFFIX):
        return u[4:8].upper()
    return u


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
