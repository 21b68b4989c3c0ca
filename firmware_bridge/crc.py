"""The CGMS E2E-CRC (Continuous Glucose Monitoring Service, section "CRC Calculation").

The specification calls it "a CRC-CCITT generator polynomial g(D) = D^16 + D^12 + D^5 + 1 (210041 octal)
with a seed of 0xFFFF"; the bit order that makes the specification's own example and the SIG-qualified
implementations agree is the reflected one, i.e. the catalogued CRC-16/MCRF4XX:

    width 16, poly 0x1021 (0x8408 reflected), init 0xFFFF, refin = refout = true, xorout 0x0000,
    check("123456789") = 0x6F91, residue 0x0000.

The CRC covers every field of the record before it (for CGM Measurement: from the Size byte on) and is sent
as a uint16, least significant octet first. Because refout is true and xorout is 0, the CRC computed over
the data followed by its little-endian CRC is zero, which ``crc_residue_ok`` uses.

Sources: Bluetooth SIG, CGMS v1.0.1/v1.0.2 section 3.11 (example: 3E 01 02 .. 09 -> 0x2F01, quoted in
NordicSemiconductor/Android-BLE-Common-Library ble-common/src/test/java/no/nordicsemi/android/ble/common/
util/CRC16Test.java); Nordic's CRC16.MCRF4XX documented as "used in Bluetooth LE CGMS service E2E-CRC
calculation"; Cypress PSoC CGMS (CY_BLE_CGMS_CRC_POLY 0x8408, seed 0xFFFF).
"""

from __future__ import annotations

import struct

from firmware_bridge.errors import BytesLike, CrcMismatchError, CrcMissingError, OverlongError, TruncatedError

CRC_POLY = 0x1021
CRC_POLY_REFLECTED = 0x8408
CRC_INIT = 0xFFFF
CRC_STRUCT = struct.Struct("<H")
"""The E2E-CRC field: uint16, least significant octet first."""


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ CRC_POLY_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def e2e_crc(data: BytesLike, crc: int = CRC_INIT) -> int:
    """The CGMS E2E-CRC (CRC-16/MCRF4XX) of ``data``; pass ``crc`` to continue a running computation."""
    for byte in bytes(data):
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def append_e2e_crc(data: bytes) -> bytes:
    """``data`` followed by its E2E-CRC field."""
    return data + CRC_STRUCT.pack(e2e_crc(data))


def crc_residue_ok(data_with_crc: bytes) -> bool:
    """True when the last two bytes are the correct little-endian E2E-CRC of the bytes before them."""
    return len(data_with_crc) >= 2 and e2e_crc(data_with_crc) == 0


def read_optional_crc(characteristic: str, data: bytes, body_size: int, *, require_crc: bool = False) -> bool:
    """Check the optional trailing E2E-CRC of a fixed-layout CGM characteristic; True when it is present.

    CGM Status, Session Start Time and Session Run Time carry an E2E-CRC only when the sensor supports E2E-CRC,
    and their fields have fixed sizes, so the length says whether the CRC is there: ``body_size`` bytes means
    no CRC, ``body_size + 2`` means a CRC that must match the bytes before it. Anything shorter than the body,
    or one byte of a CRC, is ``TruncatedError``; anything longer is ``OverlongError``. With ``require_crc``
    (the sensor's CGM Feature says it supports E2E-CRC) a payload without one is ``CrcMissingError``.
    """
    if len(data) < body_size:
        raise TruncatedError(characteristic, data, f"{len(data)} bytes, the fields need {body_size}", offset=len(data))
    if len(data) == body_size:
        if require_crc:
            raise CrcMissingError(characteristic, data, "no E2E-CRC but one is required", offset=body_size)
        return False
    if len(data) < body_size + CRC_STRUCT.size:
        raise TruncatedError(characteristic, data, "the E2E-CRC is cut short", offset=body_size)
    if len(data) > body_size + CRC_STRUCT.size:
        extra = len(data) - body_size - CRC_STRUCT.size
        raise OverlongError(
            characteristic, data, f"{extra} trailing bytes after the E2E-CRC", offset=body_size + CRC_STRUCT.size
        )
    (received,) = CRC_STRUCT.unpack_from(data, body_size)
    computed = e2e_crc(data[:body_size])
    if received != computed:
        raise CrcMismatchError(
            characteristic,
            data,
            f"E2E-CRC 0x{received:04X} does not match the fields' 0x{computed:04X}",
            received=received,
            computed=computed,
            offset=body_size,
        )
    return True
