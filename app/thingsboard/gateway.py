"""One MQTT connection to ThingsBoard as a gateway device (paho-mqtt), with PUBACK waits.

A fresh paho client per connection attempt, clean session, no automatic reconnect: the bridge decides
when to reconnect (with backoff) and re-publishes what was not acknowledged from Redis, so paho's own
in-memory queue never holds anything that is not also pending in the stream. The access token is the
MQTT username (ThingsBoard's device authentication) and is never logged.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from app.config import Settings
from app.thingsboard.mapping import ATTRIBUTES, RPC

logger = logging.getLogger(__name__)

SUBSCRIPTIONS = [(RPC, 1), (ATTRIBUTES, 1)]
KEEPALIVE = 30
MAX_INFLIGHT = 100


class ConnectionLost(ConnectionError):
    """The gateway connection is down (or never came up); the message says why."""


class Gateway:
    """A connected gateway session: publish at QoS 1 and wait for PUBACKs."""

    def __init__(self, settings: Settings, on_message: Callable[[str, bytes], None]) -> None:
        self.settings = settings
        self.on_message = on_message
        self._connack = threading.Event()
        self._suback = threading.Event()
        self._reason = "no CONNACK"
        self._up = False
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"devicehooks-{uuid.uuid4().hex[:12]}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        self.client.username_pw_set(settings.thingsboard_token or "")
        if settings.thingsboard_tls:
            self.client.tls_set(ca_certs=settings.thingsboard_ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self.client.max_inflight_messages_set(MAX_INFLIGHT)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @property
    def where(self) -> str:
        """host:port, for messages."""
        return f"{self.settings.thingsboard_host}:{self.settings.thingsboard_port}"

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        """CONNACK: remember whether the broker accepted us."""
        self._up = not getattr(rc, "is_failure", False)
        self._reason = str(rc)
        self._connack.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        """The connection is gone: waits fail fast."""
        if self._up:
            logger.warning("thingsboard: connection to %s lost (%s)", self.where, rc)
        if self._up or not self._connack.is_set():  # a refused CONNACK keeps its reason
            self._reason = f"disconnected: {rc}"
        self._up = False
        self._connack.set()

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, codes: object, props: object
    ) -> None:
        """SUBACK for the downlink topics."""
        self._suback.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        """A downlink message: hand it on (the callee must not block the network thread)."""
        self.on_message(message.topic, bytes(message.payload))

    def connect(self, timeout: float = 10.0) -> None:
        """Open the connection, wait for CONNACK and the SUBACK of the downlink topics."""
        host, port = self.settings.thingsboard_host or "", self.settings.thingsboard_port
        try:
            self.client.connect(host, port, keepalive=KEEPALIVE)
        except (OSError, ValueError) as exc:
            raise ConnectionLost(f"cannot reach {self.where}: {exc}") from None
        self.client.loop_start()
        if not self._connack.wait(timeout) or not self._up:
            self.close()
            raise ConnectionLost(f"{self.where} refused the gateway connection: {self._reason}")
        self.client.subscribe(SUBSCRIPTIONS)
        if not self._suback.wait(timeout) or not self._up:
            self.close()
            raise ConnectionLost(f"{self.where}: no SUBACK for {[t for t, _ in SUBSCRIPTIONS]}")
        logger.info(
            "thingsboard: gateway connected to %s, subscribed to the RPC and attribute topics", self.where
        )

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """Queue one QoS 1 publish; ConnectionLost when the session is down."""
        if not self._up:
            raise ConnectionLost(f"not connected to {self.where}")
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionLost(f"publish to {self.where} failed: {mqtt.error_string(info.rc)}")
        return info

    def wait(self, infos: list[mqtt.MQTTMessageInfo], timeout: float) -> None:
        """Block until every publish is PUBACKed; ConnectionLost on disconnect or timeout."""
        deadline = time.monotonic() + timeout
        for info in infos:
            try:
                while not info.is_published():
                    remaining = deadline - time.monotonic()
                    if not self._up or remaining <= 0:
                        why = "timeout" if self._up else self._reason
                        raise ConnectionLost(f"no PUBACK from {self.where} ({why})")
                    info.wait_for_publish(min(remaining, 0.2))
            except (RuntimeError, ValueError) as exc:
                raise ConnectionLost(f"publish to {self.where} failed: {exc}") from None

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        was_up = self._up
        self._up = False
        if was_up:
            self.client.disconnect()
        self.client.loop_stop()
