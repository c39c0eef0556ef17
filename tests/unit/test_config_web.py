"""The web tier's settings: threads, proxies, TLS, client certificate, header names."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import config
from app.config import ConfigError


def test_web_tier_defaults_trust_no_proxy_and_check_no_certificate() -> None:
    settings = config.from_env({})
    assert settings.forwarded_allow_ips == ()
    assert settings.client_cert is False
    assert settings.client_cert_cn == "notifications.mbedcloud.com"
    assert settings.web_threads == config.DEFAULT_WEB_THREADS


def test_header_names_that_differ_only_in_case_are_refused_naming_the_variable() -> None:
    with pytest.raises(
        ConfigError, match="CALLBACK_HEADERS: headers 'X-Key' and 'x-key' differ only in case"
    ):
        config.from_env({"CALLBACK_HEADERS": '{"X-Key": "a", "x-key": "b"}'})
    with pytest.raises(ConfigError, match="CALLBACK_HEADERS_PREVIOUS"):
        config.from_env(
            {"CALLBACK_HEADERS": '{"a": "b"}', "CALLBACK_HEADERS_PREVIOUS": '{"A": "1", " a ": "2"}'}
        )


def test_forwarded_allow_ips_takes_addresses_networks_and_star() -> None:
    settings = config.from_env({"FORWARDED_ALLOW_IPS": "10.0.0.0/8, 127.0.0.1,::1"})
    assert settings.forwarded_allow_ips == ("10.0.0.0/8", "127.0.0.1", "::1")
    assert config.from_env({"FORWARDED_ALLOW_IPS": "*"}).forwarded_allow_ips == ("*",)


@pytest.fixture
def pem(tmp_path: Path) -> str:
    path = tmp_path / "file.pem"
    path.write_text("x")
    return str(path)


def test_client_cert_from_a_proxy_header(pem: str) -> None:
    settings = config.from_env(
        {
            "CALLBACK_CLIENT_CERT": "require",
            "CALLBACK_CLIENT_CERT_HEADER": "X-Client-Cert",
            "FORWARDED_ALLOW_IPS": "10.0.0.1",
        }
    )
    assert settings.client_cert is True
    assert settings.client_cert_header == "X-Client-Cert"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"FORWARDED_ALLOW_IPS": "proxy.example"}, "FORWARDED_ALLOW_IPS"),
        ({"FORWARDED_ALLOW_IPS": "10.0.0.1/8"}, "FORWARDED_ALLOW_IPS"),
        ({"WEB_THREADS": "0"}, "WEB_THREADS"),
        ({"CALLBACK_CLIENT_CERT": "yes"}, "CALLBACK_CLIENT_CERT"),
        ({"CALLBACK_CLIENT_CERT": "require"}, "CALLBACK_CLIENT_CERT"),
        ({"WEB_TLS_CERT": "/nonexistent.pem"}, "WEB_TLS_CERT"),
        ({"CALLBACK_CLIENT_CERT": "require", "CALLBACK_CLIENT_CERT_HEADER": "X-Cert"}, "FORWARDED_ALLOW_IPS"),
        ({"CALLBACK_CLIENT_CERT_HEADER": "X_Cert"}, "CALLBACK_CLIENT_CERT_HEADER"),
    ],
)
def test_invalid_web_tier_value_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        config.from_env(env)


def test_tls_files_come_in_pairs_and_require_needs_the_ca(pem: str) -> None:
    with pytest.raises(ConfigError, match="WEB_TLS_CERT and WEB_TLS_KEY"):
        config.from_env({"WEB_TLS_CERT": pem})
    with pytest.raises(ConfigError, match="CALLBACK_CLIENT_CA"):
        config.from_env({"WEB_TLS_CERT": pem, "WEB_TLS_KEY": pem, "CALLBACK_CLIENT_CERT": "require"})
    settings = config.from_env(
        {
            "WEB_TLS_CERT": pem,
            "WEB_TLS_KEY": pem,
            "CALLBACK_CLIENT_CERT": "require",
            "CALLBACK_CLIENT_CA": pem,
        }
    )
    assert settings.client_cert_ca_file == pem
