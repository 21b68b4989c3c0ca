"""Characteristic UUID -> decoder giving JSON-ready dicts, for the agent, the store and ``vigil watch``.

Field names (stable; other parts of Vigil key on them):

    2A37  hr_bpm, sensor_contact ("unsupported" | "not_detected" | "detected"),
          energy_expended_kj (null when absent), rr_intervals_s (list of seconds, [] when absent)
    2A19  battery_pct
    2AA7  glucose_mg_dl, time_offset_min, trend_mg_dl_per_min (null when absent), quality_pct (null when
          absent), crc_ok (true when the record carried a matching E2E-CRC, null when it carried none; a
          wrong CRC raises CrcMismatchError instead), status_annunciation (list of flag names, see
          ``cgm.annunciation_names``), special_values ({field: "nan" | "nres" | "+inf" | "-inf"} for SFLOAT
          fields holding an IEEE 11073 special value; such a field itself is null, since JSON has no NaN).
          One record gives its dict; several records give {"records": [dict, ...]}.

The characteristic may be written "2A37", "2a37", "0x2A37" or as the 128-bit SIG UUID. Anything without a
codec raises ``UnknownCharacteristicError``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from firmware_bridge.battery import decode_battery_level
from firmware_bridge.cgm import CgmMeasurementRecord, decode_cgm_measurement
from firmware_bridge.errors import BytesLike, InvalidUuidError, UnknownCharacteristicError
from firmware_bridge.heart_rate import decode_heart_rate_measurement
from firmware_bridge.sfloat import SFloat
from firmware_bridge.uuids import CharacteristicUuid, hex16, short_uuid

DictDecoder = Callable[[bytes], dict[str, object]]


def _heart_rate(data: bytes) -> dict[str, object]:
    m = decode_heart_rate_measurement(data)
    return {
        "hr_bpm": m.hr_bpm,
        "sensor_contact": m.sensor_contact.value,
        "energy_expended_kj": m.energy_expended_kj,
        "rr_intervals_s": list(m.rr_intervals_s),
    }


def _battery(data: bytes) -> dict[str, object]:
    return {"battery_pct": decode_battery_level(data)}


def _cgm(data: bytes) -> dict[str, object]:
    records = [_cgm_record(record) for record in decode_cgm_measurement(data)]
    return records[0] if len(records) == 1 else {"records": records}


def _cgm_record(record: CgmMeasurementRecord) -> dict[str, object]:
    special: dict[str, str] = {}

    def number(name: str, value: SFloat | None) -> float | None:
        if value is None:
            return None
        if value.special is not None:
            special[name] = value.special.value
            return None
        return value.value

    return {
        "glucose_mg_dl": number("glucose_mg_dl", record.glucose),
        "time_offset_min": record.time_offset_min,
        "trend_mg_dl_per_min": number("trend_mg_dl_per_min", record.trend),
        "quality_pct": number("quality_pct", record.quality),
        "crc_ok": True if record.has_crc else None,
        "status_annunciation": record.status_names(),
        "special_values": special,
    }


DECODERS: Mapping[str, DictDecoder] = MappingProxyType(
    {
        hex16(CharacteristicUuid.HEART_RATE_MEASUREMENT): _heart_rate,
        hex16(CharacteristicUuid.BATTERY_LEVEL): _battery,
        hex16(CharacteristicUuid.CGM_MEASUREMENT): _cgm,
    }
)
"""Upper-case 16-bit UUID -> decoder; read-only."""


def decode_to_dict(characteristic: str, data: BytesLike) -> dict[str, object]:
    """Decode ``data`` from ``characteristic`` into a JSON-ready dict (see the module docstring)."""
    data = bytes(data)
    try:
        key = short_uuid(characteristic)
    except InvalidUuidError as exc:  # an UnknownCharacteristicError; re-raised to carry the payload
        raise InvalidUuidError(characteristic, data, exc.reason) from exc
    decoder = DECODERS.get(key)
    if decoder is None:
        raise UnknownCharacteristicError(key, data, f"no decoder registered for characteristic {key}")
    return decoder(data)
