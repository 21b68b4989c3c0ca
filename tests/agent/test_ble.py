"""agent.ble: the production DeviceLink, driven through the simulator's bleak backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

import pytest

from agent.ble import DeviceLink, LinkPolicy, NearbyDevice, discover
from agent.clock import VirtualClock
from agent.config import DeviceConfig
from agent.errors import ConfigError
from agent.messages import RawNotification
from sim.bleak_backend import sim_backends
from sim.peripheral import Service, SimWorld, VirtualPeripheral, battery_service, cgm_sensor, heart_rate_strap
from sim.player import Disconnect, Event, FeedEvent, play

T = TypeVar("T")
T0 = 1_700_000_000.0
STRAP = "C0:FF:EE:00:00:01"
STRAP_2 = "C0:FF:EE:00:00:02"
CGM = "C0:FF:EE:00:00:03"
DECOY = "C0:FF:EE:00:00:04"
FAST = LinkPolicy(scan_timeout=0.02, connect_timeout=0.5, gatt_timeout=0.5, lost_after=3)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 5.0))


def hr(bpm: int) -> bytes:
    """2A37: flags 0x16 (uint8 HR, contact detected, RR present), ``bpm``, one RR of 1024/1024 s."""
    return bytes([0x16, bpm, 0x00, 0x04])


class Rig:
    """A world, its backends, a virtual clock, and recorders for what the links report."""

    def __init__(self, *peripherals: VirtualPeripheral) -> None:
        self.world = SimWorld(peripherals)
        self.backends = sim_backends(self.world)
        self.clock = VirtualClock(T0)
        self.notes: list[RawNotification] = []
        self.states: list[tuple[str, str, str]] = []
        self.sleeps: list[float] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.connect_lock = asyncio.Lock()

    def link(self, wearer: str, device: DeviceConfig, **kwargs: Any) -> DeviceLink:
        options: dict[str, Any] = {
            "scanner_backend": self.backends.scanner,
            "client_backend": self.backends.client,
            "on_state": lambda w, d, s: self.states.append((w, d, s)),
            "policy": FAST,
            "connect_lock": self.connect_lock,
            "sleep": self.sleep,
            "rand": lambda: 0.0,
        }
        options.update(kwargs)
        return DeviceLink(wearer, device, options.pop("sink", self.notes.append), self.clock, **options)

    def start(self, *links: DeviceLink) -> None:
        self.tasks.extend(asyncio.create_task(link.run()) for link in links)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results), results

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        await asyncio.sleep(0)

    async def play(self, events: Iterable[Event]) -> None:
        await play(self.world, events, self.clock)

    def of(self, device: str, characteristic: str | None = None) -> list[tuple[str, bytes, float]]:
        return [
            (n.characteristic, n.data, n.received_at)
            for n in self.notes
            if n.device == device and characteristic in (None, n.characteristic)
        ]

    def states_of(self, device: str) -> list[str]:
        return [s for _, d, s in self.states if d == device]


async def until(condition: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def test_a_strap_found_by_address_is_read_at_connect_and_streams_in_order() -> None:
    async def main() -> None:
        rig = Rig(heart_rate_strap(STRAP, "Strap-1", battery=87, body_sensor_location=1))
        link = rig.link("w1", DeviceConfig("hr_strap", address=STRAP))
        rig.start(link)
        await until(lambda: link.state == "connected", "connected")
        assert rig.of(STRAP) == [("2A38", b"\x01", T0), ("2A19", bytes([87]), T0)]
        feed = [FeedEvent(T0 + 1 + i, STRAP, "2A37", hr(60 + i)) for i in range(5)]
        feed.append(FeedEvent(T0 + 7, STRAP, "2A19", bytes([86])))
        await rig.play(feed)
        assert rig.of(STRAP)[2:] == [(e.characteristic, e.data, e.t) for e in feed]
        assert all(n.wearer == "w1" and n.device == STRAP for n in rig.notes)
        assert all(type(n.data) is bytes for n in rig.notes)
        assert rig.states == [("w1", STRAP, "connecting"), ("w1", STRAP, "connected")]
        assert (link.stats.connections, link.stats.reads, link.stats.notifications) == (1, 2, 6)
        await rig.stop()

    run(main())


def test_a_cgm_is_found_by_name_and_a_same_kind_neighbour_is_left_alone() -> None:
    async def main() -> None:
        feature = bytes([0x00, 0x10, 0x00, 0x11, 0xFF, 0xFF])
        rig = Rig(cgm_sensor(DECOY, "Glucose-8"), cgm_sensor(CGM, "Glucose-7", battery=55, feature=feature))
        link = rig.link("w1", DeviceConfig("cgm", name="Glucose-7"))
        rig.start(link)
        await until(lambda: link.state == "connected", "connected")
        assert rig.world[CGM].is_connected
        assert not rig.world[DECOY].is_connected
        assert link.address == CGM  # kept for reconnections
        await rig.play([FeedEvent(T0 + 60, CGM, "2AA7", b"\x06\x00\x64\xb0\x05\x00")])
        assert rig.of("Glucose-7") == [
            ("2AA8", feature, T0),
            ("2A19", bytes([55]), T0),
            ("2AA7", b"\x06\x00\x64\xb0\x05\x00", T0 + 60),
        ]
        await rig.stop()

    run(main())


def test_a_link_lost_mid_stream_is_reported_reconnected_and_keeps_streaming() -> None:
    async def main() -> None:
        rig = Rig(heart_rate_strap(STRAP, battery=90))
        link = rig.link("w1", DeviceConfig("hr_strap", address=STRAP))
        rig.start(link)
        await until(lambda: link.state == "connected", "connected")
        await rig.play(
            [
                FeedEvent(T0 + 1, STRAP, "2A37", hr(70)),
                FeedEvent(T0 + 2, STRAP, "2A37", hr(71)),
                Disconnect(T0 + 3, STRAP),
            ]
        )
        await until(lambda: link.stats.connections == 2, "reconnected")
        await rig.play([FeedEvent(T0 + 10, STRAP, "2A37", hr(72)), FeedEvent(T0 + 11, STRAP, "2A37", hr(73))])
        assert rig.of(STRAP, "2A37") == [
            ("2A37", hr(70), T0 + 1),
            ("2A37", hr(71), T0 + 2),
            ("2A37", hr(72), T0 + 10),
            ("2A37", hr(73), T0 + 11),
        ]
        # The battery is read again on reconnecting, at the clock's time then.
        assert [t for _, _, t in rig.of(STRAP, "2A19")] == [T0, T0 + 3]
        assert rig.states_of(STRAP) == ["connecting", "connected", "reconnecting", "connected"]
        assert rig.sleeps == [1.0]  # backoff(0) with no jitter
        assert link.stats.link_losses == 1
        await rig.stop()

    run(main())


def test_two_wearers_at_once_each_get_only_their_own_data() -> None:
    async def main() -> None:
        rig = Rig(heart_rate_strap(STRAP, "Strap-A"), heart_rate_strap(STRAP_2, "Strap-B"), cgm_sensor(CGM))
        links = [
            rig.link("w1", DeviceConfig("hr_strap", address=STRAP)),
            rig.link("w1", DeviceConfig("cgm", address=CGM)),
            rig.link("w2", DeviceConfig("hr_strap", name="Strap-B")),
        ]
        rig.start(*links)
        await until(lambda: all(link.state == "connected" for link in links), "all connected")
        feed: list[Event] = []
        for i in range(10):
            feed.append(FeedEvent(T0 + i, STRAP, "2A37", hr(60 + i)))
            feed.append(FeedEvent(T0 + i + 0.5, STRAP_2, "2A37", hr(100 + i)))
        feed.append(FeedEvent(T0 + 20, CGM, "2AA7", b"\x06\x00\x50\xb0\x05\x00"))
        await rig.play(feed)
        w1_hr = [n for n in rig.notes if n.wearer == "w1" and n.characteristic == "2A37"]
        w2_hr = [n for n in rig.notes if n.wearer == "w2" and n.characteristic == "2A37"]
        assert [n.data[1] for n in w1_hr] == list(range(60, 70))
        assert [n.data[1] for n in w2_hr] == list(range(100, 110))
        assert {n.device for n in w1_hr} == {STRAP}
        assert {n.device for n in w2_hr} == {"Strap-B"}
        assert [n.received_at for n in w2_hr] == [T0 + i + 0.5 for i in range(10)]
        assert [(n.wearer, n.device) for n in rig.notes if n.characteristic == "2AA7"] == [("w1", CGM)]
        await rig.stop()

    run(main())


def test_a_silent_device_is_retried_with_backoff_reported_lost_and_found_again() -> None:
    async def main() -> None:
        rig = Rig(heart_rate_strap(STRAP, advertising=False), heart_rate_strap(STRAP_2))
        silent = rig.link("w1", DeviceConfig("hr_strap", address=STRAP))
        healthy = rig.link("w2", DeviceConfig("hr_strap", address=STRAP_2))
        rig.start(silent, healthy)
        await until(lambda: silent.stats.attempts >= 5, "five attempts")
        assert rig.states_of(STRAP) == ["connecting", "lost"]  # lost after FAST.lost_after = 3 failures
        assert rig.sleeps[:4] == [1.0, 2.0, 4.0, 8.0]  # only the silent link sleeps; rand() = 0: no jitter
        assert silent.last_error is not None
        assert "not found" in silent.last_error.reason
        # Meanwhile the other wearer's strap streams undisturbed.
        await rig.play([FeedEvent(T0 + 1, STRAP_2, "2A37", hr(66))])
        assert rig.of(STRAP_2, "2A37") == [("2A37", hr(66), T0 + 1)]
        # Back in range: found on the next attempt.
        rig.world[STRAP].set_advertising(True)
        await until(lambda: silent.state == "connected", "connected")
        assert rig.states_of(STRAP) == ["connecting", "lost", "connected"]
        assert silent.last_error is None
        assert rig.states_of(STRAP_2) == ["connecting", "connected"]
        await rig.stop()

    run(main())


def test_a_flapping_link_backs_off_but_a_stable_one_retries_at_once() -> None:
    async def flaps(stable_after: float) -> list[float]:
        rig = Rig(heart_rate_strap(STRAP))
        policy = LinkPolicy(scan_timeout=0.02, stable_after=stable_after)
        link = rig.link("w1", DeviceConfig("hr_strap", address=STRAP), policy=policy)
        rig.start(link)
        for n in range(1, 4):
            await until(lambda: link.stats.connections == n and link.state == "connected", "connected")  # noqa: B023
            rig.world[STRAP].disconnect()
        await until(lambda: len(rig.sleeps) == 3, "three backoffs")
        await rig.stop()
        assert rig.states_of(STRAP).count("lost") == 0  # flapping is not lost: it connects every time
        return rig.sleeps

    assert run(flaps(stable_after=30.0)) == [1.0, 2.0, 4.0]
    assert run(flaps(stable_after=0.0)) == [1.0, 1.0, 1.0]


def test_a_device_without_the_required_characteristic_is_refused_and_released() -> None:
    async def main() -> None:
        battery_only = VirtualPeripheral(STRAP, "Not-a-strap", [battery_service(50)])
        rig = Rig(battery_only)
        link = rig.link("w1", DeviceConfig("hr_strap", address=STRAP))
        rig.start(link)
        await until(lambda: link.state == "lost", "lost")
        assert link.last_error is not None
        assert "2A37" in link.last_error.reason
        assert link.stats.connections == 0
        # A connected device stops advertising, so it could be found again only because each failed
        # attempt disconnected from it.
        assert battery_only.stats.connections >= 3
        assert rig.of(STRAP) == []  # nothing reached the sink from a device that was never set up
        await rig.stop()
        assert not battery_only.is_connected

    run(main())


def test_a_connect_timeout_is_a_failed_attempt() -> None:
    async def main() -> None:
        rig = Rig(heart_rate_strap(STRAP, connect_delay=1.0))
        policy = LinkPolicy(scan_timeout=0.02, connect_timeout=0.02, lost_after=1)
        link = rig.link("w1", DeviceConfig("hr_strap", address=STRAP), policy=policy)
        rig.start(link)
        await until(lambda: link.state == "lost", "lost")
        assert link.last_error is not None
        assert "connect failed" in link.last_error.reason
        await rig.stop()

    run(main())


def test_optional_characteristics_are_used_only_as_offered() -> None:
    async def main() -> None:
        strap = VirtualPeripheral(
            STRAP,
            "Plain",
            [
                heart_rate_strap("00:00:00:00:00:00", body_sensor_location=None).services[0],
                battery_service(70, notify=False),
            ],
        )
        rig = Rig(strap)
        link = rig.link("w1", DeviceConfig("hr_strap", address=STRAP))
        rig.start(link)
        await until(lambda: link.state == "connected", "connected")
        assert rig.of(STRAP) == [("2A19", bytes([70]), T0)]  # no 2A38 on this strap
        assert strap.subscribed("2A37")
        assert not strap.subscribed("2A19")  # read-only battery: read, not subscribed
        await rig.stop()

    run(main())


def test_cancelling_run_disconnects_the_device() -> None:
    async def main() -> None:
        rig = Rig(heart_rate_strap(STRAP))
        link = rig.link("w1", DeviceConfig("hr_strap", address=STRAP))
        rig.start(link)
        await until(lambda: link.state == "connected", "connected")
        assert rig.world[STRAP].is_connected
        await rig.stop()
        assert not rig.world[STRAP].is_connected
        assert rig.world[STRAP].is_advertising

    run(main())


def test_a_cancellation_at_any_step_of_a_reconnect_is_honoured_and_releases_the_device() -> None:
    """Cancel the link k loop steps after a link loss, for every k through a whole reconnect.

    Guards against a cancellation being swallowed (asyncio.wait_for on Python 3.11 does that when the
    awaited operation completes in the same step), which would hang the agent's shutdown.
    """

    async def main() -> None:
        k = 0
        reconnected_at = None
        while reconnected_at is None or k <= reconnected_at + 5:
            rig = Rig(heart_rate_strap(STRAP))
            link = rig.link("w1", DeviceConfig("hr_strap", address=STRAP))
            rig.start(link)
            await until(lambda: link.state == "connected", "connected")  # noqa: B023
            rig.world[STRAP].disconnect()
            for _ in range(k):
                await asyncio.sleep(0)
            if reconnected_at is None and link.stats.connections == 2:
                reconnected_at = k
            task = rig.tasks[0]
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=1.0)
            assert done, f"cancellation {k} steps after the link loss was swallowed"
            assert task.cancelled()
            assert not rig.world[STRAP].is_connected, f"left connected when cancelled at step {k}"
            k += 1
        assert reconnected_at is not None

    run(main())


def test_a_raising_sink_or_state_callback_does_not_stop_the_link() -> None:
    async def main() -> None:
        rig = Rig(heart_rate_strap(STRAP, body_sensor_location=None))
        kept: list[RawNotification] = []

        def sink(note: RawNotification) -> None:
            if note.data == hr(66):
                raise RuntimeError("intake bug")
            kept.append(note)

        def on_state(_w: str, _d: str, _s: str) -> None:
            raise RuntimeError("status bug")

        link = rig.link("w1", DeviceConfig("hr_strap", address=STRAP), sink=sink, on_state=on_state)
        rig.start(link)
        await until(lambda: link.state == "connected", "connected")
        await rig.play([FeedEvent(T0 + 1, STRAP, "2A37", hr(66)), FeedEvent(T0 + 2, STRAP, "2A37", hr(67))])
        assert [n.data for n in kept] == [bytes([100]), hr(67)]
        assert link.stats.sink_errors == 1
        assert rig.world[STRAP].stats.callback_errors == 0  # nothing escaped into the BLE stack
        await rig.stop()

    run(main())


def test_bad_link_configuration_is_refused() -> None:
    clock = VirtualClock(T0)
    with pytest.raises(ConfigError, match="address or a name"):
        DeviceLink("w1", DeviceConfig("hr_strap"), lambda _n: None, clock)
    with pytest.raises(ConfigError, match="kind"):
        DeviceLink("w1", DeviceConfig("pulse_oximeter", address=STRAP), lambda _n: None, clock)
    with pytest.raises(ConfigError, match=r"ble\.scan_timeout"):
        LinkPolicy(scan_timeout=-1.0)
    with pytest.raises(ConfigError, match=r"ble\.lost_after"):
        LinkPolicy(lost_after=0)


def test_discover_lists_nearby_devices_strongest_first() -> None:
    async def main() -> list[NearbyDevice]:
        world = SimWorld(
            [
                heart_rate_strap(STRAP, "Far", rssi=-90),
                cgm_sensor(CGM, "Near", rssi=-40),
                heart_rate_strap(STRAP_2, "Hidden", advertising=False),
            ]
        )
        return await discover(0.02, scanner_backend=sim_backends(world).scanner)

    assert run(main()) == [
        NearbyDevice(CGM, "Near", -40, ("181F", "180F")),
        NearbyDevice(STRAP, "Far", -90, ("180D", "180F")),
    ]


def test_profiles_are_data_the_sim_devices_satisfy() -> None:
    from agent.ble import PROFILES

    for kind, device in (("hr_strap", heart_rate_strap(STRAP)), ("cgm", cgm_sensor(CGM))):
        uuids = {c.uuid[4:8].upper() for s in device.services for c in s.characteristics}
        required = {spec.characteristic for spec in PROFILES[kind] if spec.required}
        assert required <= uuids
    assert isinstance(heart_rate_strap(STRAP).services[0], Service)
