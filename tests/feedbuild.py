"""Test helpers: where the data lives, and RSS documents built from seed posts."""

from __future__ import annotations

import csv
import hashlib
from html import escape
from pathlib import Path

import pytest
from aiohttp import web
from paths import CORPUS, SEEDS

from aggregator.hexo.post import Post, format_date, parse

RSS_NAMESPACES = (
    'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
    'xmlns:media="http://search.yahoo.com/mrss/"'
)


def seed_paths() -> list[Path]:
    return sorted(SEEDS.glob("*.txt"))


def corpus_rows() -> list[dict[str, str]]:
    """MANIFEST.tsv rows, or [] when the corpus is absent (tests then skip)."""
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def require_corpus() -> Path:
    if not (CORPUS / "MANIFEST.tsv").is_file():
        pytest.skip(f"corpus not found at {CORPUS}")
    return CORPUS


def rss_document(items: str, *, channel_extra: str = "", encoding: str = "utf-8") -> str:
    """An RSS 2.0 document around ``items`` (already XML)."""
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        f'<rss version="2.0" {RSS_NAMESPACES}><channel>'
        "<title>Test channel</title><link>https://news.example.com/</link>"
        f"{channel_extra}{items}</channel></rss>"
    )


def seed_item(
    post: Post,
    *,
    body_in: str = "content",
    thumbnail: bool = True,
    link: str = "https://news.example.com/story",
    guid: str | None = None,
) -> str:
    """An RSS item carrying a seed's title, date, body and (optionally) image.

    ``body_in`` is ``"content"`` (content:encoded, CDATA), ``"description"``
    (escaped text) or ``"description-cdata"``.
    """
    if body_in == "content":
        body = (
            "<description>summary</description>"
            f"<content:encoded><![CDATA[{post.body}]]></content:encoded>"
        )
    elif body_in == "description":
        body = f"<description>{escape(post.body, quote=False)}</description>"
    else:
        body = f"<description><![CDATA[{post.body}]]></description>"
    image = f'<media:thumbnail url="{escape(post.headimg)}"/>' if thumbnail and post.headimg else ""
    return (
        f"<item><title>{escape(post.title, quote=False)}</title>"
        f"<link>{escape(link)}</link>"
        f'<guid isPermaLink="false">{escape(guid or "seed-" + format_date(post.date))}</guid>'
        f"<pubDate>{format_date(post.date)}</pubDate>{image}{body}</item>"
    )


class EtagFeed:
    """A feed handler for LocalServer: strong ETag, 304 on If-None-Match.

    ``body`` may be replaced while the server runs, as a publisher would.
    """

    def __init__(self, body: str | bytes, content_type: str = "application/rss+xml; charset=utf-8"):
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-None-Match") == self.etag:
            return web.Response(status=304, headers={"ETag": self.etag})
        return web.Response(
            body=self.body, headers={"ETag": self.etag, "Content-Type": self.content_type}
        )


def seed_posts() -> list[Post]:
    return [parse(p.read_text(encoding="utf-8")) for p in seed_paths()]


def outlet_feeds(posts: list[Post]) -> dict[tuple[str, str, str], str]:
    """One RSS document per (group, outlet, section) of ``posts``."""
    grouped: dict[tuple[str, str, str], list[Post]] = {}
    for post in posts:
        grouped.setdefault(post.categories, []).append(post)
    return {
        key: rss_document(
            "".join(seed_item(p, link=f"https://news.example.com/{i}") for i, p in enumerate(items))
        )
        for key, items in grouped.items()
    }


def feeds_yaml(feeds: dict[tuple[str, str, str], str], interval: str = "15m") -> str:
    """A feeds.yaml naming each (categories -> url)."""
    lines = ["defaults:", "  group: 新媒体", f"  interval: {interval}", "feeds:"]
    for (group, outlet, section), url in feeds.items():
        lines += [
            f"  - url: {url}",
            f"    outlet: {outlet}",
            f"    section: {section}",
            f"    group: {group}",
        ]
    return "\n".join(lines) + "\n"
