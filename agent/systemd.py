"""systemd's notify protocol (sd_notify), without libsystemd: readiness, status, watchdog and stopping.

The whole protocol is one datagram of newline-separated ``KEY=VALUE`` lines sent to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract socket when it starts with ``@``). Outside systemd the variable is
unset and every call here is a no-op returning False, so ``vigil run`` behaves the same in a terminal.

The watchdog: with ``WatchdogSec=`` systemd sets ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``) and kills and
restarts the service when ``WATCHDOG=1`` does not arrive within that interval. :func:`watchdog` pings at half the
interval, from the event loop itself and only while a health check passes: a stuck loop or a dead core stops the
pings, and systemd restarts the agent.

``python -m agent.systemd`` prints the unit file shipped in the package (``agent/systemd/vigil.service``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from importlib import resources

log = logging.getLogger("vigil.systemd")


def under_systemd() -> bool:
    """True when systemd listens for notifications (``$NOTIFY_SOCKET`` is set)."""
    return bool(os.environ.get("NOTIFY_SOCKET"))


def notify(state: str) -> bool:
    """Send ``state`` (one or more ``KEY=VALUE`` lines) to systemd; False when not under systemd or on error.

    Never raises: a notification that cannot be sent must not stop the agent.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        # systemd 253+ may also name an AF_VSOCK address ("vsock:CID:PORT"), for VMs; not ours to support.
        log.debug("NOTIFY_SOCKET %r is not an AF_UNIX address; not notifying", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8"), address)
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def ready() -> bool:
    """The service is up (Type=notify: systemd starts its dependents now)."""
    return notify("READY=1")


def stopping() -> bool:
    """The service is shutting down; systemd stops watching it and starts the TimeoutStopSec= clock."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """One line shown by ``systemctl status``."""
    return notify("STATUS=" + " ".join(text.splitlines()))


def watchdog_ping() -> bool:
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """The watchdog interval systemd enforces, in seconds, or None when there is none for this process.

    From ``$WATCHDOG_USEC``; ``$WATCHDOG_PID``, when set, must be this process (a child that inherited the
    variables is not the one being watched). Ping at half of it, as sd_watchdog_enabled(3) advises.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6


async def watchdog(
    interval: float,
    check: Callable[[], str | None],
    *,
    ping: Callable[[], bool] = watchdog_ping,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Ping every ``interval / 2`` seconds while ``check()`` returns None (healthy), until cancelled.

    ``check`` returns the reason the agent is unhealthy, in words; while it does, no pings go out, so systemd
    restarts the agent once ``interval`` has passed. Runs on the event loop it guards: if the loop is blocked,
    this coroutine does not run either. A late wake-up (the loop was blocked for a while) is logged.
    """
    period = interval / 2
    withheld: str | None = None
    due = clock()
    while True:
        late = clock() - due
        if late > period / 2:
            log.warning("event loop was blocked: watchdog check %.1f s late (systemd allows %.1f s)", late, interval)
        reason = check()
        if reason is None:
            if withheld is not None:
                log.warning("healthy again (%s no longer): watchdog pings resume", withheld)
                withheld = None
            ping()
        elif reason != withheld:
            log.error("unhealthy: %s; withholding watchdog pings so that systemd restarts the agent", reason)
            withheld = reason
        due = clock() + period
        await asyncio.sleep(period)


def unit_file_text() -> str:
    """The systemd unit file shipped in the package."""
    return (resources.files("agent") / "systemd" / "vigil.service").read_text(encoding="utf-8")


if __name__ == "__main__":
    print(unit_file_text(), end="")
