"""sim.bleak_backend and sim.peripheral, driven only through bleak's public API."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import (
    BleakCharacteristicNotFoundError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)

from sim.bleak_backend import SimBleakClient, SimBleakScanner, sim_backends
from sim.peripheral import (
    Characteristic,
    Service,
    SimError,
    SimWorld,
    VirtualPeripheral,
    WriteRequest,
    cgm_sensor,
    heart_rate_strap,
)

T = TypeVar("T")
STRAP = "C0:FF:EE:00:00:01"
CGM = "C0:FF:EE:00:00:02"
HRM = "00002a37-0000-1000-8000-00805f9b34fb"
# 2A37: flags 0x16 (uint8 HR, contact detected, RR present), HR 72, one RR of 1024/1024 s.
HR72 = bytes([0x16, 72, 0x00, 0x04])


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a test coroutine on a fresh loop; fail instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, 5.0))


def world_with_strap(**kwargs: Any) -> tuple[SimWorld, VirtualPeripheral]:
    world = SimWorld(**kwargs)
    strap = world.add(heart_rate_strap(STRAP, "Strap-1", battery=87))
    return world, strap


async def connected_client(world: SimWorld, address: str = STRAP, **kwargs: Any) -> BleakClient:
    backends = sim_backends(world)
    device = await BleakScanner.find_device_by_address(address, timeout=1.0, backend=backends.scanner)
    assert device is not None
    client = BleakClient(device, backend=backends.client, **kwargs)
    await client.connect()
    return client


# -- scanning ------------------------------------------------------------------------------------------------


def test_discover_lists_only_advertising_devices_with_their_advertisement() -> None:
    async def main() -> None:
        world, _ = world_with_strap()
        world.add(cgm_sensor(CGM, "Glucose-1", advertising=False))
        backends = sim_backends(world)
        seen = await BleakScanner.discover(0.02, return_adv=True, backend=backends.scanner)
        assert list(seen) == [STRAP]
        device, adv = seen[STRAP]
        assert device.name == "Strap-1"
        assert adv.local_name == "Strap-1"
        assert adv.rssi == -60
        assert "0000180d-0000-1000-8000-00805f9b34fb" in adv.service_uuids

    run(main())


def test_backend_id_names_the_simulator() -> None:
    backends = sim_backends(SimWorld())
    assert BleakScanner(backend=backends.scanner).backend_id == "SimBleakScanner"
    assert BleakClient(STRAP, backend=backends.client).backend_id == "SimBleakClient"


def test_find_by_address_ignores_case_and_gives_none_for_a_silent_device() -> None:
    async def main() -> None:
        world, _ = world_with_strap()
        world.add(cgm_sensor(CGM, advertising=False))
        scanner = sim_backends(world).scanner
        found = await BleakScanner.find_device_by_address(STRAP.lower(), timeout=1.0, backend=scanner)
        assert found is not None
        assert found.address == STRAP
        assert await BleakScanner.find_device_by_address(CGM, timeout=0.02, backend=scanner) is None

    run(main())


def test_find_by_filter_and_service_uuid_filter() -> None:
    async def main() -> None:
        world, _ = world_with_strap()
        world.add(cgm_sensor(CGM, "Glucose-1"))
        scanner = sim_backends(world).scanner
        found = await BleakScanner.find_device_by_filter(
            lambda d, ad: ad.local_name == "Glucose-1", timeout=1.0, backend=scanner
        )
        assert found is not None
        assert found.address == CGM
        cgm_service = "0000181f-0000-1000-8000-00805f9b34fb"
        only_cgm = await BleakScanner.discover(0.02, service_uuids=[cgm_service], backend=scanner)
        assert [d.address for d in only_cgm] == [CGM]
        # As on BlueZ, the filter is compared verbatim: a 16-bit form matches nothing.
        assert await BleakScanner.discover(0.02, service_uuids=["181F"], backend=scanner) == []

    run(main())


def test_a_device_coming_into_range_is_seen_at_once_by_a_running_scan() -> None:
    async def main() -> None:
        world = SimWorld(advertising_interval=None)  # no periodic re-advertising: only the change is seen
        strap = world.add(heart_rate_strap(STRAP, advertising=False))
        scanner = sim_backends(world).scanner
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, strap.set_advertising, True)
        started = loop.time()
        found = await BleakScanner.find_device_by_address(STRAP, timeout=2.0, backend=scanner)
        assert found is not None
        assert loop.time() - started < 1.0

    run(main())


def test_a_connected_device_stops_advertising() -> None:
    async def main() -> None:
        world, strap = world_with_strap()
        client = await connected_client(world)
        assert strap.is_connected
        assert not strap.is_advertising
        scanner = sim_backends(world).scanner
        assert await BleakScanner.find_device_by_address(STRAP, timeout=0.02, backend=scanner) is None
        await client.disconnect()
        assert strap.is_advertising

    run(main())


# -- GATT ----------------------------------------------------------------------------------------------------


def test_the_gatt_table_reads_and_att_errors() -> None:
    async def main() -> None:
        world, _ = world_with_strap()
        client = await connected_client(world)
        assert client.is_connected
        assert client.name == "Strap-1"
        assert client.mtu_size == 23
        assert {s.uuid[4:8] for s in client.services} == {"180d", "180f"}
        hrm = client.services.get_characteristic("2A37")
        assert hrm is not None
        assert hrm.properties == ["notify"]
        assert hrm.service_uuid == "0000180d-0000-1000-8000-00805f9b34fb"
        assert [d.uuid[4:8] for d in hrm.descriptors] == ["2902"]
        assert await client.read_gatt_char("2A19") == bytearray([87])
        assert await client.read_gatt_char("2A38") == bytearray([1])
        with pytest.raises(BleakGATTProtocolError) as refused:
            await client.read_gatt_char("2A37")
        assert refused.value.code == BleakGATTProtocolErrorCode.READ_NOT_PERMITTED
        with pytest.raises(BleakGATTProtocolError) as refused:
            await client.write_gatt_char("2A19", b"\x01", response=True)
        assert refused.value.code == BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED
        with pytest.raises(BleakCharacteristicNotFoundError):
            await client.read_gatt_char("2AA7")
        await client.disconnect()

    run(main())


def test_handles_are_stable_across_connections_and_services_can_be_filtered() -> None:
    async def main() -> None:
        world, _ = world_with_strap()
        first = await connected_client(world)
        handles = sorted(first.services.characteristics)
        await first.disconnect()
        second = await connected_client(world)
        assert sorted(second.services.characteristics) == handles
        await second.disconnect()
        only_battery = await connected_client(world, services=["180F"])
        assert [s.uuid[4:8] for s in only_battery.services] == ["180f"]
        await only_battery.disconnect()

    run(main())


def test_notifications_arrive_in_order_through_the_bleak_callback_path() -> None:
    async def main() -> None:
        world, strap = world_with_strap()
        client = await connected_client(world)
        got: list[tuple[BleakGATTCharacteristic, bytearray]] = []
        await client.start_notify("2A37", lambda char, data: got.append((char, data)))
        cccd = client.services.get_characteristic("2A37").descriptors[0]  # type: ignore[union-attr]
        assert await client.read_gatt_descriptor(cccd) == bytearray(b"\x01\x00")
        assert strap.subscribed("2A37")
        payloads = [HR72, bytes([0x06, 73]), b"", b"\xff\xff\xff"]  # the last two are ill-formed, on purpose
        for p in payloads:
            assert await strap.notify("2A37", p) is True
        assert [bytes(data) for _, data in got] == payloads
        assert all(isinstance(data, bytearray) for _, data in got)
        assert all(char.uuid == HRM for char, _ in got)
        await client.stop_notify("2A37")
        assert await client.read_gatt_descriptor(cccd) == bytearray(b"\x00\x00")
        assert await strap.notify("2A37", HR72) is False
        assert len(got) == len(payloads)
        assert strap.stats.notifications_delivered == 4
        assert strap.stats.notifications_dropped == 1
        await client.disconnect()

    run(main())


def test_notifications_with_nobody_listening_are_dropped_and_counted() -> None:
    async def main() -> None:
        world, strap = world_with_strap()
        assert await strap.notify("2A37", HR72) is False  # not connected
        client = await connected_client(world)
        assert await strap.notify("2A37", HR72) is False  # connected, not subscribed
        assert strap.stats.notifications_dropped == 2
        assert strap.stats.notifications_delivered == 0
        await client.disconnect()

    run(main())


def test_notify_updates_the_read_value_and_battery_can_notify() -> None:
    async def main() -> None:
        world, strap = world_with_strap()
        client = await connected_client(world)
        levels: list[bytes] = []
        await client.start_notify("2A19", lambda _c, data: levels.append(bytes(data)))
        await strap.notify("2A19", b"\x50")
        assert levels == [b"\x50"]
        assert await client.read_gatt_char("2A19") == bytearray(b"\x50")
        strap.set_value("2A19", b"\x4f")  # a read value change without notification
        assert levels == [b"\x50"]
        assert await client.read_gatt_char("2A19") == bytearray(b"\x4f")
        await client.disconnect()

    run(main())


# -- the link ------------------------------------------------------------------------------------------------


def test_a_link_loss_fires_the_disconnected_callback_like_a_real_drop() -> None:
    async def main() -> None:
        world, strap = world_with_strap()
        dropped: list[BleakClient] = []
        client = await connected_client(world, disconnected_callback=dropped.append)
        await client.start_notify("2A37", lambda _c, _d: None)
        assert strap.disconnect() is True
        assert dropped == [client]
        assert not client.is_connected
        with pytest.raises(BleakError):
            _ = client.services
        with pytest.raises(BleakError):
            await client.start_notify("2A37", lambda _c, _d: None)
        assert strap.is_advertising  # it advertises again, so it can be found and reconnected
        assert await strap.notify("2A37", HR72) is False
        assert strap.disconnect() is False
        await client.disconnect()  # a no-op, as on BlueZ
        assert dropped == [client]
        assert strap.stats.link_losses == 1

    run(main())


def test_the_callback_also_fires_on_a_requested_disconnect_as_on_bluez() -> None:
    async def main() -> None:
        world, strap = world_with_strap()
        dropped: list[BleakClient] = []
        client = await connected_client(world, disconnected_callback=dropped.append)
        await client.disconnect()
        assert dropped == [client]
        assert not strap.is_connected

    run(main())


def test_connect_by_address_string_scans_first() -> None:
    async def main() -> None:
        world, strap = world_with_strap()
        world.add(cgm_sensor(CGM, advertising=False))
        backends = sim_backends(world)
        async with BleakClient(STRAP.lower(), backend=backends.client) as client:
            assert client.is_connected
            assert strap.is_connected
        assert not strap.is_connected
        with pytest.raises(BleakDeviceNotFoundError):
            await BleakClient(CGM, backend=backends.client, timeout=0.02).connect()
        with pytest.raises(BleakDeviceNotFoundError):
            await BleakClient("00:00:00:00:00:00", backend=backends.client, timeout=0.02).connect()

    run(main())


def test_connect_waits_for_the_device_within_the_timeout() -> None:
    async def main() -> None:
        world, strap = world_with_strap()
        backends = sim_backends(world)
        device = await BleakScanner.find_device_by_address(STRAP, timeout=1.0, backend=backends.scanner)
        assert device is not None
        strap.set_advertising(False)
        with pytest.raises(asyncio.TimeoutError):
            await BleakClient(device, backend=backends.client, timeout=0.02).connect()
        asyncio.get_running_loop().call_later(0.01, strap.set_advertising, True)
        client = BleakClient(device, backend=backends.client, timeout=2.0)
        await client.connect()
        assert client.is_connected
        await client.disconnect()

    run(main())


def test_a_device_that_advertises_but_refuses_connections_times_out() -> None:
    async def main() -> None:
        world = SimWorld()
        world.add(heart_rate_strap(STRAP, connectable=False))
        world.add(heart_rate_strap(CGM, connect_delay=1.0))
        backends = sim_backends(world)
        for address in (STRAP, CGM):
            with pytest.raises(asyncio.TimeoutError):
                await BleakClient(address, backend=backends.client, timeout=0.05).connect()

    run(main())


def test_a_device_takes_one_central_at_a_time() -> None:
    async def main() -> None:
        world, _ = world_with_strap()
        backends = sim_backends(world)
        device = await BleakScanner.find_device_by_address(STRAP, timeout=1.0, backend=backends.scanner)
        assert device is not None
        first = BleakClient(device, backend=backends.client)
        await first.connect()
        second = BleakClient(device, backend=backends.client, timeout=0.02)
        with pytest.raises(asyncio.TimeoutError):
            await second.connect()
        with pytest.raises(BleakError, match="already connected"):
            await first.connect()
        await first.disconnect()
        await second.connect()
        assert second.is_connected
        await second.disconnect()

    run(main())


# -- control points ------------------------------------------------------------------------------------------

RACP = "00002a52-0000-1000-8000-00805f9b34fb"


def racp_cgm(handler: Any) -> VirtualPeripheral:
    racp = Characteristic("2A52", ("write", "indicate"), on_write=handler, write_requires_subscription=True)
    return cgm_sensor(CGM, "Glucose-1", extra_characteristics=[racp])


def test_a_control_point_answers_with_indications_after_the_write() -> None:
    async def main() -> None:
        requests: list[WriteRequest] = []

        async def handler(req: WriteRequest) -> None:
            requests.append(req)
            await req.peripheral.notify("2AA7", b"\x0e\x00record")  # the records, then the response
            await req.peripheral.notify("2A52", b"\x06\x00\x01\x01")

        world = SimWorld()
        cgm = world.add(racp_cgm(handler))
        client = await connected_client(world, CGM)
        with pytest.raises(BleakGATTProtocolError) as refused:
            await client.write_gatt_char("2A52", b"\x01\x01", response=True)
        assert refused.value.code == BleakGATTProtocolErrorCode.CCCD_IMPROPERLY_CONFIGURED
        got: list[tuple[str, bytes]] = []
        done = asyncio.Event()

        def on_data(char: BleakGATTCharacteristic, data: bytearray) -> None:
            got.append((char.uuid[4:8], bytes(data)))
            if char.uuid == RACP:
                done.set()

        await client.start_notify("2AA7", on_data)
        await client.start_notify("2A52", on_data)
        cccd = client.services.get_characteristic("2A52").descriptors[0]  # type: ignore[union-attr]
        assert await client.read_gatt_descriptor(cccd) == bytearray(b"\x02\x00")  # indications
        await client.write_gatt_char("2A52", b"\x01\x01", response=True)
        assert got == []  # the write response comes before the indications
        await done.wait()
        assert got == [("2aa7", b"\x0e\x00record"), ("2a52", b"\x06\x00\x01\x01")]
        assert [(r.data, r.with_response) for r in requests] == [(b"\x01\x01", True)]
        assert requests[0].characteristic is cgm.characteristic("2A52")
        await client.disconnect()

    run(main())


def test_a_busy_control_point_refuses_and_a_link_loss_aborts_the_procedure() -> None:
    async def main() -> None:
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def slow_handler(_req: WriteRequest) -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        world = SimWorld()
        cgm = world.add(racp_cgm(slow_handler))
        client = await connected_client(world, CGM)
        await client.start_notify("2A52", lambda _c, _d: None)
        await client.write_gatt_char("2A52", b"\x01\x01", response=True)
        await started.wait()
        with pytest.raises(BleakGATTProtocolError) as refused:
            await client.write_gatt_char("2A52", b"\x01\x01", response=True)
        assert refused.value.code == BleakGATTProtocolErrorCode.PROCEDURE_ALREADY_IN_PROGRESS
        cgm.disconnect()
        await cancelled.wait()
        assert cgm.stats.handler_errors == 0

    run(main())


def test_a_failing_write_handler_is_counted() -> None:
    async def main() -> None:
        async def broken(_req: WriteRequest) -> None:
            raise RuntimeError("scenario bug")

        world = SimWorld()
        cgm = world.add(racp_cgm(broken))
        client = await connected_client(world, CGM)
        await client.start_notify("2A52", lambda _c, _d: None)
        await client.write_gatt_char("2A52", b"\x01\x01", response=True)
        for _ in range(10):
            await asyncio.sleep(0)
        assert cgm.stats.handler_errors == 1
        await client.disconnect()

    run(main())


# -- the world and its checks --------------------------------------------------------------------------------


def test_worlds_are_isolated_and_the_unbound_classes_refuse() -> None:
    async def main() -> None:
        world_a, _ = world_with_strap()
        world_b = SimWorld([cgm_sensor(CGM)])
        scanner_a = sim_backends(world_a).scanner
        assert await BleakScanner.find_device_by_address(CGM, timeout=0.02, backend=scanner_a) is None
        with pytest.raises(SimError, match="no world"):
            BleakScanner(backend=SimBleakScanner)
        with pytest.raises(SimError, match="no world"):
            BleakClient(STRAP, backend=SimBleakClient)
        assert CGM in world_b
        assert CGM.lower() in world_b
        assert STRAP not in world_b

    run(main())


def test_setup_mistakes_are_refused() -> None:
    world, strap = world_with_strap()
    with pytest.raises(SimError, match="already in this world"):
        world.add(heart_rate_strap(STRAP.lower()))
    with pytest.raises(SimError, match="already belongs"):
        SimWorld([strap])
    with pytest.raises(SimError, match="unknown properties"):
        Characteristic("2A37", ("notifyy",))  # type: ignore[arg-type]
    with pytest.raises(SimError, match="not a UUID"):
        Service("xyz", ())
    with pytest.raises(SimError, match="no characteristic"):
        strap.characteristic("2AA7")
    with pytest.raises(SimError, match="no peripheral"):
        world["00:00:00:00:00:00"]

    async def notify_on_a_read_only_char() -> None:
        await strap.notify("2A38", b"\x01")

    with pytest.raises(SimError, match="neither notify nor indicate"):
        run(notify_on_a_read_only_char())
