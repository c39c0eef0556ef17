"""Header verification: case-insensitive names, exact values, current or previous secret."""

from __future__ import annotations

from app.verify import HeaderVerifier


def getter(headers: dict[str, str]):  # type: ignore[no-untyped-def]
    lowered = {k.lower(): v for k, v in headers.items()}
    return lambda name: lowered.get(name.lower())


VERIFIER = HeaderVerifier({"Authorization": "Bearer new", "X-Extra": "e"}, {"Authorization": "Bearer old"})


def test_all_current_headers_are_accepted_whatever_the_name_case() -> None:
    assert VERIFIER.verify(getter({"authorization": "Bearer new", "X-EXTRA": "e"}))


def test_previous_secret_is_accepted_during_rotation() -> None:
    assert VERIFIER.verify(getter({"Authorization": "Bearer old"}))


def test_one_missing_header_is_rejected() -> None:
    assert not VERIFIER.verify(getter({"Authorization": "Bearer new"}))


def test_wrong_value_is_rejected() -> None:
    assert not VERIFIER.verify(getter({"Authorization": "Bearer neW", "X-Extra": "e"}))


def test_value_prefix_is_rejected() -> None:
    assert not VERIFIER.verify(getter({"Authorization": "Bearer ne", "X-Extra": "e"}))


def test_no_headers_is_rejected() -> None:
    assert not VERIFIER.verify(getter({}))


def test_verifier_without_configured_headers_accepts_everything() -> None:
    verifier = HeaderVerifier({})
    assert not verifier.enabled
    assert verifier.verify(getter({}))
