"""Vigil's boundary with sensor firmware: spec-exact codecs for Bluetooth SIG characteristics.

Pure functions over bytes: nothing here performs I/O or imports bleak, asyncio, paho or sqlite.
"""
