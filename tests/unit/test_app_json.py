"""app.json (a Heroku-style one-click deploy) agrees with the Procfile and with app/config.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app import config

ROOT = Path(__file__).resolve().parents[2]
APP = json.loads((ROOT / "app.json").read_text())
GENERATED = "0123456789abcdef" * 4  # what Heroku's "generator": "secret" makes: 64 hex characters
ADDON_REDIS_URL = "rediss://:password@ec2-1-2-3-4.compute-1.amazonaws.com:6380"


class Reads(dict[str, str]):
    """An environment that remembers every variable the configuration asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        """Record the name, answer unset."""
        self.asked.add(key)
        return super().get(key, default)


def procfile_types() -> set[str]:
    """The process types the Procfile declares."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {line.split(":", 1)[0].strip() for line in lines if ":" in line and not line.startswith("#")}


def platform_env(**user: str) -> dict[str, str]:
    """The environment the platform gives the processes: values, generated secrets, the add-on's URL."""
    env: dict[str, str] = {}
    for name, spec in APP["env"].items():
        if "value" in spec:
            env[name] = spec["value"]
        elif spec.get("generator") == "secret":
            env[name] = GENERATED
    env["REDIS_URL"] = ADDON_REDIS_URL
    env.update(user)
    return env


# Process types that need configuration app.json does not ask for (THINGSBOARD_HOST): formed, not run.
OPTIONAL = {"thingsboard"}


def test_the_formation_runs_every_procfile_process_type() -> None:
    assert set(APP["formation"]) == procfile_types()
    for name, spec in APP["formation"].items():
        assert spec["quantity"] == 0 if name in OPTIONAL else spec["quantity"] >= 1, name


def test_redis_comes_from_an_addon_that_sets_redis_url() -> None:
    plans = [addon["plan"] if isinstance(addon, dict) else addon for addon in APP["addons"]]
    assert any(plan.startswith("heroku-redis:") for plan in plans)
    assert "REDIS_URL" not in APP["env"]


def test_every_variable_is_one_the_configuration_reads() -> None:
    reads = Reads()
    config.from_env(reads)
    assert set(APP["env"]) <= reads.asked


def test_the_deployed_processes_start_with_only_the_required_values_given() -> None:
    required = {name for name, spec in APP["env"].items() if spec.get("required")}
    assert required == {"DM_API_KEY"}
    settings = config.from_env(platform_env(DM_API_KEY="ak_0123"))
    config.require_auth(settings)
    assert config.require_redis(settings) == ADDON_REDIS_URL
    assert settings.callback_headers == {"Authorization": f"Bearer {GENERATED}"}
    assert settings.dm_api_key == "ak_0123"
    assert not settings.redis_tls_verify


def test_the_callback_secret_is_generated_not_fixed() -> None:
    secret = APP["env"]["CALLBACK_SECRET"]
    assert secret == {"description": secret["description"], "generator": "secret"}


def test_the_platform_build_installs_the_package() -> None:
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line and not line.startswith("#")] == ["."]
