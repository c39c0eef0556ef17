"""The env file `devicehooks run` writes for other terminals, and CALLBACK_SECRET (app/config.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import config
from app.devrunner import Output


def write(path: Path, values: dict[str, str], pid: int) -> Path:
    """A runner env file at ``path``."""
    path.write_text(config.format_runner_env(values, pid))
    return path


def test_the_file_of_a_running_runner_is_read_back_quoted_values_intact(tmp_path: Path) -> None:
    values = {"REDIS_URL": "redis://127.0.0.1:5/0", "CALLBACK_HEADERS": '{"Authorization": "Bearer a b\'c"}'}
    path = write(tmp_path / "env", {**values, "PATH": "/not/ours"}, os.getpid())
    assert config.runner_env(path) == values


def test_the_file_of_a_runner_that_is_gone_is_ignored(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = write(tmp_path / "env", {"REDIS_URL": "redis://127.0.0.1:5/0"}, gone.pid)
    assert config.runner_env(path) == {}
    assert config.runner_env(tmp_path / "missing") == {}


def test_a_reused_pid_is_told_apart_by_its_start_time(tmp_path: Path) -> None:
    text = config.format_runner_env({"REDIS_URL": "redis://h/0"}, os.getpid())
    started = config.process_start(os.getpid())
    assert started is not None
    (tmp_path / "env").write_text(text.replace(f"={started}\n", "=1\n"))
    assert config.runner_env(tmp_path / "env") == {}


def test_the_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config.RUNNER_ENV_FILE.parent.mkdir()
    write(config.RUNNER_ENV_FILE, {"REDIS_URL": "redis://from-file/0", "DM_API_KEY": "ak_file"}, os.getpid())
    monkeypatch.setenv("REDIS_URL", "redis://from-env/0")
    monkeypatch.delenv("DM_API_KEY", raising=False)
    settings = config.from_env()
    assert settings.redis_url == "redis://from-env/0"
    assert settings.dm_api_key == "ak_file"
    assert config.from_env({}).dm_api_key is None  # an explicit mapping is taken as it is


def test_callback_secret_becomes_a_bearer_header() -> None:
    settings = config.from_env({"CALLBACK_SECRET": "s" * 16})
    assert settings.callback_headers == {"Authorization": "Bearer " + "s" * 16}
    with pytest.raises(config.ConfigError, match="CALLBACK_SECRET must be at least 16"):
        config.from_env({"CALLBACK_SECRET": "short"})
    with pytest.raises(config.ConfigError, match="not both"):
        config.from_env({"CALLBACK_SECRET": "s" * 16, "CALLBACK_HEADERS": '{"X-A": "b"}'})


def test_output_goes_quiet_instead_of_raising_when_its_reader_is_gone() -> None:
    read, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    out = Output(stream)
    out("first")
    assert os.read(read, 100) == b"first\n"
    os.close(read)
    out("the reader is gone")  # EPIPE: no exception
    out("and later lines")
    assert out.broken
    stream.close()
