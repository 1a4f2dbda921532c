"""The aiohttp wire under feed polls (aggregator.fetch.transport), through the Fetcher.

tests/test_fetch.py already runs every fetch behaviour (timeouts, limits,
redirects, codings, refused and dropped connections) over this transport,
since feed fetches use it by default.  These tests cover what is particular
to it: servers that break HTTP, credentials in the URL, long headers, the
send-time trace that spacing relies on, and that guarded fetches share it but
not its trusted connection pool.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import httpx
import pytest
from aiohttp import web
from localserver import LocalServer

from aggregator.fetch.fetcher import FetchConnectError, Fetcher, FetchLimits
from aggregator.fetch.netguard import AddressGuard, AddressRefused, IPAddress, refusal_reason
from aggregator.fetch.transport import GUARD_EXTENSION, AiohttpTransport

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(reply: Reply) -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 that answers with whatever bytes ``reply`` writes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            await reply(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/feed"
    finally:
        server.close()
        await server.wait_closed()


async def test_feed_fetches_and_guarded_ones_share_the_transport_not_the_pool() -> None:
    async with Fetcher() as fetcher:
        trusted = fetcher._channel_for(None)
        guard = AddressGuard()
        guarded = fetcher._channel_for(guard)
        assert isinstance(trusted.transport, AiohttpTransport)
        assert guarded.transport is trusted.transport
        assert fetcher._channel_for(guard) is guarded
        assert guarded.cookies is not trusted.cookies  # an untrusted link sees no feed cookie
        transport = trusted.transport
        assert isinstance(transport, AiohttpTransport)
        trusted_pool, guarded_pool = transport._pool(None), transport._pool(guard)
        assert guarded_pool.connector is not trusted_pool.connector
        assert not guarded_pool.trust_env  # a proxy would resolve names out of the guard's sight


async def test_garbage_instead_of_a_status_line_is_a_broken_response() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    async with raw_server(garbage) as url, Fetcher() as fetcher:
        with pytest.raises(FetchConnectError, match="broke off the response"):
            await fetcher.fetch(url)


async def test_close_without_answer_is_a_broken_response_not_a_timeout() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return None

    async with raw_server(hang_up) as url, Fetcher() as fetcher:
        with pytest.raises(FetchConnectError, match="broke off the response") as info:
            await fetcher.fetch(url)
    assert "timed out" not in str(info.value)


async def test_long_header_lines_are_accepted() -> None:
    cookie = "a" * 20_000

    async def long_header(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
            b"Set-Cookie: " + cookie.encode() + b"\r\nContent-Length: 6\r\n\r\n<rss/>"
        )
        await writer.drain()

    async with raw_server(long_header) as url, Fetcher() as fetcher:
        result = await fetcher.fetch(url)
    assert result.content == b"<rss/>"
    assert result.headers["set-cookie"] == cookie


async def test_credentials_in_the_url_become_basic_auth(local_server: LocalServer) -> None:
    local_server.route("/private.xml", body=b"<rss/>")
    url = local_server.url("/private.xml").replace("http://", "http://reader:p%40ss@")
    async with Fetcher() as fetcher:
        result = await fetcher.fetch(url)
    assert result.content == b"<rss/>"
    (request,) = local_server.requests
    assert request.path == "/private.xml"
    expected = base64.b64encode(b"reader:p@ss").decode()
    assert request.headers["Authorization"] == f"Basic {expected}"


async def test_answers_without_a_body_keep_the_connection_and_requests_name_their_host(
    local_server: LocalServer,
) -> None:
    """A round of 304s rides one pooled connection (a body-less answer gives it
    back at once: nothing to drain), and every request names its Host as
    httpx would, with the port."""

    async def conditional(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.Response(body=b"<rss/>", headers={"ETag": '"v1"'})

    local_server.route("/feed.xml", conditional)
    url = local_server.url("/feed.xml")
    async with Fetcher(FetchLimits(max_per_host=1, max_connections=1)) as fetcher:
        first = await fetcher.fetch(url)
        again = [await fetcher.fetch(url, first.validators) for _ in range(3)]
    assert first.content == b"<rss/>"
    assert [r.status for r in again] == [304, 304, 304]
    assert all(r.content == b"" and r.validators.etag == '"v1"' for r in again)
    requests = local_server.requests
    assert len({r.peer for r in requests}) == 1  # one connection for all four
    assert [r.headers["Host"] for r in requests] == [f"127.0.0.1:{local_server.port}"] * 4


async def test_encoded_query_is_sent_as_given(local_server: LocalServer) -> None:
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(body=b"<rss/>")

    local_server.route("/feed.xml", record)
    async with Fetcher() as fetcher:
        await fetcher.fetch(local_server.url("/feed.xml?q=%E4%B8%AD&x=a%2Fb"))
    assert seen == ["/feed.xml?q=%E4%B8%AD&x=a%2Fb"]


async def test_bodies_arrive_still_encoded(local_server: LocalServer) -> None:
    """The fetcher decodes (with its size cap); the transport must not."""
    import gzip

    packed = gzip.compress(b"<rss>" + b"x" * 1000 + b"</rss>")
    local_server.route("/feed", body=packed, headers={"Content-Encoding": "gzip"})
    transport = AiohttpTransport(max_connections=2)
    try:
        response = await transport.handle_async_request(
            httpx.Request("GET", local_server.url("/feed"), headers={"Accept-Encoding": "gzip"})
        )
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
    finally:
        await transport.aclose()
    assert raw == packed
    async with Fetcher(FetchLimits()) as fetcher:
        assert (await fetcher.fetch(local_server.url("/feed"))).content.startswith(b"<rss>xxx")


async def test_a_proxy_in_the_environment_is_used(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY is honoured for feed fetches, as httpx's own transport does."""
    seen: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append(str(request.url))  # a proxy gets the absolute URL
        return web.Response(body=b"<rss/>")

    local_server.route("/feed.xml", proxy)
    monkeypatch.setenv("HTTP_PROXY", local_server.url("/"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with Fetcher() as fetcher:
        result = await fetcher.fetch("http://feeds.example.invalid/feed.xml")
    assert result.content == b"<rss/>"
    assert seen == ["http://feeds.example.invalid/feed.xml"]


async def test_a_cookie_check_redirect_is_passed(local_server: LocalServer) -> None:
    """Some sites set a cookie and redirect to a checking URL to see it come back."""

    async def checked(request: web.Request) -> web.Response:
        if request.cookies.get("seen") == "1":
            return web.Response(body=b"<rss/>")
        response = web.Response(status=302, headers={"Location": "/feed.xml?check=1"})
        response.set_cookie("seen", "1", path="/")
        return response

    local_server.route("/feed.xml", checked)
    async with Fetcher() as fetcher:
        result = await fetcher.fetch(local_server.url("/feed.xml"))
        assert result.content == b"<rss/>"
        # The jar belongs to this channel: an untrusted link's channel starts empty.
        assert fetcher._channel_for(None).cookies.get("seen") == "1"
        assert not fetcher._channel_for(AddressGuard()).cookies.jar
    assert len(local_server.requests) == 2
    assert "Cookie" not in local_server.requests[0].headers
    assert local_server.requests[1].headers["Cookie"] == "seen=1"


async def test_trace_hears_when_headers_go_out_and_shares_the_pool(
    local_server: LocalServer,
) -> None:
    """The traced request hears "headers sent" (per-host spacing books its next
    start by it); only such requests pay for aiohttp's tracing, and traced
    and plain requests reuse the same connections."""
    local_server.route("/feed", body=b"<rss/>")
    events: list[str] = []

    async def trace(event: str, info: dict[str, object]) -> None:
        events.append(event)

    transport = AiohttpTransport(max_connections=1)
    try:
        for extensions in ({}, {"trace": trace}, {}):
            request = httpx.Request("GET", local_server.url("/feed"), extensions=extensions)
            response = await transport.handle_async_request(request)
            assert b"".join([chunk async for chunk in response.aiter_raw()]) == b"<rss/>"
            await response.aclose()
    finally:
        await transport.aclose()
    assert events == ["http11.send_request_headers.started"]  # the traced one only
    assert len({r.peer for r in local_server.requests}) == 1  # one connection for all three


# --------------------------------------------------------------------------
# The address guard on this one path: the guarded pool's resolver


def _loopback_is_public(address: IPAddress) -> str | None:
    """The default policy, except that this machine plays the public internet."""
    return None if str(address) == "127.0.0.1" else refusal_reason(address)


async def _send(transport: AiohttpTransport, url: str, guard: AddressGuard | None) -> bytes:
    request = httpx.Request("GET", url, extensions={GUARD_EXTENSION: guard})
    response = await transport.handle_async_request(request)
    try:
        return b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()


async def test_the_transport_alone_refuses_and_pins_guarded_requests(
    local_server: LocalServer,
) -> None:
    """Without the fetcher's pre-flight check: names are judged by the guard
    acting as resolver, literals before the connect, and a name known only
    to the guard's resolver is reached at the address the guard returned."""
    local_server.route("/page", body=b"page")
    calls: list[str] = []

    async def resolver(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return {"outlet.test": ["127.0.0.1"], "intranet.test": ["10.0.0.1"]}.get(host, [])

    strict = AddressGuard(resolver=resolver)
    lenient = AddressGuard(resolver=resolver, policy=_loopback_is_public)
    transport = AiohttpTransport(max_connections=2)
    try:
        for url in (
            local_server.url("/page", host="outlet.test"),
            local_server.url("/page", host="127.0.0.1"),
            "http://intranet.test/",
        ):
            with pytest.raises(AddressRefused):
                await _send(transport, url, strict)
        assert local_server.requests == []
        assert calls == ["outlet.test", "intranet.test"]  # the literal needs no DNS
        assert await _send(transport, local_server.url("/page", host="outlet.test"), lenient) == (
            b"page"
        )
    finally:
        await transport.aclose()
    (request,) = local_server.requests
    assert request.headers["Host"] == f"outlet.test:{local_server.port}"


async def test_trusted_connections_are_never_lent_to_guarded_requests(
    local_server: LocalServer,
) -> None:
    local_server.route("/page", body=b"page")
    guard = AddressGuard(policy=_loopback_is_public)
    url = local_server.url("/page")
    transport = AiohttpTransport(max_connections=4)
    try:
        for guard_or_none in (None, None, guard, guard):
            assert await _send(transport, url, guard_or_none) == b"page"
    finally:
        await transport.aclose()
    peers = [r.peer for r in local_server.requests]
    assert peers[0] == peers[1] and peers[2] == peers[3]  # each pool reuses its own
    assert peers[0] != peers[2]  # but the guarded one opened its own connection


async def test_guarded_requests_ignore_a_proxy_in_the_environment(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy would resolve the name itself, out of the guard's sight."""
    local_server.route("/page", body=b"page")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    guard = AddressGuard(policy=_loopback_is_public)
    async with Fetcher() as fetcher:
        result = await fetcher.fetch(local_server.url("/page"), guard=guard)
    assert result.content == b"page"
    (request,) = local_server.requests
    assert request.path == "/page"  # straight to the server, not via the proxy


def test_every_http_client_in_the_project_rides_the_one_transport() -> None:
    """One HTTP path (issue 19): no httpx client falls back to httpx's own httpcore stack."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "aggregator"
    clients = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("AsyncClient", "Client")
            ):
                keywords = {k.arg for k in node.keywords}
                clients.append((path.name, node.lineno, "transport" in keywords))
    assert clients, "no httpx client found: the test no longer looks at the right calls"
    assert [c for c in clients if not c[2]] == []
