"""The status page at ``/status``: server-rendered, behind a login with a management key.

The key is posted once in a form and never goes in a URL; the session is Flask's signed cookie
(HttpOnly, SameSite=Lax, Secure over HTTPS) holding a digest of the key, so a key removed from
``MANAGEMENT_API_KEYS`` logs its sessions out. Its secret is ``SESSION_SECRET``, else derived from the
management keys (every web process derives the same one). Forms carry a per-session CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Request,
    abort,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from redis import Redis
from rq import Worker
from werkzeug.wrappers import Response as BaseResponse

from app import counters, state, stores
from app.api import api
from app.api.auth import key_matches
from app.batches import make_queue
from app.config import Settings
from app.dm.registration import last_check

bp = Blueprint("status", __name__, url_prefix="/status", template_folder="templates")
SESSION_KEY = "status_key"
CSRF_KEY = "status_csrf"
DEVICES_SHOWN = 200
HISTORY_SHOWN = 100
REJECTIONS_SHOWN = 20
DEAD_SHOWN = 50


def key_digest(key: str) -> str:
    """What the session keeps of a key: a digest, never the key."""
    return hashlib.sha256(b"devicehooks-status\0" + key.encode()).hexdigest()


def session_secret(settings: Settings) -> str:
    """SESSION_SECRET, else a secret derived from the management keys."""
    if settings.session_secret:
        return settings.session_secret
    joined = "\0".join(sorted(settings.management_api_keys)).encode()
    return hmac.new(joined, b"devicehooks status session", hashlib.sha256).hexdigest()


def _logged_in(settings: Settings) -> bool:
    """True when the session holds the digest of a configured key."""
    digest = session.get(SESSION_KEY)
    return isinstance(digest, str) and key_matches(
        digest, [key_digest(k) for k in settings.management_api_keys]
    )


def _csrf_token() -> str:
    """This session's CSRF token."""
    token = session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = session[CSRF_KEY] = secrets.token_urlsafe(24)
    return token


def _check_csrf() -> None:
    """Refuse a form post without this session's token."""
    if not hmac.compare_digest(request.form.get("csrf", ""), session.get(CSRF_KEY) or "-"):
        abort(400, "the form is stale; reload the page")


@bp.before_request
def _require_login() -> BaseResponse | None:
    """404 when the API is off; the login page for anyone not logged in."""
    settings = api().settings
    if not settings.management_api_keys:
        abort(404, "the status page is off (MANAGEMENT_API_KEYS is not set)")
    if request.endpoint in ("status.login", "status.login_post", "status.static") or _logged_in(settings):
        return None
    return redirect(url_for("status.login"))


@bp.get("/login")
def login() -> str:
    """The login form."""
    return render_template("status/login.html", error=None, csrf=_csrf_token())


@bp.post("/login")
def login_post() -> BaseResponse | tuple[str, int]:
    """Check the key; start the session."""
    _check_csrf()
    key = request.form.get("key", "").strip()
    if not key_matches(key, api().settings.management_api_keys):
        return render_template(
            "status/login.html", error="That key is not a management key.", csrf=_csrf_token()
        ), 401
    session.clear()
    session[SESSION_KEY] = key_digest(key)
    session.permanent = True
    return redirect(url_for("status.overview"))


@bp.post("/logout")
def logout() -> BaseResponse:
    """End the session."""
    _check_csrf()
    session.clear()
    return redirect(url_for("status.login"))


def channel(redis: Redis, settings: Settings) -> dict[str, Any]:
    """The channel's health: registration, last batch, rates, queue, workers."""
    check = last_check(redis)
    worker_counts = counters.worker_counters(redis)
    last_batch = worker_counts.get(counters.LAST_BATCH)
    queue = make_queue(redis, settings.queue_name)
    now = time.time()
    return {
        "callback_url": check.get("url") or settings.callback_url,
        "registration": check.get("outcome"),
        "checked_at": state.iso(float(check["checked_at"])) if check.get("checked_at") else None,
        "last_batch_at": state.iso(float(last_batch)) if last_batch else None,
        "per_minute": counters.minute_counts(redis, now),
        "queue_depth": queue.count,
        "workers": Worker.count(connection=redis, queue=queue),
        "handlers": counters.per_handler(worker_counts),
    }


def device_rows(redis: Redis) -> list[dict[str, Any]]:
    """The first devices with their last-known values."""
    rows = []
    for device in state.iter_devices(redis, None, False, chunk=DEVICES_SHOWN):
        rows.append({**device, "values": state.resources(redis, device["id"])})
        if len(rows) >= DEVICES_SHOWN:
            break
    return rows


@bp.get("")
def overview() -> str:
    """The whole picture."""
    the_api = api()
    redis = the_api.redis
    dead = stores.dead_letter_summaries(redis, stores.newest_dead_letter_ids(redis, DEAD_SHOWN))
    return render_template(
        "status/overview.html",
        channel=channel(redis, the_api.settings),
        dead=dead,
        dead_total=int(redis.zcard(stores.DEAD_INDEX)),
        rejections=list(reversed(stores.rejections(redis, newest=REJECTIONS_SHOWN))),
        devices=device_rows(redis),
        device_total=state.device_count(redis),
        iso=state.iso,
        csrf=_csrf_token(),
        message=request.args.get("message"),
    )


@bp.get("/devices/<ep>")
def device_page(ep: str) -> str:
    """One device: its directory entry, last-known values and recent history."""
    redis = api().redis
    device = state.device(redis, ep)
    if device is None:
        abort(404, f"no device {ep!r} is known")
    return render_template(
        "status/device.html",
        device=device,
        values=state.resources(redis, ep),
        history=state.history(redis, ep, None, True, api().settings.state_history_seconds)[:HISTORY_SHOWN],
        csrf=_csrf_token(),
    )


@bp.post("/dead-letters/<letter_id>/replay")
def replay(letter_id: str) -> BaseResponse:
    """Queue a dead letter's replay (the worker re-delivers it), back to the overview."""
    _check_csrf()
    the_api = api()
    if not stores.dead_letter_exists(the_api.redis, letter_id):
        abort(404, f"no dead letter {letter_id!r}")
    the_api.replay(letter_id)
    return redirect(url_for("status.overview", message=f"Replay of {letter_id} queued."))


def short_time(value: str | None) -> str:
    """An RFC 3339 time as the page shows it: ``2026-12-01 20:17:49Z``."""
    return f"{value[:19].replace('T', ' ')}Z" if value else ""


class StatusOnlySessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, opened only under /status.

    With a secret key Flask opens (and saves) the session of EVERY request it serves: it builds a
    signing serializer and reads the cookie each time (measured at ~0.90x of the ack rate when the
    callback still went through Flask, ``tests/benchmarks/state.py``). Health, the API and /metrics
    need no session, so every route but /status gets a null session.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """The session under /status; a null session elsewhere."""
        if not request.path.startswith(bp.url_prefix or "/status"):
            return self.make_null_session(app)
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: BaseResponse) -> None:
        """Save only real sessions."""
        if not self.is_null_session(session):
            super().save_session(app, session, response)  # type: ignore[arg-type]


def init_app(app: Flask, settings: Settings) -> None:
    """Register the status page and its session cookie."""
    app.add_template_filter(short_time, "when")
    app.session_interface = StatusOnlySessions()
    app.secret_key = session_secret(settings)
    app.config.update(
        SESSION_COOKIE_NAME="devicehooks_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.callback_url is not None
        and settings.callback_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=12 * 3600,
    )
    app.register_blueprint(bp)
