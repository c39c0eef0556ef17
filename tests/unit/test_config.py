"""Configuration: parsed once, and every error names its variable."""

from __future__ import annotations

import pytest

from app import config
from app.config import ConfigError
from app.stores import StoreLimits


def test_defaults_when_nothing_is_set() -> None:
    settings = config.from_env({})
    assert settings.callback_path == "/notify"
    assert settings.dm_api_url == "https://api.us-east-1.mbedcloud.com"
    assert settings.callback_headers == {}
    assert settings.max_body_bytes == config.DEFAULT_MAX_BODY_BYTES


def test_callback_headers_are_parsed_from_json() -> None:
    settings = config.from_env({"CALLBACK_HEADERS": '{"Authorization": "Bearer x"}'})
    assert settings.callback_headers == {"Authorization": "Bearer x"}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CALLBACK_HEADERS": "not json"}, "CALLBACK_HEADERS"),
        ({"CALLBACK_HEADERS": "[1]"}, "CALLBACK_HEADERS"),
        ({"CALLBACK_HEADERS": '{"a": 1}'}, "CALLBACK_HEADERS"),
        ({"CALLBACK_HEADERS": '{"a": "b"}', "CALLBACK_HEADERS_PREVIOUS": "{"}, "CALLBACK_HEADERS_PREVIOUS"),
        ({"CALLBACK_HEADERS_PREVIOUS": '{"a": "b"}'}, "CALLBACK_HEADERS_PREVIOUS"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
        ({"CALLBACK_PATH": "notify"}, "CALLBACK_PATH"),
        ({"CALLBACK_URL": "ftp://x"}, "CALLBACK_URL"),
        ({"DM_API_URL": "nope"}, "DM_API_URL"),
        ({"MAX_BODY_BYTES": "lots"}, "MAX_BODY_BYTES"),
        ({"MAX_BODY_BYTES": "0"}, "MAX_BODY_BYTES"),
        ({"PORT": "-1"}, "PORT"),
        ({"WEB_CONCURRENCY": "two"}, "WEB_CONCURRENCY"),
        ({"DEVICEHOOKS_INSECURE_NO_AUTH": "maybe"}, "DEVICEHOOKS_INSECURE_NO_AUTH"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"DEVICEHOOKS_CHANNEL": "carrier-pigeon"}, "DEVICEHOOKS_CHANNEL"),
    ],
)
def test_invalid_value_fails_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        config.from_env(env)


def test_service_refuses_to_start_without_callback_headers() -> None:
    with pytest.raises(ConfigError, match="CALLBACK_HEADERS"):
        config.require_auth(config.from_env({}))


def test_insecure_opt_out_allows_starting_without_headers() -> None:
    config.require_auth(config.from_env({"DEVICEHOOKS_INSECURE_NO_AUTH": "1"}))


def test_missing_redis_url_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        config.require_redis(config.from_env({}))


def test_repr_never_shows_secrets() -> None:
    settings = config.from_env(
        {
            "CALLBACK_HEADERS": '{"Authorization": "Bearer hunter2"}',
            "DM_API_KEY": "ak_supersecret",
            "REDIS_URL": "redis://:p4ssw0rd@host:6379/0",
        }
    )
    text = repr(settings)
    assert "hunter2" not in text
    assert "ak_supersecret" not in text
    assert "p4ssw0rd" not in text


def test_resource_types_map_resource_ids_to_lwm2m_types() -> None:
    settings = config.from_env({"LWM2M_RESOURCE_TYPES": "5700:float, 27001:Integer,1:string"})
    assert settings.resource_types == {5700: "float", 27001: "integer", 1: "string"}
    assert config.from_env({}).resource_types == {}


@pytest.mark.parametrize("raw", ["5700", "x:float", "70000:float", "5700:decimal", "5700=float"])
def test_invalid_resource_types_fail_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="LWM2M_RESOURCE_TYPES"):
        config.from_env({"LWM2M_RESOURCE_TYPES": raw})


def test_tlv_strict_is_a_flag() -> None:
    assert config.from_env({"LWM2M_TLV_STRICT": "1"}).tlv_strict
    assert not config.from_env({}).tlv_strict
    with pytest.raises(ConfigError, match="LWM2M_TLV_STRICT"):
        config.from_env({"LWM2M_TLV_STRICT": "maybe"})


def test_config_knows_the_same_lwm2m_types_as_the_object_model() -> None:
    from workers.decoding.model import RESOURCE_TYPES

    assert config.LWM2M_TYPES == RESOURCE_TYPES


def test_store_limits_come_from_their_variables_and_a_bad_one_is_named() -> None:
    env = {"STORE_TTL_DAYS": "2", "REJECTIONS_KEEP": "50", "DEAD_LETTERS_MAX_BYTES": "1_048_576"}
    limits = StoreLimits.from_settings(config.from_env(env))
    assert (limits.ttl, limits.rejections_keep, limits.dead_letters_max_bytes) == (2 * 86400, 50, 1048576)
    assert limits.dead_letter_bytes == 262144
    with pytest.raises(config.ConfigError, match="QUARANTINE_BODY_BYTES must be at least 256"):
        config.from_env({"QUARANTINE_BODY_BYTES": "10"})
    with pytest.raises(config.ConfigError, match="FAILED_BATCHES_KEEP must be an integer"):
        config.from_env({"FAILED_BATCHES_KEEP": "many"})
