"""IEEE 11073-20601 SFLOAT and FLOAT."""

from __future__ import annotations

import bisect
import math
from decimal import Decimal
from functools import lru_cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.errors import EncodeError, OverlongError, ReservedValueError, TruncatedError
from firmware_bridge.sfloat import (
    Float32,
    SFloat,
    SpecialValue,
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
)

from .strategies import SETTINGS, float32s, float_raws, sfloat_raws, sfloats

# Special values, IEEE 11073-20601 Annex F.8 (SFLOAT) and F.9 (FLOAT).
SFLOAT_SPECIALS = {
    0x07FF: SpecialValue.NAN,
    0x0800: SpecialValue.NRES,
    0x07FE: SpecialValue.POSITIVE_INFINITY,
    0x0802: SpecialValue.NEGATIVE_INFINITY,
}
FLOAT_SPECIALS = {
    0x007FFFFF: SpecialValue.NAN,
    0x00800000: SpecialValue.NRES,
    0x007FFFFE: SpecialValue.POSITIVE_INFINITY,
    0x00800002: SpecialValue.NEGATIVE_INFINITY,
}


@pytest.mark.parametrize(("raw", "special"), SFLOAT_SPECIALS.items())
def test_sfloat_special_values(raw: int, special: SpecialValue) -> None:
    value = decode_sfloat(raw.to_bytes(2, "little"))
    assert value.special is special
    assert not value.is_finite
    assert encode_sfloat(value) == raw.to_bytes(2, "little")
    assert SFloat.from_special(special).raw == raw


@pytest.mark.parametrize(("raw", "special"), FLOAT_SPECIALS.items())
def test_float_special_values(raw: int, special: SpecialValue) -> None:
    value = decode_float(raw.to_bytes(4, "little"))
    assert value.special is special
    assert encode_float(value) == raw.to_bytes(4, "little")


def test_special_values_as_floats() -> None:
    assert math.isnan(SFloat.from_special(SpecialValue.NAN).value)
    assert math.isnan(SFloat.from_special(SpecialValue.NRES).value)
    assert SFloat.from_special(SpecialValue.POSITIVE_INFINITY).value == math.inf
    assert SFloat.from_special(SpecialValue.NEGATIVE_INFINITY).value == -math.inf
    assert SFloat.from_value(float("nan")).special is SpecialValue.NAN
    assert SFloat.from_value(float("-inf")).special is SpecialValue.NEGATIVE_INFINITY


@pytest.mark.parametrize("raw", [0x17FF, 0x1800, 0xF7FE, 0x7802])
def test_special_mantissas_with_nonzero_exponent_are_ordinary_numbers(raw: int) -> None:
    value = SFloat.from_raw(raw)
    assert value.special is None
    assert value.exponent != 0


@pytest.mark.parametrize(("codec", "data"), [(decode_sfloat, b"\x01\x08"), (decode_float, b"\x01\x00\x80\x00")])
def test_reserved_code_is_rejected(codec: object, data: bytes) -> None:
    with pytest.raises(ReservedValueError) as caught:
        codec(data, characteristic="2AA7")  # type: ignore[operator]
    assert caught.value.data == data
    assert caught.value.characteristic == "2AA7"


@pytest.mark.parametrize(("mantissa", "exponent"), [(-2047, 0), (2048, 0), (0, 8), (0, -9), (-2049, 1)])
def test_invalid_sfloat_parts_cannot_be_built(mantissa: int, exponent: int) -> None:
    with pytest.raises(EncodeError):
        SFloat(mantissa, exponent)


@pytest.mark.parametrize(
    ("data", "error"),
    [(b"", TruncatedError), (b"\x01", TruncatedError), (b"\x01\x02\x03", OverlongError)],
)
def test_sfloat_wrong_length(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_sfloat(data)


@pytest.mark.parametrize(
    ("raw", "mantissa", "exponent", "value"),
    [
        (0x0061, 97, 0, 97.0),
        (0xF3CF, 975, -1, 97.5),  # 0xF = exponent -1, 0x3CF = 975
        (0x100C, 12, 1, 120.0),  # the Nordic test suite's 120 mg/dL
        (0xE4D2, 1234, -2, 12.34),
        (0xFFFF, -1, -1, -0.1),
        (0x8001, 1, -8, 1e-8),
        (0x77FF, 2047, 7, 2.047e10),
    ],
)
def test_decode_known_sfloats(raw: int, mantissa: int, exponent: int, value: float) -> None:
    decoded = decode_sfloat(raw.to_bytes(2, "little"))
    assert (decoded.mantissa, decoded.exponent) == (mantissa, exponent)
    assert decoded.value == value


@pytest.mark.parametrize(
    ("value", "mantissa", "exponent"),
    [
        (97, 97, 0),
        (97.5, 975, -1),
        ("97.5", 975, -1),
        (Decimal("97.5"), 975, -1),
        (120, 12, 1),
        (120.2, 1202, -1),
        (39, 39, 0),
        (401, 401, 0),
        (0, 0, 0),
        (-0.0, 0, 0),
        (0.1, 1, -1),
        (-2.5, -25, -1),
        (2045, 2045, 0),
        (20470, 2047, 1),
    ],
)
def test_sfloat_from_value_exact(value: float | str | Decimal, mantissa: int, exponent: int) -> None:
    encoded = SFloat.from_value(value, exact=True)
    assert (encoded.mantissa, encoded.exponent) == (mantissa, exponent)
    assert decode_sfloat(encode_sfloat(encoded)) == encoded


def test_glucose_values_round_trip_through_bytes() -> None:
    for mg_dl in (97, 97.5, 120, 55.5, 400, 39, 204.7, 2045):
        assert decode_sfloat(encode_sfloat(SFloat.from_value(mg_dl, exact=True))).value == mg_dl


def test_tenths_of_mg_dl_stop_at_204_7() -> None:
    # 0.1 mg/dL resolution needs mantissa = 10 * value, which the 12-bit mantissa holds only up to 2047.
    with pytest.raises(EncodeError):
        SFloat.from_value(250.5, exact=True)
    assert SFloat.from_value(250.5).value == 250.0  # 2505 rounds to 250e0 (ties to even)


def test_120_25_needs_a_float_not_an_sfloat() -> None:
    # 120.25 needs mantissa 12025, beyond the 12-bit SFLOAT mantissa (max 2047).
    with pytest.raises(EncodeError):
        SFloat.from_value(120.25, exact=True)
    assert SFloat.from_value(120.25).value == 120.2  # nearest, ties to the even mantissa 1202
    exact = Float32.from_value(120.25, exact=True)
    assert (exact.mantissa, exact.exponent) == (12025, -2)
    assert decode_float(encode_float(exact)).value == 120.25


@pytest.mark.parametrize(
    ("value", "nearest"), [(2047, 2045), (2046, 2045), (-2046, -2045), (-2047, -2045), (-2048, -2050)]
)
def test_values_colliding_with_special_codes_are_not_exact(value: int, nearest: int) -> None:
    # With exponent 0 these mantissas are special codes; the neighbours are 2045 (exponent 0) and 2050
    # (205e1), whichever is nearer.
    with pytest.raises(EncodeError):
        SFloat.from_value(value, exact=True)
    encoded = SFloat.from_value(value)
    assert encoded.special is None
    assert encoded.value == nearest


@pytest.mark.parametrize("value", [2.048e10, -2.049e10, 1e300, "1e30"])
def test_out_of_range_values_raise(value: float | str) -> None:
    with pytest.raises(EncodeError):
        SFloat.from_value(value)


@pytest.mark.parametrize("value", [True, "glucose", None, [1]])
def test_non_numbers_raise(value: object) -> None:
    with pytest.raises(EncodeError):
        SFloat.from_value(value)  # type: ignore[arg-type]


@SETTINGS
@given(sfloat_raws)
def test_every_valid_sfloat_code_round_trips(raw: int) -> None:
    data = raw.to_bytes(2, "little")
    assert encode_sfloat(decode_sfloat(data)) == data


@SETTINGS
@given(float_raws)
def test_every_valid_float_code_round_trips(raw: int) -> None:
    data = raw.to_bytes(4, "little")
    assert encode_float(decode_float(data)) == data


@SETTINGS
@given(sfloats)
def test_sfloat_decode_encode(value: SFloat) -> None:
    assert decode_sfloat(encode_sfloat(value)) == value


@SETTINGS
@given(float32s)
def test_float_decode_encode(value: Float32) -> None:
    assert decode_float(encode_float(value)) == value


def _reference_decimal(raw: int) -> Decimal | None:
    """SFLOAT bits -> exact value, written out from the standard independently of the module."""
    exponent = raw >> 12
    mantissa = raw & 0x0FFF
    if exponent >= 8:
        exponent -= 16
    if mantissa >= 0x800:
        mantissa -= 0x1000
    if exponent == 0 and mantissa in (2047, 2046, -2048, -2047, -2046):
        return None
    return Decimal(mantissa) * Decimal(10) ** exponent


@lru_cache(maxsize=1)
def _all_finite_sfloats() -> list[Decimal]:
    return sorted({d for raw in range(0x10000) if (d := _reference_decimal(raw)) is not None})


@SETTINGS
@given(sfloats.filter(lambda v: v.is_finite))
def test_float_value_is_the_exact_value_correctly_rounded(value: SFloat) -> None:
    exact = _reference_decimal(value.raw)
    assert exact is not None
    assert value.to_decimal() == exact
    assert value.value == float(exact)


@SETTINGS
@given(
    st.decimals(min_value=Decimal("-2.047e10"), max_value=Decimal("2.047e10"), allow_nan=False, places=None)
    | st.floats(min_value=-3000, max_value=3000).map(lambda f: Decimal(repr(f)))
)
def test_from_value_picks_a_nearest_representable_value(target: Decimal) -> None:
    table = _all_finite_sfloats()
    index = bisect.bisect_left(table, target)
    neighbours = table[max(0, index - 1) : index + 1]
    best = min(abs(candidate - target) for candidate in neighbours)
    encoded = SFloat.from_value(target)
    assert abs(encoded.to_decimal() - target) == best
    if best == 0:
        assert SFloat.from_value(target, exact=True) == encoded
    else:
        with pytest.raises(EncodeError):
            SFloat.from_value(target, exact=True)


@SETTINGS
@given(st.integers(-2045, 2045), st.integers(-8, 7))
def test_exact_values_come_back_exactly(mantissa: int, exponent: int) -> None:
    value = Decimal(mantissa).scaleb(exponent)
    encoded = SFloat.from_value(value, exact=True)
    assert encoded.to_decimal() == value
