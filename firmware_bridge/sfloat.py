"""IEEE 11073-20601 SFLOAT (16-bit) and FLOAT (32-bit) medical floating point numbers.

A value is ``mantissa * 10 ** exponent`` with both parts two's complement, sent least significant octet
first:

    SFLOAT  uint16: exponent = bits 15-12 (4-bit, -8..7),   mantissa = bits 11-0 (12-bit, -2048..2047)
    FLOAT   uint32: exponent = bits 31-24 (8-bit, -128..127), mantissa = bits 23-0 (24-bit, -2^23..2^23-1)

With exponent 0 five mantissas are special values (IEEE 11073-20601 Annex F.8, F.9):

    meaning                SFLOAT    FLOAT
    NaN (not a number)     0x07FF    0x007FFFFF
    NRes (not at this      0x0800    0x00800000
      resolution)
    +INFINITY              0x07FE    0x007FFFFE
    -INFINITY              0x0802    0x00800002
    reserved for future    0x0801    0x00800001   -> ReservedValueError on decode; never encoded

Any other exponent makes these mantissas ordinary numbers (0x17FF is 20470).

The types keep the mantissa and exponent exactly as sent, so a decoded value re-encodes to the same bytes
(120 may arrive as 12e1 or 120e0; both are kept as sent). ``from_value`` builds one from a number: it uses the
largest exponent that represents the value exactly (97 -> 97e0, 97.5 -> 975e-1, 120 -> 12e1), and when no
exponent does, the nearest representable value (ties to even mantissa), or ``EncodeError`` with
``exact=True``. Floats are read by their shortest repr, so ``97.1`` means the decimal 97.1. An SFLOAT has
three to four significant digits: 120.25 mg/dL is not representable (it needs mantissa 12025) and becomes
120.2; FLOAT represents it exactly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal, InvalidOperation, localcontext
from enum import Enum
from typing import ClassVar, TypeVar

from firmware_bridge.errors import BytesLike, EncodeError, OverlongError, ReservedValueError, TruncatedError


class SpecialValue(Enum):
    """The special values of IEEE 11073-20601 (exponent 0)."""

    NAN = "nan"
    NRES = "nres"
    POSITIVE_INFINITY = "+inf"
    NEGATIVE_INFINITY = "-inf"


_M = TypeVar("_M", bound="_MedicalFloat")
_DECIMAL = Context(prec=120)


@dataclass(frozen=True)
class _MedicalFloat:
    """Shared implementation; use ``SFloat`` or ``Float32``."""

    mantissa: int
    exponent: int

    NAME: ClassVar[str]
    MANTISSA_BITS: ClassVar[int]
    EXPONENT_BITS: ClassVar[int]
    STRUCT: ClassVar[struct.Struct]
    MANTISSA_DIGITS: ClassVar[int]

    # ---- layout ---------------------------------------------------------------------------------------
    @classmethod
    def mantissa_range(cls) -> tuple[int, int]:
        half = 1 << (cls.MANTISSA_BITS - 1)
        return -half, half - 1

    @classmethod
    def exponent_range(cls) -> tuple[int, int]:
        half = 1 << (cls.EXPONENT_BITS - 1)
        return -half, half - 1

    @classmethod
    def _special_mantissas(cls) -> dict[int, SpecialValue | None]:
        top = (1 << (cls.MANTISSA_BITS - 1)) - 1
        return {
            top: SpecialValue.NAN,
            -(top + 1): SpecialValue.NRES,
            top - 1: SpecialValue.POSITIVE_INFINITY,
            -(top - 1): SpecialValue.NEGATIVE_INFINITY,
            -top: None,  # reserved for future use
        }

    def __post_init__(self) -> None:
        for name, part in (("mantissa", self.mantissa), ("exponent", self.exponent)):
            if type(part) is not int:
                raise EncodeError("", b"", f"{self.NAME} {name} must be an int, not {type(part).__name__}")
        low, high = self.mantissa_range()
        if not low <= self.mantissa <= high:
            raise EncodeError("", b"", f"{self.NAME} mantissa {self.mantissa} outside {low}..{high}")
        low, high = self.exponent_range()
        if not low <= self.exponent <= high:
            raise EncodeError("", b"", f"{self.NAME} exponent {self.exponent} outside {low}..{high}")
        if self._is_reserved(self.mantissa, self.exponent):
            raise EncodeError("", b"", f"{self.NAME} mantissa {self.mantissa} with exponent 0 is reserved")

    @classmethod
    def _is_reserved(cls, mantissa: int, exponent: int) -> bool:
        return exponent == 0 and mantissa in cls._special_mantissas() and cls._special_mantissas()[mantissa] is None

    # ---- wire form ------------------------------------------------------------------------------------
    @property
    def raw(self) -> int:
        """The value as the unsigned integer sent on the wire."""
        mantissa_mask = (1 << self.MANTISSA_BITS) - 1
        exponent_mask = (1 << self.EXPONENT_BITS) - 1
        return ((self.exponent & exponent_mask) << self.MANTISSA_BITS) | (self.mantissa & mantissa_mask)

    def to_bytes(self) -> bytes:
        return self.STRUCT.pack(self.raw)

    @classmethod
    def from_raw(
        cls: type[_M],
        raw: int,
        *,
        characteristic: str = "",
        data: bytes = b"",
        offset: int | None = None,
    ) -> _M:
        """Decode the unsigned wire integer; the reserved code raises ``ReservedValueError``."""
        mantissa = raw & ((1 << cls.MANTISSA_BITS) - 1)
        if mantissa >> (cls.MANTISSA_BITS - 1):
            mantissa -= 1 << cls.MANTISSA_BITS
        exponent = (raw >> cls.MANTISSA_BITS) & ((1 << cls.EXPONENT_BITS) - 1)
        if exponent >> (cls.EXPONENT_BITS - 1):
            exponent -= 1 << cls.EXPONENT_BITS
        if cls._is_reserved(mantissa, exponent):
            raise ReservedValueError(
                characteristic,
                data or cls.STRUCT.pack(raw & ((1 << (8 * cls.STRUCT.size)) - 1)),
                f"{cls.NAME} 0x{raw:0{2 * cls.STRUCT.size}X} is reserved for future use",
                offset=offset,
            )
        return cls(mantissa, exponent)

    @classmethod
    def from_bytes(cls: type[_M], data: BytesLike, *, characteristic: str = "") -> _M:
        """Decode exactly one value; other lengths raise ``TruncatedError`` or ``OverlongError``."""
        data = bytes(data)
        size = cls.STRUCT.size
        if len(data) < size:
            raise TruncatedError(characteristic, data, f"{cls.NAME} needs {size} bytes, got {len(data)}")
        if len(data) > size:
            raise OverlongError(characteristic, data, f"{cls.NAME} is {size} bytes, got {len(data)}", offset=size)
        (raw,) = cls.STRUCT.unpack(data)
        return cls.from_raw(raw, characteristic=characteristic, data=data)

    # ---- meaning --------------------------------------------------------------------------------------
    @property
    def special(self) -> SpecialValue | None:
        """The special value this is, or ``None`` for an ordinary number."""
        if self.exponent != 0:
            return None
        return self._special_mantissas().get(self.mantissa)

    @property
    def is_finite(self) -> bool:
        return self.special is None

    @property
    def value(self) -> float:
        """The value as the nearest float; NaN for NaN and NRes, +/-inf for the infinities."""
        special = self.special
        if special is SpecialValue.POSITIVE_INFINITY:
            return float("inf")
        if special is SpecialValue.NEGATIVE_INFINITY:
            return float("-inf")
        if special is not None:
            return float("nan")
        if self.exponent >= 0:
            return float(self.mantissa * 10**self.exponent)
        divisor: int = 10 ** (-self.exponent)
        return self.mantissa / divisor  # int / int is correctly rounded

    def to_decimal(self) -> Decimal:
        """The exact value; ``Decimal('NaN')`` for NaN and NRes, +/-Infinity for the infinities."""
        special = self.special
        if special is SpecialValue.POSITIVE_INFINITY:
            return Decimal("Infinity")
        if special is SpecialValue.NEGATIVE_INFINITY:
            return Decimal("-Infinity")
        if special is not None:
            return Decimal("NaN")
        return Decimal(self.mantissa).scaleb(self.exponent, _DECIMAL)

    # ---- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_special(cls: type[_M], special: SpecialValue) -> _M:
        for mantissa, meaning in cls._special_mantissas().items():
            if meaning is special:
                return cls(mantissa, 0)
        raise AssertionError(special)  # pragma: no cover - every SpecialValue has a code

    @classmethod
    def from_value(cls: type[_M], value: int | float | Decimal | str, *, exact: bool = False) -> _M:
        """The representation of ``value`` (see the module docstring for the choice of exponent).

        NaN and the infinities map to the special values. Values beyond the largest finite magnitude raise
        ``EncodeError``; so does a value that is not exactly representable when ``exact`` is true.
        """
        number = _to_decimal(value, cls.NAME)
        if number.is_nan():
            return cls.from_special(SpecialValue.NAN)
        if number.is_infinite():
            return cls.from_special(SpecialValue.POSITIVE_INFINITY if number > 0 else SpecialValue.NEGATIVE_INFINITY)
        if number.is_zero():
            return cls(0, 0)
        low, high = cls.mantissa_range()
        _, max_exponent = cls.exponent_range()
        with localcontext(_DECIMAL):
            if not Decimal(low).scaleb(max_exponent) <= number <= Decimal(high).scaleb(max_exponent):
                raise EncodeError("", b"", f"{value!r} is beyond the range of {cls.NAME}")
            mantissa, exponent, error = cls._nearest(number)
        if exact and error != 0:
            raise EncodeError("", b"", f"{value!r} is not exactly representable as {cls.NAME}")
        return cls(*_normalise(mantissa, exponent, max_exponent))

    @classmethod
    def _nearest(cls, number: Decimal) -> tuple[int, int, Decimal]:
        """The (mantissa, exponent, |error|) nearest to ``number``; ties go to the finer, even candidate."""
        min_exponent, max_exponent = cls.exponent_range()
        low, high = cls.mantissa_range()
        # Exponents much finer than the value's magnitude overflow the mantissa and much coarser ones lose
        # precision, so only a small window around the natural exponent needs checking.
        natural = number.adjusted() - cls.MANTISSA_DIGITS
        first = max(min_exponent, min(natural - 1, max_exponent))
        last = min(max_exponent, max(natural + 2, min_exponent))
        best: tuple[Decimal, int, int, int] | None = None
        for exponent in range(first, last + 1):
            # At exponent 0 the outermost mantissas are special codes (NRes, reserved, -INF at the bottom;
            # +INF, NaN at the top), so the usable range is narrower there.
            usable_low, usable_high = (low + 3, high - 2) if exponent == 0 else (low, high)
            scaled = number.scaleb(-exponent)
            for rounded in (scaled.to_integral_value(ROUND_FLOOR), scaled.to_integral_value(ROUND_CEILING)):
                mantissa = min(max(int(rounded), usable_low), usable_high)
                error = abs(Decimal(mantissa).scaleb(exponent) - number)
                key = (error, exponent, mantissa % 2, mantissa)
                if best is None or key < best:
                    best = key
        assert best is not None
        error, exponent, _, mantissa = best
        return mantissa, exponent, error


def _to_decimal(value: int | float | Decimal | str, name: str) -> Decimal:
    if isinstance(value, bool):
        raise EncodeError("", b"", f"{name} value must be a number, not bool")
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest decimal that reads back as this float
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation as exc:
            raise EncodeError("", b"", f"{value!r} is not a number") from exc
    raise EncodeError("", b"", f"{name} value must be a number, not {type(value).__name__}")


def _normalise(mantissa: int, exponent: int, max_exponent: int) -> tuple[int, int]:
    """Strip trailing decimal zeros into the exponent (the canonical, largest-exponent form)."""
    if mantissa == 0:
        return 0, 0
    while mantissa % 10 == 0 and exponent < max_exponent:
        mantissa //= 10
        exponent += 1
    return mantissa, exponent


@dataclass(frozen=True)
class SFloat(_MedicalFloat):
    """IEEE 11073-20601 16-bit SFLOAT: 4-bit exponent, 12-bit mantissa."""

    NAME: ClassVar[str] = "SFLOAT"
    MANTISSA_BITS: ClassVar[int] = 12
    EXPONENT_BITS: ClassVar[int] = 4
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<H")
    MANTISSA_DIGITS: ClassVar[int] = 3  # 2047 has 4 digits; adjusted() counts from 0


@dataclass(frozen=True)
class Float32(_MedicalFloat):
    """IEEE 11073-20601 32-bit FLOAT: 8-bit exponent, 24-bit mantissa."""

    NAME: ClassVar[str] = "FLOAT"
    MANTISSA_BITS: ClassVar[int] = 24
    EXPONENT_BITS: ClassVar[int] = 8
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<I")
    MANTISSA_DIGITS: ClassVar[int] = 6  # 8388607 has 7 digits


def decode_sfloat(data: BytesLike, *, characteristic: str = "") -> SFloat:
    """Decode a 2-byte SFLOAT."""
    return SFloat.from_bytes(data, characteristic=characteristic)


def encode_sfloat(value: SFloat) -> bytes:
    """Encode an SFLOAT to its 2 bytes."""
    return value.to_bytes()


def decode_float(data: BytesLike, *, characteristic: str = "") -> Float32:
    """Decode a 4-byte FLOAT."""
    return Float32.from_bytes(data, characteristic=characteristic)


def encode_float(value: Float32) -> bytes:
    """Encode a FLOAT to its 4 bytes."""
    return value.to_bytes()
