"""LwM2M paths: '/3/0/11/0' <-> (3, 0, 11, 0), cached because the same few paths recur on every batch."""

import functools

MAX_ID = 65535


@functools.lru_cache(maxsize=8192)
def parse_path(path: str) -> tuple[int, ...] | None:
    """Parse '/3/0/11/0' (leading '/' optional) into ids; None unless 1-4 decimal ids in 0..65535."""
    if not isinstance(path, str):
        return None
    parts = path[1:].split("/") if path.startswith("/") else path.split("/")
    if not 1 <= len(parts) <= 4:
        return None
    ids: list[int] = []
    for part in parts:
        if not (part.isascii() and part.isdigit()):
            return None
        value = int(part)
        if value > MAX_ID:
            return None
        ids.append(value)
    return tuple(ids)


@functools.lru_cache(maxsize=8192)
def resource_key(path: str) -> tuple[int, int] | None:
    """Return (object id, resource id) for a resource or resource-instance path, else None."""
    ids = parse_path(path)
    if ids is None or len(ids) < 3:
        return None
    return ids[0], ids[2]


def format_path(ids: tuple[int, ...]) -> str:
    """Format ids as an absolute path, e.g. (3, 0, 11, 0) -> '/3/0/11/0'."""
    return "/" + "/".join(map(str, ids))
