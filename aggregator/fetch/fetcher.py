"""Polite, bounded HTTP fetching of feeds: the one door to the network.

Everything a hostile or broken server could do to a long-running daemon is
bounded here, so callers never need their own guards:

* time: connect and read timeouts per socket operation, plus one hard wall
  clock deadline per fetch (redirects included), because a server dripping a
  byte a second never trips a read timeout;
* memory: bodies are read raw and decompressed here, by decoders that are
  never asked for more than one step past ``max_body_bytes``, so a
  compression bomb costs at most the limit plus a chunk;
* politeness: one connection pool, a global concurrency cap, and per host a
  concurrency cap and a minimum spacing between request starts
  (:class:`HostPolicy`: generous for local hosts such as an RSSHub on
  127.0.0.1, conservative for public ones), an honest User-Agent,
  conditional GETs;
* redirects: followed one hop at a time so each hop is counted and loops are
  named;
* untrusted URLs (links inside feeds): with ``guard=`` a fetch only reaches
  public addresses, checked after DNS on every hop and pinned at connect time
  (see :mod:`aggregator.fetch.netguard`).

Requests are httpx ``Request``/``Response`` objects handed straight to one
transport, trusted and guarded alike: aiohttp's wire
(:mod:`aggregator.fetch.transport`, a fraction of httpcore's cost per
request), where the guard is the resolver of the guarded requests' pool, or
whatever a test injects.

Every failure is a ``FetchError`` subclass whose ``reason`` says what to do
next (wait, fix the URL, raise a limit) and never quotes a body.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import socket
import ssl
import sys
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType, TracebackType
from typing import IO, Any, Final, Protocol, cast

import brotli
import httpx
import zstandard

from aggregator import __version__
from aggregator.errors import AggregatorError
from aggregator.fetch.netguard import AddressGuard, AddressRefused
from aggregator.fetch.transport import GUARD_EXTENSION, AiohttpTransport
from aggregator.policy.politeness import (
    HostPolicy,
    default_host_policy,
    is_local_host,
)
from aggregator.policy.repair import fit_or_none
from aggregator.policy.urls import redact_url

__all__ = [
    "DEFAULT_ACCEPT",
    "BodyTooLarge",
    "ContentDecodingError",
    "FetchConnectError",
    "FetchError",
    "FetchLimits",
    "FetchResult",
    "FetchTimeout",
    "Fetcher",
    "ForbiddenAddress",
    "HTTPStatusError",
    "HostPolicy",
    "TooManyRedirects",
    "Validators",
    "cache_max_age",
    "default_host_policy",
    "is_local_host",
    "redact_url",
]

DEFAULT_USER_AGENT = (
    f"aggregator/{__version__} (feed archiver; httpx/{httpx.__version__}; "
    f"Python/{sys.version_info.major}.{sys.version_info.minor})"
)
DEFAULT_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/rdf+xml;q=0.9, application/json;q=0.9, application/xml;q=0.9, "
    "text/xml;q=0.9, */*;q=0.8"
)
# Exactly the codings decoded below with an output cap.  deflate is left out:
# servers disagree on its framing (zlib or raw) and all of them do gzip.
ACCEPT_ENCODING = "gzip, br, zstd"

_STEP = 64 * 1024  # the most output asked of a decoder at once
#: How much of an error response's body is kept (decoded) for classification.
ERROR_BODY_HEAD = 2048
_ZSTD_MAX_WINDOW = 8 * 1024 * 1024  # RFC 9659: HTTP zstd windows are at most 8 MB
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SENSITIVE = ("authorization", "cookie", "proxy-authorization")


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Bounds on one ``Fetcher``; the defaults suit a daemon polling thousands of feeds.

    Per-host politeness comes from ``host_policies`` (keyed by lowercase host
    name; ports are not told apart), else from ``default_policy``;
    ``max_per_host``, when set, caps every host's concurrency on top.
    """

    max_body_bytes: int = 16 * 1024 * 1024  # raw and decompressed
    connect_timeout: float = 10.0
    read_timeout: float = 30.0  # longest silence between bytes (also used for writes)
    deadline: float = 60.0  # wall clock from a free slot to the last byte, redirects included
    max_redirects: int = 5
    max_connections: int = 32  # concurrent fetches overall, and the pool size
    max_per_host: int | None = None  # hard cap on any host's concurrency, over its policy
    user_agent: str = DEFAULT_USER_AGENT
    host_policies: Mapping[str, HostPolicy] = field(default_factory=lambda: MappingProxyType({}))
    default_policy: Callable[[str], HostPolicy] = default_host_policy

    def __post_init__(self) -> None:
        positive = ("max_body_bytes", "connect_timeout", "read_timeout", "deadline")
        for name in (*positive, "max_connections", "max_per_host"):
            if name == "max_per_host" and self.max_per_host is None:
                continue
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"FetchLimits.{name} must be positive, got {getattr(self, name)!r}"
                )
        if self.max_redirects < 0:
            raise ValueError(f"FetchLimits.max_redirects must be >= 0, got {self.max_redirects!r}")


#: Longest validators kept: the sizes of the ``feeds.etag`` and
#: ``feeds.last_modified`` columns.
ETAG_MAX: Final = 1024
LAST_MODIFIED_MAX: Final = 128


@dataclass(frozen=True, slots=True)
class Validators:
    """Conditional GET state, stored per feed so unchanged feeds cost a 304.

    Values that no column holds (longer than :data:`ETAG_MAX` /
    :data:`LAST_MODIFIED_MAX`) or that are empty once control characters
    are dropped are not kept: the next request is then unconditional, which
    is all a shortened validator, never matching again, would give too.
    """

    etag: str | None = None
    last_modified: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "etag", fit_or_none(self.etag, ETAG_MAX))
        object.__setattr__(
            self, "last_modified", fit_or_none(self.last_modified, LAST_MODIFIED_MAX)
        )


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A successful (2xx) or not-modified (304) fetch."""

    url: str  # as requested
    final_url: str  # after redirects: the base for relative links
    status: int
    content: bytes  # decoded body; b"" for 304
    headers: httpx.Headers  # of the final response
    validators: Validators  # to send next time
    max_age: float | None  # Cache-Control max-age, seconds
    retry_after: float | None  # seconds
    elapsed: float  # seconds from a free slot to the last byte (queueing excluded)
    wire_bytes: int  # body bytes as received, before decoding

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def content_type(self) -> str | None:
        """The lowercased MIME type, without parameters."""
        mime = self.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        return mime or None

    @property
    def charset(self) -> str | None:
        """The Content-Type charset, lowercased: a hint the parser may overrule."""
        for param in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset":
                return value.strip().strip("\"'").lower() or None
        return None


class FetchError(AggregatorError):
    """A fetch that failed; ``reason`` is short and says which limit or fault it was."""

    def __init__(
        self,
        url: str,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(url, reason)
        self.url = url
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        # The error response's headers (None for network errors): Cache-Control
        # and server hints decide how an RSSHub 503 is treated.
        self.headers = headers

    def __str__(self) -> str:
        return f"{_redact(self.url)}: {self.reason}"


class FetchTimeout(FetchError):
    """Connect timeout, read timeout or total deadline; the reason says which."""


class FetchConnectError(FetchError):
    """DNS failure, refused or reset connection, TLS or protocol breakage."""


class BodyTooLarge(FetchError):
    """The raw or the decoded body passed ``max_body_bytes``."""


class TooManyRedirects(FetchError):
    """More than ``max_redirects`` hops, or a redirect loop."""


class HTTPStatusError(FetchError):
    """A final status other than 2xx or 304 (or a redirect that cannot be followed).

    ``headers`` and ``body_head`` (the first :data:`ERROR_BODY_HEAD` decoded
    bytes) let the scheduler tell a Cloudflare challenge page from a real 403
    or 503; they are evidence for classification, never quoted in ``reason``.
    """

    def __init__(
        self,
        url: str,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        headers: httpx.Headers | None = None,
        body_head: bytes = b"",
    ) -> None:
        super().__init__(url, reason, status=status, retry_after=retry_after)
        self.headers = headers if headers is not None else httpx.Headers()
        self.body_head = body_head


class ContentDecodingError(FetchError):
    """A corrupt or truncated compressed body, or a Content-Encoding we cannot decode."""


class ForbiddenAddress(FetchError):
    """A guarded fetch (or one of its redirects) led to a non-public address.

    Nothing was sent to that address; the reason names the URL, the address
    and what to set if the address is meant to be reached.
    """


_redact = redact_url  # the short name used throughout this module


def _seconds(value: float) -> str:
    return f"{value:g} s"


# --- decoding with an output cap -------------------------------------------------


class _Overflow(Exception):
    """The decoded body passed the limit (raised inside decoders, even from C callbacks)."""


class _Sink:
    """Collects decoded bytes and stops as soon as they pass the limit.

    It is also the identity decoder, and zstandard's output writer.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def write(self, chunk: bytes) -> int:
        self.data += chunk
        if len(self.data) > self.limit:
            raise _Overflow
        return len(chunk)

    def feed(self, data: bytes) -> None:
        self.write(data)

    def finish(self) -> None:
        pass


class _Decoder(Protocol):
    def feed(self, data: bytes) -> None: ...
    def finish(self) -> None: ...


class _Gzip:
    """Multi-member gzip; ``max_length`` keeps every zlib step at ``_STEP``."""

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)

    def feed(self, data: bytes) -> None:
        while data:
            if self._zlib.eof:  # another member follows
                self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
            self._sink.write(self._zlib.decompress(data, _STEP))
            data = self._zlib.unused_data if self._zlib.eof else self._zlib.unconsumed_tail
        # A step that filled max_length may leave output pending inside zlib.
        while not self._zlib.eof and (out := self._zlib.decompress(b"", _STEP)):
            self._sink.write(out)

    def finish(self) -> None:
        if not self._zlib.eof:
            raise zlib.error("stream truncated before its end marker")


class _Brotli:
    """brotli's ``output_buffer_limit`` caps each step (rounded up to its block size).

    ``can_accept_more_data()`` only says whether input is still queued: output
    can be pending even when it is True, so a full step means "ask again".
    """

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink
        self._brotli = brotli.Decompressor()

    def feed(self, data: bytes) -> None:
        while True:
            out = self._brotli.process(data, output_buffer_limit=_STEP)
            self._sink.write(out)
            data = b""
            accepting = self._brotli.can_accept_more_data()
            if len(out) < _STEP and accepting:
                return
            if not out and not accepting:  # never spin: the deadline cannot fire in a loop
                raise brotli.error("decoder made no progress")

    def finish(self) -> None:
        if not self._brotli.is_finished():
            raise brotli.error("stream truncated before its end marker")


class _Zstd:
    """zstandard's decompressobj has no output cap, so its stream writer pushes
    ``_STEP``-sized pieces into the sink, which raises once over the limit."""

    def __init__(self, sink: _Sink) -> None:
        decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        # The sink is file-like where it counts (write); the stubs want IO[bytes].
        self._writer = decompressor.stream_writer(cast("IO[bytes]", sink), write_size=_STEP)

    def feed(self, data: bytes) -> None:
        self._writer.write(data)

    def finish(self) -> None:
        # A truncated final frame is not detectable here.
        self._writer.flush()  # type: ignore[no-untyped-call]


_DECODE_ERRORS = (zlib.error, brotli.error, zstandard.ZstdError)


_DECODERS: dict[str, Callable[[_Sink], _Decoder]] = {
    "identity": lambda sink: sink,
    "gzip": _Gzip,
    "x-gzip": _Gzip,
    "br": _Brotli,
    "zstd": _Zstd,
}


def _decoder(url: str, header: str, sink: _Sink) -> tuple[str, _Decoder]:
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c not in ("", "identity")] or ["identity"]
    if len(codings) > 1:
        raise ContentDecodingError(url, f"stacked Content-Encoding {header!r} is not supported")
    if codings[0] not in _DECODERS:
        raise ContentDecodingError(
            url, f"unsupported Content-Encoding {codings[0]!r} (we offered {ACCEPT_ENCODING!r})"
        )
    return codings[0], _DECODERS[codings[0]](sink)


# --- header parsing ------------------------------------------------------------


def cache_max_age(headers: httpx.Headers) -> float | None:
    """Cache-Control max-age; s-maxage is for shared caches, which we are not."""
    for directive in headers.get("cache-control", "").split(","):
        name, _, value = directive.partition("=")
        if name.strip().lower() == "max-age":
            value = value.strip().strip('"')
            return float(value) if value.isascii() and value.isdigit() else None
    return None


def _retry_after(headers: httpx.Headers) -> float | None:
    """Retry-After as seconds from now, from delta-seconds or an HTTP-date."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _root_os_error(exc: BaseException) -> OSError | None:
    """The deepest OSError behind an httpx error: it says refused, reset or DNS."""
    found: OSError | None = None
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError):
            found = cause
        cause = cause.__cause__ or cause.__context__
    return found


def _transport_error(
    url: str, target: httpx.URL, exc: httpx.TransportError, limits: FetchLimits
) -> FetchError:
    """Turn httpx's exception into ours, naming the host and which limit or fault."""
    where = f"{target.host}:{target.port or (443 if target.scheme == 'https' else 80)}"
    if isinstance(exc, httpx.ConnectTimeout):
        return FetchTimeout(
            url,
            f"connecting to {where} timed out after "
            f"{_seconds(limits.connect_timeout)} (connect timeout)",
        )
    if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
        return FetchTimeout(
            url, f"{where} was silent for {_seconds(limits.read_timeout)} (read timeout)"
        )
    if isinstance(exc, httpx.PoolTimeout):
        return FetchTimeout(url, f"no pooled connection to {where} became free (pool timeout)")
    root = _root_os_error(exc)
    if isinstance(root, socket.gaierror):
        return FetchConnectError(
            url, f"DNS resolution failed for host {target.host!r}: {root.strerror or root}"
        )
    if isinstance(root, ConnectionRefusedError):
        return FetchConnectError(url, f"connection refused by {where} (nothing listening?)")
    if isinstance(root, ConnectionResetError):
        return FetchConnectError(url, f"connection reset by {where}")
    if isinstance(root, ssl.SSLError):
        return FetchConnectError(url, f"TLS with {where} failed: {root}")
    if isinstance(exc, httpx.LocalProtocolError):  # e.g. a bad header value from the caller
        return FetchError(url, f"request not sent, httpx rejected it: {exc}")
    if isinstance(exc, httpx.RemoteProtocolError):
        return FetchConnectError(url, f"{where} broke off the response: {exc}")
    if isinstance(exc, httpx.NetworkError | httpx.ProtocolError):
        return FetchConnectError(url, f"network error with {where}: {exc}")
    return FetchError(url, f"{type(exc).__name__} with {where}: {exc}")


@functools.lru_cache(maxsize=4096)
def _parse_url(url: str) -> httpx.URL:
    # Cached: a daemon asks for the same few thousand feed URLs all day, and
    # httpx.URL is immutable.  Invalid URLs raise, and are not cached.
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchError(url, f"invalid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError(url, "invalid URL: only absolute http:// and https:// URLs can be fetched")
    return parsed.copy_with(fragment=None)  # never sent; would only confuse loop detection


@dataclass(slots=True)
class _HostGate:
    """One host's concurrency slots and spacing turnstile, alive while it has users."""

    semaphore: asyncio.Semaphore
    spacing: float
    turnstile: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


@dataclass(slots=True)
class _Request:
    """The per-fetch state that survives redirects."""

    url: str
    sent: Validators
    headers: httpx.Headers
    visited: list[httpx.URL] = field(default_factory=list)
    started: float = 0.0


class _Channel:
    """One trust level over the shared transport: what ``httpx.AsyncClient``
    gave us, minus the rest.

    Credentials in the URL (``https://user:pass@host/feed``) become a Basic
    ``Authorization`` header, as the client would; cookies a server sets
    are sent back to it (some sites set one and redirect to check it), one
    jar per channel, so an untrusted link never sees a feed's cookies.
    ``guard`` rides on every request as the transport's
    :data:`~aggregator.fetch.transport.GUARD_EXTENSION`.
    """

    __slots__ = ("cookies", "guard", "transport")

    def __init__(self, transport: httpx.AsyncBaseTransport, guard: AddressGuard | None) -> None:
        self.transport = transport
        self.guard = guard
        self.cookies = httpx.Cookies()

    def request(
        self, target: httpx.URL, headers: httpx.Headers, extensions: dict[str, Any]
    ) -> httpx.Request:
        if self.guard is not None:
            extensions[GUARD_EXTENSION] = self.guard
        # What httpx.Request(method, url, headers=...) builds, without its
        # generic preparation (a body to encode, a Content-Type to look up,
        # the headers copied twice): a GET has no body, so the only header it
        # adds is Host, first, from the URL -- added here the same way.
        raw = headers.raw
        if "host" not in headers:
            raw = [(b"Host", target.netloc), *raw]
        request = httpx.Request("GET", target, headers=raw, stream=_NO_BODY, extensions=extensions)
        request.read()  # as httpx does for a body in memory: request.content is b""
        if target.userinfo and "authorization" not in headers:
            credentials = f"{target.username}:{target.password}".encode()
            request.headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        if self.cookies.jar:
            self.cookies.set_cookie_header(request)
        return request

    def keep_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            self.cookies.extract_cookies(response)


class Fetcher:
    """Fetches feeds over one pooled client; use as ``async with Fetcher() as f``.

    Concurrency is capped globally and per host with our own semaphores
    because httpx's pool limits only queue connections, per pool, not per
    host.  A fetch waits for its host's slot first and only then for a global
    one, so a burst to one slow host cannot hold global slots idle.

    Spacing is enforced here, not by callers, so feed polls, full-text pages
    and redirect hops all obey it: each request start to a host is at least
    its ``min_spacing`` after the previous one, counted from when the
    previous request's headers were actually sent.

    Guarded fetches (``fetch(..., guard=g)``) go through the same transport,
    naming ``g`` on each request; the transport keeps one connection pool
    per guard, whose connections were all opened to addresses ``g`` checked:
    pooled connections are then safe to reuse, and a connection opened for a
    trusted feed URL on the same host is never lent to an untrusted link.
    With an injected ``transport`` (tests) that ignores the guard, nothing
    can be pinned, and guarded fetches rely on the guard's pre-flight check
    of every hop alone.
    """

    def __init__(
        self,
        limits: FetchLimits | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._limits = limits = limits or FetchLimits()
        # One wire for every request: aiohttp's, which costs a fraction of
        # httpcore's per request (see aggregator.fetch.transport).
        self._transport: httpx.AsyncBaseTransport = transport or AiohttpTransport(
            max_connections=limits.max_connections
        )
        self._channels: dict[AddressGuard | None, _Channel] = {}
        self._closed = False
        self._timeout = httpx.Timeout(
            connect=limits.connect_timeout,
            read=limits.read_timeout,
            write=limits.read_timeout,
            pool=limits.connect_timeout,
        ).as_dict()
        self._global = asyncio.Semaphore(limits.max_connections)
        self._hosts: dict[str, _HostGate] = {}
        self._policies: Mapping[str, HostPolicy] = limits.host_policies
        # Host -> loop time before which its next request may not start.  Kept
        # apart from the gates (which are dropped when idle) so a request that
        # comes just after a host went idle still waits; entries are dropped
        # once in the past, so the dict stays as small as the hosts in flight.
        self._next_start: dict[str, float] = {}

    def _channel_for(self, guard: AddressGuard | None) -> _Channel:
        channel = self._channels.get(guard)
        if channel is None:
            channel = self._channels[guard] = _Channel(self._transport, guard)
        return channel

    @property
    def limits(self) -> FetchLimits:
        return self._limits

    def set_host_policies(self, policies: Mapping[str, HostPolicy]) -> None:
        """Replace the configured host policies (a reloaded feeds.yaml).

        A host busy right now keeps its current limits until it is next idle.
        """
        self._policies = MappingProxyType(dict(policies))

    def policy_for(self, host: str) -> HostPolicy:
        """The politeness policy for ``host``: configured, else the default resolver's."""
        key = host.lower()
        policy = self._policies.get(key)
        return policy if policy is not None else self._limits.default_policy(key)

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        await self._transport.aclose()

    async def fetch(
        self,
        url: str,
        validators: Validators | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        accept: str = DEFAULT_ACCEPT,
        guard: AddressGuard | None = None,
    ) -> FetchResult:
        """GET ``url``; return a 2xx or 304 result or raise a ``FetchError``.

        ``headers`` are added to every hop (Authorization and Cookie are
        dropped when a redirect leaves the host); Accept-Encoding is always
        ours, since we can only bound the codings we decode ourselves.

        Pass ``guard`` for URLs nobody vetted (links inside feeds): every hop
        is then resolved and checked before its request, and connected to
        the checked address; a refusal raises ``ForbiddenAddress`` before any
        byte goes to that address.  Feed URLs from feeds.yaml need no guard.
        """
        if self._closed:
            raise RuntimeError("Fetcher is closed: create a new one to fetch again")
        target = _parse_url(url)
        sent = validators or Validators()
        merged = httpx.Headers({"User-Agent": self._limits.user_agent, "Accept": accept})
        merged.update(headers or {})
        merged["Accept-Encoding"] = ACCEPT_ENCODING
        if sent.etag:
            merged["If-None-Match"] = sent.etag
        if sent.last_modified:
            merged["If-Modified-Since"] = sent.last_modified
        state = _Request(url, sent, merged, [target])
        loop = asyncio.get_running_loop()
        deadline = asyncio.timeout(None)
        try:
            async with deadline:
                while True:
                    async with self._slot(target.host) as on_sent:
                        if not state.started:
                            # The clock starts once a slot is ours: time spent
                            # queueing behind our own limits is not the server's.
                            state.started = loop.time()
                            deadline.reschedule(state.started + self._limits.deadline)
                        if guard is not None:
                            await self._preflight(guard, state, target)
                        outcome = await self._exchange(
                            state, target, self._channel_for(guard), on_sent
                        )
                    if isinstance(outcome, FetchResult):
                        return outcome
                    target = self._next_hop(state, outcome)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise FetchTimeout(
                url,
                f"timed out after {_seconds(self._limits.deadline)} (total deadline, "
                f"{len(state.visited)} request(s))",
            ) from None

    @contextlib.asynccontextmanager
    async def _slot(self, host: str) -> AsyncIterator[Callable[[], None] | None]:
        """Hold a request slot for ``host``; yields the "request sent" marker of a
        spaced host (see :meth:`_spaced_start`), else None."""
        gate = self._hosts.get(host)
        if gate is None:
            policy = self.policy_for(host)
            cap = policy.max_concurrency
            if self._limits.max_per_host is not None:
                cap = min(cap, self._limits.max_per_host)
            gate = self._hosts[host] = _HostGate(asyncio.Semaphore(cap), policy.min_spacing)
        gate.users += 1
        try:
            async with gate.semaphore:
                on_sent = None
                if gate.spacing > 0:
                    on_sent = await self._spaced_start(host, gate)
                else:
                    await self._global.acquire()
                try:
                    yield on_sent
                finally:
                    if on_sent is not None:
                        on_sent()  # nothing was sent (or no trace event came): book now
                    self._global.release()
        finally:
            gate.users -= 1
            if not gate.users:  # forget idle hosts: a daemon meets thousands
                del self._hosts[host]
                self._forget_past_starts()

    async def _spaced_start(self, host: str, gate: _HostGate) -> Callable[[], None]:
        """Pass ``host``'s turnstile at its next start time, holding a global slot.

        Returns the marker to call when the request headers actually go out
        (the transport's trace event, after any connect): it books the next start
        ``spacing`` later and lets the next waiter through.  Booking at the
        real send, not at slot time, is what the server sees -- a cold
        connection can otherwise make two arrivals closer than the spacing.
        Only the send is serialised; responses still overlap up to the
        host's concurrency, so one slow route does not hold the others back.
        """
        loop = asyncio.get_running_loop()
        await gate.turnstile.acquire()
        try:
            wait = self._next_start.get(host, 0.0) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._global.acquire()
        except BaseException:
            gate.turnstile.release()
            raise
        booked = False

        def book() -> None:
            self._next_start[host] = loop.time() + gate.spacing
            gate.turnstile.release()

        def on_sent() -> None:
            # aiohttp reports "headers sent" just *before* it writes them, in
            # the same step of the loop; booked there, the next start counted
            # from a moment up to a GIL switch or two (5-15 ms on a busy
            # machine) before the bytes left, and a host saw two requests
            # that much closer than the spacing (bench/fleet.py, kernel
            # stamps).  The loop's next turn comes after that write.
            nonlocal booked
            if not booked:
                booked = True
                loop.call_soon(book)

        return on_sent

    def _forget_past_starts(self) -> None:
        now = asyncio.get_running_loop().time()
        for host in [h for h, t in self._next_start.items() if t <= now and h not in self._hosts]:
            del self._next_start[host]

    async def _preflight(self, guard: AddressGuard, state: _Request, target: httpx.URL) -> None:
        """Refuse ``target`` before asking anything of it.

        The transport's connect step checks again (and pins the connection to
        the checked address); this check covers any transport, an injected
        one included, and names the hop in the error.
        """
        port = target.port or (443 if target.scheme == "https" else 80)
        try:
            await guard.check(target.host, port)
        except AddressRefused as exc:
            raise _forbidden(state.url, target, exc) from None
        except OSError as exc:
            raise FetchConnectError(
                state.url, f"DNS resolution failed for host {target.host!r}: {exc}"
            ) from exc

    async def _exchange(
        self,
        state: _Request,
        target: httpx.URL,
        channel: _Channel,
        on_sent: Callable[[], None] | None = None,
    ) -> FetchResult | httpx.URL:
        """One request: a result, the next hop's URL, or an exception.

        Straight to the transport, not through ``httpx.AsyncClient``: the
        fetcher already does what the client adds (redirects, decoding,
        limits, headers) except credentials and cookies, which
        :class:`_Channel` does; the client's own per-request work (cookie
        extraction builds a ``urllib`` request for every response, header
        merging) was a quarter of the cost of a 304.
        """
        extensions: dict[str, Any] = {"timeout": self._timeout}
        if on_sent is not None:

            async def trace(event: str, info: Mapping[str, Any]) -> None:
                if event.endswith("send_request_headers.started"):  # http11. or http2.
                    on_sent()

            extensions["trace"] = trace
        request = channel.request(target, state.headers, extensions)
        try:
            response = await channel.transport.handle_async_request(request)
            response.request = request  # what the client would do: response.url needs it
            try:
                channel.keep_cookies(response)
                return await self._settle(state, response)
            finally:
                await response.aclose()  # an unread body closes rather than pools
        except httpx.TransportError as exc:
            raise _transport_error(state.url, target, exc, self._limits) from exc
        except AddressRefused as exc:  # raised at connect time by the transport's resolver
            raise _forbidden(state.url, target, exc) from None

    async def _settle(self, state: _Request, response: httpx.Response) -> FetchResult | httpx.URL:
        status = response.status_code
        if status in _REDIRECTS:
            target = _redirect_target(state.url, response)
            await _drain(response)
            return target
        if status == 304:
            await _drain(response)
            content, wire_bytes = b"", 0
        elif 200 <= status < 300:
            content, wire_bytes = await self._read_body(state.url, response)
        else:
            where = "" if response.url == state.visited[0] else f" at {_redact(str(response.url))}"
            raise HTTPStatusError(
                state.url,
                f"HTTP {status} {response.reason_phrase}{where}".rstrip(),
                status=status,
                retry_after=_retry_after(response.headers),
                headers=response.headers,
                body_head=await _body_head(response),
            )
        new = Validators(response.headers.get("etag"), response.headers.get("last-modified"))
        if status == 304:  # a 304 may omit validators that still hold
            new = Validators(
                new.etag or state.sent.etag, new.last_modified or state.sent.last_modified
            )
        return FetchResult(
            url=state.url,
            final_url=str(response.url),
            status=status,
            content=content,
            headers=response.headers,
            validators=new,
            max_age=cache_max_age(response.headers),
            retry_after=_retry_after(response.headers),
            elapsed=asyncio.get_running_loop().time() - state.started,
            wire_bytes=wire_bytes,
        )

    async def _read_body(self, url: str, response: httpx.Response) -> tuple[bytes, int]:
        limit = self._limits.max_body_bytes
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(url, f"Content-Length {declared} is over the {limit}-byte limit")
        sink = _Sink(limit)
        coding, decoder = _decoder(url, response.headers.get("content-encoding", ""), sink)
        wire_bytes = 0
        try:
            async for chunk in response.aiter_raw():
                wire_bytes += len(chunk)
                if wire_bytes > limit:
                    raise BodyTooLarge(url, f"body is over the {limit}-byte limit")
                decoder.feed(chunk)
            if wire_bytes:  # an empty body is empty whatever its label
                decoder.finish()
        except _Overflow:
            raise BodyTooLarge(
                url,
                f"{coding} body decodes to over the {limit}-byte limit "
                f"(after {wire_bytes} bytes on the wire)",
            ) from None
        except _DECODE_ERRORS as exc:
            raise ContentDecodingError(url, f"corrupt {coding} body: {exc}") from exc
        return bytes(sink.data), wire_bytes

    def _next_hop(self, state: _Request, target: httpx.URL) -> httpx.URL:
        target = target.copy_with(fragment=None)
        if target in state.visited:
            chain = " -> ".join(_redact(str(u)) for u in [*state.visited, target])
            raise TooManyRedirects(state.url, f"redirect loop: {chain}")
        if len(state.visited) > self._limits.max_redirects:
            raise TooManyRedirects(
                state.url,
                f"more than {self._limits.max_redirects} redirects "
                f"(next was {_redact(str(target))})",
            )
        previous = state.visited[-1]
        if target.host != previous.host or (previous.scheme, target.scheme) == ("https", "http"):
            for name in _SENSITIVE:  # credentials go neither to strangers nor in clear text
                state.headers.pop(name, None)
        state.visited.append(target)
        return target


_DRAIN_LIMIT = 64 * 1024
#: A GET's body: none (shared: an in-memory stream keeps no state).
_NO_BODY: Final = httpx.ByteStream(b"")


async def _drain(response: httpx.Response) -> None:
    """Read a small body we do not need (a 304's, a redirect's) to its end.

    The transport returns a connection to the pool only once its response was
    read to the end; an unread body, even an empty one, makes ``aclose`` drop the
    connection, so every 304 would cost a new TCP connection.  A body over
    ``_DRAIN_LIMIT`` bytes on the wire is abandoned (the connection closes),
    and a fault while reading is ignored: the status is the answer.
    """
    if response.is_stream_consumed or response.is_closed:  # e.g. a mock transport's
        return
    if isinstance(response.stream, httpx.ByteStream):  # in memory (no body): nothing to read
        return
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > _DRAIN_LIMIT:
        return
    wire = 0
    try:
        async for chunk in response.aiter_raw():
            wire += len(chunk)
            if wire > _DRAIN_LIMIT:
                return
    except (httpx.HTTPError, httpx.StreamError):
        pass


async def _body_head(response: httpx.Response) -> bytes:
    """Up to ``ERROR_BODY_HEAD`` decoded bytes of an error body, best effort.

    Only a little is read (a challenge page says so in its first kilobyte)
    and any fault while reading it yields what was decoded so far: the status
    is the error being reported, not the body.
    """
    sink = _Sink(ERROR_BODY_HEAD)
    try:
        _, decoder = _decoder(str(response.url), response.headers.get("content-encoding", ""), sink)
        wire = 0
        async for chunk in response.aiter_raw():
            wire += len(chunk)
            decoder.feed(chunk)
            if wire > 16 * ERROR_BODY_HEAD:  # a glance, not a download
                break
    except _Overflow:
        pass
    except (httpx.TransportError, ContentDecodingError, *_DECODE_ERRORS):
        pass
    return bytes(sink.data[:ERROR_BODY_HEAD])


def _forbidden(url: str, target: httpx.URL, exc: AddressRefused) -> ForbiddenAddress:
    return ForbiddenAddress(url, f"refusing to fetch {_redact(str(target))}: {exc.explanation()}")


def _redirect_target(url: str, response: httpx.Response) -> httpx.URL:
    status = response.status_code
    location = response.headers.get("location")
    if not location:
        raise HTTPStatusError(
            url, f"HTTP {status} redirect without a Location header", status=status
        )
    try:
        target = response.url.join(location)
    except httpx.InvalidURL:
        raise HTTPStatusError(
            url, f"HTTP {status} redirect to an invalid Location", status=status
        ) from None
    if target.scheme not in ("http", "https") or not target.host:
        raise HTTPStatusError(
            url,
            f"HTTP {status} redirect to unsupported URL scheme {target.scheme!r}",
            status=status,
        )
    return target
