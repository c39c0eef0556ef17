"""SimulatorServer: the simulator's HTTP API served from a background thread."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from werkzeug.serving import BaseWSGIServer, make_server

from app.simulator.api import create_app
from app.simulator.config import SimulatorConfig
from app.simulator.engine import Simulator

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.05  # s; how soon stop() is noticed by the serving thread


class SimulatorServer:
    """A Device Management simulator on host:port (port 0 = a free port); start() then stop()."""

    def __init__(self, config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.sim = Simulator(config)
        self.app = create_app(self.sim)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running simulator, e.g. http://127.0.0.1:54321."""
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> SimulatorServer:
        """Bind, start the simulation and serve in a background thread."""
        self._server = make_server(self.host, self.port, self.app, threaded=True)
        self.port = self._server.server_port
        self.sim.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL},
            name="simulator-http",
            daemon=True,
        )
        self._thread.start()
        logger.info("simulator serving on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop the simulation (closing sockets, ending long polls) and the HTTP server."""
        if self._server is None:
            return
        self.sim.stop()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None

    def __enter__(self) -> SimulatorServer:
        """Start on entering a with-block."""
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop on leaving it."""
        self.stop()
