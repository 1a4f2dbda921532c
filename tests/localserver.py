"""A scripted HTTP server on 127.0.0.1 for tests that need a real socket.

Mock transports cannot show what a network client really does: pooling,
timeouts, half-sent bodies, compression on the wire.  This module runs an
``aiohttp.web`` server on its own event loop in a background thread, so sync
tests and async tests (whatever loop pytest-asyncio gives them) can use the
same server, and a test can assert the client's politeness from outside.

Usage::

    from localserver import Canned, LocalServer, local_server  # fixture

    def test_x(local_server: LocalServer) -> None:
        local_server.route("/feed", body=b"<rss/>", headers={"ETag": '"v1"'})
        local_server.route("/slow", body=b"abc", chunk_size=1, delay=0.5)
        local_server.route("/custom", my_aiohttp_handler)
        ...  # fetch local_server.url("/feed")
        assert local_server.requests[0].headers["User-Agent"].startswith("aggregator/")

Routes can be (re)registered at any time, also while the server runs; an
unregistered path answers 404.  Custom handlers run on the server's loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["Canned", "Handler", "LocalServer", "RecordedRequest", "local_server"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server saw it, logged before its handler runs."""

    method: str
    path: str
    query: str
    headers: CIMultiDictProxy[str]
    time: float  # time.monotonic() on arrival
    peer: tuple[str, int]  # client address; the same port means a reused connection


@dataclass(frozen=True, slots=True)
class Canned:
    """A scripted response.

    ``body`` may be a callable returning an iterable of chunks, so a test can
    stream far more bytes than it wants to hold (sent chunked, without a
    Content-Length).  With ``chunk_size`` a bytes body is split, and ``delay``
    seconds pass before each chunk: a drip server is ``chunk_size=1``.  The
    headers (and an explicit Content-Length) are sent as given: the server
    never compresses, so a test serves pre-compressed or corrupt bodies.
    """

    status: int = 200
    body: bytes | str | Callable[[], Iterable[bytes]] = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    chunk_size: int | None = None
    delay: float = 0.0

    def chunks(self) -> Iterable[bytes]:
        if callable(self.body):
            return self.body()
        data = self.body.encode() if isinstance(self.body, str) else self.body
        if not self.chunk_size:
            return [data]
        return (data[i : i + self.chunk_size] for i in range(0, len(data), self.chunk_size))

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=self.status, headers=CIMultiDict(self.headers))
        if not callable(self.body) and "Content-Length" not in response.headers:
            size = len(self.body.encode() if isinstance(self.body, str) else self.body)
            response.content_length = size
        await response.prepare(request)
        try:
            for chunk in self.chunks():
                if self.delay:
                    await asyncio.sleep(self.delay)
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            pass  # the client gave up (a limit or timeout under test): expected
        return response


class LocalServer:
    """An HTTP server on 127.0.0.1 with per-test routes and a request log.

    Thread-safe: routes, the log and the in-flight counters may be used from
    any thread.  ``peak_in_flight`` is the largest number of requests whose
    handlers ran at once since the last ``clear()``: the way to check a
    client's concurrency limits without trusting the client.
    """

    def __init__(self, *, shutdown_timeout: float = 0.2) -> None:
        self.port = 0
        self._shutdown_timeout = shutdown_timeout
        self._routes: dict[str, Handler] = {}
        self._log: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self._peak = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "/", *, host: str = "127.0.0.1") -> str:
        """The absolute URL of ``path``; ``host="localhost"`` gives a second host name."""
        return f"http://{host}:{self.port}{path}"

    def route(
        self,
        path: str,
        handler: Handler | None = None,
        /,
        *,
        status: int = 200,
        body: bytes | str | Callable[[], Iterable[bytes]] = b"",
        headers: Mapping[str, str] | None = None,
        chunk_size: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer ``path`` (any method) with ``handler``, or else with a ``Canned`` response."""
        if handler is None:
            handler = Canned(status, body, dict(headers or {}), chunk_size, delay)
        with self._lock:
            self._routes[path] = handler

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        with self._lock:
            return self._peak

    def clear(self) -> None:
        """Forget logged requests and the concurrency peak (routes stay)."""
        with self._lock:
            self._log.clear()
            self._peak = self._in_flight

    def start(self) -> LocalServer:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="localserver", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            future.result(timeout=self._shutdown_timeout + 10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # A short shutdown: drip handlers whose client already left must not
        # hold every test's teardown for aiohttp's default minute.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._shutdown_timeout)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            time=time.monotonic(),
            peer=tuple(peer[:2]) if peer else ("", 0),
        )
        with self._lock:
            self._log.append(record)
            handler = self._routes.get(request.path)
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
        try:
            if handler is None:
                return web.Response(status=404, text=f"no route for {request.path}\n")
            return await handler(request)
        finally:
            with self._lock:
                self._in_flight -= 1


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    """A started ``LocalServer`` for one test, stopped afterwards."""
    with LocalServer() as server:
        yield server
