"""Outgoing POSTs of JSON: the webhook publisher's one door to the network.

Kept apart from :class:`~aggregator.fetch.fetcher.Fetcher`, which is built for
reading feeds (conditional GETs, body caps, per-host pacing, the address
guard for links found inside feeds).  A webhook URL is written by the
operator, so it is not guarded like a feed's links, and its answer is only
looked at for its status and a short excerpt to log.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Self

import httpx

from aggregator import __version__
from aggregator.fetch.fetcher import FetchConnectError, FetchError, FetchTimeout
from aggregator.fetch.transport import AiohttpTransport
from aggregator.policy.urls import redact_url

__all__ = ["JsonPoster", "PostAnswer"]

#: Bytes of a receiver's answer kept for the error message.
ANSWER_HEAD = 300


@dataclass(frozen=True, slots=True)
class PostAnswer:
    """The receiver's status and the first bytes of its answer, as text."""

    status: int
    head: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class JsonPoster:
    """An HTTP client for POSTing JSON documents; use as ``async with``."""

    def __init__(self, *, timeout: float = 10.0) -> None:
        # The one HTTP path (tests/test_transport.py): the same aiohttp wire
        # as feed polls.  Webhook URLs are the operator's own, so unguarded.
        self._client = httpx.AsyncClient(
            transport=AiohttpTransport(max_connections=4),
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,  # a redirected POST is the receiver's mistake: report it
            headers={"User-Agent": f"aggregator/{__version__} (webhook)"},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def post(self, url: str, body: bytes, *, headers: dict[str, str]) -> PostAnswer:
        """POST ``body`` (JSON) to ``url``; raise :class:`FetchError` when no answer came."""
        sent = {"Content-Type": "application/json; charset=utf-8", **headers}
        try:
            response = await self._client.post(url, content=body, headers=sent)
        except httpx.TimeoutException as exc:
            raise FetchTimeout(url, f"no answer in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise FetchConnectError(url, f"cannot reach {redact_url(url)}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise FetchError(url, f"request failed: {exc}") from exc
        head = response.content[:ANSWER_HEAD].decode("utf-8", "replace")
        return PostAnswer(response.status_code, head)
