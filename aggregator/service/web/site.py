"""The operator's page (issue 16): HTML for people, the same data as JSON for scripts.

Pages: ``/`` (every feed, filtered, sorted, paginated; totals and a 24-hour
chart), ``/feeds/<id>`` (poll history, errors, schedule reasons, newest
posts), ``/posts`` (newest posts, title search), and under ``/api/``
``summary``, ``feeds``, ``feeds/<id>``, ``posts``.

Design choices, and why:

* **Server-rendered, no script.**  Jinja2 templates with autoescape on for
  every template (not by file extension), charts drawn as inline SVG by
  :mod:`aggregator.service.web.svg`; the page works in any browser, a text
  browser included, and loads nothing from elsewhere.  Feed text (titles,
  outlet names, error messages, URLs) is only ever inserted escaped; links
  taken from feeds are made clickable only when they are ``http(s)``
  (autoescape does not stop a ``javascript:`` URL), and the page's
  Content-Security-Policy forbids scripts, inline styles, frames and
  foreign form targets, so a missed escape would still run nothing.
* **Fast with 30,000 feeds.**  Every page is a few indexed queries over one
  page of rows (:mod:`aggregator.store.views`), run in a thread so the
  daemon's loop keeps polling; bench/page_timing.py measures them.
* **Feed URLs are redacted**: user:password and the values of query
  parameters that look like secrets (``token``, ``key``, ``sig`` ...).
* **Read-only unless a token is configured** (``--http-token`` /
  ``AGGREGATOR_HTTP_TOKEN``).  With one, two actions exist: *poll now*
  (makes the feed due; any daemon on the database claims it within a
  second) and *re-enable* a feed the error policy disabled.

  - Scripts send the token as a header (``Authorization: Bearer TOKEN`` or
    ``X-Aggregator-Token: TOKEN``) to ``POST /api/feeds/<id>/poll|enable``.
    Those endpoints never look at cookies, so a forged cross-site request
    (which cannot set these headers without a CORS preflight we never
    answer) carries no authority: CSRF does not apply to them.
  - People type the token once into the page's sign-in form; the answer is
    a session cookie ``nonce.HMAC(token, nonce)``, ``HttpOnly``,
    ``SameSite=Strict``, ``Path=/``.  Every action form carries a hidden
    ``csrf`` field, ``HMAC(token, "csrf:" + nonce)``, bound to that session.
    A form POST is accepted only when (1) the cookie verifies, (2) the
    hidden field matches it, and (3) the ``Origin`` header, when the browser
    sends one, is this page's own origin and ``Sec-Fetch-Site`` is not
    ``cross-site``.  SameSite=Strict alone keeps the cookie off cross-site
    requests in current browsers; the token-bound field covers older
    browsers and same-site attackers (another service on the same host
    name cannot read our page to learn the field); the Origin check covers
    a browser that ignores SameSite.  Changing the token invalidates every
    session and field (they are HMACs keyed by it).  All comparisons are
    constant-time.  There are no state-changing GETs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import jinja2
from aiohttp import web

from aggregator.config.publish import PublishConfig
from aggregator.policy.urls import redact_url
from aggregator.service.publish import publisher_states
from aggregator.service.web.svg import hourly_chart, sparkline
from aggregator.store import Store, views
from aggregator.store import polls as poll_store

__all__ = ["OperatorSite", "display_url", "safe_href"]

_HERE = Path(__file__).parent
SESSION_COOKIE: Final = "aggregator_session"
#: Feed table rows per page (the user may ask for up to MAX_PER_PAGE).
PER_PAGE: Final = 100
MAX_PER_PAGE: Final = 500
#: Seconds the header's totals and chart are reused: they aggregate every
#: feed and the last day's polls, the costliest part of a page, and a few
#: seconds' staleness is invisible to a person reading it.
SUMMARY_TTL: Final = 5.0

_CSP: Final = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    # Source links go to other sites: do not tell them where the operator's page is.
    # (same-origin, not no-referrer: under no-referrer Chromium sends "Origin: null"
    # even on our own forms, and the Origin check below would refuse them.)
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_SECRET_PARAM = re.compile(
    r"(?i)(token|key|secret|pass(word)?|auth|sig(nature)?|session|code|credential)"
)

StoreGetter = Callable[[], Store | None]


def display_url(url: str) -> str:
    """A feed URL as the page shows it: no user:password, secret-looking query values hidden."""
    url = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(_SECRET_PARAM.search(name) for name, _ in pairs):
        return url
    query = "&".join(
        f"{quote(name, safe='')}={'***' if _SECRET_PARAM.search(name) else quote(value, safe='')}"
        for name, value in pairs
    )
    return urlunsplit(parts._replace(query=query))


def safe_href(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) link, else None (not made clickable)."""
    if not url:
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url.strip() if scheme in ("http", "https") else None


def _ago(moment: datetime | None, now: datetime) -> str:
    """``5 min ago`` / ``in 3 h``: how far, in words read at a glance."""
    if moment is None:
        return "never"
    seconds = (moment - now).total_seconds()
    size = abs(seconds)
    if size < 60:
        text = f"{size:.0f} s"
    elif size < 3600:
        text = f"{size / 60:.0f} min"
    elif size < 86400 * 2:
        text = f"{size / 3600:.0f} h"
    else:
        text = f"{size / 86400:.0f} d"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _int_arg(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number, not {raw!r}\n") from None
    return min(max(value, low), high)


class OperatorSite:
    """The page's routes over a store; mounted by :class:`aggregator.service.server.HttpServer`.

    ``store`` is a callable, not a store: the HTTP side starts before the
    daemon has opened its database (so /healthz can say "waiting for the
    database"), and until then the pages answer 503 saying so.
    """

    def __init__(
        self,
        store: StoreGetter,
        *,
        token: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        publish: Callable[[], PublishConfig | None] = lambda: None,
    ) -> None:
        self._store = store
        # The daemon's current publish: section (it changes on reload): the
        # header lists what it names, and what the database still remembers.
        self._publish = publish
        self._token = token or None
        self._clock = clock
        self._summary: tuple[float, dict[str, Any]] | None = None
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,  # every template, whatever its name
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.globals.update(display_url=display_url, safe_href=safe_href, iso=_iso)
        self._env.filters["sparkline"] = sparkline

    @property
    def actions_enabled(self) -> bool:
        return self._token is not None

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self._index)
        r.add_get("/feeds/{id:[0-9]+}", self._feed)
        r.add_get("/posts", self._posts)
        r.add_get("/static/page.css", self._css)
        # Browsers ask for it on plain-text answers (a refused form): no icon, no 404.
        r.add_get("/favicon.ico", _no_content)
        r.add_post("/feeds/{id:[0-9]+}/{action:poll|enable}", self._form_action)
        r.add_post("/login", self._login)
        r.add_post("/logout", self._logout)
        r.add_get("/api/summary", self._api_summary)
        r.add_get("/api/feeds", self._api_feeds)
        r.add_get("/api/feeds/{id:[0-9]+}", self._api_feed)
        r.add_get("/api/posts", self._api_posts)
        r.add_post("/api/feeds/{id:[0-9]+}/{action:poll|enable}", self._api_action)

    # ------------------------------------------------------------ plumbing

    def _engine_or_503(self) -> Any:
        store = self._store()
        if store is None:
            raise web.HTTPServiceUnavailable(
                text="starting: waiting for the database; try again in a moment\n"
            )
        return store.engine

    async def _query(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A store read in a thread: the daemon's loop keeps polling meanwhile."""
        engine = self._engine_or_503()
        return await asyncio.to_thread(fn, engine, *args, **kwargs)

    def _html(self, template: str, **context: Any) -> web.Response:
        body = self._env.get_template(template).render(**context)
        return web.Response(
            text=body, content_type="text/html", charset="utf-8", headers=_SECURITY_HEADERS
        )

    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        return web.Response(
            text=json.dumps(_jsonable(data), ensure_ascii=False, indent=1),
            status=status,
            content_type="application/json",
            charset="utf-8",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    async def _summary_data(self, now: datetime) -> dict[str, Any]:
        cached = self._summary
        if cached is not None and time.monotonic() - cached[0] < SUMMARY_TTL:
            return cached[1]
        totals, hours = await self._query(views.summary, now=now)
        store = self._store()
        publishers = (
            await asyncio.to_thread(publisher_states, store, self._publish())
            if store is not None
            else []
        )
        data = {"totals": totals, "hours": hours, "publishers": publishers}
        self._summary = (time.monotonic(), data)
        return data

    def _feed_args(self, request: web.Request) -> dict[str, Any]:
        state = request.query.get("state") or None
        if state is not None and state not in views.STATES:
            raise web.HTTPBadRequest(
                text=f"unknown state {state!r}: use one of {', '.join(views.STATES)}\n"
            )
        sort = request.query.get("sort") or "name"
        if sort not in views.SORTS:
            raise web.HTTPBadRequest(
                text=f"unknown sort {sort!r}: use one of {', '.join(views.SORTS)}\n"
            )
        return {
            "state": state,
            "sort": sort,
            "descending": request.query.get("desc") in ("1", "true", "yes"),
            "page": _int_arg(request, "page", 1, low=1, high=1_000_000),
            "per_page": _int_arg(request, "per_page", PER_PAGE, low=1, high=MAX_PER_PAGE),
            "query": (request.query.get("q") or "").strip() or None,
        }

    # ------------------------------------------------------------ pages

    async def _index(self, request: web.Request) -> web.Response:
        now = self._clock()
        args = self._feed_args(request)
        page = await self._query(views.feed_page, now=now, **args)
        summary = await self._summary_data(now)
        hours: list[views.HourBucket] = summary["hours"]
        chart = hourly_chart(
            [h.start for h in hours],
            [h.polls for h in hours],
            [h.failed for h in hours],
            [h.new for h in hours],
        )

        def link(**changes: Any) -> str:
            merged = {
                "state": args["state"],
                "sort": args["sort"],
                "desc": "1" if args["descending"] else None,
                "q": args["query"],
                "per_page": args["per_page"] if args["per_page"] != PER_PAGE else None,
                "page": None,
                **changes,
            }
            query = urlencode({k: v for k, v in merged.items() if v not in (None, "")})
            return "/?" + query if query else "/"

        return self._html(
            "index.html",
            page=page,
            args=args,
            totals=summary["totals"],
            publishers=summary["publishers"],
            chart=chart,
            states=views.STATES,
            sorts=views.SORTS,
            link=link,
            now=now,
            ago=lambda moment: _ago(moment, now),
            **self._session_context(request),
        )

    async def _feed(self, request: web.Request) -> web.Response:
        now = self._clock()
        detail = await self._query(views.feed_detail, int(request.match_info["id"]), now=now)
        if detail is None:
            raise web.HTTPNotFound(text=f"no feed with id {request.match_info['id']}\n")
        return self._html(
            "feed.html",
            d=detail,
            f=detail.feed,
            now=now,
            ago=lambda moment: _ago(moment, now),
            **self._session_context(request),
        )

    async def _posts(self, request: web.Request) -> web.Response:
        now = self._clock()
        query = (request.query.get("q") or "").strip()[:200]
        page = await self._query(
            views.newest_posts, query=query, page=_int_arg(request, "page", 1, low=1, high=100_000)
        )

        def link(page_number: int) -> str:
            return "/posts?" + urlencode(
                {k: v for k, v in (("q", query), ("page", page_number)) if v}
            )

        return self._html(
            "posts.html",
            page=page,
            query=query,
            link=link,
            now=now,
            ago=lambda moment: _ago(moment, now),
            **self._session_context(request),
        )

    async def _css(self, request: web.Request) -> web.Response:
        return web.Response(
            body=(_HERE / "static" / "page.css").read_bytes(),
            content_type="text/css",
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    # ------------------------------------------------------------ JSON

    async def _api_summary(self, request: web.Request) -> web.Response:
        return self._json(await self._summary_data(self._clock()))

    async def _api_feeds(self, request: web.Request) -> web.Response:
        page = await self._query(views.feed_page, now=self._clock(), **self._feed_args(request))
        rows = [
            {**_jsonable(row), "url": display_url(row.url), "page": f"/feeds/{row.id}"}
            for row in page.rows
        ]
        return self._json(
            {"total": page.total, "page": page.page, "pages": page.pages, "feeds": rows}
        )

    async def _api_feed(self, request: web.Request) -> web.Response:
        detail = await self._query(
            views.feed_detail, int(request.match_info["id"]), now=self._clock()
        )
        if detail is None:
            return self._json({"error": f"no feed with id {request.match_info['id']}"}, 404)
        data = _jsonable(detail)
        data["feed"]["url"] = display_url(detail.feed.url)
        return self._json(data)

    async def _api_posts(self, request: web.Request) -> web.Response:
        page = await self._query(
            views.newest_posts,
            query=(request.query.get("q") or "").strip()[:200],
            page=_int_arg(request, "page", 1, low=1, high=100_000),
        )
        return self._json(page)

    # ------------------------------------------------------------ actions

    def _mac(self, message: str) -> str:
        assert self._token is not None
        return hmac.new(self._token.encode(), message.encode(), hashlib.sha256).hexdigest()

    def _session_nonce(self, request: web.Request) -> str | None:
        """The nonce of a valid session cookie, or None."""
        if self._token is None:
            return None
        nonce, _, mac = request.cookies.get(SESSION_COOKIE, "").partition(".")
        if not nonce or not hmac.compare_digest(mac, self._mac("session:" + nonce)):
            return None
        return nonce

    def _session_context(self, request: web.Request) -> dict[str, Any]:
        nonce = self._session_nonce(request)
        return {
            "actions": self.actions_enabled,
            "signed_in": nonce is not None,
            "csrf": self._mac("csrf:" + nonce) if nonce is not None else "",
        }

    def _same_origin(self, request: web.Request) -> bool:
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            return False
        origin = request.headers.get("Origin")
        if origin is None:  # older browsers, curl: the cookie and field still decide
            return True
        return origin == f"{request.scheme}://{request.host}"

    async def _act(self, action: str, feed_id: int) -> bool:
        fn = poll_store.request_poll if action == "poll" else poll_store.reenable_feed
        self._summary = None
        return bool(await self._query(fn, feed_id, now=self._clock()))

    async def _form_action(self, request: web.Request) -> web.Response:
        if self._token is None:
            raise web.HTTPForbidden(text="read-only: start the daemon with --http-token to act\n")
        form = await request.post()
        nonce = self._session_nonce(request)
        field = str(form.get("csrf", ""))
        if (
            nonce is None
            or not hmac.compare_digest(field, self._mac("csrf:" + nonce))
            or not self._same_origin(request)
        ):
            raise web.HTTPForbidden(text="not signed in, or the form is stale: reload the page\n")
        feed_id = int(request.match_info["id"])
        await self._act(request.match_info["action"], feed_id)
        raise web.HTTPSeeOther(f"/feeds/{feed_id}")

    async def _api_action(self, request: web.Request) -> web.Response:
        if self._token is None:
            return self._json({"error": "read-only: no --http-token configured"}, 403)
        given = request.headers.get("X-Aggregator-Token") or ""
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = given or bearer.strip()
        if not given or not hmac.compare_digest(given.encode(), self._token.encode()):
            return self._json({"error": "missing or wrong token"}, 401)
        feed_id = int(request.match_info["id"])
        action = request.match_info["action"]
        done = await self._act(action, feed_id)
        return self._json({"feed": feed_id, "action": action, "done": done})

    async def _login(self, request: web.Request) -> web.Response:
        if self._token is None:
            raise web.HTTPForbidden(text="read-only: start the daemon with --http-token to act\n")
        form = await request.post()
        if not self._same_origin(request) or not hmac.compare_digest(
            str(form.get("token", "")).encode(), self._token.encode()
        ):
            raise web.HTTPForbidden(text="wrong token\n")
        nonce = secrets.token_urlsafe(16)
        response = web.HTTPSeeOther(_local_path(str(form.get("next", "/"))))
        response.set_cookie(
            SESSION_COOKIE,
            f"{nonce}.{self._mac('session:' + nonce)}",
            httponly=True,
            samesite="Strict",
            path="/",
            max_age=int(timedelta(days=7).total_seconds()),
        )
        raise response

    async def _logout(self, request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response


async def _no_content(_request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})


def _local_path(target: str) -> str:
    """Only a path on this site (no ``//evil.example``): the sign-in form's ``next``."""
    return target if target.startswith("/") and not target.startswith("//") else "/"
