"""The aiohttp wire under feed polls (aggregator.fetch.transport), through the Fetcher.

tests/test_fetch.py already runs every fetch behaviour (timeouts, limits,
redirects, codings, refused and dropped connections) over this transport,
since feed fetches use it by default.  These tests cover what is particular
to it: servers that break HTTP, credentials in the URL, long headers, the
send-time trace that spacing relies on, and that guarded fetches stay off it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from aiohttp import web
from localserver import LocalServer

from aggregator.fetch.fetcher import FetchConnectError, Fetcher, FetchLimits
from aggregator.fetch.netguard import AddressGuard
from aggregator.fetch.transport import AiohttpTransport

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


async def test_feed_fetches_use_aiohttp_and_guarded_ones_do_not() -> None:
    async with Fetcher() as fetcher:
        assert isinstance(fetcher._channel_for(None).transport, AiohttpTransport)
        guarded = fetcher._channel_for(AddressGuard()).transport
        assert not isinstance(guarded, AiohttpTransport)


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
