"""Vigil's simulator: virtual BLE peripherals served through a bleak backend, wearer scenarios with ground
truth, replay and scoring."""
