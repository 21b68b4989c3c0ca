"""The exception tree: shape, attributes, and that the errors survive pickling (logging queues)."""

from __future__ import annotations

import pickle

import pytest

from firmware_bridge import errors
from firmware_bridge.errors import (
    CodecError,
    CrcError,
    CrcMismatchError,
    CrcMissingError,
    EncodeError,
    InvalidUuidError,
    OverlongError,
    ReservedValueError,
    SizeMismatchError,
    TruncatedError,
    UnknownCharacteristicError,
)

TREE = {
    TruncatedError: CodecError,
    OverlongError: CodecError,
    SizeMismatchError: CodecError,
    CrcError: CodecError,
    CrcMismatchError: CrcError,
    CrcMissingError: CrcError,
    ReservedValueError: CodecError,
    EncodeError: CodecError,
    UnknownCharacteristicError: CodecError,
    InvalidUuidError: UnknownCharacteristicError,
}


@pytest.mark.parametrize(("child", "parent"), TREE.items())
def test_each_error_sits_under_its_parent(child: type[CodecError], parent: type[CodecError]) -> None:
    assert child.__mro__[1] is parent


def test_every_public_error_is_in_the_tree() -> None:
    public = {
        obj
        for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, Exception) and not name.startswith("_")
    }
    assert public == set(TREE) | {CodecError}


def test_decode_errors_are_not_value_errors_but_encode_and_uuid_errors_are() -> None:
    assert not issubclass(TruncatedError, ValueError)
    assert not issubclass(ReservedValueError, ValueError)
    assert issubclass(EncodeError, ValueError)
    assert issubclass(InvalidUuidError, ValueError)


def test_attributes_are_kept() -> None:
    error = TruncatedError("2A37", bytearray(b"\x01\x02"), "cut short", offset=1)
    assert error.characteristic == "2A37"
    assert error.data == b"\x01\x02"
    assert type(error.data) is bytes
    assert error.reason == "cut short"
    assert error.offset == 1


@pytest.mark.parametrize(
    "error",
    [
        TruncatedError("2A37", b"\x10", "x", offset=1),
        SizeMismatchError("2AA7", b"\x07\x00", "y"),
        CrcMismatchError("2AA7", b"\x08", "z", received=0x6F58, computed=0x6F59, offset=6),
        InvalidUuidError("nope", b"", "not a UUID"),
    ],
)
def test_errors_survive_pickling(error: CodecError) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert (again.characteristic, again.data, again.reason, again.offset) == (
        error.characteristic,
        error.data,
        error.reason,
        error.offset,
    )
    if isinstance(error, CrcMismatchError):
        assert isinstance(again, CrcMismatchError)
        assert (again.received, again.computed) == (0x6F58, 0x6F59)
