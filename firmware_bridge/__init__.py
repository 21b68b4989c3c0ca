"""Vigil's boundary with sensor firmware: spec-exact codecs for Bluetooth SIG characteristics.

Pure functions over bytes: nothing here performs I/O or imports bleak, asyncio, paho or sqlite.

    errors      the CodecError tree (drawn in its docstring)
    uuids       SIG 16-bit UUIDs; 16 <-> 128-bit conversion
    sfloat      IEEE 11073-20601 SFLOAT / FLOAT, special values included
    crc         the CGMS E2E-CRC (CRC-16/MCRF4XX)
    heart_rate  Heart Rate Measurement 0x2A37
    battery     Battery Level 0x2A19
    cgm         CGM Measurement 0x2AA7 (several records per notification, E2E-CRC)
    registry    characteristic -> JSON-ready dict
    fuzz        seeded fuzzing of every decoder (``run(n, seed) -> FuzzReport``)

Every decoder has an encoder, and ``encode(decode(b)) == b`` for every payload a decoder accepts. Decoders
raise only ``CodecError`` subclasses.
"""
