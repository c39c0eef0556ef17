"""Property tests: TLV encode -> decode round trips, and no input ever makes decode_value raise."""

import json
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.decoding import (
    ObjectModel,
    ResourceDef,
    decode_value,
    default_object_model,
    encode_b64,
    encode_paths,
)

TLV = "application/vnd.oma.lwm2m+tlv"
OBJ = 9000
# One resource of every LwM2M type, single (id = 10 + n) and multiple (id = 300 + n: 16-bit ids).
TYPES = ["string", "integer", "unsigned", "float", "boolean", "opaque", "time", "objlnk", "corelnk"]
SINGLE = {10 + n: t for n, t in enumerate(TYPES)}
MULTIPLE = {300 + n: t for n, t in enumerate(TYPES)}
MODEL = default_object_model().merged(
    ObjectModel(
        {OBJ: "Every Type"},
        {(OBJ, rid): ResourceDef(rid, f"{t} value", t, False) for rid, t in SINGLE.items()}
        | {(OBJ, rid): ResourceDef(rid, f"{t} values", t, True) for rid, t in MULTIPLE.items()},
    )
)
CONTENT_TYPES = [
    None,
    "text/plain",
    TLV,
    "application/json",
    "application/vnd.oma.lwm2m+json",
    "application/senml+json",
    "application/senml+cbor",
    "application/cbor",
    "application/octet-stream",
    "application/link-format",
    "application/x-unknown",
]
PATHS = [
    "/3/0",
    "/3",
    "/3/0/11",
    "/3/0/11/0",
    "/3303/0/5700",
    "3311/0/5850",
    "/9000/0/13",
    "",
    "/x",
    "/1/2/3/4/5",
]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def values_of(rtype: str) -> st.SearchStrategy[tuple[Any, Any]]:
    """Return (value to encode, value decode_value must return) pairs for one LwM2M type."""
    if rtype in ("string", "corelnk"):
        return st.text(max_size=20).map(lambda s: (s, s))
    if rtype in ("integer", "time"):
        return st.integers(-(2**63), 2**63 - 1).map(lambda i: (i, i))
    if rtype == "unsigned":
        return st.integers(0, 2**64 - 1).map(lambda i: (i, i))
    if rtype == "float":
        return st.floats(allow_nan=False, allow_infinity=False).map(lambda f: (f, f))
    if rtype == "boolean":
        return st.booleans().map(lambda b: (b, b))
    if rtype == "opaque":
        return st.binary(max_size=20).map(lambda b: (b, encode_b64(b)))
    return st.tuples(st.integers(0, 65535), st.integers(0, 65535)).map(lambda p: (p, f"{p[0]}:{p[1]}"))


@st.composite
def resource_trees(draw: st.DrawFn) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Draw a notification path at any depth and {path: value to encode}, {path: expected value}."""
    depth = draw(st.integers(1, 4))
    instances = (
        draw(st.lists(st.integers(0, 300), min_size=1, max_size=3, unique=True)) if depth == 1 else [0]
    )
    to_encode: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    for inst in instances:
        singles = (
            [] if depth >= 3 else draw(st.lists(st.sampled_from(sorted(SINGLE)), max_size=4, unique=True))
        )
        multiples = draw(
            st.lists(st.sampled_from(sorted(MULTIPLE)), min_size=1 if depth >= 3 else 0, max_size=3)
        )
        multiples = sorted(set(multiples))[:1] if depth >= 3 else sorted(set(multiples))
        for rid in singles:
            raw, out = draw(values_of(SINGLE[rid]))
            to_encode[f"/{OBJ}/{inst}/{rid}"], expected[f"/{OBJ}/{inst}/{rid}"] = raw, out
        for rid in multiples:
            count = 1 if depth == 4 else draw(st.integers(1, 3))
            for ri in draw(st.lists(st.integers(0, 400), min_size=count, max_size=count, unique=True)):
                raw, out = draw(values_of(MULTIPLE[rid]))
                to_encode[f"/{OBJ}/{inst}/{rid}/{ri}"], expected[f"/{OBJ}/{inst}/{rid}/{ri}"] = raw, out
    if depth == 1:
        return f"/{OBJ}", to_encode, expected
    first = next(iter(to_encode), f"/{OBJ}/0/300/0").split("/")[1:]
    path = "/" + "/".join(first[:depth])
    return path, to_encode, expected


@SETTINGS
@given(resource_trees())
def test_tlv_encode_then_decode_round_trips_random_resource_trees(tree):
    path, to_encode, expected = tree
    raw = encode_paths(to_encode, path, MODEL)
    # strict: a binary float whose 4 or 8 bytes happen to spell decimal text would read as that text
    # by default (the mbed Cloud Client rule); the spec encoding round trips exactly under the spec
    value, error = decode_value(encode_b64(raw), TLV, path, MODEL.with_options(tlv_strict=True))
    assert error is None
    assert value == (expected if raw else None)  # zero bytes: no value
    json.dumps(value, allow_nan=False)


def assert_decodes_safely(payload_b64: str, ct: str | None, path: str) -> None:
    """decode_value returns (JSON-serialisable value, error text or None), null value on error."""
    value, error = decode_value(payload_b64, ct, path, MODEL)
    assert error is None or isinstance(error, str)
    if error is not None:
        assert value is None
    json.dumps(value, allow_nan=False)


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from(CONTENT_TYPES), st.sampled_from(PATHS))
def test_arbitrary_bytes_as_any_content_type_never_raise(raw, ct, path):
    assert_decodes_safely(encode_b64(raw), ct, path)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)
SENML_RECORDS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "bn": st.sampled_from(["/3303/0/", "/3/0/", ""]) | st.text(max_size=5),
            "n": st.sampled_from(["5700", "9", "11/0"]) | JSON_VALUES,
            "v": JSON_VALUES,
            "vs": JSON_VALUES,
            "vb": JSON_VALUES,
            "vd": JSON_VALUES,
            "bt": JSON_VALUES,
            "t": JSON_VALUES,
            "bv": JSON_VALUES,
            "sv": JSON_VALUES,
            "ov": JSON_VALUES,
        },
    ),
    max_size=5,
)


@SETTINGS
@given(JSON_VALUES | SENML_RECORDS | st.fixed_dictionaries({"bn": JSON_VALUES, "e": SENML_RECORDS}))
def test_arbitrary_json_never_raises(doc):
    raw = json.dumps(doc).encode()
    for ct in ("application/json", "application/vnd.oma.lwm2m+json", "application/senml+json"):
        assert_decodes_safely(encode_b64(raw), ct, "/3303/0")


@SETTINGS
@given(SENML_RECORDS | JSON_VALUES)
def test_arbitrary_cbor_never_raises(doc):
    raw = cbor2.dumps(doc)
    for ct in ("application/cbor", "application/senml+cbor"):
        assert_decodes_safely(encode_b64(raw), ct, "/3303/0")


@SETTINGS
@given(st.text(max_size=50), st.sampled_from(PATHS))
def test_arbitrary_text_never_raises(text, path):
    assert_decodes_safely(encode_b64(text.encode("utf-8", "surrogatepass")), "text/plain", path)
    assert_decodes_safely(text, "text/plain", path)  # the text itself as (usually invalid) base64


@SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_text_float_resource_round_trips_repr(number):
    assert decode_value(encode_b64(repr(number).encode()), "text/plain", "/3303/0/5700", MODEL) == (
        number,
        None,
    )
