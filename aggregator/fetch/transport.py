"""An httpx transport that moves bytes with aiohttp: the wire under feed polls.

Why two HTTP libraries: httpx is the fetcher's API (requests, responses,
errors, the mock transport tests use), but its own async transport
(httpcore on anyio) spends about 1 ms of CPU per request and slows down
further as the pool grows -- measured side by side against the benchmark
farm, 300 conditional GETs answered 304 took 0.35 s through httpcore with 8
connections (0.75 s with 32) and 0.07 s through this transport.  A daemon
mostly polls feeds that have not changed, so that per-request cost is the
daemon's cost.  aiohttp is already a dependency (the health server).

Only trusted fetches use it: feed URLs from feeds.yaml.  Links found inside
feeds go through :class:`aggregator.fetch.fetcher._PinnedTransport`, whose
connections are opened by the address guard; aiohttp is not given that job.

What this transport keeps from httpx's behaviour, because the fetcher
relies on it:

* bodies are passed through still encoded (``auto_decompress=False``): the
  fetcher decodes gzip/brotli/zstd itself, with a cap on the output;
* redirects are not followed (the fetcher follows them, hop by hop);
* httpx's ``trace`` extension hears ``http11.send_request_headers.started``
  when the headers go out, which per-host spacing books its next start by;
* aiohttp's errors become the httpx exceptions the fetcher already turns
  into its own (connect vs read timeout, refused, reset, broken response),
  chained, so the OS error underneath stays visible.

The library ``httpx-aiohttp`` does the same in general; it was not used
because it passes no trace events and maps every broken connection to
``ConnectTimeout``, which would turn a reset into a "timeout" in feed
status.
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import yarl

__all__ = ["AiohttpTransport"]

#: Longest status or header line accepted; httpcore's h11 allows 64 KiB of
#: headers, and some CDNs send very long Set-Cookie or Link lines.
MAX_HEADER_LINE = 64 * 1024

_CHUNK = 64 * 1024

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


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent over one aiohttp connection pool.

    ``max_connections`` bounds the pool (the fetcher's own semaphores bound
    concurrency per host and overall, so the pool never queues).  The
    session is created on first use, inside the running event loop, and
    closed by :meth:`aclose`.  Proxies from the environment (HTTP_PROXY and
    friends, read when the session starts) are honoured, as httpx's default
    transport does.
    """

    def __init__(self, *, max_connections: int, keepalive_expiry: float = 5.0) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._connector: aiohttp.TCPConnector | None = None
        # Two sessions over one connection pool: aiohttp runs its tracing
        # machinery (an object and a signal per step of every request) for
        # every request of a session that has any trace config, and only
        # requests to spaced hosts need the "headers sent" event.  Polls of
        # a local RSSHub, say, go through the plain one.
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}

    def _session_now(self, *, traced: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(traced)
        if session is not None:
            return session
        if self._connector is None:
            self._connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_expiry,
            )
        tracing = []
        if traced:
            config = aiohttp.TraceConfig()
            config.on_request_headers_sent.append(_on_headers_sent)
            tracing.append(config)
        session = self._sessions[traced] = aiohttp.ClientSession(
            connector=self._connector,
            connector_owner=False,
            trace_configs=tracing,
            # Proxies from the environment are honoured, as httpx does; but
            # aiohttp then looks them (and ~/.netrc) up in a thread on every
            # request, which costs more than the request itself on a LAN, so
            # only when there is a proxy to find.
            trust_env=bool(urllib.request.getproxies()),
            auto_decompress=False,
            max_line_size=MAX_HEADER_LINE,
            max_field_size=MAX_HEADER_LINE,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
        )
        return session

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
        body = await request.aread() if request.method not in ("GET", "HEAD") else None
        url = request.url
        if url.userinfo:  # httpx already turned it into an Authorization header
            url = url.copy_with(userinfo=b"")
        with _mapped_errors():
            response = await self._session_now(traced=trace is not None).request(
                request.method,
                # Already percent-encoded by httpx: yarl must not re-quote it.
                yarl.URL(str(url), encoded=True),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout(timeout),
                trace_request_ctx={"trace": trace} if trace is not None else None,
            )
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions={
                "http_version": f"HTTP/{response.version.major}.{response.version.minor}".encode()
                if response.version
                else b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
        if self._connector is not None:
            await self._connector.close()
            self._connector = None


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
