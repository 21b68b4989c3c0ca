"""The BLE link: one :class:`DeviceLink` per configured device, on bleak.

A link moves bytes; it never decodes them. Every notification, and every characteristic read at connect
(battery level, body sensor location, CGM features), goes to the sink as a
:class:`~agent.messages.RawNotification` stamped with the agent clock, synchronously from bleak's callback.

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

logger = logging.getLogger(__name__)

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
_T = TypeVar("_T")


@dataclass(frozen=True)
class CharSpec:
    """One characteristic a kind of device offers: where it is and what the link does with it.

    ``required`` ones must be there (and notify, if ``subscribe``), or the connection counts as failed.
    Optional ones are used when present; a refusal (an ATT error, e.g. insufficient authentication) is
    logged and the link goes on without them.
    """

    service: str
    characteristic: str
    required: bool = False
    read: bool = False
    subscribe: bool = False


PROFILES: Mapping[str, tuple[CharSpec, ...]] = MappingProxyType(
    {
        "hr_strap": (
            CharSpec("180D", "2A37", required=True, subscribe=True),  # Heart Rate Measurement
            CharSpec("180D", "2A38", read=True),  # Body Sensor Location
            CharSpec("180F", "2A19", read=True, subscribe=True),  # Battery Level
        ),
        "cgm": (
            CharSpec("181F", "2AA7", required=True, subscribe=True),  # CGM Measurement
            # CGM Feature: says whether measurements carry the E2E-CRC, so the decoder needs it.
            CharSpec("181F", "2AA8", read=True),
            CharSpec("180F", "2A19", read=True, subscribe=True),  # Battery Level
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

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"ble.{f.name}", v, "must be a finite number >= 0")
        if self.lost_after < 1:
            raise ConfigError("ble.lost_after", self.lost_after, "must be at least 1")
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
            await disconnected.wait()
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
        for spec, char in found:
            if not spec.subscribe:
                continue
            if not {"notify", "indicate"} & set(char.properties):
                if spec.required:
                    raise LinkError(self.label, f"{spec.characteristic} can neither notify nor indicate")
                continue
            await self._gatt(client.start_notify(char, self._on_notify(_short_uuid(char.uuid))), spec, "subscribe")

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

    def _deliver(self, characteristic: str, data: bytes | bytearray) -> None:
        note = RawNotification(self.wearer, self.label, characteristic, bytes(data), self._clock.now())
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
