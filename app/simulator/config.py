"""The simulator's settings: one dataclass, no environment reading."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_API_KEY = "ak_simulator"


@dataclass
class SimulatorConfig:
    """How the simulated Device Management account behaves; every delay is multiplied by `time_scale`."""

    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    devices: int = 5  # simulated endpoints created at start
    batch_size: int = 10_000  # max items per PUT / websocket frame / pull answer
    time_scale: float = 1.0  # multiplies every delay below (tests use 0.01)
    notification_interval: float = 5.0  # s between notifications per subscription (0 = only on demand)
    async_delay: float = 0.2  # s before a device answers a device request
    failure_window: float = 24 * 3600  # callback removed after deliveries failed this long
    queue_limit_bytes: int = 50 * 1024 * 1024  # oldest events dropped beyond this
    seed: int = 0  # deterministic device ids, types and values
    lifecycle: bool = True  # devices reg-update / deregister / expire / re-register over time
    # Beyond the shared interface:
    early_async: bool = False  # legacy GET /v2/endpoints/..: deliver the async-response before the 202
    http_timeout: float = 10.0  # s, timeout of each callback PUT (not scaled)
    verify_timeout: float = 10.0  # s, timeout of the registration check PUT (not scaled)
    max_backoff: float = 120.0  # s, cap of the retry backoff
    request_timeout: float = 30.0  # s before an unresponsive device's request ends with 504 TIMEOUT
    timeout_fraction: float = 0.0  # share of the initial devices that never answer (the last ones)
    queue_mode_fraction: float = 0.0  # share of the initial devices in queue mode (before the above)
    wake_interval: float = 30.0  # s between wake-ups of a queue-mode device (0 = only on demand)
    awake_time: float = 5.0  # s a queue-mode device stays awake
    lifecycle_interval: float = 10.0  # s between lifecycle events of the whole device population
    pull_timeout: float = 30.0  # s a long poll waits before answering 204
    pull_purge_time: float = 120.0  # s a deleted pull channel answers polls 410 CHANNEL_DELETED
    record_ids: bool = True  # remember every sent event id (sim.sent_event_ids()); off for load runs
    tlv_style: str = (
        "mbed"  # TLV values as mbed Cloud Client writes them ("mbed") or shortest binary ("spec")
    )
    # HTTPS callbacks: the client certificate (cert file, key file) every callback PUT presents, as
    # Device Management presents its own; and the CA bundle that verifies the callback's certificate.
    client_cert: tuple[str, str] | None = None
    callback_ca: str | None = None

    @property
    def tls_verify(self) -> bool | str:
        """requests' ``verify``: the callback CA bundle when given, else the system's."""
        return self.callback_ca or True

    def delay(self, seconds: float) -> float:
        """Scale a simulated delay to wall-clock seconds."""
        return seconds * self.time_scale
