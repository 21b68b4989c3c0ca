"""The MQTT publisher: drains the store's outbox to the broker at QoS 1, driven from the asyncio loop.

paho-mqtt 2.x does the protocol; this module hands it the loop's readiness events (``add_reader``/``add_writer``)
instead of running paho's own thread. A message leaves the outbox only when the broker has acknowledged it
(PUBACK); on a disconnect, everything unacknowledged is sent again from the outbox after the reconnect, with
the same payload and therefore the same alert id. While the broker cannot be reached the agent keeps running,
buffering in the outbox, and says so in its log and in :attr:`Publisher.last_error`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.backoff import backoff
from agent.clock import sleep_to_next
from agent.config import MqttConfig
from agent.errors import BrokerError, StoreError
from agent.store import Store

log = logging.getLogger("vigil.mqtt")


def make_client(
    cfg: MqttConfig, client_id: str, *, will: tuple[str, bytes] | None = None, persistent: bool = False
) -> paho.Client:
    """A paho client set up from the configuration: protocol, credentials, TLS and the last will.
    ``persistent`` asks (MQTT 3.1.1) for a session that outlives the connection; with MQTT 5 that is chosen at
    connect time (:func:`connect_options`)."""
    if cfg.protocol == "5":
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    else:
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311, clean_session=not persistent
        )
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password)
    if cfg.tls:
        client.tls_set_context(tls_context(cfg))
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    return client


class _ClosingSSLSocket(ssl.SSLSocket):
    """paho leaves the socket open when the TLS handshake fails (an untrusted broker): close it here."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    """Verify the broker against ``ca_file`` (else the system's CAs) and its host name; TLS 1.2 at least;
    the client certificate when configured."""
    try:
        ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cfg.cert_file is not None:
            ctx.load_cert_chain(str(cfg.cert_file), str(cfg.key_file) if cfg.key_file else None)
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise BrokerError(f"{cfg.host}:{cfg.port}", f"TLS set-up failed: {exc}") from exc
    ctx.sslsocket_class = _ClosingSSLSocket
    return ctx


def connect_options(cfg: MqttConfig, *, persistent: bool) -> dict[str, Any]:
    """Extra arguments for ``Client.connect``: an MQTT 5 session that lasts ``session_expiry_s``."""
    if cfg.protocol != "5":
        return {}
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if persistent and cfg.session_expiry_s > 0:
        props.SessionExpiryInterval = cfg.session_expiry_s
        return {"clean_start": False, "properties": props}
    return {"clean_start": True, "properties": props}


class _LoopGlue:
    """Connects a paho client's socket to an asyncio loop. Callbacks may fire in an executor thread during
    ``connect()``, so every registration goes through ``call_soon_threadsafe``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: paho.Client) -> None:
        self.loop = loop
        self.client = client
        client.on_socket_open = self._open
        client.on_socket_close = self._close
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._done_write

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        # On the loop's own thread act at once (a closing socket must be unregistered before its fd goes);
        # from paho's connect() in an executor thread, hand it to the loop. After the loop has gone (paho's
        # Client.__del__), there is nothing left to register with.
        if self.loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def _open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._call(self.loop.add_reader, sock, self._readable)

    def _close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._call(self.loop.remove_reader, sock)

    def _want_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._call(self.loop.add_writer, sock, self._writable)

    def _done_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._call(self.loop.remove_writer, sock)

    def _readable(self) -> None:
        self.client.loop_read()

    def _writable(self) -> None:
        self.client.loop_write()


class Publisher:
    """Owns the agent's MQTT connection and the outbox drain."""

    def __init__(
        self,
        cfg: MqttConfig,
        store: Store,
        *,
        client_id: str,
        status_topic: str,
        offline_payload: bytes,
        retry_delay: Callable[[int], float] = backoff,
        subscriptions: Sequence[str] = (),
        on_message: Callable[[str, bytes], object] | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.status_topic = status_topic
        self.inflight_limit = cfg.inflight
        self.retry_delay = retry_delay
        self.persistent = cfg.session_expiry_s > 0
        self.client = make_client(cfg, client_id, will=(status_topic, offline_payload), persistent=self.persistent)
        self.client.max_inflight_messages_set(cfg.inflight)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.subscriptions = tuple(subscriptions)
        self.on_message = on_message
        self.connected = False
        self.last_error: str | None = None
        self.acked = 0
        self.connects = 0
        self._inflight: dict[int, tuple[int, str]] = {}  # paho mid -> (outbox seq, topic)
        # Messages the broker refused (MQTT 5 PUBACK with an error, e.g. an ACL): kept in the outbox, reported,
        # and tried again after the next reconnect rather than in a loop.
        self._refused: set[int] = set()
        self.refused = 0
        self.refused_topics: list[str] = []  # the last few, newest last, for the status
        # Messages the broker acknowledged that the store could not delete yet (a full disk): not sent again
        # while they wait, deleted as soon as the store takes writes again.
        self._acked: set[int] = set()
        # Messages sent without the outbox while the store is failing (QoS 1, paho's memory only).
        self._volatile: deque[tuple[str, bytes, bool]] = deque(maxlen=10_000)
        self._wake = asyncio.Event()
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    @property
    def broker(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def wake(self) -> None:
        """Tell the drain that the outbox has new messages."""
        self._wake.set()

    # -- paho callbacks (run on the loop thread, except during connect()) ---------------------------------
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        fut = self._connack
        if fut is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(_resolve, fut, rc)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._mark_disconnected, str(rc))

    def _mark_disconnected(self, reason: str) -> None:
        if self.connected and not self._stopping:
            log.warning("broker %s: disconnected (%s); buffering in the outbox", self.broker, reason)
            self.last_error = f"disconnected: {reason}"
        self.connected = False
        self._inflight.clear()  # unacknowledged messages are still in the outbox and go again
        self._wake.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if self.on_message is not None:
            self.on_message(msg.topic, bytes(msg.payload))

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is not None:
            seq, topic = entry
            if rc.is_failure:
                self._refused.add(seq)
                self.refused += 1
                if topic in self.refused_topics:
                    self.refused_topics.remove(topic)
                self.refused_topics = [*self.refused_topics, topic][-10:]
                self.last_error = f"broker refused a publish to {topic}: {rc}"
                log.error("broker %s refused a publish to %s: %s; kept in the outbox", self.broker, topic, rc)
            else:
                # Removed from the outbox by the drain when it wakes (below): one transaction for every
                # acknowledgement that arrived meanwhile, not one each.
                self._acked.add(seq)
                self.acked += 1
        self._wake.set()

    def _forget_acked(self) -> None:
        try:
            self.store.outbox_done(self._acked)
        except StoreError as exc:
            log.debug("acknowledged messages stay in the outbox until the store can delete them: %s", exc.reason)
            return
        self._acked.clear()

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        failed = [str(rc) for rc in rcs if rc.is_failure]
        if failed:
            self.last_error = f"broker refused the command subscription: {', '.join(failed)}"
            log.error("broker %s refused subscribing to %s: %s", self.broker, self.subscriptions, failed)

    # -- the connection loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, drain, and reconnect with backoff, until cancelled."""
        self._loop = asyncio.get_running_loop()
        _LoopGlue(self._loop, self.client)
        misc = asyncio.create_task(self._misc())
        attempt = 0
        try:
            while True:
                try:
                    await self._connect()
                except BrokerError as exc:
                    self.last_error = exc.reason
                    delay = self.retry_delay(attempt)
                    log.warning(
                        "broker %s: %s; agent keeps running and buffering, retry in %.1f s",
                        self.broker,
                        exc.reason,
                        delay,
                    )
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
                attempt = 0
                await self._drain()
        finally:
            misc.cancel()

    async def _connect(self) -> None:
        assert self._loop is not None
        self._connack = self._loop.create_future()
        try:
            await self._loop.run_in_executor(
                None,
                lambda: self.client.connect(
                    self.cfg.host,
                    self.cfg.port,
                    keepalive=self.cfg.keepalive_s,
                    **connect_options(self.cfg, persistent=self.persistent),
                ),
            )
        except (OSError, ssl.SSLError, socket.gaierror, ValueError) as exc:
            raise BrokerError(self.broker, f"cannot connect: {exc}") from exc
        # asyncio.wait, not wait_for: on Python 3.10/3.11 wait_for can swallow a cancellation (gh-86296).
        done, _ = await asyncio.wait({self._connack}, timeout=max(10.0, self.cfg.keepalive_s))
        if not done:
            self.client.disconnect()
            raise BrokerError(self.broker, "no CONNACK from the broker")
        rc = self._connack.result()
        if rc.is_failure:
            self.client.disconnect()
            raise BrokerError(self.broker, f"connection refused: {rc}")
        for topic in self.subscriptions:
            self.client.subscribe(topic, qos=1)
        self._refused.clear()  # a new connection may carry new rights: try refused messages once more
        self.connected = True
        self.connects += 1
        self.last_error = None
        log.info("broker %s: connected", self.broker)

    def publish_volatile(self, messages: Sequence[tuple[str, bytes, bool]]) -> None:
        """Send messages that could not be stored (a full disk): from memory, before the outbox's backlog."""
        self._volatile.extend(messages)
        self._wake.set()

    async def _drain(self) -> None:
        while self.connected:
            self._wake.clear()
            if self._acked:
                self._forget_acked()
            while self._volatile:
                topic, payload, retain = self._volatile[0]
                if self.client.publish(topic, payload, qos=1, retain=retain).rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
                self._volatile.popleft()
            room = self.inflight_limit - len(self._inflight)
            if room > 0:
                busy = [seq for seq, _ in self._inflight.values()] + list(self._refused) + list(self._acked)
                for msg in self.store.outbox_pending(room, exclude=busy):
                    info = self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
                    if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        break
                    if msg.qos == 0:
                        self.store.outbox_done([msg.seq])
                    else:
                        self._inflight[info.mid] = (msg.seq, msg.topic)
            await self._wake.wait()

    async def _misc(self) -> None:
        while True:
            await sleep_to_next(1.0)
            if self.client.socket() is not None:
                self.client.loop_misc()

    def publish_direct(self, topic: str, payload: bytes, *, retain: bool) -> None:
        """Publish outside the outbox (agent status): best effort, latest value wins."""
        if self.connected:
            self.client.publish(topic, payload, qos=1, retain=retain)

    def pending(self) -> int:
        return len(self._inflight)

    async def flush(self, timeout: float) -> bool:
        """Wait until the outbox holds nothing but refused messages and nothing is in flight; False if the time
        ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._acked:  # the drain removes them when it runs; it may not be running (no broker)
                self._forget_acked()
            if not self._inflight and self.store.outbox_depth() <= len(self._refused):
                return True
            self._wake.set()
            await asyncio.sleep(0.02)
        return False

    async def close(self, offline_payload: bytes) -> None:
        """Publish the retained offline status (the will covers a crash) and disconnect."""
        self._stopping = True
        if self.connected:
            info = self.client.publish(self.status_topic, offline_payload, qos=1, retain=True)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline and self.connected:
                await asyncio.sleep(0.01)
            self.client.disconnect()
            await asyncio.sleep(0)
        self.connected = False


def _resolve(fut: asyncio.Future[ReasonCode], rc: ReasonCode) -> None:
    if not fut.done():
        fut.set_result(rc)


def status_payload(state: str, **fields: Any) -> bytes:
    return json.dumps({"state": state, **fields}, separators=(",", ":"), sort_keys=True).encode()
