"""A virtual CGM sensor that remembers what it measured and serves the Record Access Control Point.

:class:`CgmDevice` is a :class:`~sim.peripheral.VirtualPeripheral` with the CGM service a real CGMS sensor
offers: CGM Measurement 0x2AA7 (notify), CGM Feature 0x2AA8 (read) and the Record Access Control Point 0x2A52
(write with response, indicate), plus the Battery service. What it does, as a sensor does:

* It keeps every record it measures, in the order measured. A measurement is notified on 0x2AA7 when a
  central has subscribed, and only stored when none has (out of range, link down, not yet subscribed).
* A write to the RACP starts a procedure that runs after the ATT Write Response: "Report stored records"
  (All, <=, >=, Within range, First, Last; filter type Time Offset) notifies each matching record on 0x2AA7,
  one record per notification, then indicates the Response Code; "Report number of stored records" indicates
  the count; "Delete stored records" forgets the matching records. A request it cannot serve is answered
  with the Response Code CGMS prescribes (Op Code not supported, Invalid Operator, Operand not supported,
  Invalid Operand); a report with nothing to send with "No records found".
* New measurements keep being notified while a report runs, interleaved with the stored ones (the player and
  the report each yield between notifications), as on sensors that report from a work queue.
* A link loss cancels the running procedure (the peripheral cancels write handlers when the link ends).

Driving it: the player's :class:`~sim.player.FeedEvent` on 0x2AA7 goes through :meth:`CgmDevice.notify`, which
stores the records of a well-formed payload before sending it; :meth:`CgmDevice.measurement` builds such an
event for a reading at a time, with the time offset counted from ``session_start``. Ill-formed payloads are
sent as given and not stored.

Failure injection for the central's sake: ``racp_failure`` answers every report, count and delete with that
Response Code; ``racp_silent`` swallows requests (no response ever comes).

What it does not model: the RACP in the simulator refuses a second write while a procedure runs with "Procedure
Already In Progress" (sim/peripheral.py does that for every control point), which is right for every request
but Abort Operation; so an Abort reaches the device only when nothing runs, and is answered with Success.
Session Start Time (0x2AAA), Status (0x2AA9), Session Run Time (0x2AAB) and the SOCP are not served.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Iterable

from firmware_bridge.cgm import CgmMeasurementRecord, decode_cgm_measurement, encode_cgm_measurement
from firmware_bridge.crc import e2e_crc
from firmware_bridge.errors import CodecError, ReservedValueError
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
from firmware_bridge.sfloat import SFloat
from sim.peripheral import (
    CGM_FEATURE,
    CGM_MEASUREMENT,
    CGM_SERVICE,
    Characteristic,
    Service,
    VirtualPeripheral,
    WriteRequest,
    battery_service,
    normalize_uuid,
)
from sim.player import FeedEvent

RECORD_ACCESS_CONTROL_POINT = "2A52"

# CGM Feature (0x2AA8): 24-bit feature flags, Type (low nibble) and Sample Location (high nibble), E2E-CRC.
_FEATURE = struct.Struct("<HBB")
_CRC = struct.Struct("<H")
FEATURE_E2E_CRC_SUPPORTED = 1 << 12
FEATURE_TREND_SUPPORTED = 1 << 15
FEATURE_QUALITY_SUPPORTED = 1 << 16
TYPE_INTERSTITIAL_FLUID = 0x9
LOCATION_SUBCUTANEOUS_TISSUE = 0x5

_SERVED_OPS = frozenset(
    {
        RacpOpCode.REPORT_STORED_RECORDS,
        RacpOpCode.DELETE_STORED_RECORDS,
        RacpOpCode.ABORT_OPERATION,
        RacpOpCode.REPORT_NUMBER_OF_STORED_RECORDS,
    }
)


def cgm_feature(*, e2e_crc_supported: bool = False) -> bytes:
    """CGM Feature bytes of an interstitial-fluid sensor in subcutaneous tissue with trend and quality.

    The E2E-CRC field is always there: the CRC of the fields when supported, 0xFFFF when not (CGMS).
    """
    features = FEATURE_TREND_SUPPORTED | FEATURE_QUALITY_SUPPORTED
    if e2e_crc_supported:
        features |= FEATURE_E2E_CRC_SUPPORTED
    fields = _FEATURE.pack(
        features & 0xFFFF, features >> 16, TYPE_INTERSTITIAL_FLUID | LOCATION_SUBCUTANEOUS_TISSUE << 4
    )
    return fields + _CRC.pack(e2e_crc(fields) if e2e_crc_supported else 0xFFFF)


class CgmDevice(VirtualPeripheral):
    """A CGMS sensor with a record store and an RACP. See the module docstring.

    ``session_start`` is the epoch time of time offset 0. ``e2e_crc`` makes every record carry the CGMS
    E2E-CRC (and the Feature say so). ``report_pause`` is the wall time between two reported records.
    """

    def __init__(
        self,
        address: str,
        name: str | None = "CGM",
        *,
        session_start: float,
        battery: int | None = 100,
        e2e_crc: bool = False,
        report_pause: float = 0.0,
        rssi: int = -60,
        advertising: bool = True,
        connectable: bool = True,
        connect_delay: float = 0.0,
    ) -> None:
        self.session_start = session_start
        self.e2e_crc = e2e_crc
        self.report_pause = report_pause
        self.records: list[CgmMeasurementRecord] = []
        self.racp_requests: list[bytes] = []  # everything a central wrote to the RACP, in order
        self.racp_failure: RacpResponseCode | None = None
        self.racp_silent = False
        self.reported = 0  # records sent by report procedures
        chars = (
            Characteristic(CGM_MEASUREMENT, ("notify",)),
            Characteristic(CGM_FEATURE, ("read",), cgm_feature(e2e_crc_supported=e2e_crc)),
            Characteristic(
                RECORD_ACCESS_CONTROL_POINT,
                ("write", "indicate"),
                on_write=self._on_racp_write,
                write_requires_subscription=True,
            ),
        )
        services = [Service(CGM_SERVICE, chars)]
        if battery is not None:
            services.append(battery_service(battery))
        super().__init__(
            address, name, services, rssi=rssi, advertising=advertising, connectable=connectable,
            connect_delay=connect_delay,
        )  # fmt: skip
        self._measurement_uuid = normalize_uuid(CGM_MEASUREMENT)

    # -- measuring ---------------------------------------------------------------------------------------------

    def time_offset(self, t: float) -> int:
        """The time offset (whole minutes since the session start) of a measurement taken at ``t``."""
        return int((t - self.session_start) // 60)

    def measurement(
        self,
        t: float,
        mg_dl: float,
        *,
        trend: float | None = None,
        quality: float | None = None,
    ) -> FeedEvent:
        """The player event of a reading of ``mg_dl`` measured at ``t``; played, it is stored and notified."""
        record = CgmMeasurementRecord(
            glucose=SFloat.from_value(mg_dl),
            time_offset_min=self.time_offset(t),
            trend=None if trend is None else SFloat.from_value(trend),
            quality=None if quality is None else SFloat.from_value(quality),
            has_crc=self.e2e_crc,
        )
        return FeedEvent(t, self.address, CGM_MEASUREMENT, encode_cgm_measurement([record]))

    def start_session(self, t: float) -> None:
        """A new session from ``t`` (a new sensor): time offsets count from 0 again, the old records are gone.

        CGMS leaves it to the device whether a new session keeps the previous one's records; one that does
        makes "Time Offset >= N" ambiguous (both sessions have offset N), which no collector can untangle.
        """
        self.session_start = t
        self.records = []

    def store(self, records: Iterable[CgmMeasurementRecord]) -> None:
        """Add records measured while nobody was listening (or before the simulation started)."""
        self.records.extend(records)

    async def notify(self, uuid: str, data: bytes) -> bool:
        """As :meth:`VirtualPeripheral.notify`; a well-formed CGM Measurement is also stored first."""
        if normalize_uuid(uuid) == self._measurement_uuid:
            # An injected ill-formed payload is sent as it is and never stored.
            with contextlib.suppress(CodecError):
                self.records.extend(decode_cgm_measurement(data))
        return await super().notify(uuid, data)

    # -- the Record Access Control Point ---------------------------------------------------------------------

    async def _on_racp_write(self, request: WriteRequest) -> None:
        self.racp_requests.append(request.data)
        if self.racp_silent:
            return
        response = await self._serve(request.data)
        await super().notify(RECORD_ACCESS_CONTROL_POINT, encode_racp(response))

    async def _serve(self, data: bytes) -> RacpValue:
        op = data[0] if data else 0
        if op not in _SERVED_OPS:
            return RacpResponse(op, RacpResponseCode.OP_CODE_NOT_SUPPORTED)
        try:
            value = decode_racp(data)
        except ReservedValueError as exc:
            code = RacpResponseCode.INVALID_OPERATOR if exc.offset == 1 else RacpResponseCode.OPERAND_NOT_SUPPORTED
            return RacpResponse(op, code)
        except CodecError:
            return RacpResponse(op, RacpResponseCode.INVALID_OPERAND)
        assert isinstance(value, RacpRequest)  # the served op codes decode to requests
        if value.op_code == RacpOpCode.ABORT_OPERATION:
            return RacpResponse(op, RacpResponseCode.SUCCESS)  # nothing runs: see the module docstring
        if self.racp_failure is not None:
            return RacpResponse(op, self.racp_failure)
        low, high = value.time_offset_from, value.time_offset_to
        if low is not None and high is not None and low > high:
            return RacpResponse(op, RacpResponseCode.INVALID_OPERAND)
        matching = self._select(value)
        if value.op_code == RacpOpCode.REPORT_NUMBER_OF_STORED_RECORDS:
            return RacpNumberOfRecords(len(matching))
        if not matching:
            return RacpResponse(op, RacpResponseCode.NO_RECORDS_FOUND)
        if value.op_code == RacpOpCode.DELETE_STORED_RECORDS:
            gone = {id(r) for r in matching}
            self.records = [r for r in self.records if id(r) not in gone]
            return RacpResponse(op, RacpResponseCode.SUCCESS)
        for record in matching:
            if not await super().notify(CGM_MEASUREMENT, encode_cgm_measurement([record])):
                return RacpResponse(op, RacpResponseCode.PROCEDURE_NOT_COMPLETED)  # the central unsubscribed
            self.reported += 1
            await asyncio.sleep(self.report_pause)  # lets new measurements in between, as a sensor would
        return RacpResponse(op, RacpResponseCode.SUCCESS)

    def _select(self, request: RacpRequest) -> list[CgmMeasurementRecord]:
        matching = [r for r in self.records if request.selects(r.time_offset_min)]
        if request.operator == RacpOperator.FIRST_RECORD:
            return matching[:1]
        if request.operator == RacpOperator.LAST_RECORD:
            return matching[-1:]
        return matching
