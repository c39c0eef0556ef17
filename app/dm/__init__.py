"""Talking back to Device Management: the REST client, async requests, callback registration, channels.

- :mod:`app.dm.client` — :class:`DMClient`, one ``requests.Session`` with timeouts, retries and the
  error model mapped to :class:`app.errors.DMApiError` and its subclasses;
- :mod:`app.dm.asyncs` — :class:`AsyncTracker`, async requests tracked in Redis and resolved exactly once;
- :mod:`app.dm.registration` — the callback (re-)registration on startup and its periodic check;
- :mod:`app.dm.channels` — the websocket and long-poll channels that feed the callback's queue;
- :mod:`app.dm.cli` — the ``devicehooks`` commands that talk to Device Management.

Nothing here does work at import time.
"""
