"""CGM Specific Ops Control Point (0x2AAC): golden bytes, round trips, E2E-CRC and bad payloads."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge import errors
from firmware_bridge.crc import e2e_crc
from firmware_bridge.errors import (
    CodecError,
    CrcMismatchError,
    CrcMissingError,
    EncodeError,
    OverlongError,
    ReservedValueError,
    TruncatedError,
)
from firmware_bridge.registry import decode_to_dict
from firmware_bridge.sfloat import SFloat
from firmware_bridge.socp import (
    OPERANDS,
    CalibrationRecord,
    CalibrationStatus,
    Operand,
    SocpOpCode,
    SocpResponseCode,
    SocpValue,
    decode_socp,
    encode_socp,
)
from firmware_bridge.uuids import short_uuid

from .strategies import SETTINGS, sfloat_raws, sfloats

GOLDEN = json.loads((Path(__file__).parents[1] / "fixtures" / "racp_golden.json").read_text(encoding="utf-8"))
VECTORS = [v for v in GOLDEN["vectors"] if v["characteristic"] == "2AAC"]
ERRORS = [v for v in GOLDEN["errors"] if v["characteristic"] == "2AAC"]
SIZES = {
    Operand.NONE: 0,
    Operand.INTERVAL: 1,
    Operand.CALIBRATION: 10,
    Operand.RECORD_NUMBER: 2,
    Operand.LEVEL: 2,
    Operand.RATE: 2,
    Operand.RESPONSE: 2,
}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_golden_decodes_to_expected_and_re_encodes(vector: dict[str, Any]) -> None:
    payload = bytes.fromhex(vector["hex"])
    assert decode_to_dict(vector["characteristic"], payload) == vector["expected"]
    assert encode_socp(decode_socp(payload)) == payload


@pytest.mark.parametrize("vector", ERRORS, ids=[v["id"] for v in ERRORS])
def test_golden_errors(vector: dict[str, Any]) -> None:
    expected = getattr(errors, vector["error"])
    payload = bytes.fromhex(vector["hex"])
    with pytest.raises(expected) as caught:
        decode_to_dict(vector["characteristic"], payload)
    assert type(caught.value) is expected
    assert caught.value.data == payload
    assert caught.value.characteristic == short_uuid(vector["characteristic"])


def test_nordic_values_by_hand() -> None:
    # The values Nordic's test asserts for its byte strings, checked without the fixture's expectations.
    cal = decode_socp(bytes.fromhex("0601200a00321400010004bfb2"))
    assert cal.has_crc
    assert cal.calibration == CalibrationRecord(
        glucose=SFloat(1, 2),
        calibration_time_min=10,
        sample_type=2,  # capillary plasma
        sample_location=3,  # earlobe
        next_calibration_time_min=20,
        record_number=1,
        status=CalibrationStatus.PROCESS_PENDING,
    )
    low = decode_socp(bytes.fromhex("0c0bc034be"))
    assert low.alert_level is not None
    assert low.op_code == SocpOpCode.PATIENT_LOW_ALERT_LEVEL_RESPONSE
    assert (low.alert_level.value, low.has_crc) == (0.0011, True)
    assert decode_socp(bytes.fromhex("030a8a75")).communication_interval_min == 10
    done = decode_socp(bytes.fromhex("1c0202a709"))
    assert (done.request_op_code, done.response_code) == (2, SocpResponseCode.OP_CODE_NOT_SUPPORTED)


def test_every_op_code_has_an_operand_kind() -> None:
    assert set(OPERANDS) == set(SocpOpCode)
    assert sum(kind is Operand.LEVEL for kind in OPERANDS.values()) == 8
    assert sum(kind is Operand.RATE for kind in OPERANDS.values()) == 4


def test_require_crc() -> None:
    plain = encode_socp(SocpValue(SocpOpCode.START_THE_SESSION))
    assert plain == b"\x1a"
    with pytest.raises(CrcMissingError):
        decode_socp(plain, require_crc=True)
    secured = encode_socp(SocpValue(SocpOpCode.START_THE_SESSION, has_crc=True))
    assert secured == b"\x1a" + struct.pack("<H", e2e_crc(b"\x1a"))
    assert decode_socp(secured, require_crc=True).has_crc


# -- round trips --------------------------------------------------------------------------------------------


@st.composite
def socp_payloads(draw: st.DrawFn) -> bytes:
    """Any valid SOCP value, laid out by hand from CGMS (independently of the encoder)."""
    op = draw(st.sampled_from(list(SocpOpCode)))
    kind = OPERANDS[op]
    if kind in (Operand.LEVEL, Operand.RATE):
        operand = struct.pack("<H", draw(sfloat_raws))
    elif kind is Operand.CALIBRATION:
        operand = struct.pack("<H", draw(sfloat_raws)) + draw(st.binary(min_size=8, max_size=8))
    elif kind is Operand.RESPONSE:
        operand = bytes([draw(st.integers(0, 0xFF)), draw(st.integers(1, 5))])
    else:
        operand = draw(st.binary(min_size=SIZES[kind], max_size=SIZES[kind]))
    body = bytes([op]) + operand
    return body + struct.pack("<H", e2e_crc(body)) if draw(st.booleans()) else body


@st.composite
def socp_values(draw: st.DrawFn) -> SocpValue:
    op = draw(st.sampled_from(list(SocpOpCode)))
    kind = OPERANDS[op]
    fields: dict[str, Any] = {}
    if kind is Operand.INTERVAL:
        fields["communication_interval_min"] = draw(st.integers(0, 0xFF))
    elif kind is Operand.RECORD_NUMBER:
        fields["calibration_record_number"] = draw(st.integers(0, 0xFFFF))
    elif kind in (Operand.LEVEL, Operand.RATE):
        fields["alert_level"] = draw(sfloats)
    elif kind is Operand.RESPONSE:
        fields["request_op_code"] = draw(st.integers(0, 0xFF))
        fields["response_code"] = draw(st.sampled_from(SocpResponseCode))
    elif kind is Operand.CALIBRATION:
        fields["calibration"] = CalibrationRecord(
            glucose=draw(sfloats),
            calibration_time_min=draw(st.integers(0, 0xFFFF)),
            sample_type=draw(st.integers(0, 15)),
            sample_location=draw(st.integers(0, 15)),
            next_calibration_time_min=draw(st.integers(0, 0xFFFF)),
            record_number=draw(st.integers(0, 0xFFFF)),
            status=CalibrationStatus(draw(st.integers(0, 0xFF))),
        )
    return SocpValue(op, has_crc=draw(st.booleans()), **fields)


@SETTINGS
@given(socp_payloads())
def test_payload_round_trip(payload: bytes) -> None:
    assert encode_socp(decode_socp(payload)) == payload
    json.dumps(decode_to_dict("2AAC", payload), allow_nan=False)


@SETTINGS
@given(socp_values())
def test_value_round_trip(value: SocpValue) -> None:
    assert decode_socp(encode_socp(value)) == value


@SETTINGS
@given(socp_payloads(), st.integers(0, 16), st.binary(min_size=0, max_size=3))
def test_mutated_payloads_raise_only_codec_errors(payload: bytes, at: int, junk: bytes) -> None:
    mutated = payload[:at] + junk + payload[at + 1 :]
    outcome: object
    try:
        outcome = decode_socp(mutated)
    except CodecError as exc:
        outcome = exc
    if isinstance(outcome, CodecError):
        assert not isinstance(outcome, EncodeError)
        assert outcome.data == mutated
    else:
        assert encode_socp(outcome) == mutated


# -- bad payloads, by type -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_payload", "error"),
    [
        ("", TruncatedError),
        ("01", TruncatedError),  # Set interval without the interval
        ("070c", TruncatedError),  # half an SFLOAT
        ("04" + "00" * 9, TruncatedError),
        ("1a00", TruncatedError),  # one byte of a CRC
        ("1a000000", OverlongError),
        ("0105000000", OverlongError),
        ("00", ReservedValueError),
        ("1d", ReservedValueError),
        ("1c0100", ReservedValueError),  # response code 0
        ("070108", ReservedValueError),  # SFLOAT 0x0801 is reserved
        ("1c0101" + "0000", CrcMismatchError),
    ],
)
def test_bad_payloads_raise_their_error_type(hex_payload: str, error: type[CodecError]) -> None:
    payload = bytes.fromhex(hex_payload)
    with pytest.raises(error) as caught:
        decode_socp(payload)
    assert type(caught.value) is error
    assert (caught.value.characteristic, caught.value.data) == ("2AAC", payload)


@pytest.mark.parametrize(
    "build",
    [
        lambda: SocpValue(SocpOpCode.SET_CGM_COMMUNICATION_INTERVAL),
        lambda: SocpValue(SocpOpCode.SET_CGM_COMMUNICATION_INTERVAL, communication_interval_min=256),
        lambda: SocpValue(SocpOpCode.START_THE_SESSION, communication_interval_min=5),
        lambda: SocpValue(SocpOpCode.SET_HYPO_ALERT_LEVEL, alert_level=70),  # type: ignore[arg-type]
        lambda: SocpValue(SocpOpCode.RESPONSE_CODE, request_op_code=1),
        lambda: SocpValue(0x1D),  # type: ignore[arg-type]
        lambda: SocpValue(SocpOpCode.START_THE_SESSION, has_crc=1),  # type: ignore[arg-type]
        lambda: CalibrationRecord(SFloat(1, 2), 0, 16, 0),
        lambda: CalibrationRecord(SFloat(1, 2), 0x10000, 1, 1),
    ],
)
def test_values_that_cannot_be_sent(build: Any) -> None:
    with pytest.raises(EncodeError):
        build()
