"""Vigil's boundary with sensor firmware: spec-exact codecs for Bluetooth SIG characteristics.

Pure functions over bytes: nothing here performs I/O or imports bleak, asyncio, paho or sqlite.

    errors                    the CodecError tree (drawn in its docstring)
    uuids                     SIG 16-bit UUIDs; 16 <-> 128-bit conversion
    sfloat                    IEEE 11073-20601 SFLOAT / FLOAT, special values included
    crc                       the CGMS E2E-CRC (CRC-16/MCRF4XX)
    heart_rate                Heart Rate Measurement 0x2A37
    body_sensor_location      Body Sensor Location 0x2A38
    heart_rate_control_point  Heart Rate Control Point 0x2A39
    battery                   Battery Level 0x2A19
    device_information        Device Information strings 0x2A24-0x2A29 (UTF-8)
    cgm                       CGM Measurement 0x2AA7 (several records per notification, E2E-CRC)
    cgm_feature               CGM Feature 0x2AA8
    cgm_status                CGM Status 0x2AA9
    cgm_session               CGM Session Start Time 0x2AAA and Session Run Time 0x2AAB
    registry                  characteristic -> JSON-ready dict
    fuzz                      seeded fuzzing of every decoder (``run(n, seed) -> FuzzReport``)
    bench                     decodes per second (``python -m firmware_bridge.bench``; prints only when run)

Every decoder has an encoder, and ``encode(decode(b)) == b`` for every payload a decoder accepts. Decoders
raise only ``CodecError`` subclasses.
"""
