"""The example handler package: its own tests pass, and its entry point is discovered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.workers import ROOT

EXAMPLE = ROOT / "deploy" / "example-handler"


def env_with(*paths: Path) -> dict[str, str]:
    """The environment with extra import paths and no HANDLERS."""
    env = {k: v for k, v in os.environ.items() if k != "HANDLERS"}
    env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths), str(ROOT)])
    return env


def test_example_package_tests_pass_with_the_testing_kit() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        env=env_with(EXAMPLE), cwd=EXAMPLE, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout


def test_installed_entry_point_is_loaded_without_configuration(tmp_path: Path) -> None:
    dist = tmp_path / "devicehooks_example-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: devicehooks-example\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        "[devicehooks.handlers]\nexample = devicehooks_example.handlers:router\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "app", "handlers"],
        env=env_with(tmp_path, EXAMPLE), cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "devicehooks_example.handlers:temperature_alert" in result.stdout
    assert "path=/3303/**" in result.stdout
    assert "devicehooks_example.handlers:track_devices" in result.stdout


def test_broken_entry_point_stops_startup_with_a_clear_message(tmp_path: Path) -> None:
    dist = tmp_path / "broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[devicehooks.handlers]\nbroken = no_such_module:router\n")
    result = subprocess.run(
        [sys.executable, "-m", "app", "handlers"],
        env=env_with(tmp_path), cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert "entry point 'broken'" in result.stderr
    assert "No module named 'no_such_module'" in result.stderr
