"""Find handlers: modules named in HANDLERS and the ``devicehooks.handlers`` entry-point group."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from typing import Any

from app.config import Settings
from workers.handlers.router import Router

logger = logging.getLogger(__name__)
GROUP = "devicehooks.handlers"
THINGSBOARD_HANDLER = "workers.handlers.thingsboard"  # built in, on when THINGSBOARD_HOST is set


class HandlerLoadError(RuntimeError):
    """A configured handler could not be loaded; startup stops."""


def _as_router(obj: Any, where: str) -> Router:
    """A Router, or a module exposing ``router``."""
    candidate = getattr(obj, "router", obj)
    if not isinstance(candidate, Router):
        raise HandlerLoadError(f"{where} does not expose a devicehooks Router named 'router'")
    return candidate


def load_module_router(spec: str) -> Router:
    """Import ``package.module`` (its ``router``) or ``package.module:attribute``."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise HandlerLoadError(
            f"HANDLERS: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    obj = getattr(module, attribute, None) if attribute else module
    if obj is None:
        raise HandlerLoadError(f"HANDLERS: {module_name!r} has no attribute {attribute!r}")
    return _as_router(obj, f"HANDLERS entry {spec!r}")


def load_entry_point_routers() -> list[tuple[str, Router]]:
    """Routers of installed packages, by entry-point name."""
    found = []
    for point in entry_points(group=GROUP):
        try:
            obj = point.load()
        except Exception as exc:
            raise HandlerLoadError(
                f"entry point {point.name!r} ({point.value}) in group {GROUP} failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        found.append((point.name, _as_router(obj, f"entry point {point.name!r} ({point.value})")))
    return found


def load_router(
    specs: tuple[str, ...] | list[str], use_entry_points: bool = True, settings: Settings | None = None
) -> Router:
    """One router composed of every configured handler module, installed entry point and built-in: the
    state handler first when ``settings.state``, the ThingsBoard handler when THINGSBOARD_HOST is set."""
    router = Router()
    if settings is not None and settings.state:
        from workers.handlers.state import router as state_router

        router.include(state_router)
    if settings is not None and settings.thingsboard_host and THINGSBOARD_HANDLER not in specs:
        specs = [*specs, THINGSBOARD_HANDLER]
    for spec in specs:
        router.include(load_module_router(spec))
        logger.info("handlers loaded from %s", spec)
    if use_entry_points:
        for name, found in load_entry_point_routers():
            router.include(found)
            logger.info("handlers loaded from entry point %s", name)
    return router
