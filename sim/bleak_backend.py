"""A bleak backend that serves a :class:`~sim.peripheral.SimWorld` to unchanged production code.

bleak picks its platform backend unless given ``backend=``; this module provides backend classes bound to
one world, so tests and replays run the agent's real BLE code path::

    world = SimWorld([heart_rate_strap("C0:FF:EE:00:00:01")])
    backends = sim_backends(world)
    device = await BleakScanner.find_device_by_address("C0:FF:EE:00:00:01", backend=backends.scanner)
    async with BleakClient(device, backend=backends.client) as client:
        await client.start_notify("2A37", on_heart_rate)

There is no global state: :func:`sim_backends` returns fresh subclasses that carry their world as a class
attribute (bleak instantiates the class itself, so a class attribute is the only channel that needs no
extra constructor arguments). Two worlds never see each other's devices.

Where backends disagree, the simulator behaves as bleak's BlueZ backend, which is what runs on a Pi:

* the disconnected callback fires on every disconnect, also one the client asked for;
* ``connect()`` with an address string scans for it first (``BleakDeviceNotFoundError`` if absent); with a
  :class:`BLEDevice` it waits, up to the timeout, for the device to accept (advertising, connectable, free),
  then raises ``TimeoutError``;
* notification callbacks are called synchronously as the bytes arrive; one that raises is logged;
* ``services`` is ``None`` once disconnected and ``mtu_size`` is 23.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal, NamedTuple

from bleak import BleakScanner
from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import (
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)
from bleak.uuids import normalize_uuid_16

from sim.peripheral import AttError, Characteristic, PeripheralLink, SimError, SimWorld, VirtualPeripheral

logger = logging.getLogger(__name__)

CCCD_UUID = normalize_uuid_16(0x2902)
# BlueZ reports the minimum ATT MTU; a write without response carries MTU - 3 bytes.
_MTU = 23


class SimBleakScanner(BaseBleakScanner):
    """Scanner backend over a world. Use a subclass from :func:`sim_backends`; this one has no world."""

    world: ClassVar[SimWorld | None] = None

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        **kwargs: Any,  # bluez=, cb=, ... for other backends
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._world = _bound(type(self).world, type(self))
        self._task: asyncio.Task[None] | None = None
        self._unwatch: Any = None

    async def start(self) -> None:
        if self._task is not None:
            raise BleakError("Scanner is already scanning")
        self.seen_devices = {}
        self._unwatch = self._world.watch(self._on_change)
        self._task = asyncio.get_running_loop().create_task(self._advertisements())

    async def stop(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # asyncio.wait neither raises the task's CancelledError nor swallows a cancellation of stop().
            await asyncio.wait([task])

    async def _advertisements(self) -> None:
        # Let whoever started the scan register its detection callbacks before the first advertisement.
        await asyncio.sleep(0)
        while True:
            for p in self._world:
                self._on_change(p)
            interval = self._world.advertising_interval
            if interval is None:
                return
            await asyncio.sleep(interval)

    def _on_change(self, peripheral: VirtualPeripheral) -> None:
        if not peripheral.is_advertising:
            return
        adv = AdvertisementData(
            local_name=peripheral.name,
            manufacturer_data={},
            service_data={},
            service_uuids=list(peripheral.advertised_services),
            tx_power=None,
            rssi=peripheral.rssi,
            platform_data=(peripheral,),
        )
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        device = self.create_or_update_device(peripheral.address, peripheral.address, peripheral.name, peripheral, adv)
        try:
            self.call_detection_callbacks(device, adv)
        except Exception:
            logger.exception("a detection callback raised on %s", peripheral.address)


class SimBleakClient(BaseBleakClient):
    """Client backend over a world. Use a subclass from :func:`sim_backends`; this one has no world."""

    world: ClassVar[SimWorld | None] = None
    scanner_backend: ClassVar[type[SimBleakScanner]] = SimBleakScanner

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        services: set[str] | None = None,
        *,
        disconnected_callback: Any,
        timeout: float,
        **kwargs: Any,  # bluez=, winrt=, ... for other backends
    ) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        self._world = _bound(type(self).world, type(self))
        details = address_or_ble_device.details if isinstance(address_or_ble_device, BLEDevice) else None
        self._device_hint = details if isinstance(details, VirtualPeripheral) else None
        self._by_address = not isinstance(address_or_ble_device, BLEDevice)
        self._requested_services = services
        self._peripheral: VirtualPeripheral | None = None
        self._link: PeripheralLink | None = None

    @property
    def name(self) -> str:
        p = self._peripheral or self._world.get(self.address)
        return p.name if p is not None and p.name else self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return _MTU

    @property
    def is_connected(self) -> bool:
        return self._link is not None and self._link.open

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self.is_connected:
            raise BleakError("Client is already connected")
        timeout = float(kwargs.get("timeout", self._timeout))
        peripheral = await self._find(timeout)
        self._link = await peripheral.accept(self, timeout)
        self._peripheral = peripheral
        self.services = self._service_collection(peripheral)

    async def disconnect(self) -> None:
        link = self._link
        if link is None:
            return
        link.close()
        self._on_disconnected()

    def link_lost(self) -> None:
        """Called by the peripheral when the link drops under us."""
        self._on_disconnected()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        self._require_link()

    async def unpair(self) -> None:
        await self.disconnect()

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        link = self._require_link()
        with _att_errors():
            return bytearray(link.read(_sim_char(characteristic)))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        link = self._require_link()
        if descriptor.uuid != CCCD_UUID:
            raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.READ_NOT_PERMITTED)
        mode = link.subscription(_sim_char(descriptor.obj))
        return bytearray({None: b"\x00\x00", "notify": b"\x01\x00", "indicate": b"\x02\x00"}[mode])

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool) -> None:
        link = self._require_link()
        with _att_errors():
            link.write(_sim_char(characteristic), bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        self._require_link()
        raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        link = self._require_link()
        with _att_errors():
            link.subscribe(_sim_char(characteristic), callback)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        link = self._require_link()
        with _att_errors():
            link.unsubscribe(_sim_char(characteristic))

    # -- internals -----------------------------------------------------------------------------------------

    async def _find(self, timeout: float) -> VirtualPeripheral:
        hint = self._device_hint
        if hint is not None and self._world.get(hint.address) is hint:
            return hint
        if not self._by_address:
            raise BleakDeviceNotFoundError(self.address, f"Device with address {self.address} is not known.")
        device = await BleakScanner.find_device_by_address(
            self.address, timeout=timeout, backend=type(self).scanner_backend
        )
        if device is None or not isinstance(device.details, VirtualPeripheral):
            raise BleakDeviceNotFoundError(self.address, f"Device with address {self.address} was not found.")
        return device.details

    def _require_link(self) -> PeripheralLink:
        link = self._link
        if link is None or not link.open:
            raise BleakError("Not connected")
        return link

    def _on_disconnected(self) -> None:
        if self._link is None:
            return
        self._link = None
        self.services = None
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    def _service_collection(self, peripheral: VirtualPeripheral) -> BleakGATTServiceCollection:
        """The peripheral's GATT table as bleak presents it after service discovery.

        Handles are laid out as a real attribute table would be (service declaration, then for each
        characteristic its declaration, value and CCCD), so they are stable across connections.
        """
        collection = BleakGATTServiceCollection()
        handle = 0
        for service in peripheral.services:
            handle += 1
            wanted = self._requested_services is None or service.uuid in self._requested_services
            bservice = BleakGATTService(service, handle, service.uuid)
            if wanted:
                collection.add_service(bservice)
            for char in service.characteristics:
                handle += 2  # declaration, then value: bleak names a characteristic by its value handle
                bchar = BleakGATTCharacteristic(
                    char, handle, char.uuid, list(char.properties), lambda: _MTU - 3, bservice
                )
                if wanted:
                    collection.add_characteristic(bchar)
                if char.notifies:
                    handle += 1
                    if wanted:
                        collection.add_descriptor(BleakGATTDescriptor(char, handle, CCCD_UUID, bchar))
        return collection


class SimBackends(NamedTuple):
    """The two backend classes bound to one world; pass them as ``backend=``."""

    scanner: type[SimBleakScanner]
    client: type[SimBleakClient]


def sim_backends(world: SimWorld) -> SimBackends:
    """Fresh scanner and client backend classes that serve ``world``."""

    class Scanner(SimBleakScanner):
        pass

    class Client(SimBleakClient):
        pass

    Scanner.world = world
    Client.world = world
    Client.scanner_backend = Scanner
    # bleak reports a custom backend by its class name (``backend_id``).
    Scanner.__name__ = Scanner.__qualname__ = "SimBleakScanner"
    Client.__name__ = Client.__qualname__ = "SimBleakClient"
    return SimBackends(Scanner, Client)


def _bound(world: SimWorld | None, cls: type) -> SimWorld:
    if world is None:
        raise SimError(f"{cls.__name__} has no world; get backend classes from sim_backends(world)")
    return world


def _sim_char(obj: object) -> Characteristic:
    char = obj.obj if isinstance(obj, BleakGATTCharacteristic) else obj
    if not isinstance(char, Characteristic):
        raise BleakError(f"{obj} does not belong to a simulated device")
    return char


@contextmanager
def _att_errors() -> Iterator[None]:
    """Present the peripheral's ATT errors as bleak's backends do."""
    try:
        yield
    except AttError as exc:
        raise BleakGATTProtocolError(exc.code) from exc
    except SimError as exc:
        raise BleakError(str(exc)) from exc
