"""An httpx transport that moves bytes with aiohttp: the one wire under every fetch.

Why two HTTP libraries: httpx is the fetcher's API (requests, responses,
errors, the mock transport tests use), but its own async transport
(httpcore on anyio) spends about 1 ms of CPU per request and slows down
further as the pool grows -- measured side by side against the benchmark
farm, 300 conditional GETs answered 304 took 0.35 s through httpcore with 8
connections (0.75 s with 32) and 0.07 s through this transport.  A daemon
mostly polls feeds that have not changed, so that per-request cost is the
daemon's cost.  aiohttp is already a dependency (the health server).

Every request goes through it: feed URLs from feeds.yaml and links found
inside feeds (full-text pages, images) alike.  What differs by trust is a
policy on this one path, not a second stack: a request whose
:data:`GUARD_EXTENSION` names an :class:`~aggregator.fetch.netguard.AddressGuard`
is sent over a connection pool whose resolver is :class:`GuardedResolver`,
so the guard resolves the name, refuses non-public answers, and the socket
is opened to exactly the addresses it checked (no second lookup a rebinding
DNS server could answer differently; TLS still checks the certificate
against the host name).  Each guard has its own pool, apart from the
trusted one, so a connection opened for a feed URL (which may well point at
a local RSSHub) is never lent to an untrusted link, and guarded pools use
no proxy (a proxy would resolve names itself, out of the guard's sight).

What this transport keeps from httpx's behaviour, because the fetcher
relies on it:

* bodies are passed through still encoded (``auto_decompress=False``): the
  fetcher decodes gzip/brotli/zstd itself, with a cap on the output;
* redirects are not followed (the fetcher follows them, hop by hop, and
  checks every hop with the guard before asking anything of it);
* httpx's ``trace`` extension hears ``http11.send_request_headers.started``
  when the headers go out, which per-host spacing books its next start by;
* cookies are the caller's (the fetcher keeps one jar per trust level):
  aiohttp's own jar is a dummy;
* aiohttp's errors become the httpx exceptions the fetcher already turns
  into its own (connect vs read timeout, refused, reset, broken response),
  chained, so the OS error underneath stays visible; a guard's refusal
  (:class:`~aggregator.fetch.netguard.AddressRefused`) passes through as is.

The library ``httpx-aiohttp`` does the same in general; it was not used
because it passes no trace events and maps every broken connection to
``ConnectTimeout``, which would turn a reset into a "timeout" in feed
status.
"""

from __future__ import annotations

import contextlib
import socket
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from aggregator.fetch.netguard import AddressGuard

__all__ = ["GUARD_EXTENSION", "AiohttpTransport", "GuardedResolver"]

#: The httpx request extension that names the :class:`AddressGuard` a request
#: must pass (links found inside feeds); absent or ``None`` for trusted URLs.
#: Transports that do not know it (a test's ``httpx.MockTransport``) ignore
#: it, which is why the fetcher also checks every hop before sending it.
GUARD_EXTENSION = "aggregator.address_guard"

#: Longest status or header line accepted; httpcore's h11 allows 64 KiB of
#: headers, and some CDNs send very long Set-Cookie or Link lines.
MAX_HEADER_LINE = 64 * 1024

_CHUNK = 64 * 1024

#: The body of a response that has none (reading it holds no connection).
_NO_BODY = httpx.ByteStream(b"")

_Trace = Callable[[str, dict[str, Any]], Awaitable[None]]


async def _on_headers_sent(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
) -> None:
    trace: _Trace | None = (context.trace_request_ctx or {}).get("trace")
    if trace is not None:
        await trace("http11.send_request_headers.started", {})


class _Body(httpx.AsyncByteStream):
    """The response body as aiohttp reads it, still content-encoded."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors():
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk

    async def aclose(self) -> None:
        # A body read to its end returns the connection to the pool; one
        # abandoned halfway closes it (aiohttp cannot reuse it either).
        self._response.release()


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver step, answered by an :class:`AddressGuard`.

    The connector connects to the addresses a resolver returns, so answering
    with the guard's checked addresses pins the socket to them: the address
    connected to is the address that was checked.  A refusal raises
    :class:`~aggregator.fetch.netguard.AddressRefused` out of the connect; a
    name that does not resolve raises ``socket.gaierror``, which aiohttp
    reports as the DNS failure any connect would give.  IP literals never
    reach a resolver (aiohttp connects to them directly), so
    :meth:`AiohttpTransport.handle_async_request` checks those itself.
    """

    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for address in await self._guard.check(host, port)
        ]

    async def close(self) -> None:
        pass  # nothing held: the guard keeps no state


@dataclass(slots=True)
class _Pool:
    """One trust level's connection pool and the sessions over it.

    Two sessions share the pool: aiohttp runs its tracing machinery (an
    object and a signal per step of every request) for every request of a
    session that has any trace config, and only requests to spaced hosts
    need the "headers sent" event.  Polls of a local RSSHub, say, go
    through the plain one.
    """

    connector: aiohttp.TCPConnector
    trust_env: bool
    sessions: dict[bool, aiohttp.ClientSession] = field(default_factory=dict)

    def session(self, *, traced: bool) -> aiohttp.ClientSession:
        session = self.sessions.get(traced)
        if session is not None:
            return session
        tracing = []
        if traced:
            config = aiohttp.TraceConfig()
            config.on_request_headers_sent.append(_on_headers_sent)
            tracing.append(config)
        session = self.sessions[traced] = aiohttp.ClientSession(
            connector=self.connector,
            connector_owner=False,
            trace_configs=tracing,
            trust_env=self.trust_env,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            max_line_size=MAX_HEADER_LINE,
            max_field_size=MAX_HEADER_LINE,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
        )
        return session

    async def aclose(self) -> None:
        for session in self.sessions.values():
            await session.close()
        self.sessions.clear()
        await self.connector.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent over aiohttp connection pools, one per trust level.

    ``max_connections`` bounds each pool (the fetcher's own semaphores bound
    concurrency per host and overall, so a pool never queues).  Pools and
    sessions are created on first use, inside the running event loop, and
    closed by :meth:`aclose`.  Trusted requests honour proxies from the
    environment (HTTP_PROXY and friends, read when the pool starts), as
    httpx's default transport does; guarded ones (see
    :data:`GUARD_EXTENSION`) connect directly, through the guard.
    """

    def __init__(self, *, max_connections: int, keepalive_expiry: float = 5.0) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._pools: dict[AddressGuard | None, _Pool] = {}
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}

    def _pool(self, guard: AddressGuard | None) -> _Pool:
        pool = self._pools.get(guard)
        if pool is not None:
            return pool
        if guard is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_expiry,
            )
            # Proxies from the environment are honoured, as httpx does; but
            # aiohttp then looks them (and ~/.netrc) up in a thread on every
            # request, which costs more than the request itself on a LAN, so
            # only when there is a proxy to find.
            trust_env = bool(urllib.request.getproxies())
        else:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_expiry,
                resolver=GuardedResolver(guard),
                # Every new connection asks the guard again, as it asked on
                # the hop's pre-flight: no cached answer outlives a check.
                use_dns_cache=False,
            )
            trust_env = False
        pool = self._pools[guard] = _Pool(connector, trust_env)
        return pool

    def _timeout(self, timeout: dict[str, float | None]) -> aiohttp.ClientTimeout:
        key = (timeout.get("pool"), timeout.get("connect"), timeout.get("read"))
        found = self._timeouts.get(key)
        if found is None:
            found = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, connect=key[0], sock_connect=key[1], sock_read=key[2]
            )
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        trace = request.extensions.get("trace")
        guard: AddressGuard | None = request.extensions.get(GUARD_EXTENSION)
        body = await request.aread() if request.method not in ("GET", "HEAD") else None
        url = request.url
        if url.userinfo:  # httpx already turned it into an Authorization header
            url = url.copy_with(userinfo=b"")
        if guard is not None and _is_ip_literal(url.host):
            # aiohttp connects to an IP literal without asking the resolver,
            # so the guard is asked here (no DNS for a canonical literal).
            try:
                await guard.check(url.host, url.port or (443 if url.scheme == "https" else 80))
            except OSError as exc:  # a non-canonical one that does not resolve
                raise httpx.ConnectError(str(exc)) from exc
        session = self._pool(guard).session(traced=trace is not None)
        raw_headers = request.headers.raw
        with _mapped_errors():
            response = await session.request(
                request.method,
                # Already percent-encoded by httpx: yarl must not re-quote it.
                yarl.URL(str(url), encoded=True),
                # As written, not lowercased: names are case-insensitive, but
                # some receivers (webhooks) read them with exact-case lookups.
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers],
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout(timeout),
                trace_request_ctx={"trace": trace} if trace is not None else None,
            )
        stream: httpx.AsyncByteStream
        if response.content.at_eof():
            # No body at all (a 304, a 204, Content-Length: 0): aiohttp gave
            # the connection back to the pool with the headers, and an
            # in-memory empty body spares every such response the stream
            # machinery (the fetcher reads nothing of it).
            response.release()
            stream = _NO_BODY
        else:
            stream = _Body(response)
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=stream,
            request=request,
            extensions={
                "http_version": f"HTTP/{response.version.major}.{response.version.minor}".encode()
                if response.version
                else b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            await pool.aclose()


def _is_ip_literal(host: str) -> bool:
    """Whether aiohttp would connect to ``host`` without resolving it.

    The same test as aiohttp's own (``aiohttp.helpers.is_ip_address``): an
    IPv6 literal has a colon, an IPv4 one (canonical or not, such as
    ``2130706433``) is digits and dots.  Deliberately broad: a host sent to
    the guard here rather than to the resolver is still checked.
    """
    return ":" in host or host.replace(".", "").isdigit()


@contextlib.contextmanager
def _mapped_errors() -> Iterator[None]:
    """aiohttp's exceptions as the httpx ones the fetcher handles, chained."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _as_httpx(exc) from exc


def _as_httpx(exc: BaseException) -> httpx.TransportError:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, aiohttp.SocketTimeoutError | aiohttp.ServerTimeoutError | TimeoutError):
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS handshake
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(f"server disconnected: {message}")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message)  # malformed response, cut-off body
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message)
    if isinstance(exc, aiohttp.ClientOSError):  # reset, broken pipe
        return httpx.ReadError(message)
    return httpx.NetworkError(message)
