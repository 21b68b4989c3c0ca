"""Virtual BLE peripherals, and the world that holds them.

A :class:`VirtualPeripheral` is the device side of a simulated wearable: it advertises (name, service UUIDs,
RSSI), accepts one connection at a time, serves a GATT table, and sends notifications or indications to the
connected central. A :class:`SimWorld` holds the peripherals by address; :mod:`sim.bleak_backend` serves a
world to unchanged production code through bleak's ``backend=`` hook, and :mod:`sim.player` drives it in
time.

What the peripheral models, and why:

* Effective advertising is ``advertising and not connected``: a strap or CGM takes one central and stops
  advertising while connected, so a second agent cannot steal it and a dropped link shows up as the device
  advertising again.
* :meth:`VirtualPeripheral.disconnect` is a link loss (supervision timeout, walked out of range): the central
  is told through the same path as a real drop. To make a device vanish, also call ``set_advertising(False)``.
* :meth:`VirtualPeripheral.notify` takes any bytes. Ill-formed payloads are injected by notifying them.
* Notifications nobody receives (no connection, or the central has not subscribed) are dropped and counted,
  as the radio would drop them.
* A characteristic may carry a write handler (a control point such as RACP or the CGM SOCP). It runs as a
  task *after* the write completes, as the ATT Write Response precedes the indications on the air; it answers
  with :meth:`VirtualPeripheral.notify`. A link loss cancels it (an RACP procedure is aborted by a
  disconnect). While one runs, another write to that characteristic is refused with "Procedure Already in
  Progress"; a characteristic marked ``write_requires_subscription`` refuses writes from a central that has
  not enabled its indications with "CCCD Improperly Configured", as RACP and SOCP require.

This module knows nothing of bleak's client or scanner classes; it uses only bleak's names for GATT
properties and ATT error codes, so that the backend can pass them through unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, get_args

from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.exc import BleakGATTProtocolErrorCode
from bleak.uuids import normalize_uuid_str

logger = logging.getLogger(__name__)

_PROPERTY_NAMES: frozenset[str] = frozenset(get_args(CharacteristicPropertyName))
_NOTIFYING = frozenset({"notify", "indicate"})


class SimError(Exception):
    """A simulation was set up or driven wrongly (unknown address, unknown characteristic, ...)."""


class AttError(SimError):
    """The peripheral answered an ATT request with an error; ``code`` is the ATT error code."""

    def __init__(self, code: BleakGATTProtocolErrorCode, what: str) -> None:
        self.code = code
        super().__init__(f"ATT error 0x{int(code):02X} ({code.name}): {what}")


@functools.lru_cache(maxsize=1024)
def normalize_uuid(uuid: str) -> str:
    """A 16-bit ("2A37"), 32-bit or 128-bit UUID as bleak writes it: 128-bit, lower case. Cached: a replay
    names the same few characteristics once per notification."""
    try:
        return normalize_uuid_str(uuid)
    except ValueError as exc:
        raise SimError(f"not a UUID: {uuid!r}") from exc


@dataclass(frozen=True)
class WriteRequest:
    """A write a central made to a characteristic that has a write handler."""

    peripheral: VirtualPeripheral
    characteristic: Characteristic
    data: bytes
    with_response: bool


WriteHandler = Callable[[WriteRequest], Coroutine[Any, Any, None]]


@dataclass(eq=False)
class Characteristic:
    """One characteristic: its UUID, GATT properties, current value (served to reads) and write handler."""

    uuid: str
    properties: tuple[CharacteristicPropertyName, ...]
    value: bytes = b""
    on_write: WriteHandler | None = None
    write_requires_subscription: bool = False

    def __post_init__(self) -> None:
        self.uuid = normalize_uuid(self.uuid)
        unknown = [p for p in self.properties if p not in _PROPERTY_NAMES]
        if unknown:
            raise SimError(f"characteristic {self.uuid}: unknown properties {unknown}")
        self.properties = tuple(self.properties)
        self.value = bytes(self.value)
        if self.on_write is not None and not ({"write", "write-without-response"} & set(self.properties)):
            raise SimError(f"characteristic {self.uuid}: a write handler needs a write property")

    @property
    def notifies(self) -> bool:
        return bool(_NOTIFYING & set(self.properties))


@dataclass(frozen=True)
class Service:
    """A primary service and its characteristics."""

    uuid: str
    characteristics: tuple[Characteristic, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "uuid", normalize_uuid(self.uuid))
        object.__setattr__(self, "characteristics", tuple(self.characteristics))


@dataclass
class PeripheralStats:
    """What happened to one peripheral; a scenario's scoring and the tests read these."""

    connections: int = 0
    link_losses: int = 0
    notifications_delivered: int = 0
    # Notifications that reached no one: no connection, or the central had not subscribed.
    notifications_dropped: int = 0
    # A central's notification callback raised. bleak on BlueZ logs and carries on; so does the simulator.
    callback_errors: int = 0
    reads: int = 0
    writes: int = 0
    handler_errors: int = 0


class Central(Protocol):
    """What a peripheral needs from the central it is connected to (the bleak backend's client)."""

    def link_lost(self) -> None:
        """The link dropped without the central asking for it."""
        ...


NotifyCallback = Callable[[bytearray], None]


class PeripheralLink:
    """The peripheral's side of one connection. The bleak backend is its only user."""

    def __init__(self, peripheral: VirtualPeripheral, central: Central) -> None:
        self.peripheral = peripheral
        self._central = central
        self._subscriptions: dict[Characteristic, tuple[NotifyCallback, str]] = {}
        self._handlers: dict[Characteristic, asyncio.Task[None]] = {}
        self.open = True

    def subscription(self, char: Characteristic) -> str | None:
        """``"notify"`` or ``"indicate"`` if the central enabled either on ``char``, else ``None``."""
        entry = self._subscriptions.get(char)
        return entry[1] if entry else None

    def subscribe(self, char: Characteristic, callback: NotifyCallback) -> None:
        self._check_open()
        self.peripheral._own(char)
        if not char.notifies:
            raise AttError(BleakGATTProtocolErrorCode.REQUEST_NOT_SUPPORTED, f"{char.uuid} cannot notify")
        # Like every stack, prefer notifications over indications when the characteristic offers both.
        mode = "notify" if "notify" in char.properties else "indicate"
        self._subscriptions[char] = (callback, mode)

    def unsubscribe(self, char: Characteristic) -> None:
        self._check_open()
        self._subscriptions.pop(char, None)

    def read(self, char: Characteristic) -> bytes:
        self._check_open()
        self.peripheral._own(char)
        if "read" not in char.properties:
            raise AttError(BleakGATTProtocolErrorCode.READ_NOT_PERMITTED, f"{char.uuid} is not readable")
        self.peripheral.stats.reads += 1
        return char.value

    def write(self, char: Characteristic, data: bytes, *, with_response: bool) -> None:
        self._check_open()
        self.peripheral._own(char)
        wanted = "write" if with_response else "write-without-response"
        if wanted not in char.properties:
            raise AttError(BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED, f"{char.uuid} has no {wanted}")
        if char.write_requires_subscription and char not in self._subscriptions:
            raise AttError(
                BleakGATTProtocolErrorCode.CCCD_IMPROPERLY_CONFIGURED,
                f"{char.uuid}: enable indications before writing",
            )
        running = self._handlers.get(char)
        if running is not None and not running.done():
            raise AttError(BleakGATTProtocolErrorCode.PROCEDURE_ALREADY_IN_PROGRESS, f"{char.uuid} is busy")
        self.peripheral.stats.writes += 1
        data = bytes(data)
        if char.on_write is None:
            char.value = data
            return
        request = WriteRequest(self.peripheral, char, data, with_response)
        task = asyncio.get_running_loop().create_task(char.on_write(request))
        self._handlers[char] = task
        task.add_done_callback(self._handler_done)

    def close(self) -> None:
        """End the link from the central's side (the central already knows)."""
        self._end()

    def _lose(self) -> None:
        """End the link from the peripheral's side and tell the central, like a supervision timeout."""
        if self._end():
            self._central.link_lost()

    def _end(self) -> bool:
        if not self.open:
            return False
        self.open = False
        self._subscriptions.clear()
        for task in self._handlers.values():
            task.cancel()
        self._handlers.clear()
        self.peripheral._link_ended(self)
        return True

    def _deliver(self, char: Characteristic, data: bytes) -> bool:
        entry = self._subscriptions.get(char) if self.open else None
        if entry is None:
            return False
        try:
            entry[0](bytearray(data))
        except Exception:
            self.peripheral.stats.callback_errors += 1
            logger.exception("%s: the central's notification callback for %s raised", self.peripheral, char.uuid)
        return True

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.peripheral.stats.handler_errors += 1
            logger.error("%s: write handler failed", self.peripheral, exc_info=exc)

    def _check_open(self) -> None:
        if not self.open:
            raise SimError(f"{self.peripheral}: the link is closed")


class VirtualPeripheral:
    """A simulated BLE peripheral. See the module docstring for what it models.

    ``advertised_services`` defaults to the UUIDs of all its services. ``connect_delay`` is the wall time a
    connection takes to come up, for exercising connect timeouts.
    """

    def __init__(
        self,
        address: str,
        name: str | None,
        services: Iterable[Service] = (),
        *,
        rssi: int = -60,
        advertised_services: Iterable[str] | None = None,
        advertising: bool = True,
        connectable: bool = True,
        connect_delay: float = 0.0,
    ) -> None:
        self.address = address.upper()
        self.name = name
        self.services = tuple(services)
        self.rssi = rssi
        self.advertised_services = tuple(
            normalize_uuid(u) for u in (advertised_services or [s.uuid for s in self.services])
        )
        self.connect_delay = connect_delay
        self.stats = PeripheralStats()
        self._advertising = advertising
        self._connectable = connectable
        self._link: PeripheralLink | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._listeners: list[Callable[[VirtualPeripheral], None]] = []
        self._by_uuid: dict[str, list[Characteristic]] = {}
        for s in self.services:
            for c in s.characteristics:
                self._by_uuid.setdefault(c.uuid, []).append(c)

    def __repr__(self) -> str:
        return f"VirtualPeripheral({self.address}, {self.name!r})"

    # -- state the world sees ------------------------------------------------------------------------------

    @property
    def advertising(self) -> bool:
        """Whether the device wants to advertise (powered on and in range)."""
        return self._advertising

    @property
    def connectable(self) -> bool:
        return self._connectable

    @property
    def is_connected(self) -> bool:
        return self._link is not None

    @property
    def is_advertising(self) -> bool:
        """Whether a scanner would see it now: advertising, and not taken by a central."""
        return self._advertising and self._link is None

    def set_advertising(self, on: bool) -> None:
        """Start or stop advertising. Stopping does not drop an existing link; :meth:`disconnect` does."""
        self._advertising = on
        self._changed()

    def set_connectable(self, on: bool) -> None:
        """A device that advertises but does not answer connection requests when ``False``."""
        self._connectable = on
        self._changed()

    def set_rssi(self, rssi: int) -> None:
        self.rssi = rssi
        self._changed()

    # -- GATT ----------------------------------------------------------------------------------------------

    def characteristic(self, uuid: str) -> Characteristic:
        """The characteristic with this UUID ("2A19" or 128-bit). Raises :class:`SimError` if none or many."""
        found = self._by_uuid.get(normalize_uuid(uuid), [])
        if len(found) != 1:
            problem = "no" if not found else "more than one"
            raise SimError(f"{self}: {problem} characteristic {uuid}")
        return found[0]

    def set_value(self, uuid: str, data: bytes) -> None:
        """Change what a read of the characteristic returns (a battery level, say); no notification."""
        self.characteristic(uuid).value = bytes(data)

    def subscribed(self, uuid: str) -> bool:
        """Whether the connected central has enabled notifications or indications on the characteristic."""
        link = self._link
        return link is not None and link.subscription(self.characteristic(uuid)) is not None

    async def notify(self, uuid: str, data: bytes) -> bool:
        """Send ``data`` (any bytes, well-formed or not) as a notification or indication on ``uuid``.

        The characteristic's read value becomes ``data`` too, as on a real device. Returns whether a central
        received it; when none did it is counted in ``stats.notifications_dropped``.
        """
        char = self.characteristic(uuid)
        if not char.notifies:
            raise SimError(f"{self}: characteristic {char.uuid} has neither notify nor indicate")
        data = bytes(data)
        char.value = data
        link = self._link
        if link is not None and link._deliver(char, data):
            self.stats.notifications_delivered += 1
            return True
        self.stats.notifications_dropped += 1
        return False

    # -- the link ------------------------------------------------------------------------------------------

    def disconnect(self) -> bool:
        """Drop the link as a real loss would: the central's disconnected callback fires. False if none."""
        link = self._link
        if link is None:
            return False
        self.stats.link_losses += 1
        link._lose()
        return True

    async def accept(self, central: Central, timeout: float | None = None) -> PeripheralLink:
        """Wait until the device can be connected (advertising, connectable, free), then connect ``central``.

        Like a pending LE connection, this waits until the device answers or ``timeout`` (wall seconds)
        passes, then raises ``asyncio.TimeoutError``. (A deadline, not ``asyncio.wait_for``: on Python 3.11
        that can swallow a cancellation arriving as the connection completes.)
        """
        loop = asyncio.get_running_loop()
        deadline = math.inf if timeout is None else loop.time() + timeout
        while True:
            while not self._accepting():
                await self._wait_change(deadline - loop.time())
            if self.connect_delay > 0:
                left = deadline - loop.time()
                await asyncio.sleep(min(self.connect_delay, max(left, 0.0)))
                if left < self.connect_delay:
                    raise asyncio.TimeoutError(f"{self}: no connection within {timeout} s")
                if not self._accepting():
                    continue
            link = PeripheralLink(self, central)
            self._link = link
            self.stats.connections += 1
            self._changed()
            return link

    def _accepting(self) -> bool:
        return self.is_advertising and self._connectable

    def _link_ended(self, link: PeripheralLink) -> None:
        if self._link is link:
            self._link = None
            self._changed()

    def _own(self, char: Characteristic) -> None:
        if char not in self._by_uuid.get(char.uuid, []):
            raise AttError(BleakGATTProtocolErrorCode.INVALID_HANDLE, f"{char.uuid} is not on {self}")

    async def _wait_change(self, timeout: float) -> None:
        if timeout <= 0:
            raise asyncio.TimeoutError(f"{self}: no connection in time")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            done, _ = await asyncio.wait({fut}, timeout=None if math.isinf(timeout) else timeout)
        finally:
            fut.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)
        if not done:
            raise asyncio.TimeoutError(f"{self}: no connection in time")

    def _changed(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        for listener in list(self._listeners):
            listener(self)


class SimWorld:
    """The peripherals in radio range of the simulated adapter, by address (case-insensitive).

    ``advertising_interval`` is how often, in wall seconds, a running scanner sees each advertising device
    again; ``None`` means only when it starts scanning and when a device's advertising changes.
    """

    def __init__(self, peripherals: Iterable[VirtualPeripheral] = (), *, advertising_interval: float | None = 0.1):
        self.advertising_interval = advertising_interval
        self._peripherals: dict[str, VirtualPeripheral] = {}
        self._watchers: list[Callable[[VirtualPeripheral], None]] = []
        for p in peripherals:
            self.add(p)

    def add(self, peripheral: VirtualPeripheral) -> VirtualPeripheral:
        if peripheral.address in self._peripherals:
            raise SimError(f"address {peripheral.address} is already in this world")
        if peripheral._listeners:
            raise SimError(f"{peripheral} already belongs to a world")
        self._peripherals[peripheral.address] = peripheral
        peripheral._listeners.append(self._on_change)
        self._on_change(peripheral)
        return peripheral

    def get(self, address: str) -> VirtualPeripheral | None:
        return self._peripherals.get(address.upper())

    def __getitem__(self, address: str) -> VirtualPeripheral:
        p = self.get(address)
        if p is None:
            raise SimError(f"no peripheral with address {address} in this world")
        return p

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and address.upper() in self._peripherals

    def __iter__(self) -> Iterator[VirtualPeripheral]:
        return iter(list(self._peripherals.values()))

    def __len__(self) -> int:
        return len(self._peripherals)

    def watch(self, callback: Callable[[VirtualPeripheral], None]) -> Callable[[], None]:
        """Call ``callback(peripheral)`` whenever a peripheral's advertising or link changes; returns undo."""
        self._watchers.append(callback)

        def unwatch() -> None:
            with contextlib.suppress(ValueError):
                self._watchers.remove(callback)

        return unwatch

    def _on_change(self, peripheral: VirtualPeripheral) -> None:
        for w in list(self._watchers):
            w(peripheral)


# -- standard devices ----------------------------------------------------------------------------------------
# The 16-bit UUIDs the standard devices below use. firmware_bridge.uuids is the reference; these few are
# repeated here so that the simulator does not wait on the codecs.

HEART_RATE_SERVICE = "180D"
HEART_RATE_MEASUREMENT = "2A37"
BODY_SENSOR_LOCATION = "2A38"
BATTERY_SERVICE = "180F"
BATTERY_LEVEL = "2A19"
CGM_SERVICE = "181F"
CGM_MEASUREMENT = "2AA7"
CGM_FEATURE = "2AA8"


def battery_service(level: int = 100, *, notify: bool = True) -> Service:
    """Battery service 0x180F with Battery Level 0x2A19 (read, and notify unless ``notify=False``)."""
    props: tuple[CharacteristicPropertyName, ...] = ("read", "notify") if notify else ("read",)
    return Service(BATTERY_SERVICE, (Characteristic(BATTERY_LEVEL, props, bytes([level])),))


def heart_rate_strap(
    address: str,
    name: str | None = "HRM",
    *,
    battery: int | None = 100,
    body_sensor_location: int | None = 1,
    rssi: int = -60,
    advertising: bool = True,
    connectable: bool = True,
    connect_delay: float = 0.0,
) -> VirtualPeripheral:
    """A chest strap: Heart Rate service (2A37 notify, 2A38 read) and Battery. ``None`` omits a part."""
    chars = [Characteristic(HEART_RATE_MEASUREMENT, ("notify",))]
    if body_sensor_location is not None:
        chars.append(Characteristic(BODY_SENSOR_LOCATION, ("read",), bytes([body_sensor_location])))
    services = [Service(HEART_RATE_SERVICE, tuple(chars))]
    if battery is not None:
        services.append(battery_service(battery))
    return VirtualPeripheral(
        address, name, services, rssi=rssi, advertising=advertising, connectable=connectable,
        connect_delay=connect_delay,
    )  # fmt: skip


def cgm_sensor(
    address: str,
    name: str | None = "CGM",
    *,
    battery: int | None = 100,
    feature: bytes | None = None,
    extra_characteristics: Iterable[Characteristic] = (),
    rssi: int = -60,
    advertising: bool = True,
    connectable: bool = True,
    connect_delay: float = 0.0,
) -> VirtualPeripheral:
    """A CGM: CGM service (2AA7 notify; 2AA8 read when ``feature`` is given; any extra characteristics,
    such as an RACP control point) and Battery (``battery=None`` omits it)."""
    chars = [Characteristic(CGM_MEASUREMENT, ("notify",))]
    if feature is not None:
        chars.append(Characteristic(CGM_FEATURE, ("read",), feature))
    chars.extend(extra_characteristics)
    services = [Service(CGM_SERVICE, tuple(chars))]
    if battery is not None:
        services.append(battery_service(battery))
    return VirtualPeripheral(
        address, name, services, rssi=rssi, advertising=advertising, connectable=connectable,
        connect_delay=connect_delay,
    )  # fmt: skip
