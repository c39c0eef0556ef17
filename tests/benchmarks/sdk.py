"""mbed-cloud-sdk 2.2.0 beside devicehooks: installed into a throwaway venv under /tmp, never a dependency."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SDK = "mbed-cloud-sdk==2.2.0"
VENV = Path(tempfile.gettempdir()) / "devicehooks-bench-mbed-cloud-sdk"
CHILD = Path(__file__).with_name("sdk_child.py")


@dataclass
class SdkResult:
    """µs per item of the SDK and of the plain loop in its process, or why it could not run."""

    sdk_us: float | None = None
    plain_us: float | None = None
    version: str = ""
    error: str = ""


def _last_line(text: str) -> str:
    """The last non-empty line of some output, shortened."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:200]


def ensure_venv(venv: Path = VENV, timeout: float = 300) -> Path:
    """The venv's python with the SDK installed; raises RuntimeError with the reason when it fails."""
    python = venv / "bin" / "python"
    if python.exists() and _has_sdk(python):
        return python
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=timeout
    )
    if made.returncode:
        raise RuntimeError(f"venv failed: {_last_line(made.stderr)}")
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", SDK],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if pip.returncode or not _has_sdk(python):
        raise RuntimeError(_last_line(pip.stderr or pip.stdout))
    return python


def _has_sdk(python: Path) -> bool:
    """True when the SDK imports in that interpreter."""
    probe = subprocess.run(
        [str(python), "-c", "import mbed_cloud.connect"], capture_output=True, timeout=120, check=False
    )
    return probe.returncode == 0


def measure(bodies: list[bytes], rounds: int, venv: Path = VENV) -> SdkResult:
    """Time ``ConnectAPI.notify_webhook_received`` on the same bodies; the reason when it cannot."""
    try:
        python = ensure_venv(venv)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return SdkResult(error=f"did not install: {exc}")
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as handle:
        handle.write(b"\n".join(bodies) + b"\n")
    try:
        run = subprocess.run(
            [str(python), str(CHILD), handle.name, str(rounds)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        Path(handle.name).unlink()
    if run.returncode:
        return SdkResult(error=f"did not run: {_last_line(run.stderr)}")
    data = json.loads(_last_line(run.stdout))
    if data.get("delivered") != data.get("items"):
        return SdkResult(error=f"delivered {data.get('delivered')} of {data.get('items')} items")
    return SdkResult(sdk_us=data["sdk_us"], plain_us=data["plain_us"], version=data["version"])
