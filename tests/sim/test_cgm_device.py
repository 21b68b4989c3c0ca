"""sim.cgm_device: a CGM that stores its records and serves RACP, driven through bleak's public API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakGATTProtocolError, BleakGATTProtocolErrorCode

from agent.clock import VirtualClock
from firmware_bridge.cgm import decode_cgm_measurement
from firmware_bridge.racp import (
    RacpNumberOfRecords,
    RacpOpCode,
    RacpOperator,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    RacpValue,
    decode_racp,
    encode_racp,
)
from sim.bleak_backend import sim_backends
from sim.cgm_device import CgmDevice, cgm_feature
from sim.peripheral import SimWorld
from sim.player import Disconnect, FeedEvent, play

T = TypeVar("T")
CGM = "C0:FF:EE:00:00:07"
T0 = 1_700_000_000.0
MEAS = "2AA7"
RACP = "2A52"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 5.0))


async def until(condition: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


class Central:
    """A plain bleak client that records what the CGM sends on 0x2AA7 and indicates on the RACP."""

    def __init__(self, device: CgmDevice) -> None:
        self.device = device
        self.world = SimWorld([device])
        self.backends = sim_backends(self.world)
        self.clock = VirtualClock(T0)
        self.offsets: list[int] = []
        self.responses: list[RacpValue] = []
        self.client: BleakClient | None = None

    async def connect(self, *, subscribe: bool = True) -> BleakClient:
        found = await BleakScanner.find_device_by_address(CGM, timeout=1.0, backend=self.backends.scanner)
        assert found is not None
        self.client = BleakClient(found, backend=self.backends.client)
        await self.client.connect()
        if subscribe:
            await self.client.start_notify(MEAS, lambda _c, data: self.offsets.extend(_offsets(data)))
            await self.client.start_notify(RACP, lambda _c, data: self.responses.append(decode_racp(data)))
        return self.client

    async def ask(self, request: RacpRequest | bytes) -> RacpValue:
        assert self.client is not None
        before = len(self.responses)
        data = request if isinstance(request, bytes) else encode_racp(request)
        await self.client.write_gatt_char(RACP, data, response=True)
        await until(lambda: len(self.responses) > before, "the RACP response")
        return self.responses[-1]

    async def measure(self, minutes: range) -> None:
        await play(self.world, [self.device.measurement(T0 + 60 * m, 100 + m) for m in minutes], self.clock)


def _offsets(data: bytearray) -> list[int]:
    return [r.time_offset_min for r in decode_cgm_measurement(data)]


def device(**kwargs: Any) -> CgmDevice:
    return CgmDevice(CGM, "CGM-7", session_start=T0, **kwargs)


def test_stores_while_nobody_listens_and_notifies_while_subscribed() -> None:
    async def main() -> None:
        cgm = device()
        central = Central(cgm)
        await central.measure(range(0, 15, 5))  # not connected: stored, not delivered
        assert [r.time_offset_min for r in cgm.records] == [0, 5, 10]
        assert cgm.stats.notifications_dropped == 3
        await central.connect()
        await central.measure(range(15, 25, 5))
        assert central.offsets == [15, 20]
        assert [r.time_offset_min for r in cgm.records] == [0, 5, 10, 15, 20]
        assert [r.glucose_mg_dl for r in cgm.records] == [100, 105, 110, 115, 120]

    run(main())


def test_report_stored_records_sends_them_then_indicates_success() -> None:
    async def main() -> None:
        cgm = device()
        central = Central(cgm)
        await central.measure(range(0, 30, 5))
        await central.connect()
        assert await central.ask(RacpRequest.report_from(12)) == RacpResponse(1, RacpResponseCode.SUCCESS)
        assert central.offsets == [15, 20, 25]
        assert await central.ask(RacpRequest.report_all()) == RacpResponse(1, RacpResponseCode.SUCCESS)
        assert central.offsets[3:] == [0, 5, 10, 15, 20, 25]
        first = RacpRequest(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.FIRST_RECORD)
        last = RacpRequest(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.LAST_RECORD)
        up_to = RacpRequest(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.LESS_THAN_OR_EQUAL_TO, None, 5)
        between = RacpRequest(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.WITHIN_RANGE_OF, 5, 15)
        for request in (first, last, up_to, between):
            await central.ask(request)
        assert central.offsets[9:] == [0, 25, 0, 5, 5, 10, 15]
        assert cgm.reported == len(central.offsets)
        assert await central.ask(RacpRequest.report_from(26)) == RacpResponse(1, RacpResponseCode.NO_RECORDS_FOUND)

    run(main())


def test_count_delete_and_abort() -> None:
    async def main() -> None:
        cgm = device()
        central = Central(cgm)
        await central.measure(range(0, 50, 5))
        await central.connect()
        assert await central.ask(RacpRequest.count_all()) == RacpNumberOfRecords(10)
        count_from = RacpRequest(RacpOpCode.REPORT_NUMBER_OF_STORED_RECORDS, RacpOperator.GREATER_THAN_OR_EQUAL_TO, 40)
        assert await central.ask(count_from) == RacpNumberOfRecords(2)
        delete_old = RacpRequest(RacpOpCode.DELETE_STORED_RECORDS, RacpOperator.LESS_THAN_OR_EQUAL_TO, None, 20)
        assert await central.ask(delete_old) == RacpResponse(2, RacpResponseCode.SUCCESS)
        assert [r.time_offset_min for r in cgm.records] == [25, 30, 35, 40, 45]
        assert await central.ask(RacpRequest.abort()) == RacpResponse(3, RacpResponseCode.SUCCESS)
        assert central.offsets == []  # nothing was reported

    run(main())


@pytest.mark.parametrize(
    ("request_hex", "response"),
    [
        ("0701", RacpResponse(7, RacpResponseCode.OP_CODE_NOT_SUPPORTED)),  # reserved op code
        ("06000101", RacpResponse(6, RacpResponseCode.OP_CODE_NOT_SUPPORTED)),  # a response is not a request
        ("0100", RacpResponse(1, RacpResponseCode.INVALID_OPERATOR)),  # Null operator
        ("0109", RacpResponse(1, RacpResponseCode.INVALID_OPERATOR)),  # reserved operator
        ("0103020000", RacpResponse(1, RacpResponseCode.OPERAND_NOT_SUPPORTED)),  # User Facing Time
        ("010301", RacpResponse(1, RacpResponseCode.INVALID_OPERAND)),  # no time offset
        ("01040114000a00", RacpResponse(1, RacpResponseCode.INVALID_OPERAND)),  # range 20..10
    ],
)
def test_requests_it_cannot_serve_get_the_cgms_response_code(request_hex: str, response: RacpResponse) -> None:
    async def main() -> None:
        cgm = device()
        central = Central(cgm)
        await central.measure(range(0, 10, 5))
        await central.connect()
        assert await central.ask(bytes.fromhex(request_hex)) == response
        assert central.offsets == []

    run(main())


def test_racp_needs_indications_enabled() -> None:
    async def main() -> None:
        central = Central(device())
        client = await central.connect(subscribe=False)
        with pytest.raises(BleakGATTProtocolError) as caught:
            await client.write_gatt_char(RACP, encode_racp(RacpRequest.report_all()), response=True)
        assert caught.value.code == BleakGATTProtocolErrorCode.CCCD_IMPROPERLY_CONFIGURED

    run(main())


def test_injected_failures() -> None:
    async def main() -> None:
        cgm = device()
        central = Central(cgm)
        await central.measure(range(0, 10, 5))
        await central.connect()
        cgm.racp_failure = RacpResponseCode.PROCEDURE_NOT_COMPLETED
        assert await central.ask(RacpRequest.report_all()) == RacpResponse(1, RacpResponseCode.PROCEDURE_NOT_COMPLETED)
        cgm.racp_failure = None
        cgm.racp_silent = True
        assert central.client is not None
        await central.client.write_gatt_char(RACP, encode_racp(RacpRequest.report_all()), response=True)
        await asyncio.sleep(0.05)
        assert len(central.responses) == 1
        assert central.offsets == []
        assert len(cgm.racp_requests) == 2

    run(main())


def test_an_ill_formed_payload_is_sent_but_not_stored() -> None:
    async def main() -> None:
        cgm = device()
        central = Central(cgm)
        await central.connect()
        received: list[bytes] = []
        assert central.client is not None
        await central.client.stop_notify(MEAS)
        await central.client.start_notify(MEAS, lambda _c, data: received.append(bytes(data)))
        await play(central.world, [FeedEvent(T0, CGM, MEAS, b"\x07\x00")], central.clock)
        assert received == [b"\x07\x00"]
        assert cgm.records == []

    run(main())


def test_a_link_loss_cancels_a_report_and_new_measurements_interleave_with_it() -> None:
    async def main() -> None:
        cgm = device(report_pause=0.01)
        central = Central(cgm)
        await central.measure(range(0, 100, 5))  # 20 stored records
        client = await central.connect()
        await client.write_gatt_char(RACP, encode_racp(RacpRequest.report_all()), response=True)
        await until(lambda: len(central.offsets) >= 3, "a few reported records")
        await play(central.world, [cgm.measurement(T0 + 60 * 100, 180)], central.clock)  # measured meanwhile
        await until(lambda: len(central.offsets) >= 6, "more reported records")
        await play(central.world, [Disconnect(T0 + 60 * 100, CGM)], central.clock)
        await asyncio.sleep(0.05)
        assert 100 in central.offsets  # the live record arrived during the report
        assert central.offsets.index(100) < len(central.offsets) - 1
        assert cgm.reported < 20  # cancelled by the link loss
        assert central.responses == []
        assert [r.time_offset_min for r in cgm.records][-1] == 100

    run(main())


def test_e2e_crc_sensor_says_so_and_signs_its_records() -> None:
    async def main() -> None:
        cgm = device(e2e_crc=True)
        central = Central(cgm)
        await central.measure(range(0, 10, 5))
        client = await central.connect()
        feature = await client.read_gatt_char("2AA8")
        assert feature == cgm_feature(e2e_crc_supported=True)
        assert feature[1] & 0x10  # bit 12: E2E-CRC supported
        assert cgm_feature()[-2:] == b"\xff\xff"  # no CRC: the field is 0xFFFF
        await central.ask(RacpRequest.report_all())
        assert all(r.has_crc for r in cgm.records)
        assert central.offsets == [0, 5]

    run(main())
