"""The CGMS E2E-CRC against published known answers and an independent bit-by-bit reference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.crc import CRC_STRUCT, append_e2e_crc, crc_residue_ok, e2e_crc, read_optional_crc
from firmware_bridge.errors import CodecError, CrcMismatchError, CrcMissingError, OverlongError, TruncatedError

from .strategies import SETTINGS

KNOWN_ANSWERS = [
    # Bluetooth SIG, Continuous Glucose Monitoring Service v1.0.1, section 3.11 "CRC Calculation", worked
    # example (the PDF prints the result octets as 0x012F, i.e. LSO first). Quoted in
    # NordicSemiconductor/Android-BLE-Common-Library
    # ble-common/src/test/java/no/nordicsemi/android/ble/common/util/CRC16Test.java (MCRF4XX_CGMS).
    (bytes([0x3E, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09]), 0x2F01),
    # CRC RevEng catalogue, CRC-16/MCRF4XX: check value of "123456789".
    # https://reveng.sourceforge.net/crc-catalogue/16.htm#crc.cat.crc-16-mcrf4xx
    (b"123456789", 0x6F91),
    # Microchip AN752 "CRC Algorithm for MCRF45X Read/Write Device" worked example (as used in the
    # CRC16Test.java file above, MCRF4XX_8552F189).
    (bytes([0x58, 0x25, 0x1F, 0x98]), 0x07F1),
    # A CGM Measurement record sent by a Roche CGMS test device, E2E-CRC 0x043E on the wire:
    # https://github.com/nordicsemi/Android-nRF-Connect/issues/174
    (bytes.fromhex("0d4373002c010324001a00"), 0x043E),
    # Nordic's CGM test record (flags 0xE3, all fields), E2E-CRC 0x3F8E:
    # Android-BLE-Common-Library .../callback/cgm/ContinuousGlucoseMeasurementDataCallbackTest.java
    (bytes.fromhex("0fe3d2e405000214ff02f0e5f3"), 0x3F8E),
    (b"", 0xFFFF),  # the seed, untouched
]


@pytest.mark.parametrize(("data", "crc"), KNOWN_ANSWERS)
def test_known_answers(data: bytes, crc: int) -> None:
    assert e2e_crc(data) == crc


def test_crc_is_sent_least_significant_octet_first() -> None:
    assert append_e2e_crc(bytes.fromhex("0d4373002c010324001a00")).endswith(bytes.fromhex("3e04"))


def _reference_crc(data: bytes) -> int:
    """Bit-serial CRC-16/MCRF4XX straight from its definition (reflected 0x1021, seed 0xFFFF)."""
    crc = 0xFFFF
    for byte in data:
        for bit in range(8):
            feedback = (crc ^ (byte >> bit)) & 1
            crc >>= 1
            if feedback:
                crc ^= 0x8408
    return crc


@SETTINGS
@given(st.binary(max_size=64))
def test_table_driven_matches_bit_serial_reference(data: bytes) -> None:
    assert e2e_crc(data) == _reference_crc(data)


@SETTINGS
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_running_crc_equals_one_shot(head: bytes, tail: bytes) -> None:
    assert e2e_crc(tail, e2e_crc(head)) == e2e_crc(head + tail)


@SETTINGS
@given(st.binary(max_size=64))
def test_residue_of_data_with_its_crc_is_zero(data: bytes) -> None:
    protected = append_e2e_crc(data)
    assert len(protected) == len(data) + CRC_STRUCT.size
    assert crc_residue_ok(protected)


@SETTINGS
@given(st.binary(min_size=1, max_size=64), st.data())
def test_every_single_bit_error_is_detected(data: bytes, draw: st.DataObject) -> None:
    protected = bytearray(append_e2e_crc(data))
    position = draw.draw(st.integers(0, len(protected) * 8 - 1))
    protected[position // 8] ^= 1 << (position % 8)
    assert not crc_residue_ok(bytes(protected))


def test_short_input_has_no_residue() -> None:
    assert not crc_residue_ok(b"\x00")


# ---- the optional trailing E2E-CRC of CGM Status / Session Start Time / Session Run Time ------------------


@pytest.mark.parametrize(
    ("payload", "error", "offset"),
    [
        (b"\x02", TruncatedError, 1),
        (b"\x02\x00\x08", TruncatedError, 2),
        (b"\x02\x00\x08\xc3\x00", OverlongError, 4),
        (b"\x02\x00\x09\xc3", CrcMismatchError, 2),
    ],
)
def test_read_optional_crc_errors(payload: bytes, error: type[CodecError], offset: int) -> None:
    with pytest.raises(error) as caught:
        read_optional_crc("2AAB", payload, 2)
    assert type(caught.value) is error
    assert (caught.value.characteristic, caught.value.data, caught.value.offset) == ("2AAB", payload, offset)


def test_read_optional_crc_presence_from_length() -> None:
    assert read_optional_crc("2AAB", b"\x02\x00", 2) is False
    assert read_optional_crc("2AAB", b"\x02\x00\x08\xc3", 2) is True
    assert read_optional_crc("2AAB", b"\x02\x00\x08\xc3", 2, require_crc=True) is True
    with pytest.raises(CrcMissingError):
        read_optional_crc("2AAB", b"\x02\x00", 2, require_crc=True)
