"""Plain records that pass between the agent's parts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RawNotification:
    """One GATT notification (or read) as the BLE link received it, before decoding.

    ``characteristic`` is the 16-bit UUID in upper-case hex ("2A37"); ``received_at`` is the agent clock's time
    in epoch seconds when the bytes arrived.
    """

    wearer: str
    device: str
    characteristic: str
    data: bytes
    received_at: float
