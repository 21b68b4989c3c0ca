"""A seeded fuzzer for the decoders: random and mutated payloads, and what escaped.

``run(n, seed)`` feeds ``n`` payloads, spread round-robin over the targets, to each decoder and counts the
outcomes. A payload may be decoded or rejected with a ``CodecError``; anything else is *unexpected*:

* any other exception escaping a decoder (``IndexError``, ``struct.error``, ``ValueError``, ...), and
  ``EncodeError``, which a decoder raises only when it built a value its own type rejects;
* a decoded payload whose encoding differs from the payload (the decoder returned a wrong value);
* a registry dict that is not strict JSON (NaN or infinity slipped through).

Payloads are random bytes, or valid payloads built by the encoders and then mutated: bits flipped, bytes
replaced, inserted or deleted, the payload cut short or extended, two payloads concatenated. The same
``seed`` gives the same payloads. Nothing here performs I/O; the CLI prints the report.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from firmware_bridge.battery import decode_battery_level, encode_battery_level
from firmware_bridge.body_sensor_location import (
    BodySensorLocation,
    decode_body_sensor_location,
    encode_body_sensor_location,
)
from firmware_bridge.cgm import (
    CalTempOctet,
    CgmMeasurementRecord,
    SensorStatusAnnunciation,
    StatusOctet,
    WarningOctet,
    decode_cgm_measurement,
    encode_cgm_measurement,
)
from firmware_bridge.cgm_feature import (
    CgmFeature,
    CgmFeatureFlags,
    CgmSampleLocation,
    CgmType,
    decode_cgm_feature,
    encode_cgm_feature,
)
from firmware_bridge.cgm_session import (
    CgmSessionRunTime,
    CgmSessionStartTime,
    DstOffset,
    decode_cgm_session_run_time,
    decode_cgm_session_start_time,
    encode_cgm_session_run_time,
    encode_cgm_session_start_time,
)
from firmware_bridge.cgm_status import CgmStatus, decode_cgm_status, encode_cgm_status
from firmware_bridge.device_information import (
    MAX_ATTRIBUTE_OCTETS,
    DeviceInfoField,
    DeviceInfoString,
    decode_device_info_string,
    encode_device_info_string,
)
from firmware_bridge.errors import CodecError, EncodeError
from firmware_bridge.heart_rate import (
    HeartRateMeasurement,
    HeartRateValueFormat,
    SensorContact,
    decode_heart_rate_measurement,
    encode_heart_rate_measurement,
)
from firmware_bridge.heart_rate_control_point import (
    HeartRateControlOpCode,
    decode_heart_rate_control_point,
    encode_heart_rate_control_point,
)
from firmware_bridge.registry import DECODERS, decode_to_dict
from firmware_bridge.sfloat import Float32, SFloat, decode_float, decode_sfloat
from firmware_bridge.uuids import short_uuid, uuid16_to_128

_T = TypeVar("_T")

MAX_EXAMPLES = 50
"""Unexpected outcomes kept verbatim in a report (all are counted)."""


@dataclass(frozen=True)
class FuzzTarget:
    """A decoder under test.

    ``check`` receives the payload and the decoded value and returns a problem in words, or ``None``.
    """

    name: str
    decode: Callable[[bytes], object]
    seeds: tuple[bytes, ...]
    check: Callable[[bytes, object], str | None] | None = None


@dataclass(frozen=True)
class CodecTally:
    decoded: int = 0
    rejected: int = 0
    unexpected: int = 0


@dataclass(frozen=True)
class Unexpected:
    target: str
    payload_hex: str
    problem: str


@dataclass(frozen=True)
class FuzzReport:
    n: int
    seed: int
    tallies: Mapping[str, CodecTally]
    unexpected_count: int
    examples: tuple[Unexpected, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.unexpected_count == 0


def _round_trip(encode: Callable[[object], bytes]) -> Callable[[bytes, object], str | None]:
    def check(payload: bytes, decoded: object) -> str | None:
        again = encode(decoded)
        if again != payload:
            return f"round trip gave {again.hex()}"
        return None

    return check


def _strict_json(payload: bytes, decoded: object) -> str | None:
    try:
        json.dumps(decoded, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"not strict JSON: {exc}"
    return None


def _heart_rate_seeds() -> tuple[bytes, ...]:
    seeds = []
    for flags in range(32):
        measurement = HeartRateMeasurement(
            hr_bpm=300 if flags & 1 else 62,
            value_format=HeartRateValueFormat(flags & 1),
            sensor_contact=(SensorContact.UNSUPPORTED, SensorContact.NOT_DETECTED, SensorContact.DETECTED)[
                (flags >> 1) % 3
            ],
            energy_expended_kj=1234 if flags & 8 else None,
            rr_intervals=tuple(range(900, 900 + 7 * (flags % 4), 7)) if flags & 16 else None,
        )
        seeds.append(encode_heart_rate_measurement(measurement))
    return tuple(seeds)


def _cgm_seeds() -> tuple[bytes, ...]:
    seeds = []
    for variant in range(64):
        record = CgmMeasurementRecord(
            glucose=SFloat.from_value((97, 97.5, 250, 39, 401, 120.2)[variant % 6]),
            time_offset_min=variant * 5,
            status=StatusOctet.DEVICE_BATTERY_LOW if variant & 1 else None,
            cal_temp=CalTempOctet(0x14) if variant & 2 else None,
            warning=WarningOctet.RESULT_LOWER_THAN_HYPO_LEVEL if variant & 4 else None,
            trend=SFloat.from_value(-1.5) if variant & 8 else None,
            quality=SFloat.from_value(99.7) if variant & 16 else None,
            has_crc=bool(variant & 32),
        )
        seeds.append(encode_cgm_measurement([record]))
    seeds.append(seeds[5] + seeds[40])
    return tuple(seeds)


def _cgm_feature_seeds() -> tuple[bytes, ...]:
    seeds = []
    locations = tuple(CgmSampleLocation)
    for variant, cgm_type in enumerate(CgmType):
        location = locations[variant % len(locations)]
        features = CgmFeatureFlags((0x1_F00F * (variant + 1)) & 0x1FFFF)
        if variant % 2:
            features |= CgmFeatureFlags.E2E_CRC_SUPPORTED
        else:
            features &= ~CgmFeatureFlags.E2E_CRC_SUPPORTED
        seeds.append(encode_cgm_feature(CgmFeature(features, cgm_type, location)))
    return tuple(seeds)


def _cgm_status_seeds() -> tuple[bytes, ...]:
    return tuple(
        encode_cgm_status(CgmStatus(offset, SensorStatusAnnunciation(bits), has_crc))
        for offset, bits, has_crc in ((0, 0, False), (5, 0x010101, True), (1440, 0xFF3F3F, False), (65535, 2, True))
    )


def _cgm_start_time_seeds() -> tuple[bytes, ...]:
    return tuple(
        encode_cgm_session_start_time(CgmSessionStartTime(*fields))
        for fields in (
            (2018, 4, 24, 13, 8, 24, 8, DstOffset.DAYLIGHT_TIME, True),
            (0, 4, 24, 13, 8, 24, 8, DstOffset.HALF_AN_HOUR_DAYLIGHT_TIME, False),
            (2024, 2, 29, 23, 59, 59, -128, DstOffset.UNKNOWN, True),
            (1582, 12, 31, 0, 0, 0, -48, DstOffset.STANDARD_TIME, False),
            (9999, 0, 0, 12, 30, 0, 56, DstOffset.DOUBLE_DAYLIGHT_TIME, True),
        )
    )


def _device_info_seeds() -> tuple[bytes, ...]:
    # The long seeds sit at the 512-octet limit, so that lengthening mutations cross it.
    return (b"", b"Tacx", b"T1994", b"V1.05", "Ger\u00e4t \u2665".encode(), b"\xff\xfe", b"A" * MAX_ATTRIBUTE_OCTETS)


def default_targets() -> tuple[FuzzTarget, ...]:
    """Every decoder in the package, with valid seed payloads and its oracle."""
    cgm_seeds = _cgm_seeds()
    registry_keys = tuple(DECODERS)
    registry_seeds = {
        "2A37": _heart_rate_seeds()[22],
        "2A38": b"\x01",
        "2A39": b"\x01",
        "2A19": b"\x55",
        "2A29": b"Tacx",
        "2AA7": cgm_seeds[63],
        "2AA8": _cgm_feature_seeds()[1],
        "2AA9": _cgm_status_seeds()[1],
        "2AAA": _cgm_start_time_seeds()[0],
        "2AAB": b"\x02\x00\x08\xc3",
    }

    def registry_decode(payload: bytes) -> object:
        # The first byte picks the characteristic so that mutations explore all of them.
        key = registry_keys[payload[0] % len(registry_keys)] if payload else registry_keys[0]
        return decode_to_dict(key, payload[1:])

    def uuid_decode(payload: bytes) -> object:
        return short_uuid(payload.decode("latin-1"))

    def uuid_check(payload: bytes, decoded: object) -> str | None:
        assert isinstance(decoded, str)
        return None if short_uuid(uuid16_to_128(decoded)) == decoded else "128-bit round trip differs"

    sfloat_seeds = (
        *(SFloat.from_value(v).to_bytes() for v in (97, 97.5, 0.1, -3, 2045, 1e9)),
        b"\xff\x07",  # NaN
        b"\x00\x08",  # NRes
    )
    return (
        FuzzTarget(
            "heart_rate",
            decode_heart_rate_measurement,
            _heart_rate_seeds(),
            _round_trip(lambda m: encode_heart_rate_measurement(_as(m, HeartRateMeasurement))),
        ),
        FuzzTarget(
            "battery",
            decode_battery_level,
            tuple(bytes([level]) for level in (0, 1, 50, 99, 100)),
            _round_trip(lambda level: encode_battery_level(_as(level, int))),
        ),
        FuzzTarget(
            "body_sensor_location",
            decode_body_sensor_location,
            tuple(encode_body_sensor_location(location) for location in BodySensorLocation),
            _round_trip(lambda location: encode_body_sensor_location(_as(location, BodySensorLocation))),
        ),
        FuzzTarget(
            "heart_rate_control_point",
            decode_heart_rate_control_point,
            (encode_heart_rate_control_point(HeartRateControlOpCode.RESET_ENERGY_EXPENDED),),
            _round_trip(lambda op_code: encode_heart_rate_control_point(_as(op_code, HeartRateControlOpCode))),
        ),
        FuzzTarget(
            "device_information",
            lambda payload: decode_device_info_string(DeviceInfoField.FIRMWARE_REVISION, payload),
            _device_info_seeds(),
            _round_trip(lambda value: encode_device_info_string(_as(value, DeviceInfoString))),
        ),
        FuzzTarget(
            "cgm",
            decode_cgm_measurement,
            cgm_seeds,
            _round_trip(lambda records: encode_cgm_measurement(_as(records, tuple))),
        ),
        FuzzTarget(
            "cgm_require_crc",
            lambda payload: decode_cgm_measurement(payload, require_crc=True),
            cgm_seeds[32:64],  # the seeds built with has_crc
            _round_trip(lambda records: encode_cgm_measurement(_as(records, tuple))),
        ),
        FuzzTarget(
            "cgm_feature",
            decode_cgm_feature,
            _cgm_feature_seeds(),
            _round_trip(lambda feature: encode_cgm_feature(_as(feature, CgmFeature))),
        ),
        FuzzTarget(
            "cgm_status",
            decode_cgm_status,
            _cgm_status_seeds(),
            _round_trip(lambda status: encode_cgm_status(_as(status, CgmStatus))),
        ),
        FuzzTarget(
            "cgm_session_start_time",
            decode_cgm_session_start_time,
            _cgm_start_time_seeds(),
            _round_trip(lambda start: encode_cgm_session_start_time(_as(start, CgmSessionStartTime))),
        ),
        FuzzTarget(
            "cgm_session_run_time",
            decode_cgm_session_run_time,
            tuple(
                encode_cgm_session_run_time(CgmSessionRunTime(hours, has_crc))
                for hours, has_crc in ((0, False), (2, True), (336, False), (65535, True))
            ),
            _round_trip(lambda run_time: encode_cgm_session_run_time(_as(run_time, CgmSessionRunTime))),
        ),
        FuzzTarget("sfloat", decode_sfloat, sfloat_seeds, _round_trip(lambda v: _as(v, SFloat).to_bytes())),
        FuzzTarget(
            "float32",
            decode_float,
            tuple(Float32.from_value(v).to_bytes() for v in (120.25, -0.001, 8e6)),
            _round_trip(lambda v: _as(v, Float32).to_bytes()),
        ),
        FuzzTarget(
            "registry",
            registry_decode,
            tuple(bytes([registry_keys.index(key)]) + seed for key, seed in registry_seeds.items()),
            _strict_json,
        ),
        FuzzTarget(
            "uuid",
            uuid_decode,
            (b"2a37", b"0x2A19", b"00002aa7-0000-1000-8000-00805f9b34fb", b"0000180d"),
            uuid_check,
        ),
    )


def _as(value: object, kind: type[_T]) -> _T:
    if not isinstance(value, kind):
        raise TypeError(f"decoder returned {type(value).__name__}, expected {kind.__name__}")
    return value


def _mutate(rng: random.Random, payload: bytes, seeds: Sequence[bytes]) -> bytes:
    data = bytearray(payload)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        action = rng.randrange(8)
        if action == 0 and data:  # flip one bit
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif action == 1 and data:  # replace a byte, favouring boundary values
            data[rng.randrange(len(data))] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, rng.randrange(256)))
        elif action == 2:  # insert a byte
            data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        elif action == 3 and data:  # delete a byte
            del data[rng.randrange(len(data))]
        elif action == 4:  # cut short
            del data[rng.randrange(len(data) + 1) :]
        elif action == 5:  # extend
            data += rng.randbytes(rng.randrange(1, 5))
        elif action == 6:  # concatenate another valid payload
            data += rng.choice(seeds)
        elif action == 7 and data:  # rewrite the first byte (flags, Size, ...)
            data[0] = rng.randrange(256)
    return bytes(data)


def _payload(rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    roll = rng.random()
    if roll < 0.25 or not seeds:
        return rng.randbytes(rng.randrange(0, 40))
    seed = rng.choice(seeds)
    if roll < 0.30:
        return seed
    return _mutate(rng, seed, seeds)


def run(n: int, seed: int, *, targets: Sequence[FuzzTarget] | None = None) -> FuzzReport:
    """Fuzz ``n`` payloads (round-robin over ``targets``, default: all decoders) from ``seed``."""
    chosen = tuple(targets) if targets is not None else default_targets()
    rng = random.Random(seed)
    counts = {target.name: [0, 0, 0] for target in chosen}
    examples: list[Unexpected] = []
    unexpected_count = 0
    for index in range(n):
        target = chosen[index % len(chosen)]
        payload = _payload(rng, target.seeds)
        problem: str | None
        try:
            decoded = target.decode(payload)
        except EncodeError as exc:  # a decoder built an invalid value: a bug, not a rejection
            problem = f"decoder raised EncodeError: {exc}"
        except CodecError:
            counts[target.name][1] += 1
            continue
        except Exception as exc:  # the point of the exercise: anything that is not a CodecError
            problem = f"{type(exc).__name__}: {exc}"
        else:
            try:
                problem = target.check(payload, decoded) if target.check else None
            except Exception as exc:  # an encoder choking on a decoded value is a finding too
                problem = f"check raised {type(exc).__name__}: {exc}"
            if problem is None:
                counts[target.name][0] += 1
                continue
        counts[target.name][2] += 1
        unexpected_count += 1
        if len(examples) < MAX_EXAMPLES:
            examples.append(Unexpected(target.name, payload.hex(), problem[:300]))
    tallies = {name: CodecTally(*tally) for name, tally in counts.items()}
    return FuzzReport(n, seed, MappingProxyType(tallies), unexpected_count, tuple(examples))
