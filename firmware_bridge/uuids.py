"""Bluetooth SIG 16-bit UUIDs used by Vigil, and conversions between their spellings.

A 16-bit SIG UUID ``xxxx`` stands for the 128-bit UUID ``0000xxxx-0000-1000-8000-00805f9b34fb`` (Core
Specification, Vol 3, Part B, 2.5.1). bleak reports 128-bit strings; the codecs are keyed by the upper-case
16-bit hex form (``"2A37"``), which is what ``short_uuid`` returns.

``short_uuid`` raises ``InvalidUuidError`` (a ``CodecError`` and a ``ValueError``) for text that is not a
SIG UUID: a vendor 128-bit UUID, a 32-bit SIG UUID whose upper 16 bits are not zero, or not a UUID at all.
"""

from __future__ import annotations

import re
from enum import IntEnum

from firmware_bridge.errors import InvalidUuidError

SIG_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"
"""The part of the Bluetooth base UUID after the first 32 bits."""


class ServiceUuid(IntEnum):
    """Services Vigil talks to."""

    DEVICE_INFORMATION = 0x180A
    HEART_RATE = 0x180D
    BATTERY = 0x180F
    CONTINUOUS_GLUCOSE_MONITORING = 0x181F


class CharacteristicUuid(IntEnum):
    """Characteristics Vigil reads, writes or subscribes to."""

    BATTERY_LEVEL = 0x2A19
    MODEL_NUMBER_STRING = 0x2A24
    SERIAL_NUMBER_STRING = 0x2A25
    FIRMWARE_REVISION_STRING = 0x2A26
    HARDWARE_REVISION_STRING = 0x2A27
    SOFTWARE_REVISION_STRING = 0x2A28
    MANUFACTURER_NAME_STRING = 0x2A29
    HEART_RATE_MEASUREMENT = 0x2A37
    BODY_SENSOR_LOCATION = 0x2A38
    HEART_RATE_CONTROL_POINT = 0x2A39
    RECORD_ACCESS_CONTROL_POINT = 0x2A52
    CGM_MEASUREMENT = 0x2AA7
    CGM_FEATURE = 0x2AA8
    CGM_STATUS = 0x2AA9
    CGM_SESSION_START_TIME = 0x2AAA
    CGM_SESSION_RUN_TIME = 0x2AAB
    CGM_SPECIFIC_OPS_CONTROL_POINT = 0x2AAC


_HEX16 = re.compile(r"(?:0x)?([0-9a-f]{4})")
_HEX32 = re.compile(r"(?:0x)?([0-9a-f]{8})")
_UUID128 = re.compile(r"\{?([0-9a-f]{8})(-0000-1000-8000-00805f9b34fb)\}?")
_ANY128 = re.compile(r"\{?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}?")


def hex16(value: int) -> str:
    """The upper-case 4-digit hex spelling of a 16-bit UUID: ``0x2a37`` -> ``"2A37"``."""
    if not 0 <= value <= 0xFFFF:
        raise InvalidUuidError(str(value), b"", "not a 16-bit UUID (0x0000-0xFFFF)")
    return f"{value:04X}"


def uuid16_to_128(value: int | str) -> str:
    """The 128-bit string of a 16-bit SIG UUID: ``0x2A37`` -> ``"00002a37-0000-1000-8000-00805f9b34fb"``.

    Accepts an int or any spelling ``short_uuid`` accepts.
    """
    short = short_uuid(value) if isinstance(value, str) else hex16(value)
    return f"0000{short.lower()}{SIG_BASE_SUFFIX}"


def short_uuid(text: str) -> str:
    """The upper-case 16-bit hex form (``"2A37"``) of a SIG UUID written as 16-, 32- or 128-bit text.

    Case-insensitive; accepts ``"2a37"``, ``"0x2A37"``, ``"00002a37"`` and
    ``"00002a37-0000-1000-8000-00805f9b34fb"`` (braces allowed). Raises ``InvalidUuidError`` otherwise.
    """
    cleaned = text.strip().lower()
    match = _HEX16.fullmatch(cleaned)
    if match:
        return match.group(1).upper()
    match = _HEX32.fullmatch(cleaned) or _UUID128.fullmatch(cleaned)
    if match:
        value32 = int(match.group(1), 16)
        if value32 > 0xFFFF:
            raise InvalidUuidError(text, b"", "a 32-bit SIG UUID, not a 16-bit one")
        return hex16(value32)
    if _ANY128.fullmatch(cleaned):
        raise InvalidUuidError(text, b"", "a 128-bit UUID outside the Bluetooth SIG base (vendor UUID)")
    raise InvalidUuidError(text, b"", "not a UUID")
