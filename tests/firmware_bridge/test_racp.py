"""Record Access Control Point (0x2A52): golden bytes, round trips, and the errors bad payloads raise."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge import errors
from firmware_bridge.errors import CodecError, EncodeError, OverlongError, ReservedValueError, TruncatedError
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
from firmware_bridge.registry import decode_to_dict
from firmware_bridge.uuids import short_uuid

from .strategies import SETTINGS

GOLDEN = json.loads((Path(__file__).parents[1] / "fixtures" / "racp_golden.json").read_text(encoding="utf-8"))
VECTORS = [v for v in GOLDEN["vectors"] if v["characteristic"] == "2A52"]
ERRORS = [v for v in GOLDEN["errors"] if v["characteristic"] == "2A52"]
U16 = st.integers(0, 0xFFFF)


def test_every_vector_names_its_source() -> None:
    every = GOLDEN["vectors"] + GOLDEN["errors"]
    for vector in every:
        assert vector["source"].strip(), vector["id"]
        assert vector["note"].strip(), vector["id"]
    assert len({v["id"] for v in every}) == len(every)
    assert len(VECTORS) >= 15
    assert len(ERRORS) >= 5


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_golden_decodes_to_expected_and_re_encodes(vector: dict[str, Any]) -> None:
    payload = bytes.fromhex(vector["hex"])
    assert decode_to_dict(vector["characteristic"], payload) == vector["expected"]
    assert encode_racp(decode_racp(payload)) == payload


@pytest.mark.parametrize("vector", ERRORS, ids=[v["id"] for v in ERRORS])
def test_golden_errors(vector: dict[str, Any]) -> None:
    expected = getattr(errors, vector["error"])
    payload = bytes.fromhex(vector["hex"])
    with pytest.raises(expected) as caught:
        decode_to_dict(vector["characteristic"], payload)
    assert type(caught.value) is expected
    assert caught.value.data == payload
    assert caught.value.characteristic == short_uuid(vector["characteristic"])


def test_nordic_response_values_by_hand() -> None:
    # What Nordic's test asserts for these bytes, checked without the fixture's own expectations.
    assert decode_racp(bytes([6, 0, 1, 1])) == RacpResponse(1, RacpResponseCode.SUCCESS)
    assert decode_racp(bytes([6, 0, 12, 2])) == RacpResponse(12, RacpResponseCode.OP_CODE_NOT_SUPPORTED)
    assert decode_racp(bytes([6, 0, 1, 6])) == RacpResponse(1, RacpResponseCode.NO_RECORDS_FOUND)
    assert decode_racp(bytes([5, 0, 2, 1])) == RacpNumberOfRecords(258)


def test_requests_the_link_sends() -> None:
    assert encode_racp(RacpRequest.report_from(0x012C)) == bytes.fromhex("0103012c01")
    assert encode_racp(RacpRequest.report_all()) == bytes.fromhex("0101")
    assert encode_racp(RacpRequest.count_all()) == bytes.fromhex("0401")
    assert encode_racp(RacpRequest.abort()) == bytes.fromhex("0300")
    assert RacpRequest.report_from(10).selects(10)
    assert not RacpRequest.report_from(10).selects(9)
    assert RacpRequest.report_all().selects(0xFFFF)


# -- round trips --------------------------------------------------------------------------------------------


@st.composite
def racp_payloads(draw: st.DrawFn) -> bytes:
    """Any valid RACP value, laid out by hand from CGMS (independently of the encoder)."""
    kind = draw(st.sampled_from(["request", "abort", "number", "response"]))
    if kind == "abort":
        return bytes([0x03, 0x00])
    if kind == "number":
        return bytes([0x05, 0x00]) + struct.pack("<H", draw(U16))
    if kind == "response":
        return bytes([0x06, 0x00, draw(st.integers(0, 0xFF)), draw(st.integers(1, 9))])
    op = draw(st.sampled_from([0x01, 0x02, 0x04]))
    operator = draw(st.integers(1, 6))
    operand = b""
    if operator in (0x02, 0x03):
        operand = struct.pack("<BH", 0x01, draw(U16))
    elif operator == 0x04:
        operand = struct.pack("<BHH", 0x01, draw(U16), draw(U16))
    return bytes([op, operator]) + operand


@st.composite
def racp_values(draw: st.DrawFn) -> RacpValue:
    kind = draw(st.sampled_from(["request", "number", "response"]))
    if kind == "number":
        return RacpNumberOfRecords(draw(U16))
    if kind == "response":
        return RacpResponse(draw(st.integers(0, 0xFF)), draw(st.sampled_from(RacpResponseCode)))
    op = draw(st.sampled_from(list(RacpOpCode)[:4]))
    if op == RacpOpCode.ABORT_OPERATION:
        return RacpRequest(op, RacpOperator.NULL)
    operator = draw(st.sampled_from(list(RacpOperator)[1:]))
    low = draw(U16) if operator in (RacpOperator.GREATER_THAN_OR_EQUAL_TO, RacpOperator.WITHIN_RANGE_OF) else None
    high = draw(U16) if operator in (RacpOperator.LESS_THAN_OR_EQUAL_TO, RacpOperator.WITHIN_RANGE_OF) else None
    return RacpRequest(op, operator, low, high)


@SETTINGS
@given(racp_payloads())
def test_payload_round_trip(payload: bytes) -> None:
    assert encode_racp(decode_racp(payload)) == payload
    json.dumps(decode_to_dict("2A52", payload), allow_nan=False)


@SETTINGS
@given(racp_values())
def test_value_round_trip(value: RacpValue) -> None:
    assert decode_racp(encode_racp(value)) == value


@SETTINGS
@given(racp_payloads(), st.integers(0, 40), st.binary(min_size=1, max_size=3))
def test_mutated_payloads_raise_only_codec_errors(payload: bytes, at: int, junk: bytes) -> None:
    mutated = payload[:at] + junk + payload[at + 1 :]
    outcome: object
    try:
        outcome = decode_racp(mutated)
    except CodecError as exc:
        outcome = exc
    if isinstance(outcome, CodecError):
        assert not isinstance(outcome, EncodeError)
        assert outcome.data == mutated
    else:
        assert encode_racp(outcome) == mutated


# -- bad payloads, by type -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_payload", "error"),
    [
        ("", TruncatedError),
        ("01", TruncatedError),  # no operator
        ("010301", TruncatedError),  # >= with a filter type but no time offset
        ("0104010a00", TruncatedError),  # within range with one bound
        ("060001", TruncatedError),
        ("0101ff", OverlongError),  # All records takes no operand
        ("0103010a0000", OverlongError),
        ("0300aa", OverlongError),
        ("0001", ReservedValueError),  # op code 0
        ("ff01", ReservedValueError),
        ("0107", ReservedValueError),  # operator 7
        ("0100", ReservedValueError),  # a request with the Null operator
        ("0301", ReservedValueError),  # abort needs Null
        ("05010000", ReservedValueError),
        ("0103000a00", ReservedValueError),  # filter type 0
        ("06000100", ReservedValueError),  # response code 0
    ],
)
def test_bad_payloads_raise_their_error_type(hex_payload: str, error: type[CodecError]) -> None:
    payload = bytes.fromhex(hex_payload)
    with pytest.raises(error) as caught:
        decode_racp(payload)
    assert type(caught.value) is error
    assert (caught.value.characteristic, caught.value.data) == ("2A52", payload)


@pytest.mark.parametrize(
    "build",
    [
        lambda: RacpRequest(RacpOpCode.RESPONSE_CODE, RacpOperator.NULL),
        lambda: RacpRequest(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.NULL),
        lambda: RacpRequest(RacpOpCode.ABORT_OPERATION, RacpOperator.ALL_RECORDS),
        lambda: RacpRequest(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.GREATER_THAN_OR_EQUAL_TO),
        lambda: RacpRequest(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.ALL_RECORDS, 5),
        lambda: RacpRequest.report_from(0x10000),
        lambda: RacpRequest.report_from(-1),
        lambda: RacpNumberOfRecords(70000),
        lambda: RacpResponse(256, RacpResponseCode.SUCCESS),
        lambda: RacpResponse(1, 1),  # type: ignore[arg-type]
    ],
)
def test_values_that_cannot_be_sent(build: Any) -> None:
    with pytest.raises(EncodeError):
        build()
