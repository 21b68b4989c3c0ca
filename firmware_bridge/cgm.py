"""CGM Measurement (0x2AA7), Continuous Glucose Monitoring Service 1.0.2 section 3.1.

A notification holds one or more records back to back. Each record:

    Size         uint8   the record's length in bytes, Size byte and E2E-CRC included
    Flags        8 bit   bit 0 Trend present, bit 1 Quality present, bits 2-4 reserved,
                         bit 5 Warning-Octet present, bit 6 Cal/Temp-Octet present, bit 7 Status-Octet present
    Glucose      SFLOAT  mg/dL
    Time Offset  uint16  minutes since the Session Start Time
    Status       uint8   \\
    Cal/Temp     uint8    } Sensor Status Annunciation, each octet only when its flag is set
    Warning      uint8   /
    Trend        SFLOAT  (mg/dL)/min, if bit 0
    Quality      SFLOAT  %, if bit 1
    E2E-CRC      uint16  over every byte of the record before it, when the sensor supports E2E-CRC

Whether the E2E-CRC is present is read from Size: it must equal the length the flags announce, or that
plus 2 (then the record ends in a CRC, which must match). Any other Size is ``SizeMismatchError``.

Octet order. The annunciation is one 24-bit field, least significant octet first: Status (bits 0-7),
Cal/Temp (bits 8-15), Warning (bits 16-23), each octet present only when its flag is set. That is the
order of the SIG's characteristic definition (org.bluetooth.characteristic.cgm_measurement, "fields in
the order LSO to MSO") and of the GATT Specification Supplement, and the one the nRF Connect SDK sends.
Implementations disagree when only some octets are present: the nRF5 SDK and Nordic's Android parser put
the Warning-flagged octet first, TI-based simulators put Status, Warning, Cal/Temp. With all three octets
present every one of them puts the same bytes in the same places.

Reserved flag bits 2-4 do not change the layout; they are ignored and kept in ``reserved_flag_bits`` for
exact re-encoding. Reserved annunciation bits are likewise kept in the octets (and reported by name as
``reserved_bit_N``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntFlag

from firmware_bridge.crc import CRC_STRUCT, e2e_crc
from firmware_bridge.errors import (
    BytesLike,
    CrcMismatchError,
    CrcMissingError,
    EncodeError,
    SizeMismatchError,
    TruncatedError,
)
from firmware_bridge.sfloat import SFloat

CHARACTERISTIC = "2AA7"

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_HEADER = struct.Struct("<BBHH")  # Size, Flags, Glucose (raw SFLOAT), Time Offset
MIN_RECORD_SIZE = _HEADER.size


class CgmMeasurementFlags(IntFlag):
    """The Flags octet of a record."""

    TREND_INFORMATION_PRESENT = 0x01
    QUALITY_PRESENT = 0x02
    WARNING_OCTET_PRESENT = 0x20
    CAL_TEMP_OCTET_PRESENT = 0x40
    STATUS_OCTET_PRESENT = 0x80


RESERVED_FLAG_BITS = 0x1C


class StatusOctet(IntFlag):
    """Sensor Status Annunciation, Status-Octet (annunciation bits 0-7; 6-7 reserved)."""

    SESSION_STOPPED = 0x01
    DEVICE_BATTERY_LOW = 0x02
    SENSOR_TYPE_INCORRECT_FOR_DEVICE = 0x04
    SENSOR_MALFUNCTION = 0x08
    DEVICE_SPECIFIC_ALERT = 0x10
    GENERAL_DEVICE_FAULT = 0x20


class CalTempOctet(IntFlag):
    """Sensor Status Annunciation, Cal/Temp-Octet (annunciation bits 8-15; 14-15 reserved)."""

    TIME_SYNCHRONIZATION_REQUIRED = 0x01
    CALIBRATION_NOT_ALLOWED = 0x02
    CALIBRATION_RECOMMENDED = 0x04
    CALIBRATION_REQUIRED = 0x08
    SENSOR_TEMPERATURE_TOO_HIGH = 0x10
    SENSOR_TEMPERATURE_TOO_LOW = 0x20


class WarningOctet(IntFlag):
    """Sensor Status Annunciation, Warning-Octet (annunciation bits 16-23)."""

    RESULT_LOWER_THAN_PATIENT_LOW_LEVEL = 0x01
    RESULT_HIGHER_THAN_PATIENT_HIGH_LEVEL = 0x02
    RESULT_LOWER_THAN_HYPO_LEVEL = 0x04
    RESULT_HIGHER_THAN_HYPER_LEVEL = 0x08
    RATE_OF_DECREASE_EXCEEDED = 0x10
    RATE_OF_INCREASE_EXCEEDED = 0x20
    RESULT_LOWER_THAN_DEVICE_CAN_PROCESS = 0x40
    RESULT_HIGHER_THAN_DEVICE_CAN_PROCESS = 0x80


class SensorStatusAnnunciation(IntFlag):
    """The whole 24-bit Sensor Status Annunciation (also the CGM Status characteristic's field)."""

    SESSION_STOPPED = 1 << 0
    DEVICE_BATTERY_LOW = 1 << 1
    SENSOR_TYPE_INCORRECT_FOR_DEVICE = 1 << 2
    SENSOR_MALFUNCTION = 1 << 3
    DEVICE_SPECIFIC_ALERT = 1 << 4
    GENERAL_DEVICE_FAULT = 1 << 5
    TIME_SYNCHRONIZATION_REQUIRED = 1 << 8
    CALIBRATION_NOT_ALLOWED = 1 << 9
    CALIBRATION_RECOMMENDED = 1 << 10
    CALIBRATION_REQUIRED = 1 << 11
    SENSOR_TEMPERATURE_TOO_HIGH = 1 << 12
    SENSOR_TEMPERATURE_TOO_LOW = 1 << 13
    RESULT_LOWER_THAN_PATIENT_LOW_LEVEL = 1 << 16
    RESULT_HIGHER_THAN_PATIENT_HIGH_LEVEL = 1 << 17
    RESULT_LOWER_THAN_HYPO_LEVEL = 1 << 18
    RESULT_HIGHER_THAN_HYPER_LEVEL = 1 << 19
    RATE_OF_DECREASE_EXCEEDED = 1 << 20
    RATE_OF_INCREASE_EXCEEDED = 1 << 21
    RESULT_LOWER_THAN_DEVICE_CAN_PROCESS = 1 << 22
    RESULT_HIGHER_THAN_DEVICE_CAN_PROCESS = 1 << 23


def annunciation_names(annunciation: int) -> list[str]:
    """Lower-case names of the set bits, lowest first; undefined bits appear as ``reserved_bit_N``."""
    return [_ANNUNCIATION_NAMES.get(1 << bit, f"reserved_bit_{bit}") for bit in range(24) if annunciation >> bit & 1]


_ANNUNCIATION_NAMES = {int(member): name.lower() for name, member in SensorStatusAnnunciation.__members__.items()}


@dataclass(frozen=True)
class CgmMeasurementRecord:
    """One CGM Measurement record.

    The three annunciation octets are ``None`` when absent (a present octet of value 0 is kept as 0).
    ``has_crc`` says whether the record carried an E2E-CRC; decoding checks it, encoding computes it.
    """

    glucose: SFloat
    time_offset_min: int
    status: StatusOctet | None = None
    cal_temp: CalTempOctet | None = None
    warning: WarningOctet | None = None
    trend: SFloat | None = None
    quality: SFloat | None = None
    has_crc: bool = False
    reserved_flag_bits: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.glucose, SFloat):
            raise EncodeError(CHARACTERISTIC, b"", "glucose must be an SFloat")
        for name in ("trend", "quality"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), SFloat):
                raise EncodeError(CHARACTERISTIC, b"", f"{name} must be an SFloat or None")
        if type(self.time_offset_min) is not int or not 0 <= self.time_offset_min <= 0xFFFF:
            raise EncodeError(CHARACTERISTIC, b"", f"time_offset_min {self.time_offset_min!r} not uint16")
        for name, kind in (("status", StatusOctet), ("cal_temp", CalTempOctet), ("warning", WarningOctet)):
            octet = getattr(self, name)
            if octet is None:
                continue
            if isinstance(octet, bool) or not isinstance(octet, int) or not 0 <= octet <= 0xFF:
                raise EncodeError(CHARACTERISTIC, b"", f"{name} octet {octet!r} not a uint8")
            object.__setattr__(self, name, kind(int(octet)))  # accept plain ints, store the flag type
        if type(self.has_crc) is not bool:
            raise EncodeError(CHARACTERISTIC, b"", "has_crc must be a bool")
        bits = self.reserved_flag_bits
        if type(bits) is not int or bits & ~RESERVED_FLAG_BITS or bits < 0:
            raise EncodeError(CHARACTERISTIC, b"", f"reserved_flag_bits {bits!r} outside 0x{RESERVED_FLAG_BITS:02X}")

    @property
    def flags(self) -> CgmMeasurementFlags:
        flags = CgmMeasurementFlags(self.reserved_flag_bits)
        if self.trend is not None:
            flags |= CgmMeasurementFlags.TREND_INFORMATION_PRESENT
        if self.quality is not None:
            flags |= CgmMeasurementFlags.QUALITY_PRESENT
        if self.warning is not None:
            flags |= CgmMeasurementFlags.WARNING_OCTET_PRESENT
        if self.cal_temp is not None:
            flags |= CgmMeasurementFlags.CAL_TEMP_OCTET_PRESENT
        if self.status is not None:
            flags |= CgmMeasurementFlags.STATUS_OCTET_PRESENT
        return flags

    @property
    def size(self) -> int:
        """The record's Size byte."""
        return _body_size(self.flags) + (CRC_STRUCT.size if self.has_crc else 0)

    @property
    def glucose_mg_dl(self) -> float:
        """Glucose in mg/dL. NaN for the NaN and NRes codes and +/-inf for the infinities (a sensor's "below/
        above range"): check ``glucose.is_finite`` or ``glucose.special`` before treating it as a reading."""
        return self.glucose.value

    @property
    def trend_mg_dl_per_min(self) -> float | None:
        """CGM Trend in (mg/dL)/min, ``None`` when absent; special codes as for ``glucose_mg_dl``."""
        return None if self.trend is None else self.trend.value

    @property
    def quality_pct(self) -> float | None:
        """CGM Quality in %, ``None`` when absent; special codes as for ``glucose_mg_dl``."""
        return None if self.quality is None else self.quality.value

    @property
    def annunciation(self) -> SensorStatusAnnunciation:
        """All annunciation bits as one 24-bit flag; absent octets count as zero."""
        status, cal_temp, warning = (int(octet or 0) for octet in (self.status, self.cal_temp, self.warning))
        return SensorStatusAnnunciation(status | cal_temp << 8 | warning << 16)

    def status_names(self) -> list[str]:
        """Names of the annunciation bits set in this record (see ``annunciation_names``)."""
        return annunciation_names(self.annunciation)


def _body_size(flags: int) -> int:
    """Record length the flags announce, without an E2E-CRC."""
    size = MIN_RECORD_SIZE
    for octet in (
        CgmMeasurementFlags.STATUS_OCTET_PRESENT,
        CgmMeasurementFlags.CAL_TEMP_OCTET_PRESENT,
        CgmMeasurementFlags.WARNING_OCTET_PRESENT,
    ):
        if flags & octet:
            size += _U8.size
    for field in (CgmMeasurementFlags.TREND_INFORMATION_PRESENT, CgmMeasurementFlags.QUALITY_PRESENT):
        if flags & field:
            size += _U16.size
    return size


def decode_cgm_measurement(data: BytesLike, *, require_crc: bool = False) -> tuple[CgmMeasurementRecord, ...]:
    """Decode a CGM Measurement notification into its records.

    With ``require_crc`` (the sensor's CGM Feature has E2E-CRC Supported set) a record without an
    E2E-CRC raises ``CrcMissingError``.
    """
    data = bytes(data)
    if not data:
        raise TruncatedError(CHARACTERISTIC, data, "empty payload: no record", offset=0)
    records = []
    offset = 0
    while offset < len(data):
        record = _decode_record(data, offset, require_crc)
        records.append(record)
        offset += record.size
    return tuple(records)


def _decode_record(data: bytes, start: int, require_crc: bool) -> CgmMeasurementRecord:
    remaining = len(data) - start
    if remaining < 2:
        raise TruncatedError(CHARACTERISTIC, data, "record ends before its Size and Flags", offset=start)
    size, flags_raw = data[start], data[start + 1]
    flags = CgmMeasurementFlags(flags_raw)
    body = _body_size(flags)
    if size == body:
        has_crc = False
    elif size == body + CRC_STRUCT.size:
        has_crc = True
    else:
        raise SizeMismatchError(
            CHARACTERISTIC,
            data,
            f"Size {size} fits neither the {body} bytes flags 0x{flags_raw:02X} announce nor {body + 2} with "
            "an E2E-CRC",
            offset=start,
        )
    if size > remaining:
        raise TruncatedError(
            CHARACTERISTIC, data, f"record of Size {size} has only {remaining} bytes left", offset=start
        )
    record = data[start : start + size]

    if has_crc:
        (received,) = CRC_STRUCT.unpack_from(record, body)
        computed = e2e_crc(record[:body])
        if received != computed:
            raise CrcMismatchError(
                CHARACTERISTIC,
                data,
                f"E2E-CRC 0x{received:04X} does not match the record's 0x{computed:04X}",
                received=received,
                computed=computed,
                offset=start + body,
            )
    elif require_crc:
        raise CrcMissingError(CHARACTERISTIC, data, "record has no E2E-CRC but one is required", offset=start)

    _, _, glucose_raw, time_offset = _HEADER.unpack_from(record, 0)
    position = _HEADER.size

    def sfloat_at(raw: int, at: int) -> SFloat:
        return SFloat.from_raw(raw, characteristic=CHARACTERISTIC, data=data, offset=start + at)

    glucose = sfloat_at(glucose_raw, 2)
    octets: dict[str, int | None] = {}
    for name, bit in (
        ("status", CgmMeasurementFlags.STATUS_OCTET_PRESENT),
        ("cal_temp", CgmMeasurementFlags.CAL_TEMP_OCTET_PRESENT),
        ("warning", CgmMeasurementFlags.WARNING_OCTET_PRESENT),
    ):
        octets[name] = None
        if flags & bit:
            octets[name] = record[position]
            position += _U8.size
    optional: dict[str, SFloat | None] = {}
    for name, bit in (
        ("trend", CgmMeasurementFlags.TREND_INFORMATION_PRESENT),
        ("quality", CgmMeasurementFlags.QUALITY_PRESENT),
    ):
        optional[name] = None
        if flags & bit:
            (raw,) = _U16.unpack_from(record, position)
            optional[name] = sfloat_at(raw, position)
            position += _U16.size

    status, cal_temp, warning = octets["status"], octets["cal_temp"], octets["warning"]
    return CgmMeasurementRecord(
        glucose=glucose,
        time_offset_min=time_offset,
        status=None if status is None else StatusOctet(status),
        cal_temp=None if cal_temp is None else CalTempOctet(cal_temp),
        warning=None if warning is None else WarningOctet(warning),
        trend=optional["trend"],
        quality=optional["quality"],
        has_crc=has_crc,
        reserved_flag_bits=flags_raw & RESERVED_FLAG_BITS,
    )


def encode_cgm_record(record: CgmMeasurementRecord) -> bytes:
    """Encode one record, computing its E2E-CRC when ``record.has_crc``."""
    parts = [_HEADER.pack(record.size, int(record.flags), record.glucose.raw, record.time_offset_min)]
    for octet in (record.status, record.cal_temp, record.warning):
        if octet is not None:
            parts.append(_U8.pack(int(octet)))
    for value in (record.trend, record.quality):
        if value is not None:
            parts.append(value.to_bytes())
    encoded = b"".join(parts)
    if record.has_crc:
        encoded += CRC_STRUCT.pack(e2e_crc(encoded))
    return encoded


def encode_cgm_measurement(records: Iterable[CgmMeasurementRecord]) -> bytes:
    """Encode a notification holding ``records`` in order (at least one)."""
    encoded = b"".join(encode_cgm_record(record) for record in records)
    if not encoded:
        raise EncodeError(CHARACTERISTIC, b"", "a CGM Measurement holds at least one record")
    return encoded
