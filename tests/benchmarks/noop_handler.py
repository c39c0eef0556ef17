"""One no-op handler, for the worker benchmark."""

from workers.events import Event
from workers.handlers import Router

router = Router()


@router.register("notifications", name="noop")
def noop(event: Event) -> None:
    """Take the event and do nothing."""
