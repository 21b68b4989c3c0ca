"""CGM Specific Ops Control Point (0x2AAC), Continuous Glucose Monitoring Service 1.0.2.

A collector writes an Op Code with its operand; the sensor indicates the answer: a "... response" op code with
the value asked for, or a Response Code. Every value is::

    Op Code   uint8
    Operand   as the op code requires (below)
    E2E-CRC   uint16 over the Op Code and Operand, when the sensor supports E2E-CRC (CGM Feature bit 12)

    op codes                                                      operand
    0x01 Set / 0x03 response  CGM Communication Interval         uint8 minutes (0 = off, 0xFF = fastest)
    0x02 Get CGM Communication Interval                          none
    0x04 Set / 0x06 response  Glucose Calibration Value          Calibration record (10 bytes, below)
    0x05 Get Glucose Calibration Value                           Calibration Data Record Number, uint16
                                                                 (0xFFFF: the last one)
    0x07/0x09 Patient High, 0x0A/0x0C Patient Low,               SFLOAT mg/dL
    0x0D/0x0F Hypo, 0x10/0x12 Hyper Alert Level (Set/response)
    0x13/0x15 Rate of Decrease, 0x16/0x18 Rate of Increase       SFLOAT (mg/dL)/min
    Alert Level (Set/response)
    0x08, 0x0B, 0x0E, 0x11, 0x14, 0x17 Get ... Alert Level       none
    0x19 Reset Device Specific Alert, 0x1A Start the Session,    none
    0x1B Stop the Session
    0x1C Response Code                                           Request Op Code uint8, Response Code uint8

Calibration record: Glucose Concentration of Calibration (SFLOAT mg/dL), Calibration Time (uint16 minutes),
Calibration Type (low nibble) and Sample Location (high nibble) in one octet, Next Calibration Time (uint16
minutes), Calibration Data Record Number (uint16), Calibration Status (uint8: bit 0 rejected, bit 1 out of
range, bit 2 process pending).

The op code fixes the operand's length, so whether an E2E-CRC follows is read from the length: exactly the
operand, or the operand plus two bytes (a CRC that must match); one byte more is a CRC cut short. Decoding
with ``require_crc`` (the sensor supports E2E-CRC) refuses a value without one. Reserved op codes and
response codes raise ``ReservedValueError``; a Response Code's Request Op Code is kept as sent (a sensor
echoes an op code it does not support). Reserved Calibration Type / Sample Location nibbles and Calibration
Status bits are kept as sent.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum, IntFlag
from types import MappingProxyType

from firmware_bridge.crc import CRC_STRUCT, e2e_crc
from firmware_bridge.errors import (
    BytesLike,
    CrcMismatchError,
    CrcMissingError,
    EncodeError,
    OverlongError,
    ReservedValueError,
    TruncatedError,
)
from firmware_bridge.sfloat import SFloat

CHARACTERISTIC = "2AAC"

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_CALIBRATION = struct.Struct("<HHBHHB")  # SFLOAT, time, type/location, next time, record number, status
_RESPONSE = struct.Struct("<BB")


class SocpOpCode(IntEnum):
    SET_CGM_COMMUNICATION_INTERVAL = 0x01
    GET_CGM_COMMUNICATION_INTERVAL = 0x02
    CGM_COMMUNICATION_INTERVAL_RESPONSE = 0x03
    SET_GLUCOSE_CALIBRATION_VALUE = 0x04
    GET_GLUCOSE_CALIBRATION_VALUE = 0x05
    GLUCOSE_CALIBRATION_VALUE_RESPONSE = 0x06
    SET_PATIENT_HIGH_ALERT_LEVEL = 0x07
    GET_PATIENT_HIGH_ALERT_LEVEL = 0x08
    PATIENT_HIGH_ALERT_LEVEL_RESPONSE = 0x09
    SET_PATIENT_LOW_ALERT_LEVEL = 0x0A
    GET_PATIENT_LOW_ALERT_LEVEL = 0x0B
    PATIENT_LOW_ALERT_LEVEL_RESPONSE = 0x0C
    SET_HYPO_ALERT_LEVEL = 0x0D
    GET_HYPO_ALERT_LEVEL = 0x0E
    HYPO_ALERT_LEVEL_RESPONSE = 0x0F
    SET_HYPER_ALERT_LEVEL = 0x10
    GET_HYPER_ALERT_LEVEL = 0x11
    HYPER_ALERT_LEVEL_RESPONSE = 0x12
    SET_RATE_OF_DECREASE_ALERT_LEVEL = 0x13
    GET_RATE_OF_DECREASE_ALERT_LEVEL = 0x14
    RATE_OF_DECREASE_ALERT_LEVEL_RESPONSE = 0x15
    SET_RATE_OF_INCREASE_ALERT_LEVEL = 0x16
    GET_RATE_OF_INCREASE_ALERT_LEVEL = 0x17
    RATE_OF_INCREASE_ALERT_LEVEL_RESPONSE = 0x18
    RESET_DEVICE_SPECIFIC_ALERT = 0x19
    START_THE_SESSION = 0x1A
    STOP_THE_SESSION = 0x1B
    RESPONSE_CODE = 0x1C


class SocpResponseCode(IntEnum):
    SUCCESS = 0x01
    OP_CODE_NOT_SUPPORTED = 0x02
    INVALID_OPERAND = 0x03
    PROCEDURE_NOT_COMPLETED = 0x04
    PARAMETER_OUT_OF_RANGE = 0x05


class Operand(Enum):
    """What follows an op code."""

    NONE = "none"
    INTERVAL = "communication_interval_min"
    CALIBRATION = "calibration"
    RECORD_NUMBER = "calibration_record_number"
    LEVEL = "alert_level_mg_dl"
    RATE = "alert_level_mg_dl_per_min"  # the same field, alert_level, in (mg/dL)/min
    RESPONSE = "response_code"


def _operands() -> Mapping[SocpOpCode, Operand]:
    ops = SocpOpCode
    table = dict.fromkeys(ops, Operand.NONE)
    table[ops.SET_CGM_COMMUNICATION_INTERVAL] = table[ops.CGM_COMMUNICATION_INTERVAL_RESPONSE] = Operand.INTERVAL
    table[ops.SET_GLUCOSE_CALIBRATION_VALUE] = table[ops.GLUCOSE_CALIBRATION_VALUE_RESPONSE] = Operand.CALIBRATION
    table[ops.GET_GLUCOSE_CALIBRATION_VALUE] = Operand.RECORD_NUMBER
    for op in (0x07, 0x09, 0x0A, 0x0C, 0x0D, 0x0F, 0x10, 0x12):
        table[SocpOpCode(op)] = Operand.LEVEL
    for op in (0x13, 0x15, 0x16, 0x18):
        table[SocpOpCode(op)] = Operand.RATE
    table[ops.RESPONSE_CODE] = Operand.RESPONSE
    return MappingProxyType(table)


OPERANDS: Mapping[SocpOpCode, Operand] = _operands()
"""The operand each op code carries; read-only."""

_OPERAND_SIZE = {
    Operand.NONE: 0,
    Operand.INTERVAL: _U8.size,
    Operand.CALIBRATION: _CALIBRATION.size,
    Operand.RECORD_NUMBER: _U16.size,
    Operand.LEVEL: 2,
    Operand.RATE: 2,
    Operand.RESPONSE: _RESPONSE.size,
}

SAMPLE_TYPES = MappingProxyType(
    {
        0x1: "capillary_whole_blood",
        0x2: "capillary_plasma",
        0x3: "venous_whole_blood",
        0x4: "venous_plasma",
        0x5: "arterial_whole_blood",
        0x6: "arterial_plasma",
        0x7: "undetermined_whole_blood",
        0x8: "undetermined_plasma",
        0x9: "interstitial_fluid",
        0xA: "control_solution",
    }
)
"""Calibration Type nibble -> name (the Glucose Service's Type values); others are reserved."""

SAMPLE_LOCATIONS = MappingProxyType(
    {
        0x1: "finger",
        0x2: "alternate_site_test",
        0x3: "earlobe",
        0x4: "control_solution",
        0x5: "subcutaneous_tissue",
        0xF: "not_available",
    }
)
"""Sample Location nibble -> name; others are reserved."""


class CalibrationStatus(IntFlag):
    DATA_REJECTED = 0x01
    DATA_OUT_OF_RANGE = 0x02
    PROCESS_PENDING = 0x04


_NO_STATUS = CalibrationStatus(0)


def _uint(value: object, bits: int, name: str) -> int:
    if type(value) is not int or not 0 <= value < 1 << bits:
        raise EncodeError(CHARACTERISTIC, b"", f"{name} {value!r} is not a uint{bits}")
    return value


@dataclass(frozen=True)
class CalibrationRecord:
    """A Glucose Calibration Value (written with op code 0x04, indicated with 0x06)."""

    glucose: SFloat
    calibration_time_min: int
    sample_type: int
    sample_location: int
    next_calibration_time_min: int = 0
    record_number: int = 0
    status: CalibrationStatus = _NO_STATUS

    def __post_init__(self) -> None:
        if not isinstance(self.glucose, SFloat):
            raise EncodeError(CHARACTERISTIC, b"", "glucose must be an SFloat")
        for name in ("calibration_time_min", "next_calibration_time_min", "record_number"):
            _uint(getattr(self, name), 16, name)
        for name in ("sample_type", "sample_location"):
            _uint(getattr(self, name), 4, name)
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise EncodeError(CHARACTERISTIC, b"", f"status {self.status!r} is not a uint8")
        object.__setattr__(self, "status", CalibrationStatus(_uint(int(self.status), 8, "status")))

    def to_bytes(self) -> bytes:
        return _CALIBRATION.pack(
            self.glucose.raw,
            self.calibration_time_min,
            self.sample_type | self.sample_location << 4,
            self.next_calibration_time_min,
            self.record_number,
            int(self.status),
        )


@dataclass(frozen=True)
class SocpValue:
    """One value written to or indicated on the SOCP.

    Exactly the operand field its op code needs is set (see ``OPERANDS``); the others stay ``None``:
    ``communication_interval_min``, ``calibration``, ``calibration_record_number``, ``alert_level`` (mg/dL, or
    (mg/dL)/min for the two rates), or ``request_op_code`` with ``response_code``. ``has_crc``: whether the
    value carries (decoded) or gets (encoded) an E2E-CRC.
    """

    op_code: SocpOpCode
    communication_interval_min: int | None = None
    calibration: CalibrationRecord | None = None
    calibration_record_number: int | None = None
    alert_level: SFloat | None = None
    request_op_code: int | None = None
    response_code: SocpResponseCode | None = None
    has_crc: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.op_code, int) or self.op_code not in OPERANDS:
            raise EncodeError(CHARACTERISTIC, b"", f"op code {self.op_code!r} is not a SocpOpCode")
        object.__setattr__(self, "op_code", SocpOpCode(self.op_code))
        if type(self.has_crc) is not bool:
            raise EncodeError(CHARACTERISTIC, b"", "has_crc must be a bool")
        kind = OPERANDS[self.op_code]
        wanted = {
            Operand.INTERVAL: {"communication_interval_min"},
            Operand.CALIBRATION: {"calibration"},
            Operand.RECORD_NUMBER: {"calibration_record_number"},
            Operand.LEVEL: {"alert_level"},
            Operand.RATE: {"alert_level"},
            Operand.RESPONSE: {"request_op_code", "response_code"},
        }.get(kind, set())
        for name in (
            "communication_interval_min",
            "calibration",
            "calibration_record_number",
            "alert_level",
            "request_op_code",
            "response_code",
        ):
            present = getattr(self, name) is not None
            if present != (name in wanted):
                need = "needs" if name in wanted else "takes no"
                raise EncodeError(CHARACTERISTIC, b"", f"{self.op_code.name} {need} {name}")
        if self.communication_interval_min is not None:
            _uint(self.communication_interval_min, 8, "communication_interval_min")
        if self.calibration_record_number is not None:
            _uint(self.calibration_record_number, 16, "calibration_record_number")
        if self.request_op_code is not None:
            _uint(self.request_op_code, 8, "request_op_code")
        if self.calibration is not None and not isinstance(self.calibration, CalibrationRecord):
            raise EncodeError(CHARACTERISTIC, b"", "calibration must be a CalibrationRecord")
        if self.alert_level is not None and not isinstance(self.alert_level, SFloat):
            raise EncodeError(CHARACTERISTIC, b"", "alert_level must be an SFloat")
        if self.response_code is not None and not isinstance(self.response_code, SocpResponseCode):
            raise EncodeError(CHARACTERISTIC, b"", "response_code must be a SocpResponseCode")

    @property
    def operand(self) -> Operand:
        return OPERANDS[self.op_code]


def encode_socp(value: SocpValue) -> bytes:
    """The bytes of ``value``, with its E2E-CRC when ``value.has_crc``."""
    parts = [_U8.pack(value.op_code)]
    if value.communication_interval_min is not None:
        parts.append(_U8.pack(value.communication_interval_min))
    if value.calibration is not None:
        parts.append(value.calibration.to_bytes())
    if value.calibration_record_number is not None:
        parts.append(_U16.pack(value.calibration_record_number))
    if value.alert_level is not None:
        parts.append(value.alert_level.to_bytes())
    if value.request_op_code is not None and value.response_code is not None:
        parts.append(_RESPONSE.pack(value.request_op_code, value.response_code))
    encoded = b"".join(parts)
    return encoded + CRC_STRUCT.pack(e2e_crc(encoded)) if value.has_crc else encoded


def decode_socp(data: BytesLike, *, require_crc: bool = False) -> SocpValue:
    """Decode a SOCP value. With ``require_crc`` (E2E-CRC supported) a value without one is ``CrcMissingError``."""
    data = bytes(data)
    if not data:
        raise TruncatedError(CHARACTERISTIC, data, "empty payload: no op code", offset=0)
    if data[0] not in OPERANDS:
        raise ReservedValueError(CHARACTERISTIC, data, f"op code 0x{data[0]:02X} is reserved", offset=0)
    op_code = SocpOpCode(data[0])
    kind = OPERANDS[op_code]
    body = 1 + _OPERAND_SIZE[kind]
    if len(data) < body:
        raise TruncatedError(CHARACTERISTIC, data, f"{op_code.name} needs {body} bytes", offset=len(data))
    if len(data) == body + 1:
        raise TruncatedError(CHARACTERISTIC, data, "the E2E-CRC is cut short", offset=body)
    if len(data) > body + CRC_STRUCT.size:
        raise OverlongError(
            CHARACTERISTIC, data, f"{op_code.name} is {body} bytes, or {body + 2} with an E2E-CRC", offset=body
        )
    has_crc = len(data) > body
    if has_crc:
        (received,) = CRC_STRUCT.unpack_from(data, body)
        computed = e2e_crc(data[:body])
        if received != computed:
            raise CrcMismatchError(
                CHARACTERISTIC,
                data,
                f"E2E-CRC 0x{received:04X} does not match the value's 0x{computed:04X}",
                received=received,
                computed=computed,
                offset=body,
            )
    elif require_crc:
        raise CrcMissingError(CHARACTERISTIC, data, "value has no E2E-CRC but one is required", offset=body)

    def sfloat_at(at: int) -> SFloat:
        (raw,) = _U16.unpack_from(data, at)
        return SFloat.from_raw(raw, characteristic=CHARACTERISTIC, data=data, offset=at)

    if kind is Operand.INTERVAL:
        return SocpValue(op_code, communication_interval_min=data[1], has_crc=has_crc)
    if kind is Operand.RECORD_NUMBER:
        return SocpValue(op_code, calibration_record_number=_U16.unpack_from(data, 1)[0], has_crc=has_crc)
    if kind in (Operand.LEVEL, Operand.RATE):
        return SocpValue(op_code, alert_level=sfloat_at(1), has_crc=has_crc)
    if kind is Operand.RESPONSE:
        request_op, code = _RESPONSE.unpack_from(data, 1)
        if code not in SocpResponseCode.__members__.values():
            raise ReservedValueError(CHARACTERISTIC, data, f"response code 0x{code:02X} is reserved", offset=2)
        return SocpValue(op_code, request_op_code=request_op, response_code=SocpResponseCode(code), has_crc=has_crc)
    if kind is Operand.CALIBRATION:
        _, time, type_location, next_time, number, status = _CALIBRATION.unpack_from(data, 1)
        record = CalibrationRecord(
            glucose=sfloat_at(1),
            calibration_time_min=time,
            sample_type=type_location & 0x0F,
            sample_location=type_location >> 4,
            next_calibration_time_min=next_time,
            record_number=number,
            status=CalibrationStatus(status),
        )
        return SocpValue(op_code, calibration=record, has_crc=has_crc)
    return SocpValue(op_code, has_crc=has_crc)


def socp_to_dict(data: bytes) -> dict[str, object]:
    """JSON-ready fields of a SOCP value (see ``firmware_bridge.registry``)."""
    value = decode_socp(data)
    special: dict[str, str] = {}

    def number(name: str, level: SFloat) -> float | None:
        if level.special is not None:
            special[name] = level.special.value
            return None
        return level.value

    out: dict[str, object] = {"op_code": value.op_code.name.lower()}
    if value.communication_interval_min is not None:
        out["communication_interval_min"] = value.communication_interval_min
    if value.calibration_record_number is not None:
        out["calibration_record_number"] = value.calibration_record_number
    if value.alert_level is not None:
        name = "alert_level_mg_dl_per_min" if value.operand is Operand.RATE else "alert_level_mg_dl"
        out[name] = number(name, value.alert_level)
        out["special_values"] = special
    if value.request_op_code is not None and value.response_code is not None:
        known = value.request_op_code in OPERANDS
        out["request_op_code"] = (
            SocpOpCode(value.request_op_code).name.lower() if known else f"reserved_0x{value.request_op_code:02x}"
        )
        out["response_code"] = value.response_code.name.lower()
    cal = value.calibration
    if cal is not None:
        out["calibration"] = {
            "glucose_mg_dl": number("calibration.glucose_mg_dl", cal.glucose),
            "calibration_time_min": cal.calibration_time_min,
            "sample_type": SAMPLE_TYPES.get(cal.sample_type, f"reserved_{cal.sample_type}"),
            "sample_location": SAMPLE_LOCATIONS.get(cal.sample_location, f"reserved_{cal.sample_location}"),
            "next_calibration_time_min": cal.next_calibration_time_min,
            "record_number": cal.record_number,
            "status": [
                flag.name.lower() if flag.name else f"reserved_bit_{bit}"
                for bit in range(8)
                if int(cal.status) >> bit & 1
                for flag in (CalibrationStatus(1 << bit),)
            ],
        }
        out["special_values"] = special
    out["crc_ok"] = True if value.has_crc else None
    return out
