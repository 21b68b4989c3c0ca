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
    2A52  op_code, operator (snake_case names, e.g. "report_stored_records", "greater_than_or_equal_to");
          requests add filter_type ("time_offset" or null), time_offset_from_min, time_offset_to_min (null
          when not part of the filter); number_of_records; or request_op_code and response_code (names;
          an unknown request op code as "reserved_0xNN"). See ``racp``.
    2AAC  op_code, crc_ok, and the op code's operand: communication_interval_min, calibration_record_number,
          alert_level_mg_dl or alert_level_mg_dl_per_min (with special_values), calibration ({glucose_mg_dl,
          calibration_time_min, sample_type, sample_location, next_calibration_time_min, record_number,
          status}, with special_values), or request_op_code and response_code. See ``socp``.
    2A38  body_sensor_location (the numeric code), body_sensor_location_name ("chest", ...)
    2A39  op_code (the numeric value), op_code_name ("reset_energy_expended")
    2A29 manufacturer_name, 2A24 model_number, 2A25 serial_number, 2A27 hardware_revision,
    2A26 firmware_revision, 2A28 software_revision: the text (invalid UTF-8 replaced by U+FFFD), and
          utf8_valid (false when something was replaced; see ``device_information``)
    2AA8  features (list of flag names), cgm_type and sample_location (numeric codes) with
          cgm_type_name and sample_location_name, e2e_crc_supported, crc_ok (true when the E2E-CRC matched,
          null when the sensor does not support E2E-CRC)
    2AA9  time_offset_min, status_annunciation (as for 2AA7), crc_ok
    2AAA  session_start_time (ISO 8601 local time, with its UTC offset when time zone and DST are known;
          null when year, month or day is not known), year, month, day (null when not known), hours,
          minutes, seconds, time_zone_min, dst_offset_min (null when not known), crc_ok
    2AAB  session_run_time_h, crc_ok

``crc_ok`` is true when the payload carried a matching E2E-CRC and null when it carried none (a wrong CRC
raises ``CrcMismatchError``); for these characteristics the length says whether a CRC is present.

The characteristic may be written "2A37", "2a37", "0x2A37" or as the 128-bit SIG UUID. Anything without a
codec raises ``UnknownCharacteristicError``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from firmware_bridge.battery import decode_battery_level
from firmware_bridge.body_sensor_location import decode_body_sensor_location
from firmware_bridge.cgm import CgmMeasurementRecord, decode_cgm_measurement
from firmware_bridge.cgm_feature import decode_cgm_feature
from firmware_bridge.cgm_session import decode_cgm_session_run_time, decode_cgm_session_start_time
from firmware_bridge.cgm_status import decode_cgm_status
from firmware_bridge.device_information import DeviceInfoField, decode_device_info_string
from firmware_bridge.errors import BytesLike, InvalidUuidError, UnknownCharacteristicError
from firmware_bridge.heart_rate import decode_heart_rate_measurement
from firmware_bridge.heart_rate_control_point import decode_heart_rate_control_point
from firmware_bridge.racp import racp_to_dict
from firmware_bridge.sfloat import SFloat
from firmware_bridge.socp import socp_to_dict
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


def _body_sensor_location(data: bytes) -> dict[str, object]:
    location = decode_body_sensor_location(data)
    return {"body_sensor_location": int(location), "body_sensor_location_name": location.name.lower()}


def _heart_rate_control_point(data: bytes) -> dict[str, object]:
    op_code = decode_heart_rate_control_point(data)
    return {"op_code": int(op_code), "op_code_name": op_code.name.lower()}


def _device_info(field: DeviceInfoField) -> DictDecoder:
    def decode(data: bytes) -> dict[str, object]:
        value = decode_device_info_string(field, data)
        return {field.json_name: value.text, "utf8_valid": value.utf8_valid}

    return decode


def _crc_ok(has_crc: bool) -> bool | None:
    return True if has_crc else None


def _cgm_feature(data: bytes) -> dict[str, object]:
    feature = decode_cgm_feature(data)
    return {
        "features": feature.feature_names(),
        "cgm_type": int(feature.cgm_type),
        "cgm_type_name": feature.cgm_type.name.lower(),
        "sample_location": int(feature.sample_location),
        "sample_location_name": feature.sample_location.name.lower(),
        "e2e_crc_supported": feature.e2e_crc_supported,
        "crc_ok": _crc_ok(feature.e2e_crc_supported),
    }


def _cgm_status(data: bytes) -> dict[str, object]:
    status = decode_cgm_status(data)
    return {
        "time_offset_min": status.time_offset_min,
        "status_annunciation": status.status_names(),
        "crc_ok": _crc_ok(status.has_crc),
    }


def _cgm_session_start_time(data: bytes) -> dict[str, object]:
    start = decode_cgm_session_start_time(data)
    moment = start.to_datetime()
    return {
        "session_start_time": None if moment is None else moment.isoformat(),
        "year": start.year or None,
        "month": start.month or None,
        "day": start.day or None,
        "hours": start.hours,
        "minutes": start.minutes,
        "seconds": start.seconds,
        "time_zone_min": start.time_zone_min,
        "dst_offset_min": start.dst_offset_min,
        "crc_ok": _crc_ok(start.has_crc),
    }


def _cgm_session_run_time(data: bytes) -> dict[str, object]:
    run_time = decode_cgm_session_run_time(data)
    return {"session_run_time_h": run_time.hours, "crc_ok": _crc_ok(run_time.has_crc)}


DECODERS: Mapping[str, DictDecoder] = MappingProxyType(
    {
        hex16(CharacteristicUuid.HEART_RATE_MEASUREMENT): _heart_rate,
        hex16(CharacteristicUuid.BODY_SENSOR_LOCATION): _body_sensor_location,
        hex16(CharacteristicUuid.HEART_RATE_CONTROL_POINT): _heart_rate_control_point,
        hex16(CharacteristicUuid.BATTERY_LEVEL): _battery,
        **{field.characteristic: _device_info(field) for field in DeviceInfoField},
        hex16(CharacteristicUuid.CGM_MEASUREMENT): _cgm,
        hex16(CharacteristicUuid.RECORD_ACCESS_CONTROL_POINT): racp_to_dict,
        hex16(CharacteristicUuid.CGM_SPECIFIC_OPS_CONTROL_POINT): socp_to_dict,
        hex16(CharacteristicUuid.CGM_FEATURE): _cgm_feature,
        hex16(CharacteristicUuid.CGM_STATUS): _cgm_status,
        hex16(CharacteristicUuid.CGM_SESSION_START_TIME): _cgm_session_start_time,
        hex16(CharacteristicUuid.CGM_SESSION_RUN_TIME): _cgm_session_run_time,
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
