"""Settings of the state store, the management API and the status page."""

from __future__ import annotations

import pytest

from app.config import ConfigError, from_env
from app.status import session_secret
from workers import runtime
from workers.handlers.state import NAME

BASE = {"REDIS_URL": "redis://127.0.0.1:1/0"}


def test_state_is_on_by_default_and_state_off_unloads_the_handler() -> None:
    assert from_env(BASE).state is True
    off = from_env({**BASE, "STATE": "off"})
    assert off.state is False
    assert runtime.build(off).router.get(NAME) is None
    assert runtime.build(from_env(BASE)).router.get(NAME) is not None


def test_state_bounds_have_defaults_and_are_validated() -> None:
    settings = from_env(BASE)
    assert (settings.state_max_devices, settings.state_history_max, settings.state_max_resources) == (
        100_000,
        1000,
        500,
    )
    assert from_env({**BASE, "STATE_HISTORY_MAX": "50"}).state_history_max == 50
    with pytest.raises(ConfigError, match="STATE_MAX_DEVICES"):
        from_env({**BASE, "STATE_MAX_DEVICES": "0"})
    with pytest.raises(ConfigError, match="STATE"):
        from_env({**BASE, "STATE": "maybe"})


def test_management_keys_are_a_comma_separated_list_of_long_keys_never_shown() -> None:
    settings = from_env({**BASE, "MANAGEMENT_API_KEYS": "key-one-0123456789, key-two-0123456789"})
    assert settings.management_api_keys == ("key-one-0123456789", "key-two-0123456789")
    assert "key-one" not in repr(settings)
    with pytest.raises(ConfigError, match="MANAGEMENT_API_KEYS: key number 2"):
        from_env({**BASE, "MANAGEMENT_API_KEYS": "key-one-0123456789,short"})


def test_the_session_secret_is_configured_or_derived_from_the_keys() -> None:
    one = from_env({**BASE, "MANAGEMENT_API_KEYS": "key-one-0123456789"})
    two = from_env({**BASE, "MANAGEMENT_API_KEYS": "key-two-0123456789"})
    assert session_secret(one) == session_secret(
        from_env({**BASE, "MANAGEMENT_API_KEYS": "key-one-0123456789"})
    )
    assert session_secret(one) != session_secret(two)
    assert "key-one" not in session_secret(one)
    assert session_secret(one.with_overrides(session_secret="configured")) == "configured"
