"""Handlers: the router other teams register functions on, and its delivery machinery."""

from workers.handlers.router import Handler, HandlerError, Policy, Router

__all__ = ["Handler", "HandlerError", "Policy", "Router"]
