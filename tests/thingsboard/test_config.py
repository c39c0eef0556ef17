"""THINGSBOARD_* settings: defaults, TLS port, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError, from_env

BASE = {"THINGSBOARD_HOST": "tb.example", "THINGSBOARD_TOKEN": "secret-token"}


def test_defaults_when_only_host_and_token_are_set() -> None:
    settings = from_env(BASE)
    assert settings.thingsboard_port == 1883
    assert settings.thingsboard_device_name == "{ep}"
    assert settings.thingsboard_device_type == "{ept}"
    assert settings.thingsboard_rpc_timeout == 9.0
    assert settings.thingsboard_keys == "paths"


def test_tls_changes_the_default_port_and_accepts_a_ca_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    settings = from_env({**BASE, "THINGSBOARD_TLS": "1", "THINGSBOARD_CA_FILE": str(ca)})
    assert (settings.thingsboard_tls, settings.thingsboard_port) == (True, 8883)
    assert from_env({**BASE, "THINGSBOARD_TLS": "1", "THINGSBOARD_PORT": "9883"}).thingsboard_port == 9883


def test_the_token_is_never_shown() -> None:
    assert "secret-token" not in repr(from_env(BASE))


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"THINGSBOARD_HOST": "tb"}, "THINGSBOARD_TOKEN"),
        ({"THINGSBOARD_PORT": "70000"}, "THINGSBOARD_PORT"),
        ({"THINGSBOARD_PORT": "mqtt"}, "THINGSBOARD_PORT"),
        ({"THINGSBOARD_TLS": "maybe"}, "THINGSBOARD_TLS"),
        ({"THINGSBOARD_CA_FILE": "/nonexistent/ca.pem"}, "THINGSBOARD_CA_FILE"),
        ({"THINGSBOARD_DEVICE_NAME": "{serial}"}, "THINGSBOARD_DEVICE_NAME"),
        ({"THINGSBOARD_DEVICE_TYPE": "{ept"}, "THINGSBOARD_DEVICE_TYPE"),
        ({"THINGSBOARD_KEYS": "ids"}, "THINGSBOARD_KEYS"),
        ({"THINGSBOARD_RPC_TIMEOUT": "0"}, "THINGSBOARD_RPC_TIMEOUT"),
        ({"THINGSBOARD_RPC_TIMEOUT": "soon"}, "THINGSBOARD_RPC_TIMEOUT"),
        ({"THINGSBOARD_BACKLOG_MAX": "0"}, "THINGSBOARD_BACKLOG_MAX"),
        ({"THINGSBOARD_MAX_PAYLOAD": "10"}, "THINGSBOARD_MAX_PAYLOAD"),
    ],
)
def test_bad_values_fail_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        from_env({**BASE, **env} if "THINGSBOARD_HOST" not in env else env)
