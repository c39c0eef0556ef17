"""Named points where a worker SIGKILLs itself, so tests kill it exactly there (not by timing).

``DEVICEHOOKS_TEST_KILL_AT=async-after-call`` (names: ``app.config.KILL_POINTS``) makes the worker
die like a dyno that lost power the moment it reaches that point. Unset in production: a no-op.
"""

from __future__ import annotations

import logging
import os
import signal

from app.config import Settings

logger = logging.getLogger(__name__)


def reach(settings: Settings, point: str) -> None:
    """SIGKILL this process when ``point`` is one of the settings' kill points."""
    if point in settings.test_kill_at:
        logger.warning("kill point %s reached: SIGKILL", point)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
