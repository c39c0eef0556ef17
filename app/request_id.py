"""X-Request-ID: propagated when the caller sent a sane one, else generated."""

from __future__ import annotations

import os
import re

HEADER = "X-Request-ID"
_VALID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


def request_id_from(incoming: str | None) -> str:
    """Return the caller's request id when it is well formed, else a new 32-character one."""
    if incoming and _VALID.match(incoming):
        return incoming
    return os.urandom(16).hex()  # what uuid4().hex would look like, without building a UUID
