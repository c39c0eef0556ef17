"""Layers point down: the web process loads no ``workers`` module, ``app`` outside its CLI and simulator
imports none, and ``workers`` imports from ``app`` only the shared core (README, Architecture)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import HEADERS

ROOT = Path(__file__).resolve().parents[2]

# The shared core of app/ that workers/ may use; everything else in app/ is the web side or a tool.
SHARED_CORE = frozenset(
    {
        "app",  # the package itself (``from app import config``)
        "app.config",
        "app.errors",
        "app.logs",
        "app.redis_conn",
        "app.batches",
        "app.paths",
        "app.backoff",
        "app.dm.asyncs",
        "app.dm.client",
        "app.strictjson",  # the one parser of received bodies (web and worker)
        "app.stores",  # store keys, limits and readers
        "app.weather",  # waiting out a full, read-only or absent Redis
        "app.counters",  # the workers' counters, read by /metrics and the status page
        "app.state",  # device state keys, shared by the state handler and the API
        "app.thingsboard",  # the package (its __init__ imports nothing)
        "app.thingsboard.mapping",  # Event JSON -> gateway payloads (pure), used by the bridge's handler
        "app.thingsboard.stream",  # the bridge's Redis stream, fed by that handler
    }
)
# Modules of app/ that may use workers/: the top-level CLI (it runs the worker), the simulator (it
# encodes payloads with workers.decoding) and app/decoded.py (a waited-for async result's value, for the
# CLI and the ThingsBoard bridge).
MAY_IMPORT_WORKERS = ("app/cli.py", "app/simulator/", "app/decoded.py")

WEB_PROCESS = """
import json, sys
import app.gunicorn_config  # the web process's configuration module, as gunicorn loads it
from app import create_app
from app.dm import registration  # gunicorn's when_ready starts it
app = create_app()
client = app.test_client()
ok = client.put("/notify", data=sys.argv[1], headers=json.loads(sys.argv[2]), content_type="application/json")
empty = client.put("/notify", data=b"", headers=json.loads(sys.argv[2]))
health = client.get("/healthz")
print(json.dumps({
    "statuses": [ok.status_code, empty.status_code, health.status_code],
    "workers": sorted(m for m in sys.modules if m == "workers" or m.startswith("workers.")),
}))
"""


def imported_modules(path: Path) -> set[str]:
    """Every module a Python file imports, at its top or inside a function (``from a import b`` -> a.b)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_web_process_loads_no_workers_module(redis_url: str) -> None:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "CALLBACK_HEADERS": json.dumps(HEADERS),
        "PYTHONPATH": str(ROOT),
    }
    body = json.dumps({"notifications": [{"ep": "e", "path": "/3/0/0", "payload": "MQ=="}]})
    out = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS, body, json.dumps(HEADERS)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["statuses"] == [204, 204, 200], out.stderr
    assert loaded["workers"] == []


def test_app_outside_its_cli_and_simulator_imports_no_workers_module() -> None:
    offenders = {}
    for path in sorted((ROOT / "app").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(MAY_IMPORT_WORKERS):
            continue
        uses = sorted(m for m in imported_modules(path) if m == "workers" or m.startswith("workers."))
        if uses:
            offenders[relative] = uses
    assert offenders == {}


def test_workers_import_only_the_shared_core_of_app() -> None:
    outside = {}
    for path in sorted((ROOT / "workers").rglob("*.py")):
        from_app = {m for m in imported_modules(path) if m == "app" or m.startswith("app.")}
        # ``from app.batches import body_key`` names an attribute, not a module: keep real modules only.
        modules = {m for m in from_app if m in SHARED_CORE or _is_module(m)}
        if modules - SHARED_CORE:
            outside[path.relative_to(ROOT).as_posix()] = sorted(modules - SHARED_CORE)
    assert outside == {}


def _is_module(name: str) -> bool:
    """True when ``name`` is a module or package of this repository."""
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()
