"""Record Access Control Point (0x2A52) as the Continuous Glucose Monitoring Service uses it (CGMS 1.0.2).

A collector writes a request; the sensor sends the matching stored records as CGM Measurement (0x2AA7)
notifications and then indicates one response on the RACP. Every value is::

    Op Code   uint8   what is asked or answered (RacpOpCode)
    Operator  uint8   which records (RacpOperator); Null (0) in Abort and in both responses
    Operand   ...     depends on the op code and operator:

    op code                             operator                    operand
    1 Report stored records             All, First, Last            none
    2 Delete stored records             <=, >=                      Filter Type (uint8), Time Offset (uint16)
    4 Report number of stored records   Within range of             Filter Type, Time Offset min, max (uint16)
    3 Abort operation                   Null                        none
    5 Number of stored records resp.    Null                        Number of Records (uint16)
    6 Response code                     Null                        Request Op Code (uint8), Response Code (uint8)

Filter Type: CGMS allows only 0x01 Time Offset (minutes since the session start, as in 0x2AA7). 0x02 User
Facing Time is the Glucose Service's and is not allowed in CGMS; like every other value it is refused here with
``ReservedValueError``. Reserved op codes (0, 7-255), operators (7-255) and response codes (0, 10-255) are
refused too, as are a Null operator on a request and any other operator where Null is required.

No E2E-CRC. CGMS protects its own characteristics (CGM Measurement, Feature, Status, Session Start Time,
Session Run Time and the Specific Ops Control Point) with the E2E-CRC when the sensor's CGM Feature says it
supports it; the RACP is the generic one shared with the Glucose Service and carries none, whatever the
Feature says. The nRF Connect SDK CGMS server (subsys/bluetooth/services/cgms/cgms_racp.c) sends 4-byte
response codes and Nordic's collector library parses them so. Two trailing bytes are ``OverlongError``.

The Request Op Code of a Response Code is kept as a plain integer: a sensor answers an op code it does not
know with "Op Code not supported" and echoes that op code, whatever it was. A Within-range operand whose
minimum exceeds its maximum is representable (the sensor answers "Invalid Operand"), so it decodes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from firmware_bridge.errors import (
    BytesLike,
    EncodeError,
    OverlongError,
    ReservedValueError,
    TruncatedError,
)

CHARACTERISTIC = "2A52"

_HEADER = struct.Struct("<BB")  # Op Code, Operator
_U16 = struct.Struct("<H")
_FILTER = struct.Struct("<BH")  # Filter Type, one Time Offset
_RANGE = struct.Struct("<BHH")  # Filter Type, minimum and maximum Time Offset
_RESPONSE = struct.Struct("<BB")  # Request Op Code, Response Code Value


class RacpOpCode(IntEnum):
    REPORT_STORED_RECORDS = 0x01
    DELETE_STORED_RECORDS = 0x02
    ABORT_OPERATION = 0x03
    REPORT_NUMBER_OF_STORED_RECORDS = 0x04
    NUMBER_OF_STORED_RECORDS_RESPONSE = 0x05
    RESPONSE_CODE = 0x06


class RacpOperator(IntEnum):
    NULL = 0x00
    ALL_RECORDS = 0x01
    LESS_THAN_OR_EQUAL_TO = 0x02
    GREATER_THAN_OR_EQUAL_TO = 0x03
    WITHIN_RANGE_OF = 0x04
    FIRST_RECORD = 0x05
    LAST_RECORD = 0x06


class RacpFilterType(IntEnum):
    TIME_OFFSET = 0x01


class RacpResponseCode(IntEnum):
    SUCCESS = 0x01
    OP_CODE_NOT_SUPPORTED = 0x02
    INVALID_OPERATOR = 0x03
    OPERATOR_NOT_SUPPORTED = 0x04
    INVALID_OPERAND = 0x05
    NO_RECORDS_FOUND = 0x06
    ABORT_UNSUCCESSFUL = 0x07
    PROCEDURE_NOT_COMPLETED = 0x08
    OPERAND_NOT_SUPPORTED = 0x09


REQUEST_OP_CODES = frozenset(
    {
        RacpOpCode.REPORT_STORED_RECORDS,
        RacpOpCode.DELETE_STORED_RECORDS,
        RacpOpCode.ABORT_OPERATION,
        RacpOpCode.REPORT_NUMBER_OF_STORED_RECORDS,
    }
)
"""What a collector writes; the other two are what the sensor indicates."""

_NO_OPERAND = frozenset({RacpOperator.ALL_RECORDS, RacpOperator.FIRST_RECORD, RacpOperator.LAST_RECORD})


def _uint(value: object, bits: int, name: str) -> int:
    if type(value) is not int or not 0 <= value < 1 << bits:
        raise EncodeError(CHARACTERISTIC, b"", f"{name} {value!r} is not a uint{bits}")
    return value


@dataclass(frozen=True)
class RacpRequest:
    """A request a collector writes: report, delete or count stored records, or abort.

    The Time Offset filter, in minutes, is ``time_offset_from`` (>=; the lower end of Within range) and
    ``time_offset_to`` (<=; the upper end of Within range); both ``None`` for All, First and Last records and
    for Abort. Build them with the class methods, or directly; the fields must suit the operator.
    """

    op_code: RacpOpCode
    operator: RacpOperator
    time_offset_from: int | None = None
    time_offset_to: int | None = None

    def __post_init__(self) -> None:
        op_code, operator = self.op_code, self.operator
        if op_code not in REQUEST_OP_CODES:
            raise EncodeError(CHARACTERISTIC, b"", f"{op_code!r} is not a request op code")
        if not isinstance(operator, RacpOperator):
            raise EncodeError(CHARACTERISTIC, b"", f"operator {operator!r} is not a RacpOperator")
        object.__setattr__(self, "op_code", RacpOpCode(op_code))
        if (op_code == RacpOpCode.ABORT_OPERATION) != (operator == RacpOperator.NULL):
            raise EncodeError(CHARACTERISTIC, b"", f"{operator.name} operator with {RacpOpCode(op_code).name}")
        wanted = {
            RacpOperator.LESS_THAN_OR_EQUAL_TO: (False, True),
            RacpOperator.GREATER_THAN_OR_EQUAL_TO: (True, False),
            RacpOperator.WITHIN_RANGE_OF: (True, True),
        }.get(operator, (False, False))
        for name, needed in zip(("time_offset_from", "time_offset_to"), wanted, strict=True):
            value = getattr(self, name)
            if needed:
                _uint(value, 16, name)
            elif value is not None:
                raise EncodeError(CHARACTERISTIC, b"", f"{name} must be None with the {operator.name} operator")

    @classmethod
    def report_all(cls) -> RacpRequest:
        return cls(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.ALL_RECORDS)

    @classmethod
    def report_from(cls, time_offset: int) -> RacpRequest:
        """Report the stored records whose time offset is ``time_offset`` or later."""
        return cls(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.GREATER_THAN_OR_EQUAL_TO, time_offset)

    @classmethod
    def count_all(cls) -> RacpRequest:
        return cls(RacpOpCode.REPORT_NUMBER_OF_STORED_RECORDS, RacpOperator.ALL_RECORDS)

    @classmethod
    def abort(cls) -> RacpRequest:
        return cls(RacpOpCode.ABORT_OPERATION, RacpOperator.NULL)

    def selects(self, time_offset: int) -> bool:
        """Whether a record with ``time_offset`` passes the filter (First and Last need the whole list: True)."""
        low = -1 if self.time_offset_from is None else self.time_offset_from
        high = 1 << 16 if self.time_offset_to is None else self.time_offset_to
        return low <= time_offset <= high


@dataclass(frozen=True)
class RacpNumberOfRecords:
    """The sensor's answer to Report Number of Stored Records."""

    count: int

    def __post_init__(self) -> None:
        _uint(self.count, 16, "count")

    op_code = RacpOpCode.NUMBER_OF_STORED_RECORDS_RESPONSE
    operator = RacpOperator.NULL


@dataclass(frozen=True)
class RacpResponse:
    """The sensor's Response Code: how the procedure of ``request_op_code`` ended."""

    request_op_code: int
    response_code: RacpResponseCode

    def __post_init__(self) -> None:
        _uint(self.request_op_code, 8, "request_op_code")
        if not isinstance(self.response_code, RacpResponseCode):
            raise EncodeError(CHARACTERISTIC, b"", f"response_code {self.response_code!r} is not a RacpResponseCode")

    op_code = RacpOpCode.RESPONSE_CODE
    operator = RacpOperator.NULL


RacpValue = RacpRequest | RacpNumberOfRecords | RacpResponse


def encode_racp(value: RacpValue) -> bytes:
    """The bytes of a request or a response."""
    if isinstance(value, RacpNumberOfRecords):
        return _HEADER.pack(value.op_code, value.operator) + _U16.pack(value.count)
    if isinstance(value, RacpResponse):
        return _HEADER.pack(value.op_code, value.operator) + _RESPONSE.pack(value.request_op_code, value.response_code)
    if not isinstance(value, RacpRequest):
        raise EncodeError(CHARACTERISTIC, b"", f"cannot encode {type(value).__name__}")
    head = _HEADER.pack(value.op_code, value.operator)
    if value.operator == RacpOperator.LESS_THAN_OR_EQUAL_TO:
        assert value.time_offset_to is not None  # checked by RacpRequest
        return head + _FILTER.pack(RacpFilterType.TIME_OFFSET, value.time_offset_to)
    if value.operator == RacpOperator.GREATER_THAN_OR_EQUAL_TO:
        assert value.time_offset_from is not None
        return head + _FILTER.pack(RacpFilterType.TIME_OFFSET, value.time_offset_from)
    if value.operator == RacpOperator.WITHIN_RANGE_OF:
        assert value.time_offset_from is not None
        assert value.time_offset_to is not None
        return head + _RANGE.pack(RacpFilterType.TIME_OFFSET, value.time_offset_from, value.time_offset_to)
    return head


def decode_racp(data: BytesLike) -> RacpValue:
    """Decode a value written to or indicated on the RACP (see the module docstring for what is refused)."""
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise TruncatedError(CHARACTERISTIC, data, "an RACP value starts with Op Code and Operator", offset=len(data))
    op_raw, operator_raw = _HEADER.unpack_from(data)
    if op_raw not in RacpOpCode.__members__.values():
        raise ReservedValueError(CHARACTERISTIC, data, f"op code 0x{op_raw:02X} is reserved", offset=0)
    if operator_raw not in RacpOperator.__members__.values():
        raise ReservedValueError(CHARACTERISTIC, data, f"operator 0x{operator_raw:02X} is reserved", offset=1)
    op_code, operator = RacpOpCode(op_raw), RacpOperator(operator_raw)
    needs_null = op_code not in REQUEST_OP_CODES or op_code == RacpOpCode.ABORT_OPERATION
    if needs_null != (operator == RacpOperator.NULL):
        problem = "requires the Null operator" if needs_null else "cannot take the Null operator"
        raise ReservedValueError(CHARACTERISTIC, data, f"{op_code.name} {problem}", offset=1)
    operand = data[_HEADER.size :]

    if op_code == RacpOpCode.NUMBER_OF_STORED_RECORDS_RESPONSE:
        _exact(data, operand, _U16.size, "Number of Records (uint16)")
        return RacpNumberOfRecords(_U16.unpack(operand)[0])
    if op_code == RacpOpCode.RESPONSE_CODE:
        _exact(data, operand, _RESPONSE.size, "Request Op Code and Response Code Value")
        request_op, code = _RESPONSE.unpack(operand)
        if code not in RacpResponseCode.__members__.values():
            raise ReservedValueError(CHARACTERISTIC, data, f"response code 0x{code:02X} is reserved", offset=3)
        return RacpResponse(request_op, RacpResponseCode(code))
    if operator in _NO_OPERAND or operator == RacpOperator.NULL:
        _exact(data, operand, 0, "no operand")
        return RacpRequest(op_code, operator)
    if operand and operand[0] != RacpFilterType.TIME_OFFSET:
        kind = "User Facing Time is not allowed in CGMS" if operand[0] == 0x02 else "reserved"
        raise ReservedValueError(CHARACTERISTIC, data, f"filter type 0x{operand[0]:02X}: {kind}", offset=2)
    if operator == RacpOperator.WITHIN_RANGE_OF:
        _exact(data, operand, _RANGE.size, "Filter Type and two Time Offsets")
        _, low, high = _RANGE.unpack(operand)
        return RacpRequest(op_code, operator, low, high)
    _exact(data, operand, _FILTER.size, "Filter Type and a Time Offset")
    _, offset = _FILTER.unpack(operand)
    if operator == RacpOperator.LESS_THAN_OR_EQUAL_TO:
        return RacpRequest(op_code, operator, time_offset_to=offset)
    return RacpRequest(op_code, operator, time_offset_from=offset)


def _exact(data: bytes, operand: bytes, size: int, what: str) -> None:
    if len(operand) < size:
        raise TruncatedError(CHARACTERISTIC, data, f"operand ends early: {what}", offset=len(data))
    if len(operand) > size:
        at = _HEADER.size + size
        raise OverlongError(
            CHARACTERISTIC, data, f"{len(operand) - size} byte(s) after the operand ({what})", offset=at
        )


def racp_to_dict(data: bytes) -> dict[str, object]:
    """JSON-ready fields of an RACP value (see ``firmware_bridge.registry``)."""
    value = decode_racp(data)
    out: dict[str, object] = {"op_code": value.op_code.name.lower(), "operator": value.operator.name.lower()}
    if isinstance(value, RacpNumberOfRecords):
        out["number_of_records"] = value.count
    elif isinstance(value, RacpResponse):
        known = value.request_op_code in RacpOpCode.__members__.values()
        out["request_op_code"] = (
            RacpOpCode(value.request_op_code).name.lower() if known else f"reserved_0x{value.request_op_code:02x}"
        )
        out["response_code"] = value.response_code.name.lower()
    else:
        filtered = value.time_offset_from is not None or value.time_offset_to is not None
        out["filter_type"] = "time_offset" if filtered else None
        out["time_offset_from_min"] = value.time_offset_from
        out["time_offset_to_min"] = value.time_offset_to
    return out
