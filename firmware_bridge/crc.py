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

from firmware_bridge.errors import BytesLike

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
