"""Work per payload is bounded, so a hostile payload costs a worker a small multiple of its size.

Measured before these caps: a TLV of 12 million empty resources (a 32 MB body) took a worker to 1.5 GiB,
about 48 times the body, because every TLV became a Python object and a dict entry. With them, decoding
stops at the cap and the payload's Event carries a `decode_error` saying which limit it hit
(`tests/unit/decoding/test_decoding_limits.py` measures the peak with tracemalloc).

- `MAX_ENTRIES` TLVs (containers included) per TLV payload, and records per SenML / LwM2M JSON payload;
- `MAX_NODES` values (arrays, maps, scalars) per JSON or CBOR payload;
- `MAX_DEPTH` levels of nesting per JSON or CBOR payload (and per unknown field of a batch item).

A real device's payload is far below these: an object of a few dozen resources, a SenML pack of a few
hundred records. They are module constants, not settings: nothing legitimate needs them raised.
"""

from collections.abc import Iterable
from typing import Any

from workers.decoding.errors import DecodeError

MAX_ENTRIES = 10_000
MAX_NODES = 100_000
MAX_DEPTH = 32


def check_tree(doc: Any, what: str, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> None:
    """Raise DecodeError when a parsed JSON-like document has more than `max_nodes` values or more
    than `max_depth` levels of nesting (walked without recursion)."""
    if not isinstance(doc, list | dict):
        return
    nodes = 0
    stack: list[tuple[Iterable[Any], int]] = [(_children(doc), 1)]
    while stack:
        children, depth = stack.pop()
        if depth > max_depth:
            raise DecodeError(f"{what} payload is nested more than {max_depth} levels deep")
        for child in children:
            nodes += 1
            if nodes > max_nodes:
                raise DecodeError(f"{what} payload has more than {max_nodes} values")
            if isinstance(child, list | dict):
                stack.append((_children(child), depth + 1))


def _children(node: list[Any] | dict[Any, Any]) -> Iterable[Any]:
    """The values directly inside a list or dict."""
    return node.values() if isinstance(node, dict) else node


def check_json_bytes(raw: bytes, what: str, max_nodes: int = MAX_NODES) -> None:
    """Refuse, before parsing, JSON text that may hold more than `max_nodes` values: counted from the
    separators (',' '[' '{'), so separators inside strings count too (an over-estimate, never under)."""
    if len(raw) > max_nodes and raw.count(b",") + raw.count(b"[") + raw.count(b"{") > max_nodes:
        raise DecodeError(f"{what} payload has more than {max_nodes} values")


def check_records_bytes(raw: bytes, what: str, max_records: int = MAX_ENTRIES) -> None:
    """Refuse, before parsing, SenML / LwM2M JSON text that may hold more than `max_records` records:
    every record is one JSON object, so '{' is counted (braces inside strings count too, never under)."""
    if len(raw) > max_records and raw.count(b"{") > max_records + 1:
        raise DecodeError(f"{what} payload has more than {max_records} records")


_INDEFINITE = -1


def check_cbor_bytes(
    raw: bytes,
    what: str,
    max_nodes: int = MAX_NODES,
    max_depth: int = MAX_DEPTH,
    max_maps: int | None = None,
) -> None:
    """Walk CBOR item heads without building anything; raise DecodeError past `max_nodes` data items,
    `max_depth` levels or `max_maps` maps (SenML records), or when a head declares more items or bytes
    than the payload has left (so the real decoder never allocates for a length it cannot hold)."""
    pos, nodes, maps = 0, 0, 0
    stack: list[int] = []  # items still expected per open container (-1: indefinite, until 'break')
    while pos < len(raw):
        head = raw[pos]
        pos += 1
        if head == 0xFF:  # 'break' closes the innermost indefinite container or string
            if stack and stack[-1] == _INDEFINITE:
                stack.pop()
                _close(stack)
            continue
        nodes += 1
        if nodes > max_nodes:
            raise DecodeError(f"{what} payload has more than {max_nodes} data items")
        major, info = head >> 5, head & 0x1F
        if major == 5 and max_maps is not None:
            maps += 1
            if maps > max_maps:
                raise DecodeError(f"{what} payload has more than {max_maps} records")
        arg, pos = _argument(raw, pos, info)
        if major in (2, 3, 4, 5) and arg > (len(raw) - pos) * (1 if major != 5 else 2):
            raise DecodeError(
                f"{what} payload is not valid CBOR: truncated, the head before byte {pos} declares "
                f"{arg} items or bytes, {len(raw) - pos} bytes are left"
            )
        if major in (2, 3):
            if arg == _INDEFINITE:
                stack.append(_INDEFINITE)
            else:
                pos += arg
                _close(stack)
        elif major in (4, 5, 6):
            count = 1 if major == 6 else arg if arg == _INDEFINITE or major == 4 else 2 * arg
            if count == 0:
                _close(stack)
                continue
            stack.append(count)
            if len(stack) > max_depth:
                raise DecodeError(f"{what} payload is nested more than {max_depth} levels deep")
        else:
            _close(stack)


def _argument(raw: bytes, pos: int, info: int) -> tuple[int, int]:
    """A CBOR head's argument and the offset after it (-1 for an indefinite length)."""
    if info < 24:
        return info, pos
    if info == 31:
        return _INDEFINITE, pos
    size = {24: 1, 25: 2, 26: 4, 27: 8}.get(info, 0)
    return int.from_bytes(raw[pos : pos + size], "big"), pos + size


def _close(stack: list[int]) -> None:
    """Count one finished item against the open containers, closing those it completes."""
    while stack and stack[-1] != _INDEFINITE:
        stack[-1] -= 1
        if stack[-1]:
            return
        stack.pop()
