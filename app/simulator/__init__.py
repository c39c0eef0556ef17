"""A Device Management simulator: the Connect v2 API subset devicehooks uses, on the wire.

`SimulatorServer(SimulatorConfig(...)).start()` serves it from a background thread; `devicehooks simulate`
runs it from the command line (also as a load generator). See app/simulator/README.md.
"""

from app.simulator.config import SimulatorConfig
from app.simulator.engine import Simulator
from app.simulator.server import SimulatorServer

__all__ = ["Simulator", "SimulatorConfig", "SimulatorServer"]
